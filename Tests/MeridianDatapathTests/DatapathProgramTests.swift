import CMeridianBPF
import Testing
@testable import MeridianDatapath
import MeridianTestSupport

/// The BPF programs run by the kernel over crafted packets (BPF_PROG_TEST_RUN), with maps
/// filled the way the agent fills them.
@Suite("BPF programs", .serialized, .enabled(if: runningAsRoot, "loading BPF programs needs root; CI runs as root"))
struct DatapathProgramTests {
    static let vip = "10.101.0.10"
    static let backends: [(String, UInt16)] = [("10.1.2.11", 8080), ("10.1.3.12", 8080), ("10.1.3.13", 8080)]

    private func fixtureWithService() throws -> DatapathFixture {
        let fixture = try DatapathFixture()
        try fixture.addService(vip: Self.vip, port: 80, revNAT: 7, backends: Self.backends)
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        try fixture.addRoute("10.1.3.0/24", identity: 2, tunnel: "172.30.1.3")
        return fixture
    }

    @Test("a SYN to a service is DNATed to a backend with valid checksums, and every backend is chosen")
    func serviceSelectionAndDNAT() throws {
        let fixture = try fixtureWithService()
        var chosen: Set<String> = []
        for sport in UInt16(40000)..<40040 {
            let packet = Packets.tcp(src: DatapathFixture.clientIP, dst: Self.vip, sport: sport, dport: 80, flags: .syn)
            let (verdict, frame) = try fixture.fromPod(packet)
            #expect(verdict == Verdict.redirect)
            #expect(frame.destinationPort == 8080)
            #expect(Self.backends.map(\.0).contains(frame.destination))
            #expect(frame.source == DatapathFixture.clientIP)
            #expect(frame.sourcePort == sport)
            #expect(frame.ipChecksumValid)
            #expect(frame.l4ChecksumValid)
            #expect(frame.ttl == 63)
            chosen.insert(frame.destination)
        }
        #expect(chosen == Set(Self.backends.map(\.0)))
    }

    @Test("packets of one connection keep their backend")
    func stickyBackend() throws {
        let fixture = try fixtureWithService()
        let syn = Packets.tcp(src: DatapathFixture.clientIP, dst: Self.vip, sport: 41000, dport: 80, flags: .syn)
        let first = try fixture.fromPod(syn).frame.destination
        for _ in 0..<20 {
            let ack = Packets.tcp(src: DatapathFixture.clientIP, dst: Self.vip, sport: 41000, dport: 80, flags: .ack, payload: Array("GET /".utf8))
            let frame = try fixture.fromPod(ack).frame
            #expect(frame.destination == first)
            #expect(frame.l4ChecksumValid)
        }
    }

    @Test("UDP to a service is DNATed; a zero UDP checksum stays zero")
    func udpService() throws {
        let fixture = try DatapathFixture()
        try fixture.addService(vip: "10.101.0.53", port: 53, proto: 17, revNAT: 9, backends: [("10.1.2.20", 5353)])
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        let checked = try fixture.fromPod(Packets.udp(src: DatapathFixture.clientIP, dst: "10.101.0.53", sport: 5000, dport: 53, payload: Array("query".utf8))).frame
        #expect(checked.destination == "10.1.2.20" && checked.destinationPort == 5353)
        #expect(checked.l4ChecksumValid && checked.ipChecksumValid)
        #expect(checked.bytes[40] != 0 || checked.bytes[41] != 0)
        let unchecked = try fixture.fromPod(Packets.udp(src: DatapathFixture.clientIP, dst: "10.101.0.53", sport: 5001, dport: 53, payload: Array("query".utf8), zeroChecksum: true)).frame
        #expect(unchecked.destination == "10.1.2.20")
        #expect(unchecked.bytes[40] == 0 && unchecked.bytes[41] == 0)
        #expect(unchecked.ipChecksumValid)
    }

