import Foundation
import MeridianAdmin
import Logging
import MeridianControlPlane
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianPKI
import MeridianStore
import Synchronization

// MARK: - Sizes

/// The sizes of one scale run: mocked remote clusters; per cluster its nodes, endpoints and
/// identities; and the churn written across all of them.
public struct ScaleSizes: Codable, Sendable, Hashable {
    public var clusters: Int
    public var nodesPerCluster: Int
    public var endpointsPerCluster: Int
    public var identitiesPerCluster: Int
    public var churnPerSecond: Int
    public var churnSeconds: Int

    /// The shape of the ClusterMesh CI scale test: 250 clusters × 100 nodes × 1,000 endpoints × 100 identities, 325 updates/s.
    public static let ciScaleTest = ScaleSizes(clusters: 250, nodesPerCluster: 100, endpointsPerCluster: 1000, identitiesPerCluster: 100,
                                  churnPerSecond: 325, churnSeconds: 30)
    /// `--quick`: finishes in well under two minutes.
    public static let quick = ScaleSizes(clusters: 5, nodesPerCluster: 10, endpointsPerCluster: 100, identitiesPerCluster: 10,
                                  churnPerSecond: 50, churnSeconds: 10)

    /// Cluster IDs have 8 bits when maxConnectedClusters is 255 (IDs 1...255), and cluster1
    /// holds ID 1, so at most 254 other clusters exist. (511 mode would allow more, but the lab
    /// runs in 255 mode and every cluster of a mesh must use the same mode.)
    static let maxClusters = 254
    /// A node's pod CIDR is a /24 of its cluster's 10.<id>.0.0/16, numbered 1...255.
    static let maxNodes = 255
    /// Addresses .2 to .254 of a node's /24 (.1 is the node's gateway).
    static let endpointsPerNode = 253
    /// Local indices of one cluster's identity range in 255 mode (its first value is never used).
    static let maxIdentities = 65_535

    var totalNodes: Int { clusters * nodesPerCluster }
    var totalEndpoints: Int { clusters * endpointsPerCluster }
    var totalIdentities: Int { clusters * identitiesPerCluster }
    var totalChurn: Int { churnPerSecond * churnSeconds }

    /// Rejects sizes the mocks cannot represent, naming the option and the reason.
    public func validate() throws(BenchError) {
        guard clusters >= 1 else { throw .invalidOption("--clusters must be at least 1") }
        guard clusters <= Self.maxClusters else {
            throw .invalidOption(
                "--clusters \(clusters): at most \(Self.maxClusters) mocked clusters can join cluster1; cluster IDs have 8 bits with maxConnectedClusters 255 (IDs 1...255) and cluster1 holds ID 1")
        }
        guard (1...Self.maxNodes).contains(nodesPerCluster) else {
            throw .invalidOption("--nodes must be between 1 and \(Self.maxNodes): each node gets one /24 of its cluster's /16 pod CIDR")
        }
        guard endpointsPerCluster >= 0 else { throw .invalidOption("--endpoints must not be negative") }
        guard endpointsPerCluster <= nodesPerCluster * Self.endpointsPerNode else {
            throw .invalidOption(
                "--endpoints \(endpointsPerCluster) does not fit on \(nodesPerCluster) node(s): at most \(Self.endpointsPerNode) per node's /24, \(nodesPerCluster * Self.endpointsPerNode) in all")
        }
        guard (1...Self.maxIdentities).contains(identitiesPerCluster) else {
            throw .invalidOption("--identities must be between 1 and \(Self.maxIdentities), the size of one cluster's identity range")
        }
        guard churnPerSecond >= 0 else { throw .invalidOption("--churn must not be negative (0 skips the churn phase)") }
        guard churnPerSecond == 0 || endpointsPerCluster > 0 else {
            throw .invalidOption("--churn updates endpoints; it needs --endpoints of at least 1")
        }
        guard (1...3600).contains(churnSeconds) else { throw .invalidOption("--churn-seconds must be between 1 and 3600") }
    }
}

