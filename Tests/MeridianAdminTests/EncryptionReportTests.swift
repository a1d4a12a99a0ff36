import Foundation
import MeridianAdmin
import MeridianStore
import Testing

/// `encryption status` from what agents publish: ages against the reader's clock, a handshake
/// that never happened reported as such, statuses of nodes that are gone left out, and nodes
/// without encryption named.
@Suite struct EncryptionReportTests {
    @Test func agesNeverHandshakenGoneAndUnencryptedNodes() throws {
        let peer = NodeEncryptionStatus.Peer(node: "cluster2/node1", publicKey: "k2", endpoint: "172.30.2.1:51871", allowedIPs: ["172.30.2.1/32"],
                                             latestHandshake: 1_000, receivedBytes: 10, sentBytes: 20)
        var silent = peer
        silent.node = "cluster1/node2"
        silent.publicKey = "k3"
        silent.latestHandshake = 0
        let node1 = NodeEncryptionStatus(node: "node1", cluster: "cluster1", mode: "userspace", interface: "wg0", publicKey: "k1",
                                         listenPort: 51871, mtu: 1440, peers: [peer, silent], unencryptedNodes: ["cluster2/node9"],
                                         lastError: nil, updatedAt: 1_030)
        var gone = node1
        gone.node = "node7"
        let report = EncryptionReport.build(cluster: "cluster1", statuses: [node1, gone], registered: ["node1", "node3"],
                                            now: Date(timeIntervalSince1970: 1_040))
        #expect(report.nodes.map(\.node) == ["node1"])
        #expect(report.nodesWithoutEncryption == ["node3"])
        let node = try #require(report.nodes.first)
        #expect(node.statusAgeSeconds == 10)
        #expect(node.peers.map(\.node) == ["cluster1/node2", "cluster2/node1"])
        #expect(node.peers[0].latestHandshakeAgeSeconds == nil)
        #expect(node.peers[1].latestHandshakeAgeSeconds == 40)
        let text = report.render()
        #expect(text.contains("userspace") && text.contains("never") && text.contains("40s ago") && text.contains("cluster2/node9"))
        #expect(text.contains("nodes without encryption: node3"))
    }
}
