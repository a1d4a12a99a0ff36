import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The ipcache an agent computes from its cluster's and its peers' records, as from-overlay
/// relies on it: a sender is a node's /32 with the remote-node identity and the node's cluster,
/// and an inner source is accepted only when its longest prefix names the sender as tunnel
/// endpoint, in the sender's cluster. Local records always hold their addresses; among imported
/// ones, the same record on every node, whatever order they arrive in.
@Suite("Desired datapath")
struct DesiredDatapathTests {
    /// node1 of cluster1 (10.1.0.0/16), at 172.30.1.1 with pods in 10.1.1.0/24.
    static let context = EndpointManagerTests.context

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
        let ipcache = DesiredDatapath.compute(Self.meshInputs(), context: Self.context).ipcache
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

    static func compute(_ inputs: DesiredDatapath.Inputs) -> DesiredDatapath {
        DesiredDatapath.compute(inputs, context: context)
    }

    static func data(_ text: String) -> Data { Data(text.utf8) }

    @Test func aLocalEndpointKeepsItsAddressAgainstAnImportedOne() throws {
        let local = ["cilium/state/ip/v1/default/10.1.1.5": Self.data(StateFixtures.endpoint(ip: "10.1.1.5", identity: 70_000, hostIP: "172.30.1.1", pod: "web"))]
        let remote = ["cilium/cache/ip/v1/cluster2/10.1.1.5": Self.data(StateFixtures.endpoint(ip: "10.1.1.5", identity: 131_073, hostIP: "172.30.2.1", pod: "evil"))]
        let desired = Self.compute(.init(nodes: [:], endpoints: local, services: [:], pods: [:], podStatuses: [:], remoteEndpoints: remote))
        let entry = try #require(desired.ipcache[IPCIDR("10.1.1.5/32")!])
        #expect(entry.identity == 70_000 && entry.clusterID == 1)
        #expect(desired.conflicts[IPCIDR("10.1.1.5/32")!] == AddressConflict(winner: "local range 10.1.0.0/16",
                                                                              losers: ["cilium/cache/ip/v1/cluster2/10.1.1.5"]))
    }

    @Test func anImportedNodeCannotTakeALocalNodesAddressOrPodCIDR() throws {
        let local = ["cilium/state/nodes/v1/cluster1/node2": Self.data(StateFixtures.node(cluster: "cluster1", id: 1, name: "node2", ip: "172.30.1.2", podCIDR: "10.1.2.0/24"))]
        let remote = ["cilium/cache/nodes/v1/cluster2/cluster2/node9": Self.data(StateFixtures.node(cluster: "cluster2", id: 2, name: "node9", ip: "172.30.1.2", podCIDR: "10.1.2.0/24")),
                      "cilium/cache/nodes/v1/cluster2/cluster2/node8": Self.data(StateFixtures.node(cluster: "cluster1", id: 1, name: "node8", ip: "172.30.9.9", podCIDR: "10.2.8.0/24"))]
        let desired = Self.compute(.init(nodes: local, endpoints: [:], services: [:], pods: [:], podStatuses: [:], remoteNodes: remote))
        let podCIDR = try #require(desired.ipcache[IPCIDR("10.1.2.0/24")!])
        #expect(podCIDR.tunnelEndpoint == IPAddress("172.30.1.2") && podCIDR.clusterID == 1)
        #expect(try #require(desired.ipcache[IPCIDR("172.30.1.2/32")!]).flags & UInt8(MER_IPCACHE_F_REMOTE_CLUSTER) == 0)
        #expect(desired.conflicts.count == 2)
        // An imported record that claims to be local is still imported.
        #expect(try #require(desired.ipcache[IPCIDR("10.2.8.0/24")!]).flags & UInt8(MER_IPCACHE_F_REMOTE_CLUSTER) != 0)
    }

    @Test func betweenImportedClaimsTheFirstKeyWinsWhateverTheOrder() throws {
        let a = "cilium/cache/ip/v1/cluster2/10.9.0.1"
        let b = "cilium/cache/ip/v1/cluster3/10.9.0.1"
        let records = [a: Self.data(StateFixtures.endpoint(ip: "10.9.0.1", identity: 131_073, hostIP: "172.30.2.1", pod: "x")),
                       b: Self.data(StateFixtures.endpoint(ip: "10.9.0.1", identity: 196_609, hostIP: "172.30.3.1", pod: "y"))]
        for _ in 0..<20 {
            let desired = Self.compute(.init(nodes: [:], endpoints: [:], services: [:], pods: [:], podStatuses: [:], remoteEndpoints: records))
            #expect(desired.ipcache[IPCIDR("10.9.0.1/32")!]?.identity == 131_073)
            #expect(desired.conflicts[IPCIDR("10.9.0.1/32")!] == AddressConflict(winner: a, losers: [b]))
        }
        var claims = IPCacheClaims()
        let prefix = IPCIDR("10.9.0.1/32")!
        let entry = IPCacheEntry(identity: 1, tunnelEndpoint: nil, flags: 0, clusterID: 3)
        claims.set(b, claims: [(prefix, entry)], local: false, rank: .endpoint)
        claims.set(a, claims: [(prefix, IPCacheEntry(identity: 2, tunnelEndpoint: nil, flags: 0, clusterID: 2))], local: false, rank: .endpoint)
        #expect(claims.entries[prefix]?.identity == 2)
        #expect(claims.conflicts[prefix] == AddressConflict(winner: a, losers: [b]))
        var reversed = IPCacheClaims()
        reversed.set(a, claims: [(prefix, IPCacheEntry(identity: 2, tunnelEndpoint: nil, flags: 0, clusterID: 2))], local: false, rank: .endpoint)
        reversed.set(b, claims: [(prefix, entry)], local: false, rank: .endpoint)
        #expect(reversed.entries == claims.entries && reversed.conflicts == claims.conflicts, "the same winner in either order")
        // When the holder goes, the other claim takes the prefix and the conflict is over.
        claims.set(a, claims: [], local: false, rank: .endpoint)
        #expect(claims.entries[prefix] == entry && claims.holder(of: prefix) == b)
        #expect(claims.conflicts.isEmpty)
    }

    @Test func noImportedPrefixOverlapsThisClustersRanges() throws {
        let remote = [
            "cilium/cache/ip/v1/cluster2/10.1.0.0/8": Self.data(#"{"IP":"10.0.0.0","Mask":"/wAAAA==","HostIP":"172.30.2.1","ID":131073,"Key":0}"#),
            "cilium/cache/ip/v1/cluster2/10.101.0.9": Self.data(StateFixtures.endpoint(ip: "10.101.0.9", identity: 131_073, hostIP: "172.30.2.1", pod: "svc")),
            "cilium/cache/ip/v1/cluster2/10.2.1.7": Self.data(StateFixtures.endpoint(ip: "10.2.1.7", identity: 131_073, hostIP: "172.30.2.1", pod: "ok")),
        ]
        let desired = Self.compute(.init(nodes: [:], endpoints: [:], services: [:], pods: [:], podStatuses: [:], remoteEndpoints: remote))
        #expect(desired.ipcache[IPCIDR("10.0.0.0/8")!] == nil, "a prefix holding this cluster's pod CIDR")
        #expect(desired.ipcache[IPCIDR("10.101.0.9/32")!] == nil, "an address inside this cluster's service CIDR")
        #expect(desired.ipcache[IPCIDR("10.2.1.7/32")!] != nil)
        #expect(desired.conflicts.count == 2)
    }
}
