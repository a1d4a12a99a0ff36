import Foundation
import MeridianAdmin
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// What a peer's records will be allowed to claim is checked at connect: a private pod CIDR of at
/// most a /8, holding none of the importer's nodes, clashing with none of its other peers.
struct ConnectClaimsTests {
    static func info(_ name: String, id: UInt32, podCIDR: String) -> ClusterAccessInfo {
        ClusterAccessInfo(
            context: MeridianContext(name: name, cluster: name, endpoint: "https://127.0.0.1:1", serverName: "etcd.\(name)",
                                     certificateAuthority: "", clientCertificate: "", clientKey: ""),
            settings: ClusterSettings(name: name, id: id, podCIDR: podCIDR, serviceCIDR: "10.10\(id).0.0/16", maxConnectedClusters: 255,
                                      clientEndpoints: [], serverName: "mesh.\(name)"),
            ca: MeshCertificateAuthorityRecord(certificatePEM: ""), meshEnabled: true)
    }

    static func importer() async throws -> (ClusterAccessInfo, InMemoryKeyValueStore) {
        let store = InMemoryKeyValueStore(name: "cluster1")
        try await store.put("cilium/state/nodes/v1/cluster1/node1",
                            Data(StateFixtures.node(cluster: "cluster1", id: 1, name: "node1", ip: "172.30.1.2", podCIDR: "10.1.1.0/24").utf8))
        try await store.put(KeyLayout.peer("cluster3"), StoreCoding.encode(PeerRecord(
            name: "cluster3", id: 3, endpoints: [], serverName: "mesh.cluster3", caPEM: "", certificatePEM: "", privateKeyPEM: "",
            podCIDR: "10.3.0.0/16")))
        return (info("cluster1", id: 1, podCIDR: "10.1.0.0/16"), store)
    }

    @Test(arguments: [
        ("128.0.0.0/1", "is not inside"),
        ("8.8.0.0/16", "is not inside"),
        ("10.0.0.0/7", "is not inside"),
        ("172.16.0.0/12", "the address of node node1"),
        ("10.3.128.0/17", "overlaps cluster3's 10.3.0.0/16"),
    ])
    func claimsThatReachTheImporterAreRefused(podCIDR: String, says: String) async throws {
        let (importer, store) = try await Self.importer()
        do {
            try await ConnectValidation.validateClaims(of: Self.info("cluster2", id: 2, podCIDR: podCIDR), into: importer, importerClient: store)
            Issue.record("\(podCIDR) was accepted")
        } catch {
            #expect("\(error)".contains(says), "\(error)")
        }
    }

    @Test func anIDAnotherPeerHasIsRefused() async throws {
        let (importer, store) = try await Self.importer()
        await #expect(throws: AdminError.self) {
            try await ConnectValidation.validateClaims(of: Self.info("cluster2", id: 3, podCIDR: "10.2.0.0/16"), into: importer, importerClient: store)
        }
    }

    @Test func aPrivatePodCIDRApartFromEverythingIsAccepted() async throws {
        let (importer, store) = try await Self.importer()
        try await ConnectValidation.validateClaims(of: Self.info("cluster2", id: 2, podCIDR: "10.2.0.0/16"), into: importer, importerClient: store)
        try await ConnectValidation.validateClaims(of: Self.info("cluster3", id: 3, podCIDR: "10.3.0.0/16"), into: importer, importerClient: store)
    }
}

/// Claims on one address that the nodes refused are reported once per prefix.
struct AddressConflictStatusTests {
    @Test func conflictsFromEveryNodeAreMergedByPrefixAndEscaped() async throws {
        let store = InMemoryKeyValueStore(name: "cluster1")
        let conflict = AddressConflictReport(prefix: "10.9.0.1/32", holder: "cilium/cache/ip/v1/cluster2/10.9.0.1",
                                             refused: ["cilium/cache/ip/v1/cluster3/10.9.0.1", "cilium/cache/ip/v1/\u{1B}x/10.9.0.1"])
        for node in ["node1", "node2"] {
            try await store.put(KeyLayout.nodeStatus(node), StoreCoding.encode(
                NodePolicyStatus(node: node, cluster: "cluster1", revision: 1, endpoints: [], addressConflicts: [conflict])))
        }
        let merged = try await ClusterMeshStatusReport.addressConflicts(store)
        #expect(merged == [conflict])
        #expect(!merged[0].refused.joined().contains("\u{1B}"))
    }
}
