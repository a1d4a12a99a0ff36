import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// The exporting half of clustermesh on the in-memory store: what it publishes, which Services
/// it exports with which backends, and the switch that runs it while clustermesh is enabled.
@Suite("Mesh exporter")
struct MeshExporterTests {
    static let cluster = ClusterSettings(name: "cluster2", id: 2, podCIDR: "10.2.0.0/16", serviceCIDR: "10.102.0.0/16",
                                         maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster2")
    static let logger = Logger(label: "test.exporter")

    static func seeded() async throws -> InMemoryKeyValueStore {
        let store = InMemoryKeyValueStore(name: "cluster2")
        try await store.put(KeyLayout.clusterSettings, StoreCoding.encode(cluster))
        return store
    }

    static func apply(_ store: InMemoryKeyValueStore, _ manifest: String) async throws {
        _ = try await ResourceStore(client: store).apply(try ManifestDecoder.decode(manifest, source: "test"), source: "test")
    }

    /// A namespace, a global Service selecting app=web and two pods, one running and ready.
    static let workload = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: shop
          annotations: {service.cilium.io/global: "true"}
        spec:
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: local-only, namespace: shop}
        spec:
          selector: {app: web}
          ports: [{port: 81, targetPort: 8080}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: web-1, namespace: shop, labels: {app: web}}
        spec:
          containers: [{name: main, command: [sleep, infinity], ports: [{containerPort: 8080}]}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: web-2, namespace: shop, labels: {app: web}}
        spec:
          containers: [{name: main, command: [sleep, infinity], ports: [{containerPort: 8080}]}]
        """

    static func running(_ store: InMemoryKeyValueStore, heartbeat: Double = 0.05, _ body: () async throws -> Void) async throws {
        let exporter = MeshExporter(client: store, cluster: cluster, settings: ClusterMeshSettings(enabled: true, heartbeatIntervalSeconds: heartbeat),
                                    logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await exporter.runRetrying() }
            defer { group.cancelAll() }
            try await body()
        }
    }

    static func exported(_ store: InMemoryKeyValueStore) async throws -> [String: ClusterService] {
        let prefix = MeshKind.services.statePrefix(cluster: "cluster2")
        var result: [String: ClusterService] = [:]
        for item in try await store.list(prefix: prefix).items {
            result[String(item.key.dropFirst(prefix.count))] = try JSONDecoder().decode(ClusterService.self, from: item.value)
        }
        return result
    }

    @Test("it publishes the cluster config, the canaries of the kinds agents write, then the services' canary, and beats")
    func publishes() async throws {
        let store = try await Self.seeded()
        try await Self.running(store) {
            try await eventually("services canary") {
                try await store.get(KeyLayout.syncCanary(cluster: "cluster2", prefix: MeshKind.services.stateCanaryPrefix)) != nil
            }
            let config = try #require(try await store.get(KeyLayout.clusterConfig("cluster2")))
            let decoded = try JSONDecoder().decode(CiliumClusterConfig.self, from: config.value)
            #expect(decoded.id == 2 && decoded.capabilities.syncedCanaries == true && decoded.capabilities.maxConnectedClusters == 255)
            for kind in MeshKind.allCases {
                #expect(try await store.get(KeyLayout.syncCanary(cluster: "cluster2", prefix: kind.stateCanaryPrefix)) != nil)
            }
            let first = try #require(try await store.get(KeyLayout.heartbeat)).modRevision
            try await eventually("another heartbeat") { (try await store.get(KeyLayout.heartbeat)?.modRevision ?? 0) > first }
        }
    }

    @Test("a failed heartbeat write is tried again within moments, not after a whole interval (a store's election shows as its outage alone)")
    func failedHeartbeatIsRetriedSoon() async throws {
        let store = try await Self.seeded()
        store.failNext(3, of: [.write], keyPrefix: KeyLayout.heartbeat)
        // An interval of an hour: only the retry can write the heartbeat within the test.
        try await Self.running(store, heartbeat: 3600) {
            try await eventually("the heartbeat written after three failed writes") { try await store.get(KeyLayout.heartbeat) != nil }
        }
    }

    @Test("only global Services are exported, with their ready backends by port name, and follow the pods' statuses")
    func exportsGlobalServices() async throws {
        let store = try await Self.seeded()
        try await Self.apply(store, Self.workload)
        try await store.put(KeyLayout.podStatus(namespace: "shop", name: "web-1"),
                            StoreCoding.encode(PodStatus(phase: .running, podIP: "10.2.1.5", nodeName: "node1")))
        try await Self.running(store) {
            try await eventually("web exported with one backend") { try await Self.exported(store)["shop/web"]?.backends.count == 1 }
            let web = try #require(try await Self.exported(store)["shop/web"])
            #expect(web.backends["10.2.1.5"]?["http"]?.port == 8080)
            #expect(web.shared && web.clusterID == 2 && web.cluster == "cluster2")
            #expect(try await Self.exported(store)["shop/local-only"] == nil)
            try await store.put(KeyLayout.podStatus(namespace: "shop", name: "web-2"),
                                StoreCoding.encode(PodStatus(phase: .running, podIP: "10.2.1.6", nodeName: "node1")))
            try await eventually("the second pod joins") { try await Self.exported(store)["shop/web"]?.backends.count == 2 }
            _ = try await ResourceStore(client: store).delete(.service, namespace: "shop", name: "web")
            try await eventually("a deleted Service is withdrawn") { try await Self.exported(store).isEmpty }
        }
    }

    @Test("a namespace annotated clustermesh.cilium.io/global: \"false\" exports nothing")
    func namespaceOptOut() async throws {
        let store = try await Self.seeded()
        try await Self.apply(store, Self.workload.replacingOccurrences(of: "metadata: {name: shop}",
                                                                       with: "metadata: {name: shop, annotations: {clustermesh.cilium.io/global: \"false\"}}"))
        try await Self.running(store) {
            try await eventually("the services canary") {
                try await store.get(KeyLayout.syncCanary(cluster: "cluster2", prefix: MeshKind.services.stateCanaryPrefix)) != nil
            }
            #expect(try await Self.exported(store).isEmpty)
        }
    }

    @Test("exports left from before a restart are reconciled away; a failed write is retried")
    func reconcilesAndRetries() async throws {
        let store = try await Self.seeded()
        try await store.put(MeshKind.services.stateKey(cluster: "cluster2", name: "shop/gone"), Data("{}".utf8))
        store.failNext(2, of: [.write], keyPrefix: MeshKind.services.statePrefix(cluster: "cluster2"))
        try await Self.running(store) {
            try await eventually("the stale export is gone") {
                try await store.count(prefix: MeshKind.services.statePrefix(cluster: "cluster2")) == 0
            }
        }
    }

    @Test("the switch exports while clustermesh is enabled, restarts on new settings, and withdraws everything when disabled")
    func enableDisable() async throws {
        let store = try await Self.seeded()
        try await Self.apply(store, Self.workload)
        let seen = Shared<[ClusterMeshSettings]>([])
        let exportSwitch = MeshExportSwitch(client: store, cluster: Self.cluster, logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await exportSwitch.run { settings in seen.withLock { $0.append(settings) } } }
            defer { group.cancelAll() }
            try await eventually("disabled at first") { seen.value == [ClusterMeshSettings(enabled: false)] }
            #expect(try await store.get(KeyLayout.clusterConfig("cluster2")) == nil)
            try await store.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true)))
            try await eventually("exported") { try await store.get(KeyLayout.clusterConfig("cluster2")) != nil }
            try await store.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true, heartbeatIntervalSeconds: 0.05)))
            try await eventually("the new heartbeat interval is in force") { seen.value.last?.heartbeatIntervalSeconds == 0.05 }
            let beatsBefore = store.writeLog.filter { $0 == "put \(KeyLayout.heartbeat)" }.count
            try await eventually("beating every 50 ms (a restarted exporter beats once at start; more are the new interval)", timeout: .seconds(5)) {
                store.writeLog.filter { $0 == "put \(KeyLayout.heartbeat)" }.count >= beatsBefore + 5
            }
            try await store.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: false)))
            try await eventually("withdrawn") {
                let config = try await store.get(KeyLayout.clusterConfig("cluster2"))
                let heartbeat = try await store.get(KeyLayout.heartbeat)
                let canaries = try await store.count(prefix: KeyLayout.syncCanaries(of: "cluster2"))
                return config == nil && heartbeat == nil && canaries == 0
            }
            let revision = try await store.currentRevision()
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await store.currentRevision() == revision, "a stopped exporter writes nothing more")
        }
    }

    @Test("a control plane that starts with clustermesh disabled withdraws an export left from before (disabled while it was down)")
    func disabledAtStartWithdraws() async throws {
        let store = try await Self.seeded()
        try await store.commit(puts: [
            (KeyLayout.clusterConfig("cluster2"), Data("{}".utf8)),
            (KeyLayout.heartbeat, Data("x".utf8)),
            (MeshKind.services.stateKey(cluster: "cluster2", name: "default/web"), Data("{}".utf8)),
        ])
        let exportSwitch = MeshExportSwitch(client: store, cluster: Self.cluster, logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await exportSwitch.run { _ in } }
            defer { group.cancelAll() }
            try await eventually("withdrawn") {
                let config = try await store.get(KeyLayout.clusterConfig("cluster2"))
                let heartbeat = try await store.get(KeyLayout.heartbeat)
                let services = try await store.count(prefix: MeshKind.services.statePrefix(cluster: "cluster2"))
                return config == nil && heartbeat == nil && services == 0
            }
        }
    }
}

/// A global service too large for one record, exported in slices (`ServiceSlicing`).
@Suite("Mesh exporter: slices")
struct MeshExporterSliceTests {
    static func slices(_ store: InMemoryKeyValueStore) async throws -> [String: (revision: Int64, slice: ClusterService)] {
        let prefix = MeshKind.serviceSlices.statePrefix(cluster: "cluster2")
        var result: [String: (revision: Int64, slice: ClusterService)] = [:]
        for item in try await store.list(prefix: prefix).items {
            result[String(item.key.dropFirst(prefix.count))] = (item.modRevision, try JSONDecoder().decode(ClusterService.self, from: item.value))
        }
        return result
    }

    static func pods(_ store: InMemoryKeyValueStore, _ range: Range<Int>) async throws {
        for index in range {
            let pod = Pod(metadata: ObjectMeta(name: "web-\(index)", namespace: "shop", labels: ["app": "web"]),
                          spec: PodSpec(containers: [Container(name: "main", command: ["sleep"], ports: [ContainerPort(containerPort: 8080)])]))
            try await store.put(ResourceStore.key(for: .pod(pod)), StoreCoding.encode(KubernetesObject.pod(pod)))
            try await store.put(KeyLayout.podStatus(namespace: "shop", name: pod.metadata.name),
                                StoreCoding.encode(PodStatus(phase: .running, podIP: "10.2.\(index / 250).\(index % 250 + 2)", nodeName: "node1")))
        }
    }

    @Test("3,000 backends go in 4 slices; one backend change rewrites one slice; shrinking below the threshold folds them back into the record")
    func slices() async throws {
        let store = try await MeshExporterTests.seeded()
        try await MeshExporterTests.apply(store, MeshExporterTests.workload)
        try await Self.pods(store, 0..<3_000)
        try await MeshExporterTests.running(store) {
            try await eventually("4 slices of shop/web", timeout: .seconds(60)) { try await Self.slices(store).count == 4 }
            let record = try #require(try await MeshExporterTests.exported(store)["shop/web"])
            #expect(record.backendSlices == 4 && record.backends.isEmpty && record.frontends.count == 1)
            let before = try await Self.slices(store)
            #expect(before.values.reduce(0) { $0 + $1.slice.backends.count } == 3_000)
            #expect(ServiceSlicing.merge(record, slices: before.values.map(\.slice)).backends.count == 3_000)

            // One pod stops being ready: its slice, and only it, is rewritten.
            let gone = "10.2.4.9"
            let index = try #require((0..<3_000).first { "10.2.\($0 / 250).\($0 % 250 + 2)" == gone })
            try await store.put(KeyLayout.podStatus(namespace: "shop", name: "web-\(index)"),
                                StoreCoding.encode(PodStatus(phase: .pending, podIP: gone, nodeName: "node1")))
            let home = "shop/web/\(ServiceSlicing.slice(of: gone, count: 4))"
            try await eventually("the backend leaves its slice") { try await Self.slices(store)[home]?.slice.backends[gone] == nil }
            let after = try await Self.slices(store)
            #expect(after.filter { $0.value.revision != before[$0.key]?.revision }.map(\.key) == [home])
            #expect(try await MeshExporterTests.exported(store)["shop/web"] == record, "the record is not rewritten")

            // Down to 900 backends: one record again, no slices.
            for extra in 900..<3_000 {
                _ = try await store.delete(KeyLayout.podStatus(namespace: "shop", name: "web-\(extra)"))
            }
            try await eventually("the slices are folded back", timeout: .seconds(60)) {
                let folded = try await MeshExporterTests.exported(store)["shop/web"]
                return try await Self.slices(store).isEmpty && folded?.backendSlices == nil && folded?.backends.count == 900
            }
        }
    }
}