    @Test("a reply from the backend gets the service address back as its source")
    func reverseNAT() throws {
        let fixture = try fixtureWithService()
        let syn = Packets.tcp(src: DatapathFixture.clientIP, dst: Self.vip, sport: 42000, dport: 80, flags: .syn)
        let backend = try fixture.fromPod(syn).frame.destination
        let synAck = Packets.tcp(src: backend, dst: DatapathFixture.clientIP, sport: 8080, dport: 42000, flags: [.syn, .ack])
        let (verdict, reply) = try fixture.toPod(synAck)
        #expect(verdict == Verdict.ok)
        #expect(reply.source == Self.vip)
        #expect(reply.sourcePort == 80)
        #expect(reply.destination == DatapathFixture.clientIP)
        #expect(reply.destinationPort == 42000)
        #expect(reply.ipChecksumValid)
        #expect(reply.l4ChecksumValid)

        // A packet from the same backend on a connection nobody opened is not translated.
        let stray = Packets.tcp(src: backend, dst: DatapathFixture.clientIP, sport: 8080, dport: 42999, flags: .syn)
        #expect(try fixture.toPod(stray).frame.source == backend)
    }

    @Test("conntrack moves from SYN to established to closing with the documented lifetimes")
    func conntrackStates() throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        let client = DatapathFixture.clientIP, server = "10.1.2.50"
        func entry() -> mer_ct_entry? {
            fixture.datapath.conntrack.entries().first { $0.key.dir == UInt8(MER_CT_DIR_OUT) && $0.key.daddr == DatapathFixture.addr(server) }?.value
        }
        func remaining() -> Int { Int(entry()!.lifetime) - Int(DatapathFixture.monotonicSeconds()) }

        _ = try fixture.fromPod(Packets.tcp(src: client, dst: server, sport: 43000, dport: 9000, flags: .syn))
        #expect((55...60).contains(remaining()), "SYN sent: \(remaining()) s left")
        #expect(entry()!.tx_flags_seen == Packets.TCPFlags.syn.rawValue)

        _ = try fixture.toPod(Packets.tcp(src: server, dst: client, sport: 9000, dport: 43000, flags: [.syn, .ack]))
        #expect(entry()!.rx_flags_seen == Packets.TCPFlags([.syn, .ack]).rawValue)
        _ = try fixture.fromPod(Packets.tcp(src: client, dst: server, sport: 43000, dport: 9000, flags: .ack))
        #expect((7990...8000).contains(remaining()), "established: \(remaining()) s left")

        _ = try fixture.fromPod(Packets.tcp(src: client, dst: server, sport: 43000, dport: 9000, flags: [.fin, .ack]))
        #expect(remaining() > 100, "one side closing keeps the established lifetime")
        _ = try fixture.toPod(Packets.tcp(src: server, dst: client, sport: 9000, dport: 43000, flags: [.fin, .ack]))
        #expect((5...10).contains(remaining()), "both sides closing: \(remaining()) s left")
        #expect(entry()!.packets == 3 + 2)

