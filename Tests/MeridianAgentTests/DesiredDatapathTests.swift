import Foundation
import MeridianCore
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The ipcache an agent computes from its cluster's and its peers' records, as from-overlay
/// relies on it: a sender is a node's /32 with the remote-node identity and the node's cluster,
/// and an inner source is accepted only when its longest prefix names the sender as tunnel
/// endpoint, in the sender's cluster.
@Suite("Desired datapath")
struct DesiredDatapathTests {
    static let cluster = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                         maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1")
    static let context = NodeContext(nodeName: "node1", cluster: cluster, nodeIP: IPAddress("172.30.1.1")!,
                                     podCIDR: IPCIDR("10.1.1.0/24")!, gateway: IPAddress("10.1.1.1")!, podMTU: 1450,
                                     clusterDomain: "cluster.local")

    static func record(_ text: String) -> Data { Data(text.utf8) }

    static func meshInputs() -> DesiredDatapath.Inputs {
        var inputs = DesiredDatapath.Inputs(nodes: [:], endpoints: [:], services: [:], pods: [:], podStatuses: [:])
        for (name, ip, cidr) in [("node1", "172.30.1.1", "10.1.1.0/24"), ("node2", "172.30.1.2", "10.1.2.0/24")] {
            inputs.nodes["cilium/state/nodes/v1/cluster1/\(name)"] =
                record(StateFixtures.node(cluster: "cluster1", id: 1, name: name, ip: ip, podCIDR: cidr))
        }
        for (ip, identity, host) in [("10.1.1.5", UInt32(1 << 16) | 300, "172.30.1.1"), ("10.1.2.7", UInt32(1 << 16) | 400, "172.30.1.2")] {
            inputs.endpoints["cilium/state/ip/v1/default/\(ip)"] =
                record(StateFixtures.endpoint(ip: ip, identity: identity, hostIP: host, pod: "pod-\(ip)"))
        }
        inputs.remoteNodes["cilium/cache/nodes/v1/cluster2/cluster2/node1"] =
            record(StateFixtures.node(cluster: "cluster2", id: 2, name: "node1", ip: "172.30.2.1", podCIDR: "10.2.1.0/24"))
        inputs.remoteEndpoints["cilium/cache/ip/v1/cluster2/default/10.2.1.7"] =
            record(StateFixtures.endpoint(ip: "10.2.1.7", identity: (2 << 16) | 500, hostIP: "172.30.2.1", pod: "remote"))
        return inputs
    }

    /// The ipcache's answer for `ip`: the entry of the longest prefix holding it.
    static func lookup(_ ip: String, in ipcache: [IPCIDR: IPCacheEntry]) -> IPCacheEntry? {
        let address = IPAddress(ip)!
        return ipcache.filter { $0.key.contains(address) }.max { $0.key.prefixLength < $1.key.prefixLength }?.value
    }

    @Test("every pod address, with or without its own entry, names its node as tunnel endpoint and its node's cluster; nodes are senders of their cluster; addresses no node owns have no tunnel endpoint")
    func ownershipOfAddresses() {
        var caches = DatapathDecodeCaches()
        let ipcache = DesiredDatapath.compute(Self.meshInputs(), context: Self.context, caches: &caches).ipcache
        let owners: [(address: String, node: String, cluster: UInt16)] = [
            ("10.1.1.5", "172.30.1.1", 1), ("10.1.1.77", "172.30.1.1", 1),
            ("10.1.2.7", "172.30.1.2", 1), ("10.1.2.77", "172.30.1.2", 1),
            ("10.2.1.7", "172.30.2.1", 2), ("10.2.1.77", "172.30.2.1", 2),
        ]
        for owner in owners {
            let entry = Self.lookup(owner.address, in: ipcache)
            #expect(entry?.tunnelEndpoint == IPAddress(owner.node), "\(owner.address)")
            #expect(entry?.clusterID == owner.cluster, "\(owner.address)")
        }
        for (node, cluster) in [("172.30.1.2", UInt16(1)), ("172.30.2.1", UInt16(2))] {
            let entry = Self.lookup(node, in: ipcache)
            #expect(entry?.identity == ReservedIdentity.remoteNode.rawValue, "\(node)")
            #expect(entry?.clusterID == cluster, "\(node)")
        }
        for unowned in ["172.30.1.1", "172.30.1.2", "172.30.2.1", "10.1.1.1"] {
            #expect(Self.lookup(unowned, in: ipcache)?.tunnelEndpoint == nil, "\(unowned)")
        }
        #expect(Self.lookup("198.51.100.7", in: ipcache) == nil)
    }
}
