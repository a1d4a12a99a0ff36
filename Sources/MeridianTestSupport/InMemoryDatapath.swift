import CMeridianBPF
import Foundation
import MeridianDatapath
import Synchronization

/// A datapath map held in memory, keyed by the bytes of its key as the kernel's hash maps are,
/// for unit tests of the agent's reconcilers. Lookups are exact even for the maps that are LPM
/// tries in the kernel (ipcache, policy): check an entry's absence with `entries()`. Every write is appended to the shared `log`, so a
/// test can check the order in which maps were written.
public final class InMemoryDatapathMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: DatapathMap {
    private let name: String
    private let entriesByBytes: Mutex<[Data: Data]> = Mutex([:])
    private let log: DatapathWriteLog

    public init(name: String, log: DatapathWriteLog) {
        self.name = name
        self.log = log
    }

    private static func bytes<T: BitwiseCopyable>(_ value: T) -> Data {
        withUnsafeBytes(of: value) { Data($0) }
    }

    private static func load<T: BitwiseCopyable>(_ data: Data, as type: T.Type) -> T {
        data.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    public func lookup(_ key: Key) -> Value? {
        entriesByBytes.withLock { $0[Self.bytes(key)] }.map { Self.load($0, as: Value.self) }
    }

    public func update(_ key: Key, _ value: Value) throws(BPFError) {
        let keyBytes = Self.bytes(key)
        entriesByBytes.withLock { $0[keyBytes] = Self.bytes(value) }
        log.append("update \(name) \(keyBytes.map { String(format: "%02x", $0) }.joined())")
    }

    @discardableResult
    public func delete(_ key: Key) throws(BPFError) -> Bool {
        let keyBytes = Self.bytes(key)
        let removed = entriesByBytes.withLock { $0.removeValue(forKey: keyBytes) } != nil
        if removed { log.append("delete \(name) \(keyBytes.map { String(format: "%02x", $0) }.joined())") }
        return removed
    }

    public func entries() -> [(key: Key, value: Value)] {
        entriesByBytes.withLock { Array($0) }.map { (Self.load($0.key, as: Key.self), Self.load($0.value, as: Value.self)) }
    }

    public var count: Int { entriesByBytes.withLock { $0.count } }
}

/// The writes made to a set of in-memory maps, in order.
public final class DatapathWriteLog: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    public var all: [String] { lines.withLock { $0 } }
    public func clear() { lines.withLock { $0 = [] } }
}

/// A node datapath in memory: its maps, and the devices and cgroup programs were put on.
public final class InMemoryNodeDatapath: NodeDatapath {
    public let log = DatapathWriteLog()
    public let endpoints: InMemoryDatapathMap<mer_endpoint_key, mer_endpoint_info>
    public let ipcache: InMemoryDatapathMap<mer_ipcache_key, mer_ipcache_value>
    public let services: InMemoryDatapathMap<mer_lb4_key, mer_lb4_service>
    public let backends: InMemoryDatapathMap<UInt32, mer_lb4_backend>
    public let reverseNAT: InMemoryDatapathMap<UInt16, mer_lb4_revnat>
    public let conntrack: InMemoryDatapathMap<mer_ct_key, mer_ct_entry>
    public let policy: InMemoryDatapathMap<mer_policy_key, mer_policy_entry>
    public let ipBlocks: InMemoryDatapathMap<mer_ipblock_key, mer_ipblock_value>
    private let attached = Mutex<[String]>([])

    public init() {
        endpoints = InMemoryDatapathMap(name: MER_MAP_ENDPOINTS, log: log)
        ipcache = InMemoryDatapathMap(name: MER_MAP_IPCACHE, log: log)
        services = InMemoryDatapathMap(name: MER_MAP_SERVICES, log: log)
        backends = InMemoryDatapathMap(name: MER_MAP_BACKENDS, log: log)
        reverseNAT = InMemoryDatapathMap(name: MER_MAP_REVNAT, log: log)
        conntrack = InMemoryDatapathMap(name: MER_MAP_CT, log: log)
        policy = InMemoryDatapathMap(name: MER_MAP_POLICY, log: log)
        ipBlocks = InMemoryDatapathMap(name: MER_MAP_IPBLOCK, log: log)
        maps = NodeMaps(endpoints: endpoints, ipcache: ipcache, services: services, backends: backends,
                        reverseNAT: reverseNAT, conntrack: conntrack, policy: policy, ipBlocks: ipBlocks)
    }

    public let maps: NodeMaps

    /// Where programs were put, in order (`endpoint IFACE`, `overlay DEV`, `sockets CGROUP`).
    public var attachments: [String] { attached.withLock { $0 } }

    public func attachEndpoint(hostInterface: String) throws(BPFError) { attached.withLock { $0.append("endpoint \(hostInterface)") } }
    public func attachOverlay(device: String) throws(BPFError) { attached.withLock { $0.append("overlay \(device)") } }
    public func attachSockets(cgroup: String) throws(BPFError) { attached.withLock { $0.append("sockets \(cgroup)") } }

    /// A stable index per name, as the kernel gives each device one.
    public func interfaceIndex(_ name: String) throws(BPFError) -> Int32 {
        Int32(truncatingIfNeeded: name.utf8.reduce(UInt32(7)) { $0 &* 31 &+ UInt32($1) } & 0xFFFF) + 2
    }
}
