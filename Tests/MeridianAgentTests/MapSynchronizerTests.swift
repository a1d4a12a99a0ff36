import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The agent's writer of the shared maps, on in-memory maps: the fewest writes, in an order that
/// never exposes a slot without its backend, IDs never handed out again at once, and stale
/// conntrack purged.
@Suite("Map synchronizer")
struct MapSynchronizerTests {
    static func frontend(_ ip: String, _ port: UInt16 = 80) -> Frontend {
        Frontend(address: IPAddress(ip)!, port: port, proto: 6)
    }

    static func backend(_ ip: String, _ port: UInt16 = 8080, cluster: UInt16 = 1) -> BackendAddress {
        BackendAddress(address: IPAddress(ip)!, port: port, proto: 6, clusterID: cluster)
    }

    static func desired(_ services: [Frontend: [BackendAddress]], ipcache: [IPCIDR: IPCacheEntry] = [:]) -> DesiredDatapath {
        var desired = DesiredDatapath()
        desired.services = services
        desired.ipcache = ipcache
        return desired
    }

    static func slotKey(_ frontend: Frontend, _ slot: UInt16) -> mer_lb4_key {
        var key = mer_lb4_key()
        key.address = frontend.address.datapathValue!
        key.dport = frontend.port.bigEndian
        key.proto = frontend.proto
        key.backend_slot = slot
        return key
    }

    /// A service leg in conntrack that chose `backendID`, or an outbound entry carrying `revNAT`.
    static func conntrackEntry(_ port: UInt16, backendID: UInt32 = 0, revNAT: UInt16 = 0, service: Bool) -> (mer_ct_key, mer_ct_entry) {
        var key = mer_ct_key()
        key.saddr = IPAddress("10.1.1.5")!.datapathValue!
        key.daddr = IPAddress("10.101.0.10")!.datapathValue!
        key.sport = port.bigEndian
        key.dport = UInt16(80).bigEndian
        key.proto = 6
        key.dir = UInt8(service ? MER_CT_DIR_SERVICE : MER_CT_DIR_OUT)
        var entry = mer_ct_entry()
        entry.backend_id = backendID
        entry.rev_nat_index = revNAT
        return (key, entry)
    }

