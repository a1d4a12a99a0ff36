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
        #expect(!node.strict && !text.contains("strict"))
        #expect(text.contains("not encrypted to (no usable key): cluster2/node9"))
    }

    @Test func strictModeIsReportedPerNode() throws {
        let status = NodeEncryptionStatus(node: "node1", cluster: "cluster1", mode: "userspace", interface: "wg0", publicKey: "k1",
                                          listenPort: 51871, mtu: 1440, peers: [], unencryptedNodes: ["cluster2/node1"], strict: true,
                                          lastError: nil, updatedAt: 1_000)
        let report = EncryptionReport.build(cluster: "cluster1", statuses: [status], registered: ["node1"], now: Date(timeIntervalSince1970: 1_000))
        #expect(report.nodes.first?.strict == true)
        let text = report.render()
        #expect(text.contains("(userspace, strict)") && text.contains("pod traffic dropped (strict mode, no usable key): cluster2/node1"), "\(text)")
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(json.contains("\"strict\":true"))
        // A status published before strict mode existed has no field: not strict.
        let old = try JSONDecoder().decode(NodeEncryptionStatus.self, from: Data(#"{"node":"n","cluster":"c","type":"wireguard","mode":"kernel","interface":"wg0","publicKey":"k","listenPort":1,"mtu":1,"peers":[],"unencryptedNodes":[],"updatedAt":0}"#.utf8))
        #expect(EncryptionReport.build(cluster: "c", statuses: [old], registered: ["n"], now: Date()).nodes.first?.strict == false)
    }
}

/// `connect` refuses to mesh a cluster whose nodes encrypt with one that has nodes that do not,
/// naming them, unless `--allow-mixed-encryption`.
@Suite struct MixedEncryptionConnectTests {
    @Test func scheduledRotationShowsTheNextRotation() throws {
        var scheduled = NodeEncryptionStatus(node: "node1", cluster: "cluster1", mode: "userspace", interface: "wg0", publicKey: "k1",
                                             listenPort: 51871, mtu: 1440, peers: [], unencryptedNodes: [], lastError: nil, updatedAt: 1_000)
        scheduled.lastKeyRotation = 995
        scheduled.keyRotationIntervalSeconds = 20
        scheduled.nextKeyRotation = 1_015
        var onRequest = scheduled
        onRequest.node = "node2"
        onRequest.keyRotationIntervalSeconds = nil
        onRequest.nextKeyRotation = nil
        var older = scheduled
        older.node = "node3"
        older.lastKeyRotation = nil
        older.keyRotationIntervalSeconds = nil
        older.nextKeyRotation = nil
        let report = EncryptionReport.build(cluster: "cluster1", statuses: [scheduled, onRequest, older], registered: ["node1", "node2", "node3"],
                                            now: Date(timeIntervalSince1970: 1_005))
        let node1 = try #require(report.nodes.first { $0.node == "node1" })
        #expect(node1.lastKeyRotationAgeSeconds == 10 && node1.keyRotationIntervalSeconds == 20)
        #expect(node1.nextKeyRotation == 1_015 && node1.nextKeyRotationInSeconds == 10)
        let text = report.render()
        #expect(text.contains("key rotated 10s ago; next rotation 1970-01-01T00:16:55Z (in 10s), every 20s"), "\(text)")
        #expect(text.contains("key rotated 10s ago; rotation only on request"), "\(text)")
        #expect(text.components(separatedBy: "key rotated").count == 3, "an agent that says nothing gets no line")
        let overdue = EncryptionReport.build(cluster: "cluster1", statuses: [scheduled], registered: ["node1"], now: Date(timeIntervalSince1970: 1_100))
        #expect(overdue.nodes.first?.nextKeyRotationInSeconds == 0)
    }

    @Test func mixedIsRefusedUnlessAllowedAndClustersWithoutNodesPass() throws {
        let both: [String: [String: Bool]] = ["c1": ["n1": true, "n2": true], "c2": ["n1": true]]
        try ConnectValidation.validateEncryption("c1", "c2", nodes: both, allowMixed: false)
        let neither: [String: [String: Bool]] = ["c1": ["n1": false], "c2": ["n1": false]]
        try ConnectValidation.validateEncryption("c1", "c2", nodes: neither, allowMixed: false)
        try ConnectValidation.validateEncryption("c1", "c2", nodes: ["c1": ["n1": true], "c2": [:]], allowMixed: false)
        let mixed: [String: [String: Bool]] = ["c1": ["n1": true], "c2": ["n1": true, "n2": false]]
        let error = #expect(throws: AdminError.self) { try ConnectValidation.validateEncryption("c2", "c1", nodes: mixed, allowMixed: false) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("c1 encrypts") && text.contains("c2 does not on 1 node(s) (n2)") && text.contains("--allow-mixed-encryption"), "\(text)")
        try ConnectValidation.validateEncryption("c2", "c1", nodes: mixed, allowMixed: true)
    }
}
