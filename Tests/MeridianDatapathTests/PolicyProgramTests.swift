import CMeridianBPF
import Testing
@testable import MeridianDatapath
import MeridianTestSupport

/// Policy enforcement in the programs: egress in from-pod against the destination's identity,
/// ingress in to-pod against the source's, on a connection's first packet, with the lookup
/// order exact identity then any identity, deny winning, and replies passing by conntrack.
@Suite("BPF policy", .serialized, .enabled(if: runningAsRoot, "loading BPF programs needs root; CI runs as root"))
struct PolicyProgramTests {
    static let server = "10.1.2.50"
    static let serverIdentity: UInt32 = (1 << 16) | 400
    static let other = "10.1.2.51"
    static let otherIdentity: UInt32 = (1 << 16) | 401

    private func fixture(egress: Bool = false, ingress: Bool = false) throws -> DatapathFixture {
        let fixture = try DatapathFixture()
        var flags = 0
        if egress { flags |= MER_ENDPOINT_F_EGRESS_ENFORCED }
        if ingress { flags |= MER_ENDPOINT_F_INGRESS_ENFORCED }
        try fixture.addEndpoint(ip: DatapathFixture.clientIP, identity: DatapathFixture.clientIdentity, ifindex: DatapathFixture.loopbackIndex, flags: flags)
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        try fixture.addRoute(Self.server + "/32", identity: Self.serverIdentity, tunnel: "172.30.1.2")
        try fixture.addRoute(Self.other + "/32", identity: Self.otherIdentity, tunnel: "172.30.1.2")
        _ = try fixture.events()
        return fixture
    }