// MARK: - Mocked clusters and their records

/// One mocked remote cluster: its name, ID and address plan, derived from its position.
struct MockCluster: Sendable, Hashable {
    /// 0-based position among the mocks; the cluster ID is `index + 2` (cluster1 holds 1).
    let index: Int

    var id: UInt32 { UInt32(index + 2) }
    var name: String { "mock\(id)" }
    /// The second octet of the mock's pod addresses: its ID, except for mock101, whose
    /// `10.101.0.0/16` is cluster1's service CIDR (connect refuses that overlap); it takes the
    /// `10.0.0.0/16` no cluster uses.
    var podOctet: UInt32 { id == 101 ? 0 : id }
    var podCIDR: String { "10.\(podOctet).0.0/16" }
    /// Never used for anything; the settings record needs one that overlaps no pod CIDR.
    var serviceCIDR: String { "100.96.\(id).0/24" }
    var serverName: String { "etcd.\(name).meridian" }

    func nodeName(_ node: Int) -> String { "node\(node + 1)" }
    /// The node's underlay address (its tunnel endpoint), 100.64.<id>.<node + 1>.
    func nodeIP(_ node: Int) -> String { "100.64.\(id).\(node + 1)" }
    func nodePodCIDR(_ node: Int) -> String { "10.\(podOctet).\(node + 1).0/24" }
    /// Endpoint `j` lives on node `j % nodes`, at address `.(j / nodes + 2)` of that node's /24.
    func endpointIP(_ endpoint: Int, nodes: Int) -> String { "10.\(podOctet).\(endpoint % nodes + 1).\(endpoint / nodes + 2)" }
    /// The `i`-th (0-based) identity of the cluster: local index `i + 1` of its range.
    func identity(_ i: Int) -> UInt32 {
        (id << UInt32(IdentityLayout(maxConnectedClusters: .c255).shift)) + UInt32(i + 1)
    }
}

/// What a mocked cluster's etcd holds, in the key layout and JSON shapes of `MeridianCore/Mesh`.
enum ScaleRecords {
    typealias Record = (key: String, value: Data)

    static func nodes(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        let encoder = CiliumJSON.encoder()
        return (0..<sizes.nodesPerCluster).map { node in
            let record = NodeRecord(
                name: mock.nodeName(node), cluster: mock.name,
                ipAddresses: [NodeAddress(type: .internalIP, ip: mock.nodeIP(node))],
                ipv4AllocCIDR: IPCIDR(mock.nodePodCIDR(node)), clusterID: mock.id, mtu: 1500)
            return (MeshKind.nodes.stateKey(cluster: mock.name, name: record.name), (try? encoder.encode(record)) ?? Data())
        }
    }

    /// The endpoints as first written (round 0).
    static func endpoints(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        let encoder = CiliumJSON.encoder()
        return (0..<sizes.endpointsPerCluster).map { endpoint(of: mock, index: $0, round: 0, sizes: sizes, metadata: "", encoder: encoder) }
    }

    static func identities(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        (0..<sizes.identitiesPerCluster).map { i in
            let labels = LabelSet.podIdentityLabels(
                podLabels: ["app": "scale-\(i)"], namespace: "default",
                namespaceLabels: [LabelKeys.namespaceMetadataName: "default"], serviceAccount: nil, cluster: mock.name)
            return (MeshKind.identities.stateKey(cluster: mock.name, name: "\(mock.identity(i))"), Data(labels.ciliumString.utf8))
        }
    }

    /// Nodes, endpoints and identities.
    static func state(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        nodes(of: mock, sizes: sizes) + endpoints(of: mock, sizes: sizes) + identities(of: mock, sizes: sizes)
    }

