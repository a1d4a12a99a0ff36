import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// `apply`, `get` and `delete` of Kubernetes objects on the in-memory store: ClusterIPs from
/// the service CIDR, namespaces that must exist, and all or nothing.
@Suite("Resource store")
struct ResourceStoreTests {
    static let settings = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/24",
                                          maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1")

    static func store(_ settings: ClusterSettings = settings) async throws -> (InMemoryKeyValueStore, ResourceStore) {
        let kv = InMemoryKeyValueStore()
        try await kv.put(KeyLayout.clusterSettings, StoreCoding.encode(settings))
        try await kv.put(KeyLayout.resource(plural: ResourceKind.namespace.plural, namespace: nil, name: "default"),
                         StoreCoding.encode(KubernetesObject.namespace(Namespace(metadata: ObjectMeta(name: "default")))))
        return (kv, ResourceStore(client: kv))
    }

    static func apply(_ store: ResourceStore, _ manifest: String) async throws -> [(KubernetesObject, ApplyOutcome)] {
        try await store.apply(try ManifestDecoder.decode(manifest, source: "app.yaml"), source: "app.yaml")
    }

    static func service(_ name: String, clusterIP: String? = nil, namespace: String = "default", port: Int = 80) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata: {name: \(name), namespace: \(namespace)}
        spec:
          \(clusterIP.map { "clusterIP: \($0)" } ?? "")
          selector: {app: \(name)}
          ports: [{port: \(port)}]
        """
    }

    static func clusterIP(_ result: [(KubernetesObject, ApplyOutcome)], _ index: Int = 0) -> String? {
        guard case let .service(service) = result[index].0 else { return nil }
        return service.spec.clusterIP
    }

    @Test("every namespace carries kubernetes.io/metadata.name with its name: given on create, put back when a manifest leaves it out, overwritten when one gives another value")
    func namespaceMetadataNameLabel() async throws {
        let (_, store) = try await Self.store()
        func stored(_ name: String) async throws -> [String: String]? {
            guard case let .namespace(namespace)? = try await store.get(.namespace, namespace: nil, name: name) else { return nil }
            return namespace.metadata.labels
        }
        _ = try await Self.apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}")
        #expect(try await stored("shop") == ["team": "a", "kubernetes.io/metadata.name": "shop"])
        let again = try await Self.apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}")
        #expect(again.first?.1 == .unchanged)
        _ = try await Self.apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {kubernetes.io/metadata.name: other}}")
        #expect(try await stored("shop") == ["kubernetes.io/metadata.name": "shop"])
        #expect(try await stored("default")?["kubernetes.io/metadata.name"] == "default")
    }

    @Test("a Service gets the first free ClusterIP, claimed in the same write; applying it again is unchanged, a change configured")
    func clusterIPsAndOutcomes() async throws {
        let (kv, store) = try await Self.store()
        let first = try await Self.apply(store, Self.service("web"))
        #expect(first[0].1 == .created)
        #expect(Self.clusterIP(first) == "10.101.0.10")
        #expect(try await kv.get(KeyLayout.serviceIP("10.101.0.10"))?.stringValue == "default/web")
        #expect(try await Self.apply(store, Self.service("web"))[0].1 == .unchanged)
        let changed = try await Self.apply(store, Self.service("web", port: 81))
        #expect(changed[0].1 == .configured && Self.clusterIP(changed) == "10.101.0.10", "the ClusterIP is kept")
        #expect(Self.clusterIP(try await Self.apply(store, Self.service("db"))) == "10.101.0.11")
    }

    @Test("a namespace that does not exist fails the whole apply with the document and field named, and nothing is written")
    func missingNamespace() async throws {
        let (kv, store) = try await Self.store()
        let before = try await kv.currentRevision()
        await #expect {
            _ = try await Self.apply(store, Self.service("web") + "\n---\n" + Self.service("api", namespace: "shop"))
        } throws: { error in
            "\(error)".contains("app.yaml: document 2") && "\(error)".contains("metadata.namespace") && "\(error)".contains("\"shop\" not found")
        }
        #expect(try await kv.currentRevision() == before)
        #expect(try await store.list(.service, namespace: nil).isEmpty)
        let together = try await Self.apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" + Self.service("api", namespace: "shop"))
        #expect(together.map(\.1) == [.created, .created], "a namespace created in the same apply counts")
    }

    @Test("the same object twice in one apply is refused")
    func duplicates() async throws {
        let (_, store) = try await Self.store()
        await #expect { _ = try await Self.apply(store, Self.service("web") + "\n---\n" + Self.service("web")) } throws: { error in
            "\(error)".contains("appears twice")
        }
    }

    @Test("requested ClusterIPs: outside the CIDR, taken by another Service, or changed, are refused; headless gets none")
    func requestedClusterIPs() async throws {
        let (kv, store) = try await Self.store()
        await #expect { _ = try await Self.apply(store, Self.service("web", clusterIP: "10.200.0.1")) } throws: { "\($0)".contains("not inside the service CIDR") }
        _ = try await Self.apply(store, Self.service("web", clusterIP: "10.101.0.50"))
        await #expect { _ = try await Self.apply(store, Self.service("db", clusterIP: "10.101.0.50")) } throws: { "\($0)".contains("already allocated to default/web") }
        await #expect { _ = try await Self.apply(store, Self.service("web", clusterIP: "10.101.0.51")) } throws: { "\($0)".contains("immutable") }
        let headless = try await Self.apply(store, Self.service("peers", clusterIP: "None"))
        #expect(Self.clusterIP(headless) == "None")
        #expect(try await kv.count(prefix: KeyLayout.serviceIPPrefix) == 1)
    }

    @Test("a full service CIDR is reported as exhausted")
    func exhausted() async throws {
        let (kv, store) = try await Self.store()
        var claims: [(key: String, value: Data)] = []
        for host in 10...254 { claims.append((KeyLayout.serviceIP("10.101.0.\(host)"), Data("default/other-\(host)".utf8))) }
        try await kv.commit(puts: claims)
        await #expect { _ = try await Self.apply(store, Self.service("web")) } throws: { "\($0)".contains("exhausted") }
    }

    @Test("deleting a namespace deletes what is in it and frees its ClusterIPs; deleting what is absent says so")
    func deleteNamespace() async throws {
        let (kv, store) = try await Self.store()
        _ = try await Self.apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" + Self.service("api", namespace: "shop"))
        #expect(try await store.delete(.namespace, namespace: nil, name: "shop"))
        #expect(try await store.list(.service, namespace: "shop").isEmpty)
        #expect(try await kv.count(prefix: KeyLayout.serviceIPPrefix) == 0)
        #expect(try await store.delete(.namespace, namespace: nil, name: "shop") == false)
    }

    // MARK: One transaction

    static func namespaces(_ count: Int, annotationBytes: Int = 0) -> [KubernetesObject] {
        let annotations = annotationBytes > 0 ? ["note": String(repeating: "a", count: annotationBytes)] : [:]
        return (0..<count).map { .namespace(Namespace(metadata: ObjectMeta(name: "ns-\($0)", annotations: annotations))) }
    }

    /// `apply`, expecting it to fail with exactly `message` without having sent a write.
    static func expectRefused(_ objects: [KubernetesObject], on kv: InMemoryKeyValueStore, _ store: ResourceStore,
                              message: String) async throws {
        let writes = kv.calls(.write)
        await #expect { _ = try await store.apply(objects, source: "big.yaml") } throws: { error in
            "\(error)" == message
        }
        #expect(kv.calls(.write) == writes, "no transaction is sent")
    }

    @Test("more objects than one transaction holds are refused before the store is even read, with the count and the limit")
    func tooManyObjects() async throws {
        let (kv, store) = try await Self.store()
        let reads = kv.calls(.read)
        try await Self.expectRefused(Self.namespaces(4097), on: kv, store, message: """
            big.yaml: 4097 objects are more than one apply can write: it is one store transaction of at most 4096 \
            operations, one per object written; nothing was written, split the file
            """)
        #expect(kv.calls(.read) == reads)
    }

    @Test("an apply of exactly as many objects as one transaction holds is written whole")
    func objectsAtTheLimit() async throws {
        let (_, store) = try await Self.store()
        let result = try await store.apply(Self.namespaces(EtcdTransactionLimits.maximumOperations), source: "big.yaml")
        #expect(result.count == 4096 && result.allSatisfy { $0.1 == .created })
        #expect(try await store.list(.namespace, namespace: nil).count == 4096 + 1)
    }

    @Test("a Service writes its ClusterIP claim in the same transaction, so Services that fit as objects can still be too many operations")
    func servicesCountTheirClaims() async throws {
        var wide = Self.settings
        wide.serviceCIDR = "10.101.0.0/16"
        let (kv, store) = try await Self.store(wide)
        let services = (0..<2049).map { index in
            KubernetesObject.service(Service(
                metadata: ObjectMeta(name: "web-\(index)"),
                spec: ServiceSpec(clusterIP: "10.101.\(index / 250 + 1).\(index % 250 + 1)", ports: [ServicePort(port: 80)])))
        }
        try await Self.expectRefused(services, on: kv, store, message: """
            big.yaml: applying it takes 4098 store operations (one per object written, one more per Service claiming a \
            ClusterIP), more than the 4096 one transaction may hold; nothing was written, split the file
            """)
        #expect(try await store.list(.service, namespace: nil).isEmpty)
    }

    @Test("an apply larger than one etcd request is refused with its size and the limit")
    func tooManyBytes() async throws {
        let (kv, store) = try await Self.store()
        let objects = Self.namespaces(7, annotationBytes: 240_000)
        let puts = objects.map { (key: ResourceStore.key(for: $0), value: StoreCoding.encode($0)) }
        let bytes = EtcdTransactionLimits.requestBytes(puts: puts, deletes: [])
        #expect(bytes > EtcdTransactionLimits.maximumRequestBytes)
        try await Self.expectRefused(objects, on: kv, store, message: """
            big.yaml: applying it writes \(bytes) bytes in one transaction, more than the 1572864 one store request may \
            hold; nothing was written, split the file
            """)
        #expect(try await store.list(.namespace, namespace: nil).map(\.name) == ["default"])
    }
}
