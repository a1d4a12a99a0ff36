import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// Identities no endpoint uses are collected after two scans, on the in-memory store.
@Suite("Identity collection")
struct IdentityCollectorTests {
    static func record(_ id: UInt32) -> String { MeshKind.identities.stateKey(cluster: "", name: "\(id)") }
    static func index(_ labels: String) -> String { KeyLayout.identityIndex(labels) }

    /// Identities 65537 (used by an endpoint) and 65538 (unused), with their index entries.
    static func seeded() async throws -> InMemoryKeyValueStore {
        let store = InMemoryKeyValueStore()
        try await store.commit(puts: [
            (record(65537), Data("k:app=web;".utf8)), (index("k:app=web;"), Data("65537".utf8)),
            (record(65538), Data("k:app=old;".utf8)), (index("k:app=old;"), Data("65538".utf8)),
            (MeshKind.endpoints.stateKey(cluster: "cluster1", name: "10.1.1.2"),
             Data(StateFixtures.endpoint(ip: "10.1.1.2", identity: 65537, hostIP: "172.30.1.1", pod: "web").utf8)),
        ])
        return store
    }

    static func collector(_ store: any KeyValueStore) -> IdentityCollector {
        IdentityCollector(client: store, interval: .seconds(1), logger: Logger(label: "test.gc"))
    }

    @Test("an unused identity goes with its index at the second scan; a used one stays")
    func collectsAfterTwoScans() async throws {
        let store = try await Self.seeded()
        let first = try await Self.collector(store).collect([:])
        #expect(Set(first.keys) == [65538])
        #expect(try await store.get(Self.record(65538)) != nil, "not at the first scan")
        _ = try await Self.collector(store).collect(first)
        #expect(try await store.get(Self.record(65538)) == nil)
        #expect(try await store.get(Self.index("k:app=old;")) == nil)
        #expect(try await store.get(Self.record(65537)) != nil)
    }

    @Test("an identity taken up again between two scans (its record touched) is kept")
    func touchedIsKept() async throws {
        let store = try await Self.seeded()
        let first = try await Self.collector(store).collect([:])
        #expect(try await store.touch(Self.record(65538), ifValue: Data("k:app=old;".utf8)))
        let second = try await Self.collector(store).collect(first)
        #expect(try await store.get(Self.record(65538)) != nil)
        #expect(second[65538] != nil, "a candidate again, from its new revision")
    }

    @Test("an endpoint record that does not decode could name any identity: nothing is collected")
    func undecodableEndpointStopsCollection() async throws {
        let store = try await Self.seeded()
        let first = try await Self.collector(store).collect([:])
        try await store.put(MeshKind.endpoints.stateKey(cluster: "cluster1", name: "10.1.1.3"), Data("garbage".utf8))
        await #expect(throws: (any Error).self) { try await Self.collector(store).collect(first) }
        #expect(try await store.get(Self.record(65538)) != nil)
    }

    @Test("an index entry that names another number is left alone when the record goes")
    func foreignIndexKept() async throws {
        let store = try await Self.seeded()
        try await store.put(Self.index("k:app=old;"), Data("65599".utf8))
        let first = try await Self.collector(store).collect([:])
        _ = try await Self.collector(store).collect(first)
        #expect(try await store.get(Self.record(65538)) == nil)
        #expect(try await store.get(Self.index("k:app=old;"))?.stringValue == "65599")
    }
}