    private func send(_ fixture: DatapathFixture, to destination: String, port: UInt16, sport: UInt16 = 40000) throws -> UInt32 {
        try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: destination, sport: sport, dport: port, flags: .syn)).verdict
    }

    private func drops(_ fixture: DatapathFixture) throws -> [UInt8] {
        try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }.map(\.subtype)
    }

    @Test("an endpoint no policy selects is not enforced")
    func notEnforced() throws {
        let fixture = try fixture()
        #expect(try send(fixture, to: Self.server, port: 80) == Verdict.redirect)
    }

    @Test("enforced egress with no entry is default deny, with the policy-denied reason, counted")
    func defaultDeny() throws {
        let fixture = try fixture(egress: true)
        #expect(try send(fixture, to: Self.server, port: 80) == Verdict.shot)
        #expect(try drops(fixture) == [UInt8(MER_DROP_POLICY)])
        #expect(fixture.datapath.counter(UInt32(MER_DROP_POLICY)).packets == 1)
    }

    @Test("exact identity and port: that port to that identity only")
    func exactPort() throws {
        let fixture = try fixture(egress: true)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.serverIdentity, proto: 6, port: 80)
        #expect(try send(fixture, to: Self.server, port: 80, sport: 40001) == Verdict.redirect)
        #expect(try send(fixture, to: Self.server, port: 81, sport: 40002) == Verdict.shot)
        #expect(try send(fixture, to: Self.other, port: 80, sport: 40003) == Verdict.shot)
    }

    @Test("SCTP ports are enforced as TCP and UDP ports are: an INIT to the allowed port passes, to another port or under a TCP rule it is dropped")
    func sctpPorts() throws {
        #expect(Packets.crc32c(Array("123456789".utf8)) == 0xE306_9283, "CRC32c check value")
        let fixture = try fixture(egress: true)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.serverIdentity, proto: 132, port: 5000)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.otherIdentity, proto: 6, port: 5000)
        func initTo(_ destination: String, _ port: UInt16, sport: UInt16) throws -> UInt32 {
            try fixture.fromPod(Packets.sctpInit(src: DatapathFixture.clientIP, dst: destination, sport: sport, dport: port)).verdict
        }
        #expect(try initTo(Self.server, 5000, sport: 44001) == Verdict.redirect)
        #expect(try initTo(Self.server, 5001, sport: 44002) == Verdict.shot)
        #expect(try initTo(Self.other, 5000, sport: 44003) == Verdict.shot, "a TCP rule on the port admits no SCTP")
        #expect(try drops(fixture) == [UInt8(MER_DROP_POLICY), UInt8(MER_DROP_POLICY)])
    }

    @Test("a port range as a prefix block admits exactly its ports")
    func portRange() throws {
        let fixture = try fixture(egress: true)
        // 8080-8083: the top 14 bits of 8080.
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.serverIdentity, proto: 6, port: 8080, portBits: 14)
        for (offset, port) in [UInt16(8079), 8080, 8083, 8084].enumerated() {
            let expected = (8080...8083).contains(port) ? Verdict.redirect : Verdict.shot
            #expect(try send(fixture, to: Self.server, port: port, sport: 41000 + UInt16(offset)) == expected, "port \(port)")
        }
    }

    @Test("any identity on a port, and any port for an identity, both allow")
    func wildcards() throws {
        let fixture = try fixture(egress: true)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: 0, proto: 6, port: 53)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.otherIdentity, proto: nil)
        #expect(try send(fixture, to: Self.server, port: 53, sport: 42001) == Verdict.redirect)
        #expect(try send(fixture, to: Self.server, port: 54, sport: 42002) == Verdict.shot)
        #expect(try send(fixture, to: Self.other, port: 9999, sport: 42003) == Verdict.redirect)
    }

    @Test("deny wins over allow, whichever of the two lookups holds it")
    func denyPrecedence() throws {
        let fixture = try fixture(egress: true)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: 0, proto: nil)                       // allow all
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.serverIdentity, proto: 6, port: 22, deny: true)
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: 0, proto: 6, port: 23, deny: true)
        #expect(try send(fixture, to: Self.server, port: 80, sport: 43001) == Verdict.redirect)
        #expect(try send(fixture, to: Self.server, port: 22, sport: 43002) == Verdict.shot)
        #expect(try send(fixture, to: Self.other, port: 22, sport: 43003) == Verdict.redirect)
        // The exact identity's allow-all does not override a deny for any identity.
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.otherIdentity, proto: nil)
        #expect(try send(fixture, to: Self.other, port: 23, sport: 43004) == Verdict.shot)
        #expect(try drops(fixture).allSatisfy { $0 == UInt8(MER_DROP_POLICY_DENY) })
    }

    @Test("ingress is checked against the source identity; replies of allowed connections pass")
    func ingressAndReplies() throws {
        let fixture = try fixture(egress: true, ingress: true)
        try fixture.addPolicy(direction: MER_POLICY_INGRESS, identity: Self.serverIdentity, proto: 6, port: 8080)
        let allowed = try fixture.toPod(Packets.tcp(src: Self.server, dst: DatapathFixture.clientIP, sport: 5000, dport: 8080, flags: .syn))
        #expect(allowed.verdict == Verdict.ok)
        let denied = try fixture.toPod(Packets.tcp(src: Self.other, dst: DatapathFixture.clientIP, sport: 5001, dport: 8080, flags: .syn))
        #expect(denied.verdict == Verdict.shot)
        // The pod's answer to the allowed connection leaves despite egress default deny.
        let reply = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: Self.server, sport: 8080, dport: 5000, flags: [.syn, .ack]))
        #expect(reply.verdict == Verdict.redirect)
        // And an established connection is not re-judged when a rule is added later.
        try fixture.addPolicy(direction: MER_POLICY_EGRESS, identity: Self.serverIdentity, proto: 6, port: 9000)
        #expect(try send(fixture, to: Self.server, port: 9000, sport: 44000) == Verdict.redirect)
        #expect(try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: Self.server, sport: 44000, dport: 9000, flags: .ack)).verdict == Verdict.redirect)
    }
}
