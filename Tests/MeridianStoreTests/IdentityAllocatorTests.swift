import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// Cluster-scoped identities allocated in the store, on the in-memory store.
@Suite("Identity allocation")
struct IdentityAllocatorTests {
    static let layout = IdentityLayout(maxConnectedClusters: .c255)

    static func labels(_ app: String) -> LabelSet {
        LabelSet.podIdentityLabels(podLabels: ["app": app], namespace: "default", namespaceLabels: [:], serviceAccount: nil, cluster: "cluster3")
    }

    static func allocator(_ store: any KeyValueStore) -> IdentityAllocator {
        IdentityAllocator(client: store, clusterID: 3, layout: layout)
    }

    static func recordKey(_ id: UInt32) -> String { MeshKind.identities.stateKey(cluster: "", name: "\(id)") }

    @Test("the first free number of the cluster's range, with the labels in its record and the number in the label index")
    func allocatesInRange() async throws {
        let store = InMemoryKeyValueStore()
        let id = try await Self.allocator(store).allocate(Self.labels("web"))
        #expect(id == 3 << 16 + 1)
        #expect(try await store.get(Self.recordKey(id))?.stringValue == Self.labels("web").ciliumString)
        #expect(try await store.get(KeyLayout.identityIndex(Self.labels("web").ciliumString))?.stringValue == "\(id)")
        let other = try await Self.allocator(store).allocate(Self.labels("db"))
        #expect(other == id + 1)
    }

    @Test("the same labels get the same number, and reusing it touches its record so a collector sees it in use")
    func reuseTouches() async throws {
        let store = InMemoryKeyValueStore()
        let id = try await Self.allocator(store).allocate(Self.labels("web"))
        let before = try #require(try await store.get(Self.recordKey(id))).modRevision
        #expect(try await Self.allocator(store).allocate(Self.labels("web")) == id)
        #expect(try #require(try await store.get(Self.recordKey(id))).modRevision > before)
    }

    @Test("allocators racing for the same labels share one number; racing for different labels, they get different numbers")
    func racing() async throws {
        let store = InMemoryKeyValueStore()
        let names = ["web", "db", "cache", "queue"]
        // Every allocator is held at its first write, so all eight have read the same empty
        // store (and picked the same free number) before any of them writes.
        store.holdWrites()
        let ids = try await withThrowingTaskGroup(of: (String, UInt32).self, returning: [String: Set<UInt32>].self) { group in
            for name in names + names { group.addTask { (name, try await Self.allocator(store).allocate(Self.labels(name))) } }
            let deadline = ContinuousClock.now + .seconds(10)
            while store.heldWriteCount < 8, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(store.heldWriteCount == 8)
            store.releaseWrites()
            return try await group.reduce(into: [:]) { $0[$1.0, default: []].insert($1.1) }
        }
        #expect(ids.values.allSatisfy { $0.count == 1 }, "one number per label set: \(ids)")
        #expect(Set(ids.values.flatMap { $0 }).count == names.count, "no number shared by two label sets: \(ids)")
        #expect(try await store.count(prefix: MeshKind.identities.statePrefix(cluster: "")) == names.count)
        for (name, numbers) in ids {
            let record = try await store.get(Self.recordKey(try #require(numbers.first)))
            #expect(record?.stringValue == Self.labels(name).ciliumString)
        }
    }

    @Test("an index naming a number whose record is gone, or holds other labels, is not trusted: the labels get a record again")
    func staleIndex() async throws {
        let store = InMemoryKeyValueStore()
        let id = try await Self.allocator(store).allocate(Self.labels("web"))
        try await store.delete(Self.recordKey(id))
        let again = try await Self.allocator(store).allocate(Self.labels("web"))
        #expect(try await store.get(Self.recordKey(again))?.stringValue == Self.labels("web").ciliumString)
        try await store.put(Self.recordKey(again), Data(Self.labels("thief").ciliumString.utf8))
        let third = try await Self.allocator(store).allocate(Self.labels("web"))
        #expect(third != again)
        #expect(try await store.get(Self.recordKey(third))?.stringValue == Self.labels("web").ciliumString)
        #expect(try await store.get(Self.recordKey(again))?.stringValue == Self.labels("thief").ciliumString, "the other labels keep theirs")
    }

    @Test("a cluster whose range is full gets an error naming the labels")
    func exhausted() async throws {
        let store = InMemoryKeyValueStore()
        let range = Self.layout.range(of: ClusterID(3))
        var puts: [(key: String, value: Data)] = []
        for id in (range.lowerBound + 1)...range.upperBound { puts.append((Self.recordKey(id), Data("k:x=\(id);".utf8))) }
        let chunk = EtcdTransactionLimits.maximumOperations
        for start in stride(from: 0, to: puts.count, by: chunk) {
            try await store.commit(puts: Array(puts[start..<min(start + chunk, puts.count)]))
        }
        await #expect(throws: StoreError.self) { try await Self.allocator(store).allocate(Self.labels("web")) }
    }
}
