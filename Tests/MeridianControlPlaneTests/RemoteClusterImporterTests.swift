import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// An exporting remote cluster and an importing local one, both in memory, and the importer
/// (or the manager) between them, with timings short enough for unit tests.
struct ImportHarness: Sendable {
    static let local = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                       maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1")
    static let timing = ImportTiming(heartbeatTimeout: .seconds(30), configTimeout: .seconds(2),
                                     backoff: ReconnectBackoff(initial: .milliseconds(20), maximum: .milliseconds(100)),
                                     drainBackoff: ReconnectBackoff(initial: .milliseconds(20), maximum: .milliseconds(100)))

    let localStore = InMemoryKeyValueStore(name: "cluster1")
    var remotes: [String: InMemoryKeyValueStore] = ["cluster2": InMemoryKeyValueStore(name: "cluster2")]
    let board = StatusBoard()
    var timing = Self.timing

    var remote: InMemoryKeyValueStore { remotes["cluster2"]! }

    static func peer(_ name: String = "cluster2", id: UInt32 = 2, version: String = "1") -> PeerRecord {
        PeerRecord(name: name, id: id, endpoints: ["https://\(name).invalid:2379"], serverName: "etcd.\(name)", caPEM: "ca",
                   certificatePEM: "cert-\(version)", privateKeyPEM: "key", podCIDR: "10.\(id).0.0/16")
    }

    var connector: RemoteStoreConnector {
        let remotes = remotes
        return RemoteStoreConnector { peer, body in
            guard let store = remotes[peer.name] else { throw ImportFailure.unusablePeer(remote: peer.name, reason: "no such test store") }
            try await body(store)
        }
    }

    /// What an enabled exporter publishes: config, canaries, heartbeat; and records of the remote.
    static func export(_ store: InMemoryKeyValueStore, name: String = "cluster2", id: UInt32 = 2, endpoints: [String] = ["10.2.0.1", "10.2.0.2"]) async throws {
        let config = CiliumClusterConfig(id: id, capabilities: .init(syncedCanaries: true, maxConnectedClusters: 255))
        var puts: [(key: String, value: Data)] = [
            (KeyLayout.clusterConfig(name), StoreCoding.encode(config)),
            (KeyLayout.heartbeat, Data("now".utf8)),
            (MeshKind.nodes.stateKey(cluster: name, name: "node1"),
             Data(StateFixtures.node(cluster: name, id: id, name: "node1", ip: "192.168.\(id).10", podCIDR: "10.\(id).1.0/24").utf8)),
            (MeshKind.identities.stateKey(cluster: name, name: "\(id << 16 + 1)"),
             Data(StateFixtures.identityLabels(app: "web", cluster: name).utf8)),
        ]
        for ip in endpoints {
            puts.append((MeshKind.endpoints.stateKey(cluster: name, name: ip),
                         Data(StateFixtures.endpoint(ip: ip, identity: id << 16 + 1, hostIP: "192.168.\(id).10", pod: "p-\(ip)").utf8)))
        }
        for kind in MeshKind.allCases {
            puts.append((KeyLayout.syncCanary(cluster: name, prefix: kind.stateCanaryPrefix), Data("now".utf8)))
        }
        try await store.commit(puts: puts)
    }

    func importer(_ peer: PeerRecord? = ImportHarness.peer(), remote name: String = "cluster2") -> RemoteClusterImporter {
        let timing = timing
        return RemoteClusterImporter(remote: name, peer: peer, local: localStore, localCluster: Self.local, board: board,
                                     timingSource: { timing }, connector: connector, logger: Logger(label: "test.import"))
    }

    /// Runs an importer while `body` runs; `disconnect(drain)` asks it to stop, and the importer
    /// has exited when `body` returns (or is cancelled if `body` did not stop it).
    func running(_ importer: RemoteClusterImporter,
                 _ body: (_ disconnect: @Sendable (Bool) -> Void, _ exited: @Sendable () async -> Void) async throws -> Void) async throws {
        let (stops, stop) = AsyncStream.makeStream(of: Bool.self)
        let (ends, end) = AsyncStream.makeStream(of: Void.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await importer.run(stops: stops)
                end.finish()
            }
            defer { group.cancelAll() }
            try await body({ stop.yield($0) }, { for await _ in ends {} })
        }
    }

    func status(_ name: String = "cluster2") -> RemoteClusterStatus? { board.status(name) }

    func cached(_ kind: MeshKind, _ name: String = "cluster2") async throws -> [String] {
        let prefix = kind.cachePrefix(cluster: name)
        return try await localStore.list(prefix: prefix).items.map { String($0.key.dropFirst(prefix.count)) }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out after \(timeout) waiting for: \(what)")
    throw CancellationError()
}

