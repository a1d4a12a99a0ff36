import CLibBPF
import Glibc

/// Attaches programs to a device's clsact hooks (tc ingress/egress) through libbpf's netlink
/// calls, in the network namespace of the calling process. Attachment uses a fixed handle and
/// priority and replaces what is there, so an agent restart swaps programs without a gap.
public enum TrafficControl {
    public enum Direction: Sendable {
        case ingress, egress
    }

    public static let handle: UInt32 = 1
    public static let priority: UInt32 = 1

    public static func attach(programFD: Int32, interfaceIndex: Int32, direction: Direction, device: String) throws(BPFError) {
        let result = meridian_tc_attach(interfaceIndex, direction == .egress ? 1 : 0, programFD, handle, priority)
        try BPFError.check(result, "attach tc \(direction) program on \(device)")
    }

    /// The id of the program attached at our handle, or nil.
    public static func attachedProgramID(interfaceIndex: Int32, direction: Direction) -> UInt32? {
        var id: UInt32 = 0
        let result = meridian_tc_query(interfaceIndex, direction == .egress ? 1 : 0, handle, priority, &id)
        return result == 0 ? id : nil
    }

    /// The interface index of `name` in the current network namespace.
    public static func interfaceIndex(_ name: String) throws(BPFError) -> Int32 {
        let index = if_nametoindex(name)
        guard index != 0 else { throw BPFError("find interface \(name)", errno: Glibc.errno) }
        return Int32(index)
    }
}
