import Foundation
import MeridianCore
import MeridianHost

/// What the CNI plugin builds for one pod: a veth pair whose host side (`mer<hash>`) stays in
/// the node's namespace and whose other side becomes the pod's interface, a /32 address, a
/// link route to the gateway and a default route through it with the pod MTU.
public struct PodInterface: Sendable, Hashable, Codable {
    public var hostInterface: String
    public var podInterface: String
    public var networkNamespace: String
    public var address: IPAddress
    public var gateway: IPAddress
    public var mtu: Int
    public var hostMAC: [UInt8]
    public var podMAC: [UInt8]

    /// The host-side name for a container: `mer` and 8 hex digits of a hash of its id (the
    /// kernel allows 15 characters).
    public static func hostInterfaceName(containerID: String) -> String {
        var hash: UInt32 = 2_166_136_261
        for byte in containerID.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        return "mer" + String(format: "%08x", hash)
    }
}

/// Creates and removes pod interfaces with iproute2, run inside the node's network namespace.
/// Blocking calls: the CNI plugin that uses them is a short-lived process doing one thing.
public enum PodNetwork {
    public static func create(containerID: String, networkNamespace: String, podInterface: String,
                              address: IPAddress, gateway: IPAddress, mtu: Int) throws -> PodInterface {
        let host = PodInterface.hostInterfaceName(containerID: containerID)
        _ = try? HostCommand.runSync(["ip", "link", "del", host])
        try HostCommand.runSync(["ip", "link", "add", host, "mtu", "\(mtu)", "type", "veth", "peer", "name", podInterface,
                                     "mtu", "\(mtu)", "netns", networkNamespace])
        do {
            try HostCommand.runSync(["sysctl", "-q", "-w", "net.ipv4.conf.\(host).rp_filter=0"])
            try HostCommand.runSync(["ip", "link", "set", host, "up"])
            let n = ["ip", "-n", networkNamespace]
            try HostCommand.runSync(n + ["link", "set", "lo", "up"])
            try HostCommand.runSync(["ip", "netns", "exec", networkNamespace, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
            try HostCommand.runSync(n + ["addr", "add", "\(address)/32", "dev", podInterface])
            try HostCommand.runSync(n + ["link", "set", podInterface, "up"])
            try HostCommand.runSync(n + ["route", "add", "\(gateway)/32", "dev", podInterface, "scope", "link", "mtu", "\(mtu)"])
            try HostCommand.runSync(n + ["route", "add", "default", "via", "\(gateway)", "dev", podInterface, "mtu", "\(mtu)"])
            try HostCommand.runSync(["ip", "route", "replace", "\(address)/32", "dev", host])
            return PodInterface(
                hostInterface: host, podInterface: podInterface, networkNamespace: networkNamespace,
                address: address, gateway: gateway, mtu: mtu,
                hostMAC: try macAddress(of: host, namespace: nil),
                podMAC: try macAddress(of: podInterface, namespace: networkNamespace))
        } catch {
            _ = try? HostCommand.runSync(["ip", "link", "del", host])
            throw error
        }
    }

    /// Removes the host side (which removes its peer). Missing links are fine: DEL must be idempotent.
    public static func remove(containerID: String) {
        _ = try? HostCommand.runSync(["ip", "link", "del", PodInterface.hostInterfaceName(containerID: containerID)])
    }

    public static func macAddress(of device: String, namespace: String?) throws -> [UInt8] {
        let prefix = namespace.map { ["ip", "-n", $0] } ?? ["ip"]
        let output = try HostCommand.runSync(prefix + ["-o", "link", "show", "dev", device])
        guard let range = output.range(of: "link/ether ") else {
            throw HostCommandError(command: prefix + ["link", "show", device], status: "no MAC", output: output)
        }
        let text = output[range.upperBound...].prefix(17)
        let bytes = text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
        guard bytes.count == 6 else {
            throw HostCommandError(command: prefix + ["link", "show", device], status: "unparsable MAC", output: String(text))
        }
        return bytes
    }
}
