import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// Which record holds an ipcache prefix when several claim it: local records always, and among
/// imported ones the same one on every node, whatever order they arrive in.
struct DesiredDatapathTests {
    static let context = EndpointManagerTests.context

    static func compute(_ inputs: DesiredDatapath.Inputs) -> DesiredDatapath {
        var caches = DatapathDecodeCaches()
        return DesiredDatapath.compute(inputs, context: context, caches: &caches)
    }

    static func data(_ text: String) -> Data { Data(text.utf8) }

    @Test func aLocalEndpointKeepsItsAddressAgainstAnImportedOne() throws {
        let local = ["cilium/state/ip/v1/default/10.1.1.5": Self.data(StateFixtures.endpoint(ip: "10.1.1.5", identity: 70_000, hostIP: "172.30.1.1", pod: "web"))]
        let remote = ["cilium/cache/ip/v1/cluster2/10.1.1.5": Self.data(StateFixtures.endpoint(ip: "10.1.1.5", identity: 131_073, hostIP: "172.30.2.1", pod: "evil"))]
        let desired = Self.compute(.init(nodes: [:], endpoints: local, services: [:], pods: [:], podStatuses: [:], remoteEndpoints: remote))
        let entry = try #require(desired.ipcache[IPCIDR("10.1.1.5/32")!])
        #expect(entry.identity == 70_000 && entry.clusterID == 1)
        #expect(desired.conflicts[IPCIDR("10.1.1.5/32")!] == AddressConflict(winner: "cilium/state/ip/v1/default/10.1.1.5",
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
        let entry = IPCacheEntry(identity: 1, tunnelEndpoint: nil, flags: 0, clusterID: 3)
        claims.claim(IPCIDR("10.9.0.1/32")!, entry, by: b, local: false)
        claims.claim(IPCIDR("10.9.0.1/32")!, IPCacheEntry(identity: 2, tunnelEndpoint: nil, flags: 0, clusterID: 2), by: a, local: false)
        #expect(claims.entries[IPCIDR("10.9.0.1/32")!]?.identity == 2)
        #expect(claims.conflicts[IPCIDR("10.9.0.1/32")!] == AddressConflict(winner: a, losers: [b]))
    }
}
