import Foundation
import CLibBPF
import Glibc

/// A BPF map seen through its key and value types, which are the C structs of `abi.h` (or
/// plain integers), so that Swift reads and writes exactly the bytes the programs expect.
public struct BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: Sendable {
    public let name: String
    public let fd: Int32

    public init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
    }

    /// Opens a map pinned at `path` (for inspection tools and tests). The descriptor stays open
    /// for the life of the process.
    public init(pinnedAt path: String) throws(BPFError) {
        let fd = bpf_obj_get(path)
        try BPFError.check(fd, "open pinned map \(path)")
        self.init(name: (path as NSString).lastPathComponent, fd: fd)
    }

    public func lookup(_ key: Key) -> Value? {
        var key = key
        return withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { buffer -> Value? in
            let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<Value>.size)
            guard bpf_map_lookup_elem(fd, &key, raw) == 0 else { return nil }
            return raw.load(as: Value.self)
        }
    }

    public func update(_ key: Key, _ value: Value) throws(BPFError) {
        var key = key
        var value = value
        let result = bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY))
        try BPFError.check(result, "update \(name)")
    }

    /// Returns false when the key was not there.
    @discardableResult
    public func delete(_ key: Key) throws(BPFError) -> Bool {
        var key = key
        let result = bpf_map_delete_elem(fd, &key)
        if result == -ENOENT || (result == -1 && Glibc.errno == ENOENT) { return false }
        try BPFError.check(result, "delete from \(name)")
        return true
    }

    /// Every key, walked with BPF_MAP_GET_NEXT_KEY. Keys deleted concurrently may be skipped.
    public func keys() -> [Key] {
        var result: [Key] = []
        var current: Key? = nil
        while true {
            let next = withUnsafeTemporaryAllocation(of: Key.self, capacity: 1) { buffer -> Key? in
                let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
                raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<Key>.size)
                let status: Int32
                if var previous = current {
                    status = bpf_map_get_next_key(fd, &previous, raw)
                } else {
                    status = bpf_map_get_next_key(fd, nil, raw)
                }
                return status == 0 ? raw.load(as: Key.self) : nil
            }
            guard let next else { return result }
            result.append(next)
            current = next
        }
    }

    public func entries() -> [(key: Key, value: Value)] {
        keys().compactMap { key in lookup(key).map { (key, $0) } }
    }
}

/// A per-CPU array: one value per possible CPU behind each index, summed by the reader.
public struct PerCPUArrayMap<Value: BitwiseCopyable>: Sendable {
    public let name: String
    public let fd: Int32
    public let cpuCount: Int

    public init(name: String, fd: Int32) throws(BPFError) {
        self.name = name
        self.fd = fd
        let cpus = libbpf_num_possible_cpus()
        try BPFError.check(cpus, "count possible CPUs")
        cpuCount = Int(cpus)
    }

    /// The value of every CPU at `index`.
    public func values(at index: UInt32) -> [Value] {
        var key = index
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        var buffer = [UInt8](repeating: 0, count: stride * cpuCount)
        let status = buffer.withUnsafeMutableBytes { bpf_map_lookup_elem(fd, &key, $0.baseAddress) }
        guard status == 0 else { return [] }
        return buffer.withUnsafeBytes { raw in
            (0..<cpuCount).map { raw.loadUnaligned(fromByteOffset: $0 * stride, as: Value.self) }
        }
    }
}
