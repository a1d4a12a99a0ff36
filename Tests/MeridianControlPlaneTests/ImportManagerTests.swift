import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

@Suite("Import manager")
struct ImportManagerTests {
    static func manager(_ harness: ImportHarness) -> ImportManager {
        let timing = harness.timing
        return ImportManager(local: harness.localStore, localCluster: ImportHarness.local, board: harness.board, timing: { timing },
                             connector: harness.connector, logger: Logger(label: "test.manager"))
    }

    static func running(_ harness: ImportHarness, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await manager(harness).run() }
            defer { group.cancelAll() }
            try await body()
        }
    }

    static func connect(_ harness: ImportHarness, _ peer: PeerRecord) async throws {
        try await harness.localStore.put(KeyLayout.peer(peer.name), StoreCoding.encode(peer))
    }

    @Test("a recorded peer is imported; removing the record drains what was imported and its status")
    func addAndRemove() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await Self.running(harness) {
            try await Self.connect(harness, ImportHarness.peer())
            try await eventually("ready") { harness.status()?.ready == true }
            #expect(try await harness.cached(.endpoints).count == 2)
            try await harness.localStore.delete(KeyLayout.peer("cluster2"))
            try await eventually("drained") {
                try await harness.localStore.count(prefix: "cilium/cache/") == 0 && harness.status() == nil
            }
            #expect(try await harness.localStore.get(KeyLayout.clusterConfig("cluster2")) == nil)
        }
    }

    @Test("a changed peer record restarts the import without draining the cache in between")
    func replace() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await Self.running(harness) {
            try await Self.connect(harness, ImportHarness.peer(version: "1"))
            try await eventually("ready") { harness.status()?.ready == true }
            let writesBefore = harness.localStore.writeLog.count
            try await Self.connect(harness, ImportHarness.peer(version: "2"))
            try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.9"),
                                         Data(StateFixtures.endpoint(ip: "10.2.0.9", identity: 131_073, hostIP: "192.168.2.10", pod: "p9").utf8))
            try await eventually("the new importer has the new record") { try await harness.cached(.endpoints).contains("10.2.0.9") }
            let since = harness.localStore.writeLog.dropFirst(writesBefore)
            #expect(!since.contains { $0.hasPrefix("delete cilium/cache/") }, "\(since)")
        }
    }

    @Test("data of a cluster that stopped being a peer while the control plane was down is drained at start")
    func orphansDrained() async throws {
        let harness = ImportHarness()
        try await harness.localStore.commit(puts: [
            (KeyLayout.clusterConfig("cluster9"), Data("{}".utf8)),
            (MeshKind.endpoints.cacheKey(cluster: "cluster9", name: "10.9.0.1"), Data("{}".utf8)),
            (KeyLayout.clusterConfig("cluster1"), Data("{}".utf8)),
        ])
        try await Self.running(harness) {
            try await eventually("the orphan is drained") { try await harness.localStore.count(prefix: "cilium/cache/") == 0 }
            #expect(try await harness.localStore.get(KeyLayout.clusterConfig("cluster9")) == nil)
            #expect(try await harness.localStore.get(KeyLayout.clusterConfig("cluster1")) != nil, "the local cluster's own config stays")
        }
    }

    @Test("when the first look for former peers fails, it is retried before any importer starts; a peer removed later is drained once, not imported again")
    func orphanLookupRetried() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await harness.localStore.commit(puts: [
            (KeyLayout.clusterConfig("cluster9"), Data("{}".utf8)),
            (MeshKind.endpoints.cacheKey(cluster: "cluster9", name: "10.9.0.1"), Data("{}".utf8)),
        ])
        try await Self.connect(harness, ImportHarness.peer())
        harness.localStore.failNext(1, of: [.read], keyPrefix: KeyLayout.clusterConfigPrefix)
        try await Self.running(harness) {
            try await eventually("the orphan is drained") {
                try await harness.localStore.count(prefix: MeshKind.endpoints.cachePrefix(cluster: "cluster9")) == 0
            }
            try await eventually("ready") { harness.status()?.ready == true }
            try await harness.localStore.delete(KeyLayout.peer("cluster2"))
            try await eventually("drained") {
                try await harness.localStore.count(prefix: "cilium/cache/") == 0 && harness.status() == nil
            }
            try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.9"),
                                         Data(StateFixtures.endpoint(ip: "10.2.0.9", identity: 131_073, hostIP: "192.168.2.10", pod: "p9").utf8))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await harness.localStore.count(prefix: "cilium/cache/") == 0, "nothing imports the removed peer")
            #expect(harness.status() == nil)
        }
    }

    @Test("a drain that keeps failing for one peer does not stop the import of another")
    func drainFailureIsolated() async throws {
        var harness = ImportHarness()
        harness.remotes["cluster3"] = InMemoryKeyValueStore(name: "cluster3")
        try await ImportHarness.export(harness.remote)
        try await ImportHarness.export(harness.remotes["cluster3"]!, name: "cluster3", id: 3, endpoints: ["10.3.0.1"])
        try await Self.running(harness) {
            try await Self.connect(harness, ImportHarness.peer())
            try await Self.connect(harness, ImportHarness.peer("cluster3", id: 3))
            try await eventually("both ready") { harness.status()?.ready == true && harness.status("cluster3")?.ready == true }
            harness.localStore.failNext(6, of: [.write], with: .permissionDenied, keyPrefix: MeshKind.nodes.cachePrefix(cluster: "cluster2"))
            try await harness.localStore.delete(KeyLayout.peer("cluster2"))
            try await eventually("the failed drain is reported") { harness.status()?.lastError?.contains("draining the data of cluster2 failed") == true }
            try await harness.remotes["cluster3"]!.put(MeshKind.endpoints.stateKey(cluster: "cluster3", name: "10.3.0.2"),
                                                      Data(StateFixtures.endpoint(ip: "10.3.0.2", identity: 3 << 16 + 1, hostIP: "192.168.3.10", pod: "q").utf8))
            try await eventually("cluster3 goes on") { try await harness.cached(.endpoints, "cluster3").contains("10.3.0.2") }
            try await eventually("cluster2 drained in the end") {
                try await harness.localStore.count(prefix: MeshKind.nodes.cachePrefix(cluster: "cluster2")) == 0 && harness.status() == nil
            }
        }
    }
}