        // The inbound side of a connection the pod accepts gets its own entry.
        _ = try fixture.toPod(Packets.tcp(src: server, dst: client, sport: 9100, dport: 8080, flags: .syn))
        let inbound = fixture.datapath.conntrack.entries().filter { $0.key.dir == UInt8(MER_CT_DIR_IN) }
        #expect(inbound.count == 1)
        #expect(inbound.first?.value.src_identity == 2)
    }

    @Test("the ipcache answers with the longest prefix: pod /32 over node /24 over cluster /16")
    func ipcacheLongestPrefix() throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.2.0.0/16", identity: 2, tunnel: "172.30.2.1")
        try fixture.addRoute("10.2.1.0/24", identity: 2, tunnel: "172.30.2.2")
        try fixture.addRoute("10.2.1.7/32", identity: (2 << 16) | 500, tunnel: "172.30.2.2", flags: UInt8(MER_IPCACHE_F_REMOTE_CLUSTER))
        _ = try fixture.events()
        let cases: [(String, String, UInt32)] = [
            ("10.2.1.7", "172.30.2.2", (2 << 16) | 500),
            ("10.2.1.8", "172.30.2.2", 2),
            ("10.2.9.9", "172.30.2.1", 2),
        ]
        for (index, (destination, tunnel, identity)) in cases.enumerated() {
            let (verdict, _) = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: destination, sport: 44000 + UInt16(index), dport: 80, flags: .syn))
            #expect(verdict == Verdict.redirect)
            let overlay = try fixture.events().filter { $0.type == UInt8(MER_EVENT_TRACE) && $0.subtype == UInt8(MER_TRACE_TO_OVERLAY) }
            #expect(overlay.count == 1)
            #expect(overlay.first?.tunnel_endpoint == DatapathFixture.addr(tunnel), "\(destination)")
            #expect(overlay.first?.dst_identity == identity, "\(destination)")
            // The VNI carries the sender's identity.
            #expect(overlay.first?.src_identity == DatapathFixture.clientIdentity)
        }
        // Outside every prefix: the node's stack decides (the lab has no route out).
        let (verdict, _) = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: "192.0.2.1", sport: 44100, dport: 80, flags: .syn))
        #expect(verdict == Verdict.ok)
    }

    @Test("a local destination is delivered to its veth with rewritten MACs and a decremented TTL")
    func localDelivery() throws {
        let fixture = try DatapathFixture()
        let peerMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x09]
        try fixture.addEndpoint(ip: "10.1.1.9", identity: (1 << 16) | 301, ifindex: 1, mac: peerMAC)
        let (verdict, frame) = try fixture.fromPod(Packets.udp(src: DatapathFixture.clientIP, dst: "10.1.1.9", sport: 7000, dport: 7001, payload: [1, 2, 3]))
        #expect(verdict == Verdict.redirect)
        #expect(frame.ethDst == peerMAC)
        #expect(frame.ethSrc == Packets.gatewayMAC)
        #expect(frame.ttl == 63)
        #expect(frame.ipChecksumValid && frame.l4ChecksumValid)
    }

    @Test("the ARP responder answers for the gateway with the host-side MAC, but not for the pod's own address")
    func arpResponder() throws {
        let fixture = try DatapathFixture()
        let (verdict, reply) = try fixture.fromPod(Packets.arpRequest(senderIP: DatapathFixture.clientIP, targetIP: DatapathFixture.gatewayIP))
        #expect(verdict == Verdict.redirect)
        let bytes = reply.bytes
        #expect(Array(bytes[0..<6]) == Packets.podMAC)
        #expect(Array(bytes[6..<12]) == Packets.gatewayMAC)
        #expect(Array(bytes[20..<22]) == [0, 2]) // reply
        #expect(Array(bytes[22..<28]) == Packets.gatewayMAC)
        #expect(Array(bytes[28..<32]) == Packets.ip(DatapathFixture.gatewayIP))
        #expect(Array(bytes[32..<38]) == Packets.podMAC)
        #expect(Array(bytes[38..<42]) == Packets.ip(DatapathFixture.clientIP))

        let own = try fixture.fromPod(Packets.arpRequest(senderIP: DatapathFixture.clientIP, targetIP: DatapathFixture.clientIP))
        #expect(own.verdict == Verdict.ok)
    }

    @Test("a service without backends refuses at once with an ICMP port unreachable from the service address")
    func noBackendsRefusal() throws {
        let fixture = try DatapathFixture()
        try fixture.addService(vip: "10.101.0.99", port: 80, revNAT: 11, backends: [])
        _ = try fixture.events()
        let syn = Packets.tcp(src: DatapathFixture.clientIP, dst: "10.101.0.99", sport: 45000, dport: 80, flags: .syn)
        let (verdict, frame) = try fixture.fromPod(syn)
        #expect(verdict == Verdict.redirect)
        #expect(frame.bytes.count == 70)
        #expect(frame.proto == 1)
        #expect(frame.source == "10.101.0.99")
        #expect(frame.destination == DatapathFixture.clientIP)
        #expect(frame.ethDst == Packets.podMAC)
        #expect(frame.ipChecksumValid)
        let icmp = Array(frame.bytes[34...])
        #expect(icmp[0] == 3 && icmp[1] == 3)
        #expect(Packets.checksum(icmp) == 0)
        #expect(Array(icmp[8..<36]) == Array(syn[14..<42]), "the offending header and 8 bytes follow")
        let drops = try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }
        #expect(drops.map(\.subtype) == [UInt8(MER_DROP_NO_SERVICE)])
        #expect(fixture.datapath.counter(UInt32(MER_DROP_NO_SERVICE)).packets == 1)
    }

    @Test("drops carry their reason codes and are counted", arguments: [
        DropCase.invalidSource, .ttlExceeded, .ipv6, .overlayWithoutTunnelKey,
    ])
    func dropReasons(_ drop: DropCase) throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        _ = try fixture.events()
        let verdict: UInt32
        switch drop {
        case .invalidSource:
            verdict = try fixture.fromPod(Packets.tcp(src: "10.1.1.66", dst: "10.1.2.5", sport: 1, dport: 2, flags: .syn)).verdict
        case .ttlExceeded:
            verdict = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: "10.1.2.5", sport: 1, dport: 2, flags: .syn, ttl: 1)).verdict
        case .ipv6:
            verdict = try fixture.fromPod(Packets.ethernet(0x86DD, payload: [UInt8](repeating: 0x60, count: 40))).verdict
        case .overlayWithoutTunnelKey:
            verdict = try fixture.fromOverlay(Packets.tcp(src: "10.1.2.5", dst: DatapathFixture.clientIP, sport: 1, dport: 2, flags: .syn)).verdict
        }
        #expect(verdict == Verdict.shot)
        let drops = try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }
        #expect(drops.map(\.subtype) == [drop.reason])
        #expect(fixture.datapath.counter(UInt32(drop.reason)).packets == 1)
    }

    @Test("in strict encryption mode pod traffic is encapsulated only to nodes marked as reached through WireGuard; the rest is dropped as UNENCRYPTED_TRAFFIC")
    func strictEncryption() throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        try fixture.addRoute("10.2.1.0/24", identity: 2, tunnel: "172.30.2.1", flags: UInt8(MER_IPCACHE_F_REMOTE_CLUSTER), clusterID: 2)
        try fixture.datapath.encryptedNodes.update(mer_encrypt_key(ip4: DatapathFixture.addr("172.30.1.2")),
                                                   mer_encrypt_value(flags: UInt32(MER_ENCRYPT_F_WIREGUARD)))
        func send(_ destination: String, sport: UInt16) throws -> UInt32 {
            try fixture.fromPod(Packets.udp(src: DatapathFixture.clientIP, dst: destination, sport: sport, dport: 9, payload: Array("marker".utf8))).verdict
        }
        // Strict mode off: both go out (the second one in the clear, as before strict mode).
        #expect(try send("10.1.2.5", sport: 5000) == Verdict.redirect)
        #expect(try send("10.2.1.5", sport: 5001) == Verdict.redirect)

        var config = try #require(fixture.datapath.config.lookup(0))
        config.flags |= UInt16(MER_CONFIG_F_ENCRYPTION_STRICT)
        try fixture.datapath.config.update(0, config)
        _ = try fixture.events()
        #expect(try send("10.1.2.5", sport: 5002) == Verdict.redirect)
        #expect(try send("10.2.1.5", sport: 5003) == Verdict.shot)
        #expect(try send("10.2.1.5", sport: 5001) == Verdict.shot, "an established flow is stopped too")
        let drops = try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }
        #expect(drops.map(\.subtype) == [UInt8(MER_DROP_UNENCRYPTED_TRAFFIC), UInt8(MER_DROP_UNENCRYPTED_TRAFFIC)])
        #expect(fixture.datapath.counter(UInt32(MER_DROP_UNENCRYPTED_TRAFFIC), direction: UInt32(MER_EVENT_DIR_EGRESS)).packets == 2)
        #expect(DropReason.name(UInt32(MER_DROP_UNENCRYPTED_TRAFFIC)) == "UNENCRYPTED_TRAFFIC")

        // The node loses its mark (its peer is going): its traffic stops too.
        try fixture.datapath.encryptedNodes.delete(mer_encrypt_key(ip4: DatapathFixture.addr("172.30.1.2")))
        #expect(try send("10.1.2.5", sport: 5002) == Verdict.shot)
    }

    enum DropCase: CustomStringConvertible, CaseIterable, Sendable {
        case invalidSource, ttlExceeded, ipv6, overlayWithoutTunnelKey

        var reason: UInt8 {
            switch self {
            case .invalidSource: UInt8(MER_DROP_INVALID_SIP)
            case .ttlExceeded: UInt8(MER_DROP_TTL_EXCEEDED)
            case .ipv6: UInt8(MER_DROP_UNKNOWN_L3)
            case .overlayWithoutTunnelKey: UInt8(MER_DROP_NO_TUNNEL_KEY)
            }
        }

        var description: String {
            switch self {
            case .invalidSource: "source address not the pod's"
            case .ttlExceeded: "TTL 1"
            case .ipv6: "IPv6 (not supported)"
            case .overlayWithoutTunnelKey: "overlay packet without tunnel metadata"
            }
        }
    }
}