@Suite("Remote cluster importer")
struct RemoteClusterImporterTests {
    @Test("a remote is listed into the cache, its invalid records rejected and counted, canaries written, and it is ready")
    func syncs() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        // A record in another cluster's name, which cluster2 may not publish.
        try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.3.0.9"),
                                     Data(StateFixtures.endpoint(ip: "10.3.0.9", identity: 3 << 16 + 1, hostIP: "192.168.3.10", pod: "x").utf8))
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            let status = try #require(harness.status())
            #expect(status.counts == .init(nodes: 1, endpoints: 2, identities: 1, services: 0, serviceExports: 0, serviceSlices: 0))
            #expect(status.rejected.endpoints == 1)
            #expect(try await harness.cached(.endpoints) == ["10.2.0.1", "10.2.0.2"])
            for kind in MeshKind.allCases {
                #expect(try await harness.localStore.get(KeyLayout.syncCanary(cluster: "cluster2", prefix: kind.cacheCanaryPrefix)) != nil)
            }
            let cachedConfig = try #require(try await harness.localStore.get(KeyLayout.clusterConfig("cluster2")))
            #expect(try JSONDecoder().decode(CiliumClusterConfig.self, from: cachedConfig.value).capabilities.cached == true)
        }
    }

    @Test("a large service's slices are cached beside its record; a slice claiming another service's key or another cluster is refused")
    func slicesAreImported() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        var service = ClusterService(cluster: "cluster2", namespace: "shop", name: "web", includeExternal: true, shared: true, clusterID: 2)
        for index in 0..<1_500 { service.backends["10.2.\(index / 250).\(index % 250 + 2)"] = ["http": L4Addr(protocol: .tcp, port: 8080)] }
        let (record, slices) = ServiceSlicing.split(service)
        var puts = [(key: MeshKind.services.stateKey(cluster: "cluster2", name: "shop/web"), value: try JSONEncoder().encode(record))]
        for slice in slices {
            puts.append((MeshKind.serviceSlices.stateKey(cluster: "cluster2", name: ServiceSlicing.keyName(of: slice)), try JSONEncoder().encode(slice)))
        }
        var misplaced = slices[0]
        misplaced.name = "api"
        puts.append((MeshKind.serviceSlices.stateKey(cluster: "cluster2", name: "shop/web/7"), try JSONEncoder().encode(misplaced)))
        var foreign = slices[1]
        foreign.cluster = "cluster3"
        foreign.clusterID = 3
        puts.append((MeshKind.serviceSlices.stateKey(cluster: "cluster2", name: "shop/other/1"), try JSONEncoder().encode(foreign)))
        try await harness.remote.commit(puts: puts)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            #expect(try await harness.cached(.serviceSlices) == ["shop/web/0", "shop/web/1"])
            #expect(harness.status()?.rejected.serviceSlices == 2)
            let cached = try await harness.localStore.list(prefix: MeshKind.serviceSlices.cacheRoot).items
            let records = ServiceRecords(services: [:], pods: [:], statuses: [:],
                                         remote: [MeshKind.services.cacheKey(cluster: "cluster2", name: "shop/web"): try JSONEncoder().encode(record)],
                                         imports: [:], remoteSlices: Dictionary(uniqueKeysWithValues: cached.map { ($0.key, $0.value) }))
            #expect(records.remote.first?.backends.count == 1_500, "the agent's merge of what was imported")
        }
    }

    @Test("a peer holds at most its quota of a kind; a node claiming this cluster's ranges or a node's address is refused", .timeLimit(.minutes(2)))
    func quotaAndLocalAddresses() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        let limit = RemoteRecordLimits.maximumRecordsPerPeer(of: .node)
        let extra = (0..<limit).map { index -> (key: String, value: Data) in
            let name = "zz\(index)"
            return (MeshKind.nodes.stateKey(cluster: "cluster2", name: name),
                    Data(StateFixtures.node(cluster: "cluster2", id: 2, name: name, ip: "192.168.2.\(index % 250 + 1)",
                                            podCIDR: "10.2.\(index % 256).0/24").utf8))
        }
        for start in stride(from: 0, to: extra.count, by: 4000) {
            try await harness.remote.commit(puts: Array(extra[start..<min(start + 4000, extra.count)]))
        }
        try await harness.remote.put(MeshKind.nodes.stateKey(cluster: "cluster2", name: "a-local"),
                                     Data(StateFixtures.node(cluster: "cluster2", id: 2, name: "a-local", ip: "10.101.0.10", podCIDR: "10.2.200.0/24").utf8))
        // A node on the address of one of this cluster's nodes.
        try await harness.localStore.put(MeshKind.nodes.stateKey(cluster: "cluster1", name: "node1"),
                                         Data(StateFixtures.node(cluster: "cluster1", id: 1, name: "node1", ip: "172.30.1.2", podCIDR: "10.1.1.0/24").utf8))
        try await harness.remote.put(MeshKind.nodes.stateKey(cluster: "cluster2", name: "a-twin"),
                                     Data(StateFixtures.node(cluster: "cluster2", id: 2, name: "a-twin", ip: "172.30.1.2", podCIDR: "10.2.201.0/24").utf8))
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready", timeout: .seconds(60)) { harness.status()?.ready == true }
            let status = try #require(harness.status())
            #expect(status.counts.nodes == limit, "node1 and the first zz nodes up to the quota")
            #expect(status.rejectedByReason?["over-quota"] == 1 && status.rejectedByReason?["local-address"] == 2, "\(status.rejectedByReason ?? [:])")
            #expect(try await harness.cached(.nodes).contains("cluster2/zz\(limit - 1)") == false, "the last key is the one over the quota")
            // One more through the watch is refused too; freeing a place admits the next.
            try await harness.remote.put(MeshKind.nodes.stateKey(cluster: "cluster2", name: "zzz"),
                                         Data(StateFixtures.node(cluster: "cluster2", id: 2, name: "zzz", ip: "192.168.2.7", podCIDR: "10.2.7.0/24").utf8))
            try await eventually("the watched node over the quota is refused") { harness.status()?.rejectedByReason?["over-quota"] == 2 }
            #expect(harness.status()?.counts.nodes == limit)
        }
    }

    @Test("changes in the remote follow into the cache: puts, deletes, and a record turned invalid is removed")
    func followsChanges() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.3"),
                                         Data(StateFixtures.endpoint(ip: "10.2.0.3", identity: 131_073, hostIP: "192.168.2.10", pod: "p3").utf8))
            try await harness.remote.delete(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.1"))
            try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.2"), Data("not json".utf8))
            try await eventually("cache follows") { try await harness.cached(.endpoints) == ["10.2.0.3"] }
            try await eventually("counts follow") { harness.status()?.counts.endpoints == 1 && harness.status()?.rejected.endpoints == 1 }
        }
    }

    @Test("after a lost connection, what the remote deleted meanwhile is swept from the cache on reconnect")
    func reconnectSweeps() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            // The remote goes away: its watches break and it refuses reads for a while.
            harness.remote.failNext(5, of: [.read, .watch])
            harness.remote.breakWatches()
            try await harness.remote.delete(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.1"))
            try await harness.remote.delete(MeshKind.nodes.stateKey(cluster: "cluster2", name: "node1"))
            try await eventually("ready again without the deleted records") {
                let endpoints = try await harness.cached(.endpoints)
                let nodes = try await harness.cached(.nodes)
                return endpoints == ["10.2.0.2"] && nodes.isEmpty && harness.status()?.ready == true
            }
            #expect((harness.status()?.numFailures ?? 0) >= 1)
        }
    }

    @Test("disconnect while the importer's write is in flight: the drain waits for the importer to exit, so nothing lands after it")
    func drainWaitsForTheWriteInFlight() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await harness.running(harness.importer()) { disconnect, exited in
            try await eventually("ready") { harness.status()?.ready == true }
            harness.localStore.holdWrites()
            try await harness.remote.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: "10.2.0.7"),
                                         Data(StateFixtures.endpoint(ip: "10.2.0.7", identity: 131_073, hostIP: "192.168.2.10", pod: "p7").utf8))
            await harness.localStore.waitForHeldWrite()
            disconnect(true)
            try await Task.sleep(for: .milliseconds(200))
            #expect(harness.localStore.heldWriteCount == 1, "only the importer's write waits; no drain has started beside it")
            harness.localStore.releaseWrites()
            await exited()
            let log = harness.localStore.writeLog
            let lastPut = try #require(log.lastIndex { $0.hasPrefix("put cilium/cache/ip/v1/cluster2/10.2.0.7") })
            let firstDrain = try #require(log.firstIndex { $0.hasPrefix("delete cilium/cache/") })
            #expect(lastPut < firstDrain)
            #expect(try await harness.localStore.count(prefix: "cilium/cache/") == 0)
            #expect(try await harness.localStore.get(KeyLayout.clusterConfig("cluster2")) == nil)
            #expect(harness.status() == nil, "the status goes with the data")
        }
    }

    @Test("a drain that fails is reported in the status and retried until the data is gone")
    func failedDrainRetried() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        try await harness.running(harness.importer()) { disconnect, exited in
            try await eventually("ready") { harness.status()?.ready == true }
            harness.localStore.failNext(4, of: [.write])
            disconnect(true)
            try await eventually("the failed drain is reported") {
                harness.status()?.phase == .draining && harness.status()?.lastError?.contains("draining the data of cluster2 failed") == true
            }
            await exited()
            #expect(try await harness.localStore.count(prefix: "cilium/cache/") == 0)
        }
    }

    @Test("a transiently failing local store is retried in place: counted, and not a failure of the remote")
    func localRetries() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        harness.localStore.failNext(3, of: [.write], with: .unavailable)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            let status = try #require(harness.status())
            #expect((status.localStoreRetries ?? 0) >= 3)
            #expect(status.numFailures == 0)
        }
    }

    @Test("a local write refused for good fails the connection, which is retried")
    func localRefusalFailsTheConnection() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote)
        harness.localStore.failNext(1, of: [.write], with: .permissionDenied)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready after a retry") { harness.status()?.ready == true }
            let status = try #require(harness.status())
            #expect(status.numFailures >= 1)
            #expect(status.lastError?.contains("writing cluster2's data into this cluster's store failed") == true)
        }
    }

    @Test("a remote whose config names another cluster ID is refused and nothing is cached")
    func wrongIDRefused() async throws {
        let harness = ImportHarness()
        try await ImportHarness.export(harness.remote, id: 3)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("the failure is reported") { harness.status()?.lastError?.contains("reports cluster ID 3 but was connected as ID 2") == true }
            #expect(try await harness.localStore.count(prefix: "cilium/cache/") == 0)
            #expect(harness.status()?.connected == false)
        }
    }

    @Test("a remote without a cluster config is reported as not enabled after the config timeout")
    func missingConfig() async throws {
        var harness = ImportHarness()
        harness.timing.configTimeout = .milliseconds(200)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("the failure is reported") { harness.status()?.lastError?.contains("is clustermesh enabled on cluster2?") == true }
            #expect(harness.status()?.phase == .backoff || harness.status()?.phase == .waitingForConfig)
        }
    }

    @Test("a remote that stops beating is reconnected by the watchdog")
    func heartbeatLoss() async throws {
        var harness = ImportHarness()
        harness.timing.heartbeatTimeout = .milliseconds(300)
        try await ImportHarness.export(harness.remote)
        try await harness.running(harness.importer()) { _, _ in
            try await eventually("ready") { harness.status()?.ready == true }
            try await eventually("silence noticed") { harness.status()?.lastError?.contains("no heartbeat from cluster2") == true }
            #expect(harness.status()?.numFailures ?? 0 >= 1)
        }
    }
}

/// The per-peer quota's arithmetic.
struct PeerQuotaTests {
    @Test func recordsAndBytesAreBoundedAndReplacementsCountOnce() {
        var quota = PeerQuota(maximumRecords: 2, maximumBytes: 100)
        let first = quota.admit("a", size: 40)
        let second = quota.admit("b", size: 40)
        #expect(first && second)
        let third = quota.admit("c", size: 1)
        #expect(!third, "a third record")
        let replaced = quota.admit("a", size: 60)
        #expect(replaced, "a replacement counts its new size only")
        let grown = quota.admit("b", size: 50)
        #expect(!grown, "past the bytes; and b is no longer held")
        #expect(quota.held == ["a": 60] && quota.bytes == 60)
        quota.remove("a")
        #expect(quota.held.isEmpty && quota.bytes == 0)
    }
}