    @Test("ipBlock prefixes are written with their numbers, rewritten when renumbered, deleted when gone, and read back on resync")
    func ipBlocks() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let wide = IPCIDR("10.1.0.0/16")!, hole = IPCIDR("10.1.2.51/32")!
        var desired = DesiredDatapath()
        desired.ipBlocks = [wide: IPBlockTable.firstIdentity, hole: IPBlockTable.firstIdentity + 1]
        #expect(try synchronizer.apply(desired) == 2)
        #expect(datapath.ipBlocks.lookup(mer_ipblock_key(prefixlen: 16, ip4: IPAddress("10.1.0.0")!.datapathValue!))?.identity
            == IPBlockTable.firstIdentity)
        #expect(try synchronizer.apply(desired) == 0, "nothing changed, nothing written")
        desired.ipBlocks = [wide: IPBlockTable.firstIdentity + 2]
        #expect(try synchronizer.apply(desired) == 2)
        #expect(datapath.ipBlocks.count == 1)
        #expect(datapath.ipBlocks.lookup(mer_ipblock_key(prefixlen: 16, ip4: IPAddress("10.1.0.0")!.datapathValue!))?.identity
            == IPBlockTable.firstIdentity + 2)
        let restarted = MapSynchronizer(maps: datapath.maps)
        #expect(restarted.ipBlocks == [wide: IPBlockTable.firstIdentity + 2])
        #expect(IPBlockTable(existing: MapSynchronizer.readIPBlocks(datapath.maps)).numbers == [wide: IPBlockTable.firstIdentity + 2])
    }

    @Test("a frontend with more backends than its 16-bit slots can number programs the first ones and does not trap")
    func backendsPerFrontendAreCapped() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        let many = (0..<70_000).map { Self.backend("10.\(2 + $0 / 65_536).\(($0 / 256) % 256).\($0 % 256)", cluster: 2) }
        try synchronizer.apply(Self.desired([web: many]))
        #expect(datapath.services.lookup(Self.slotKey(web, 0))?.count == UInt16(MapSynchronizer.maximumBackendsPerFrontend))
        #expect(datapath.backends.count == MapSynchronizer.maximumBackendsPerFrontend)
    }

    @Test("a new service: backends and reverse NAT first, then its slots, then the service entry with the count")
    func writeOrder() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.2"), Self.backend("10.2.1.2", cluster: 2)]]))
        let log = datapath.log.all
        let lastBackend = try #require(log.lastIndex { $0.hasPrefix("update \(MER_MAP_BACKENDS)") })
        let revNAT = try #require(log.firstIndex { $0.hasPrefix("update \(MER_MAP_REVNAT)") })
        let services = log.indices.filter { log[$0].hasPrefix("update \(MER_MAP_SERVICES)") }
        #expect(services.count == 3)
        #expect(services.allSatisfy { $0 > lastBackend && $0 > revNAT })
        let master = try #require(datapath.services.lookup(Self.slotKey(web, 0)))
        #expect(master.count == 2 && master.rev_nat_index != 0)
        let masterWrite = log.firstIndex { $0.hasPrefix("update \(MER_MAP_SERVICES)") && $0.hasSuffix(Self.hex(Self.slotKey(web, 0))) }
        #expect(masterWrite == services.last, "the service entry comes after its slots")
        let ids = [1, 2].compactMap { datapath.services.lookup(Self.slotKey(web, UInt16($0)))?.backend_id }
        #expect(Set(ids).count == 2)
        #expect(ids.allSatisfy { datapath.backends.lookup($0) != nil })
        #expect(datapath.backends.lookup(ids[1])?.cluster_id == 2)
    }

    @Test("a backend listed several times (cluster weights) takes that many slots under one backend ID; fewer repeats shrink the service")
    func weightedSlots() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        let heavy = Self.backend("10.2.1.2", cluster: 2), light = Self.backend("10.3.1.2", cluster: 3)
        try synchronizer.apply(Self.desired([web: Array(repeating: heavy, count: 3) + [light]]))
        #expect(datapath.services.lookup(Self.slotKey(web, 0))?.count == 4)
        let ids = (1...4).compactMap { datapath.services.lookup(Self.slotKey(web, UInt16($0)))?.backend_id }
        #expect(ids.count == 4 && Set(ids).count == 2, "\(ids)")
        #expect(datapath.backends.count == 2)
        #expect(ids.filter { datapath.backends.lookup($0)?.cluster_id == 2 }.count == 3)
        try synchronizer.apply(Self.desired([web: [heavy, light]]))
        #expect(datapath.services.lookup(Self.slotKey(web, 0))?.count == 2)
        #expect(datapath.services.lookup(Self.slotKey(web, 3)) == nil)
    }

    static func hex<T: BitwiseCopyable>(_ value: T) -> String {
        withUnsafeBytes(of: value) { $0.map { String(format: "%02x", $0) }.joined() }
    }

    @Test("the same desired state again takes no writes; a synchronizer started over filled maps takes none either")
    func idempotentAndRestartable() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let state = Self.desired([Self.frontend("10.101.0.10"): [Self.backend("10.1.1.2")]],
                                 ipcache: [IPCIDR("10.2.0.0/16")!: IPCacheEntry(identity: 2, tunnelEndpoint: IPAddress("172.30.2.1"), flags: 1, clusterID: 2)])
        #expect(try synchronizer.apply(state) > 0)
        #expect(try synchronizer.apply(state) == 0)
        var restarted = MapSynchronizer(maps: datapath.maps)
        #expect(try restarted.apply(state) == 0)
    }

    @Test("removing a backend shrinks the service, deletes the slot and the backend, and purges the connections that chose it")
    func removeBackend() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.2"), Self.backend("10.1.2.2")]]))
        let gone = try #require(datapath.services.lookup(Self.slotKey(web, 2))?.backend_id)
        let kept = try #require(datapath.services.lookup(Self.slotKey(web, 1))?.backend_id)
        let (staleKey, staleEntry) = Self.conntrackEntry(40000, backendID: gone, service: true)
        let (liveKey, liveEntry) = Self.conntrackEntry(40001, backendID: kept, service: true)
        try datapath.conntrack.update(staleKey, staleEntry)
        try datapath.conntrack.update(liveKey, liveEntry)
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.2")]]))
        #expect(datapath.services.lookup(Self.slotKey(web, 0))?.count == 1)
        #expect(datapath.services.lookup(Self.slotKey(web, 2)) == nil)
        #expect(datapath.backends.lookup(gone) == nil)
        #expect(datapath.conntrack.lookup(staleKey) == nil)
        #expect(datapath.conntrack.lookup(liveKey) != nil)
    }

    @Test("removing a service deletes its entry before its slots, its reverse NAT, and forgets reverse NAT on its connections")
    func removeService() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.2")]]))
        let revNAT = try #require(datapath.services.lookup(Self.slotKey(web, 0))?.rev_nat_index)
        let (key, entry) = Self.conntrackEntry(40002, revNAT: revNAT, service: false)
        try datapath.conntrack.update(key, entry)
        datapath.log.clear()
        try synchronizer.apply(Self.desired([:]))
        #expect(datapath.services.count == 0 && datapath.backends.count == 0 && datapath.reverseNAT.count == 0)
        #expect(datapath.conntrack.lookup(key) == nil)
        let log = datapath.log.all
        let master = try #require(log.firstIndex { $0 == "delete \(MER_MAP_SERVICES) \(Self.hex(Self.slotKey(web, 0)))" })
        let slot = try #require(log.firstIndex { $0 == "delete \(MER_MAP_SERVICES) \(Self.hex(Self.slotKey(web, 1)))" })
        #expect(master < slot)
    }

    @Test("a removed backend's ID is not handed to the next new backend")
    func idsAreNotReusedAtOnce() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Self.frontend("10.101.0.10")
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.2")]]))
        let first = try #require(datapath.services.lookup(Self.slotKey(web, 1))?.backend_id)
        try synchronizer.apply(Self.desired([web: [Self.backend("10.1.1.3")]]))
        let second = try #require(datapath.services.lookup(Self.slotKey(web, 1))?.backend_id)
        #expect(second != first)
    }

    @Test("ipcache entries are added, changed and removed; a resync repairs an entry removed behind the agent's back")
    func ipcacheAndResync() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let pods = IPCIDR("10.2.1.0/24")!
        let pod = IPCIDR("10.2.1.7/32")!
        let key = { (cidr: IPCIDR) in mer_ipcache_key(prefixlen: UInt32(cidr.prefixLength), ip4: cidr.address.datapathValue!) }
        let node = IPCacheEntry(identity: 2, tunnelEndpoint: IPAddress("172.30.2.1"), flags: UInt8(MER_IPCACHE_F_TUNNEL), clusterID: 2)
        try synchronizer.apply(Self.desired([:], ipcache: [pods: node, pod: node]))
        #expect(datapath.ipcache.count == 2)
        var moved = node
        moved.identity = 131_073
        try synchronizer.apply(Self.desired([:], ipcache: [pods: node, pod: moved]))
        #expect(datapath.ipcache.lookup(key(pod))?.identity == 131_073)
        try synchronizer.apply(Self.desired([:], ipcache: [pods: node]))
        #expect(!datapath.ipcache.entries().contains { $0.key.prefixlen == 32 }, "the /32 is gone (an LPM lookup would find the /24)")
        try datapath.ipcache.delete(key(pods))
        #expect(try synchronizer.apply(Self.desired([:], ipcache: [pods: node])) == 0, "without a resync the writer trusts its memory")
        synchronizer.resync()
        #expect(try synchronizer.apply(Self.desired([:], ipcache: [pods: node])) == 1)
        #expect(datapath.ipcache.lookup(key(pods))?.tunnel_endpoint == IPAddress("172.30.2.1")!.datapathValue)
    }
}
