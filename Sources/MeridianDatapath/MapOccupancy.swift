import CLibBPF
import Glibc

/// How full a pinned map is: its entries counted by walking its keys, and its capacity from the
/// kernel's record of it. Reads any map without knowing its C layout; meant for metrics, at
/// scrape time, not for a path that runs per packet.
public struct MapOccupancy: Sendable, Hashable {
    public var entries: Int
    public var capacity: Int

    /// Fill ratio, 0...1.
    public var pressure: Double { capacity > 0 ? Double(entries) / Double(capacity) : 0 }

    /// Reads the map behind `fd`; nil if the kernel does not describe it.
    public static func read(fd: Int32) -> MapOccupancy? {
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0, info.key_size > 0 else { return nil }
        var current = [UInt8](repeating: 0, count: Int(info.key_size))
        var next = current
        var entries = 0
        var status = next.withUnsafeMutableBytes { bpf_map_get_next_key(fd, nil, $0.baseAddress) }
        while status == 0 && entries < Int(info.max_entries) {
            entries += 1
            swap(&current, &next)
            status = current.withUnsafeBytes { key in
                next.withUnsafeMutableBytes { bpf_map_get_next_key(fd, key.baseAddress, $0.baseAddress) }
            }
        }
        return MapOccupancy(entries: entries, capacity: Int(info.max_entries))
    }
}
