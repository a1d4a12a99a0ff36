import CMeridianBPF
import Testing
@testable import MeridianDatapath
import MeridianTestSupport

/// What from-overlay accepts from a peer node, with forged VXLAN deliveries: the tunnel
/// metadata (VNI, outer source) is attached by the harness, the ipcache holds what node 1 of
/// cluster 1 holds in a mesh of three clusters (as `DesiredDatapath` writes it), and each
/// refused packet must be dropped with its own reason before conntrack sees it.
@Suite("BPF overlay: what a node may send", .serialized, .enabled(if: runningAsRoot, "loading BPF programs needs root; CI runs as root"))
struct OverlayTrustTests {
    /// Node 2 of the receiver's own cluster, and a pod of it.
    static let peerNode = "172.30.1.2"
    static let peerPod = "10.1.2.7"
    static let peerPodIdentity: UInt32 = (1 << 16) | 400
    /// Node 3 of the same cluster, and a pod of it.
    static let otherPeerNode = "172.30.1.3"
    static let otherPeerPod = "10.1.3.9"
    /// Node 1 of cluster 2, and a pod of it.
    static let remoteNode = "172.30.2.1"
    static let remotePod = "10.2.1.7"
    static let remotePodIdentity: UInt32 = (2 << 16) | 500
    /// A pod of cluster 3, and an address cluster 3 claims on cluster 2's node.
    static let thirdClusterPod = "10.3.1.7"
    static let thirdClusterClaimOnRemoteNode = "10.3.9.9"
    /// Another pod on the receiving node.
    static let localPeerPod = "10.1.1.9"
    /// Inside a CIDR rule's prefix, which has a (node-local) identity but no owner.
    static let cidrRuleAddress = "192.0.2.10"

    /// The receiving node with the ipcache an agent of node 1, cluster 1, writes for this mesh.
    private func meshFixture() throws -> DatapathFixture {
        let fixture = try DatapathFixture()
        let remote = UInt8(MER_IPCACHE_F_REMOTE_CLUSTER), local = UInt8(MER_IPCACHE_F_LOCAL_NODE)
        let host = UInt32(MER_ID_HOST), world = UInt32(MER_ID_WORLD), remoteNodeID = UInt32(MER_ID_REMOTE_NODE)
        try fixture.addEndpoint(ip: Self.localPeerPod, identity: (1 << 16) | 301, ifindex: DatapathFixture.loopbackIndex)

        // This node: its address and the gateway, its pod CIDR and pods.
        try fixture.addRoute(DatapathFixture.nodeIP + "/32", identity: host, tunnel: nil, flags: local, clusterID: 1)
        try fixture.addRoute(DatapathFixture.gatewayIP + "/32", identity: host, tunnel: nil, flags: local, clusterID: 1)
        try fixture.addRoute("10.1.1.0/24", identity: world, tunnel: DatapathFixture.nodeIP, clusterID: 1)
        try fixture.addRoute(DatapathFixture.clientIP + "/32", identity: DatapathFixture.clientIdentity, tunnel: DatapathFixture.nodeIP, clusterID: 1)
        try fixture.addRoute(Self.localPeerPod + "/32", identity: (1 << 16) | 301, tunnel: DatapathFixture.nodeIP, clusterID: 1)
        // The other nodes of cluster 1.
        for (node, cidr, pod, identity) in [(Self.peerNode, "10.1.2.0/24", Self.peerPod, Self.peerPodIdentity),
                                            (Self.otherPeerNode, "10.1.3.0/24", Self.otherPeerPod, (1 << 16) | 401)] {
            try fixture.addRoute(node + "/32", identity: remoteNodeID, tunnel: nil, clusterID: 1)
            try fixture.addRoute(cidr, identity: world, tunnel: node, clusterID: 1)
            try fixture.addRoute(pod + "/32", identity: identity, tunnel: node, clusterID: 1)
        }
        // Cluster 2 and cluster 3, imported.
        for (node, cidr, pod, identity, cluster) in [(Self.remoteNode, "10.2.1.0/24", Self.remotePod, Self.remotePodIdentity, UInt16(2)),
                                                     ("172.30.3.1", "10.3.1.0/24", Self.thirdClusterPod, (3 << 16) | 600, UInt16(3))] {
            try fixture.addRoute(node + "/32", identity: remoteNodeID, tunnel: nil, flags: remote, clusterID: cluster)
            try fixture.addRoute(cidr, identity: world, tunnel: node, flags: remote, clusterID: cluster)
            try fixture.addRoute(pod + "/32", identity: identity, tunnel: node, flags: remote, clusterID: cluster)
        }
        // A record of cluster 3 placing one of its pods on cluster 2's node.
        try fixture.addRoute(Self.thirdClusterClaimOnRemoteNode + "/32", identity: (3 << 16) | 601, tunnel: Self.remoteNode,
                             flags: remote, clusterID: 3)
        // A CIDR rule's prefix (NodePolicy: no tunnel, the local cluster).
        try fixture.addRoute("192.0.2.0/24", identity: 16_777_216, tunnel: nil, clusterID: 1)
        _ = try fixture.events()
        return fixture
    }

