import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// Terminating backends in the maps: out of the slots new connections choose from while an
/// active backend exists, still in the backends map under their ID (so connections that chose
/// them keep them), and the only choice when nothing is active.
@Suite("Map synchronizer: backend states")
struct BackendStateSynchronizerTests {
    typealias Fixture = MapSynchronizerTests

    static func desired(_ services: [Frontend: [BackendAddress]], terminating: [BackendAddress]) -> DesiredDatapath {
        var desired = Fixture.desired(services)
        for backend in terminating { desired.backendStates[backend] = .terminating }
        return desired
    }

    /// The backend IDs in slots 1...count of `frontend`, and the count.
    static func slotted(_ datapath: InMemoryNodeDatapath, _ frontend: Frontend) -> (count: UInt16, ids: [UInt32]) {
        let count = datapath.services.lookup(Fixture.slotKey(frontend, 0))?.count ?? 0
        let ids = (0..<count).compactMap { datapath.services.lookup(Fixture.slotKey(frontend, $0 + 1))?.backend_id }
        return (count, ids)
    }

    @Test("a backend turning terminating keeps its ID, flag and conntrack, and leaves the slots")
    func terminatingLeavesTheSlots() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Fixture.frontend("10.101.0.10")
        let (old, new) = (Fixture.backend("10.1.1.2"), Fixture.backend("10.2.1.2", cluster: 2))
        try synchronizer.apply(Fixture.desired([web: [old, new]]))
        let oldID = try #require(synchronizer.backends.first { $0.value == old }?.key)
        let (ctKey, ctEntry) = Fixture.conntrackEntry(40_000, backendID: oldID, service: true)
        try datapath.conntrack.update(ctKey, ctEntry)

        try synchronizer.apply(Self.desired([web: [old, new]], terminating: [old]))
        let slots = Self.slotted(datapath, web)
        #expect(slots.count == 1)
        #expect(!slots.ids.contains(oldID), "new connections cannot choose the terminating backend")
        let programmed = try #require(datapath.backends.lookup(oldID), "the terminating backend stays, under its ID")
        #expect(programmed.flags == UInt8(MER_BACKEND_TERMINATING))
        #expect(datapath.conntrack.lookup(ctKey)?.backend_id == oldID, "the connection that chose it keeps it")
        #expect(datapath.backends.lookup(slots.ids[0])?.flags == UInt8(MER_BACKEND_ACTIVE))
    }

    @Test("with every backend terminating, new connections fall back to them (Cilium's fallback)")
    func allTerminatingFallBack() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Fixture.frontend("10.101.0.10")
        let backends = [Fixture.backend("10.1.1.2"), Fixture.backend("10.1.1.3")]
        try synchronizer.apply(Self.desired([web: backends], terminating: backends))
        #expect(Self.slotted(datapath, web).count == 2)
        #expect(datapath.backends.entries().allSatisfy { $0.value.flags == UInt8(MER_BACKEND_TERMINATING) })
    }

    @Test("a resync reads the flags back: nothing is rewritten, and a gone backend is removed with its conntrack")
    func resyncKeepsFlagsAndRemovalPurges() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Fixture.frontend("10.101.0.10")
        let (old, new) = (Fixture.backend("10.1.1.2"), Fixture.backend("10.1.1.3"))
        try synchronizer.apply(Self.desired([web: [old, new]], terminating: [old]))
        var restarted = MapSynchronizer(maps: datapath.maps)
        #expect(try restarted.apply(Self.desired([web: [old, new]], terminating: [old])) == 0)
        let oldID = try #require(restarted.backends.first { $0.value == old }?.key)
        let (ctKey, ctEntry) = Fixture.conntrackEntry(40_001, backendID: oldID, service: true)
        try datapath.conntrack.update(ctKey, ctEntry)
        try restarted.apply(Fixture.desired([web: [new]]))
        #expect(datapath.backends.lookup(oldID) == nil)
        #expect(datapath.conntrack.lookup(ctKey) == nil)
    }

    @Test("states map to the datapath's flags", arguments: [
        (BackendState.active, UInt8(MER_BACKEND_ACTIVE)), (.terminating, UInt8(MER_BACKEND_TERMINATING)),
    ])
    func flags(state: BackendState, flag: UInt8) {
        #expect(MapSynchronizer.flag(of: state) == flag)
    }
}