    /// Endpoint `index` after `round` updates: each round moves it to the next identity and the
    /// next node (host IP) of its cluster.
    static func endpoint(of mock: MockCluster, index: Int, round: Int, sizes: ScaleSizes, metadata: String,
                         encoder: JSONEncoder = CiliumJSON.encoder()) -> Record {
        let ip = mock.endpointIP(index, nodes: sizes.nodesPerCluster)
        let pair = IPIdentityPair(
            ip: ip, hostIP: mock.nodeIP((index + round) % sizes.nodesPerCluster),
            id: mock.identity((index + round) % sizes.identitiesPerCluster), metadata: metadata,
            k8sNamespace: "default", k8sPodName: "scale-\(index)")
        return (MeshKind.endpoints.stateKey(cluster: mock.name, name: ip), (try? encoder.encode(pair)) ?? Data())
    }

    /// The `sequence`-th update written to this mock: endpoints in turn, each pass one round further.
    static func churnUpdate(of mock: MockCluster, sequence: Int, sizes: ScaleSizes, metadata: String) -> Record {
        endpoint(of: mock, index: sequence % sizes.endpointsPerCluster, round: sequence / sizes.endpointsPerCluster + 1,
                 sizes: sizes, metadata: metadata)
    }

    /// What an enabled exporter and a bootstrapped control plane write besides the state: the
    /// cluster config, the four sync canaries and the heartbeat, which importers read; and the
    /// settings, CA and clustermesh records, which `ClusterAccessInfo.load` and the connect
    /// checks read. Written after the state, as a real exporter writes its canaries last.
    static func control(of mock: MockCluster, endpoint: String, ca: MeshCertificateAuthorityRecord, now: String) -> [Record] {
        let config = CiliumClusterConfig(id: mock.id, capabilities: .init(syncedCanaries: true, maxConnectedClusters: 255))
        let settings = ClusterSettings(name: mock.name, id: mock.id, podCIDR: mock.podCIDR, serviceCIDR: mock.serviceCIDR,
                                       maxConnectedClusters: 255, clientEndpoints: [endpoint], serverName: mock.serverName)
        var records: [Record] = [
            (KeyLayout.clusterSettings, StoreCoding.encode(settings)),
            (KeyLayout.meshCertificateAuthority, StoreCoding.encode(ca)),
            (KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true))),
            (KeyLayout.clusterConfig(mock.name), (try? CiliumJSON.encoder().encode(config)) ?? Data()),
            (KeyLayout.heartbeat, Data(now.utf8)),
        ]
        for kind in MeshKind.allCases {
            records.append((KeyLayout.syncCanary(cluster: mock.name, prefix: kind.stateCanaryPrefix), Data(now.utf8)))
        }
        return records
    }
}

/// The mark a churn update carries in its `Metadata`: its sequence number and when it was sent
/// (this process's monotonic clock), so the watcher in cluster1 can time it.
struct ChurnStamp: Sendable, Hashable {
    static let prefix = "meridian-scale-churn"
    var sequence: Int
    var sentNanoseconds: UInt64

    init(sequence: Int, sentNanoseconds: UInt64) {
        self.sequence = sequence
        self.sentNanoseconds = sentNanoseconds
    }

    var metadata: String { "\(Self.prefix) seq=\(sequence) t=\(sentNanoseconds)" }

    init?(metadata: String) {
        let parts = metadata.split(separator: " ")
        guard parts.count == 3, parts[0] == Self.prefix, parts[1].hasPrefix("seq="), parts[2].hasPrefix("t="),
              let sequence = Int(parts[1].dropFirst(4)), let sent = UInt64(parts[2].dropFirst(2)) else { return nil }
        self.init(sequence: sequence, sentNanoseconds: sent)
    }
}

/// Nanoseconds on a monotonic clock since this process first asked; stamps are compared only
/// within the process that wrote them.
func monotonicNanoseconds() -> UInt64 {
    let origin = monotonicOrigin // initialized at first use, so read it before the clock
    let elapsed = ContinuousClock.now - origin
    return UInt64(max(0, elapsed.components.seconds)) * 1_000_000_000 + UInt64(max(0, elapsed.components.attoseconds / 1_000_000_000))
}

private let monotonicOrigin = ContinuousClock.now