    private func packet(from source: String, sport: UInt16 = 40000) -> [UInt8] {
        Packets.tcp(src: source, dst: DatapathFixture.clientIP, sport: sport, dport: 8080, flags: .syn)
    }

    private func dropEvents(_ fixture: DatapathFixture) throws -> [mer_event] {
        try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }
    }

    // MARK: Accepted

    /// A VXLAN delivery: the sending node, the VNI and the inner source.
    struct Delivery: CustomTestStringConvertible, Sendable {
        let name: String
        let sender: String
        let vni: UInt32
        let source: String
        var testDescription: String { name }
    }

    static let legitimate = [
        Delivery(name: "same cluster, another node's pod", sender: peerNode, vni: peerPodIdentity, source: peerPod),
        Delivery(name: "same cluster, a pod whose /32 has not arrived", sender: peerNode, vni: (1 << 16) | 402, source: "10.1.2.99"),
        Delivery(name: "another cluster's pod", sender: remoteNode, vni: remotePodIdentity, source: remotePod),
        Delivery(name: "another cluster's pod whose /32 has not arrived", sender: remoteNode, vni: (2 << 16) | 501, source: "10.2.1.99"),
    ]

    @Test("pods of the receiver's cluster on other nodes, and pods of other clusters, reach a local pod, with or without their own ipcache entry",
          arguments: legitimate)
    func legitimateDeliveries(_ delivery: Delivery) throws {
        let fixture = try meshFixture()
        let (verdict, frame) = try fixture.fromOverlay(packet(from: delivery.source), vni: delivery.vni, sender: delivery.sender)
        #expect(verdict == Verdict.redirect)
        #expect(frame.ethDst == Packets.podMAC)
        let events = try fixture.events()
        #expect(events.filter { $0.type == UInt8(MER_EVENT_DROP) }.isEmpty)
        let traces = events.filter { $0.type == UInt8(MER_EVENT_TRACE) && $0.subtype == UInt8(MER_TRACE_FROM_OVERLAY) }
        #expect(traces.map(\.src_identity) == [delivery.vni])
        #expect(fixture.datapath.conntrack.entries().count == 1)
    }

    // MARK: The identity in the VNI

    /// A node of cluster `cluster` (`0`: a standalone cluster, whose identities start at 256)
    /// with its pod CIDR, and the identity of one of its pods.
    private func peerFixture(cluster: UInt16) throws -> (DatapathFixture, podIdentity: UInt32) {
        let fixture = try DatapathFixture()
        try fixture.addRoute(Self.peerNode + "/32", identity: UInt32(MER_ID_REMOTE_NODE), tunnel: nil, clusterID: cluster)
        try fixture.addRoute("10.1.2.0/24", identity: UInt32(MER_ID_WORLD), tunnel: Self.peerNode, clusterID: cluster)
        _ = try fixture.events()
        return (fixture, (UInt32(cluster) << 16) | 400)
    }

    @Test("every reserved identity (1...255) is refused from a known node with a source it owns, in a mesh and in a standalone cluster (ID 0, where a reserved identity's cluster bits match); VNI 0 is no identity",
          arguments: [UInt16(1), 0])
    func reservedIdentities(cluster: UInt16) throws {
        let (fixture, podIdentity) = try peerFixture(cluster: cluster)
        #expect(try fixture.fromOverlay(packet(from: Self.peerPod, sport: 39999), vni: podIdentity, sender: Self.peerNode).verdict == Verdict.redirect)
        _ = try fixture.events()
        for identity in UInt32(1)...255 {
            let (verdict, _) = try fixture.fromOverlay(packet(from: Self.peerPod, sport: UInt16(40000 + identity)), vni: identity, sender: Self.peerNode)
            #expect(verdict == Verdict.shot, "VNI \(identity)")
        }
        let drops = try dropEvents(fixture)
        #expect(drops.map(\.subtype) == Array(repeating: UInt8(MER_DROP_RESERVED_IDENTITY_FROM_NODE), count: 255))
        #expect(drops.map(\.src_identity) == Array(UInt32(1)...255))
        #expect(fixture.datapath.counter(UInt32(MER_DROP_RESERVED_IDENTITY_FROM_NODE)).packets == 255)

        #expect(try fixture.fromOverlay(packet(from: Self.peerPod), vni: 0, sender: Self.peerNode).verdict == Verdict.shot)
        #expect(try dropEvents(fixture).map(\.subtype) == [UInt8(MER_DROP_INVALID_IDENTITY)])
        #expect(fixture.datapath.conntrack.entries().count == 1, "only the pod's connection")
    }

    @Test("a node may not send another cluster's identity, whichever cluster it is in")
    func identityOfAnotherCluster() throws {
        let fixture = try meshFixture()
        let cases: [(sender: String, vni: UInt32, source: String)] = [
            (Self.peerNode, Self.remotePodIdentity, Self.peerPod),
            (Self.remoteNode, Self.peerPodIdentity, Self.remotePod),
            (Self.remoteNode, (3 << 16) | 600, Self.remotePod),
        ]
        for (index, forged) in cases.enumerated() {
            let (verdict, _) = try fixture.fromOverlay(packet(from: forged.source, sport: 41000 + UInt16(index)), vni: forged.vni, sender: forged.sender)
            #expect(verdict == Verdict.shot, "VNI \(forged.vni) from \(forged.sender)")
        }
        #expect(try dropEvents(fixture).map(\.subtype) == Array(repeating: UInt8(MER_DROP_INVALID_IDENTITY), count: cases.count))
        #expect(fixture.datapath.counter(UInt32(MER_DROP_INVALID_IDENTITY)).packets == UInt64(cases.count))
        #expect(fixture.datapath.conntrack.entries().isEmpty)
    }

    @Test("only a known node may send: not an address without an entry, not a pod")
    func unknownSenders() throws {
        let fixture = try meshFixture()
        for (index, sender) in ["172.30.9.9", Self.remotePod].enumerated() {
            let (verdict, _) = try fixture.fromOverlay(packet(from: Self.remotePod, sport: 42000 + UInt16(index)), vni: Self.remotePodIdentity, sender: sender)
            #expect(verdict == Verdict.shot, "sender \(sender)")
        }
        #expect(try dropEvents(fixture).map(\.subtype) == [UInt8(MER_DROP_UNKNOWN_SENDER), UInt8(MER_DROP_UNKNOWN_SENDER)])
        #expect(fixture.datapath.conntrack.entries().isEmpty)
    }

    // MARK: The inner source

    static let foreignSources = [
        Delivery(name: "a pod of the receiving node, from a node of its cluster", sender: peerNode, vni: peerPodIdentity, source: localPeerPod),
        Delivery(name: "a pod of the receiving node, from another cluster", sender: remoteNode, vni: remotePodIdentity, source: localPeerPod),
        Delivery(name: "a pod of another node of the sender's cluster", sender: peerNode, vni: peerPodIdentity, source: otherPeerPod),
        Delivery(name: "an address in another node's pod CIDR", sender: peerNode, vni: peerPodIdentity, source: "10.1.3.77"),
        Delivery(name: "a pod of another cluster", sender: peerNode, vni: peerPodIdentity, source: remotePod),
        Delivery(name: "a pod of the receiver's cluster, from another cluster", sender: remoteNode, vni: remotePodIdentity, source: peerPod),
        Delivery(name: "a pod of a third cluster", sender: remoteNode, vni: remotePodIdentity, source: thirdClusterPod),
        Delivery(name: "a third cluster's address placed on the sender", sender: remoteNode, vni: remotePodIdentity, source: thirdClusterClaimOnRemoteNode),
        Delivery(name: "0.0.0.0", sender: peerNode, vni: peerPodIdentity, source: "0.0.0.0"),
        Delivery(name: "an address without an ipcache entry", sender: peerNode, vni: peerPodIdentity, source: "198.51.100.7"),
        Delivery(name: "the sending node's own address", sender: peerNode, vni: peerPodIdentity, source: peerNode),
        Delivery(name: "the receiving node's address", sender: peerNode, vni: peerPodIdentity, source: DatapathFixture.nodeIP),
        Delivery(name: "the receiving node's gateway", sender: peerNode, vni: peerPodIdentity, source: DatapathFixture.gatewayIP),
        Delivery(name: "a CIDR rule's prefix", sender: peerNode, vni: peerPodIdentity, source: cidrRuleAddress),
    ]

    @Test("the inner source must be an address the ipcache places on the sending node, in its cluster", arguments: foreignSources)
    func sourceNotOwnedBySender(_ forged: Delivery) throws {
        let fixture = try meshFixture()
        let (verdict, _) = try fixture.fromOverlay(packet(from: forged.source), vni: forged.vni, sender: forged.sender)
        #expect(verdict == Verdict.shot)
        let drops = try dropEvents(fixture)
        #expect(drops.map(\.subtype) == [UInt8(MER_DROP_SOURCE_NOT_OWNED_BY_SENDER)])
        #expect(drops.first?.saddr == DatapathFixture.addr(forged.source))
        #expect(drops.first?.src_identity == forged.vni)
        #expect(fixture.datapath.counter(UInt32(MER_DROP_SOURCE_NOT_OWNED_BY_SENDER)).packets == 1)
        #expect(fixture.datapath.conntrack.entries().isEmpty)
    }

    // MARK: Strict encryption

    @Test("in strict mode VXLAN from a node reached through WireGuard is taken only through the tunnel; in the clear it is dropped as UNENCRYPTED_INGRESS, and nodes without a tunnel are not affected")
    func strictModeRefusesCleartextFromTunnelPeers() throws {
        let fixture = try meshFixture()
        try fixture.datapath.encryptedNodes.update(mer_encrypt_key(ip4: DatapathFixture.addr(Self.peerNode)),
                                                   mer_encrypt_value(flags: UInt32(MER_ENCRYPT_F_WIREGUARD)))
        let decrypted = UInt32(MER_MARK_MAGIC_DECRYPTED)
        func deliver(_ sender: String, _ vni: UInt32, _ source: String, sport: UInt16, mark: UInt32) throws -> UInt32 {
            try fixture.fromOverlay(packet(from: source, sport: sport), vni: vni, sender: sender, mark: mark).verdict
        }
        // Without strict mode the clear is taken from every node, as before.
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43000, mark: 0) == Verdict.redirect)
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43001, mark: decrypted) == Verdict.redirect)

        var config = try #require(fixture.datapath.config.lookup(0))
        config.flags |= UInt16(MER_CONFIG_F_ENCRYPTION_STRICT)
        try fixture.datapath.config.update(0, config)
        _ = try fixture.events()
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43002, mark: decrypted) == Verdict.redirect)
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43003, mark: 0) == Verdict.shot)
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43000, mark: 0) == Verdict.shot,
                "an established connection's packets in the clear too")
        // Another magic in the mark (our pod-to-pod identity mark) is not the tunnel's.
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43004,
                            mark: (Self.peerPodIdentity << UInt32(MER_MARK_IDENTITY_SHIFT)) | UInt32(MER_MARK_MAGIC_IDENTITY)) == Verdict.shot)
        // A node the agent has no tunnel to (no key, or its peer not configured yet) still gets in.
        #expect(try deliver(Self.remoteNode, Self.remotePodIdentity, Self.remotePod, sport: 43005, mark: 0) == Verdict.redirect)

        let drops = try dropEvents(fixture)
        #expect(drops.map(\.subtype) == Array(repeating: UInt8(MER_DROP_UNENCRYPTED_INGRESS), count: 3))
        #expect(drops.first?.saddr == DatapathFixture.addr(Self.peerPod))
        #expect(drops.first?.src_identity == Self.peerPodIdentity)
        #expect(drops.first?.direction == UInt8(MER_EVENT_DIR_INGRESS))
        #expect(fixture.datapath.counter(UInt32(MER_DROP_UNENCRYPTED_INGRESS), direction: UInt32(MER_EVENT_DIR_INGRESS)).packets == 3)
        #expect(DropReason.name(UInt32(MER_DROP_UNENCRYPTED_INGRESS)) == "UNENCRYPTED_INGRESS")

        // The node loses its mark (its peer is going): the clear is taken from it again.
        try fixture.datapath.encryptedNodes.delete(mer_encrypt_key(ip4: DatapathFixture.addr(Self.peerNode)))
        #expect(try deliver(Self.peerNode, Self.peerPodIdentity, Self.peerPod, sport: 43006, mark: 0) == Verdict.redirect)
    }

    @Test("from_wireguard passes what the WireGuard device delivers")
    func fromWireGuardPasses() throws {
        let fixture = try DatapathFixture()
        let result = try fixture.datapath.fromOverlay.testRun(program: BPFNodeDatapath.fromWireGuardProgram,
                                                              packet: packet(from: Self.peerPod))
        #expect(result.verdict == Verdict.ok)
    }
}
