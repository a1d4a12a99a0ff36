import MeridianCore
import Testing

/// How resolved policy becomes what the datapath holds: CIDR prefixes as local identities, CIDR
/// entries as identity entries, and deny-only directions programmed as enforced with an allow-all.
@Suite("Datapath policy program")
struct DatapathPolicyTests {
    static func cidr(_ text: String) -> IPCIDR { IPCIDR(text)! }

    @Test("CIDR identities are numbered from 1 << 24 and keep their numbers while still wanted")
    func stableNumbers() {
        var table = CIDRIdentityTable()
        table.update(wanted: [Self.cidr("172.30.0.0/16"), Self.cidr("172.30.1.254/32")])
        let wide = table.identities[Self.cidr("172.30.0.0/16")]
        let narrow = table.identities[Self.cidr("172.30.1.254/32")]
        #expect(Set([wide, narrow].compactMap { $0 }) == [CIDRIdentityTable.firstIdentity, CIDRIdentityTable.firstIdentity + 1])
        table.update(wanted: [Self.cidr("172.30.1.254/32"), Self.cidr("192.0.2.0/24")])
        #expect(table.identities[Self.cidr("172.30.1.254/32")] == narrow, "a prefix still in use keeps its number")
        #expect(table.identities[Self.cidr("172.30.0.0/16")] == nil)
        #expect(table.identities[Self.cidr("192.0.2.0/24")] == wide, "a freed number is reused")
    }

    @Test("a CIDR peer selects its prefix and the allocated prefixes inside it, minus its holes; /0 also selects world")
    func selection() {
        var table = CIDRIdentityTable()
        table.update(wanted: [Self.cidr("172.30.0.0/16"), Self.cidr("172.30.1.0/24"), Self.cidr("172.30.1.254/32"), Self.cidr("10.0.0.0/8")])
        let id = { table.identities[Self.cidr($0)]! }
        let peer = CIDRPeer(cidr: Self.cidr("172.30.0.0/16"), except: [Self.cidr("172.30.1.254/32")])
        #expect(table.identities(selectedBy: peer) == [id("172.30.0.0/16"), id("172.30.1.0/24")].sorted())
        let everything = CIDRPeer(cidr: Self.cidr("0.0.0.0/0"), except: [Self.cidr("10.0.0.0/8")])
        let selected = table.identities(selectedBy: everything)
        #expect(selected.contains(ReservedIdentity.world.rawValue))
        #expect(!selected.contains(id("10.0.0.0/8")))
        #expect(selected.contains(id("172.30.1.254/32")))
    }

    @Test("a direction with only denies is enforced with an allow for every peer; no entries means not enforced")
    func denyOnly() {
        let deny = PolicyMapEntry(remoteIdentity: 70000, protocol: 6, port: 8080, portPrefixLength: 16, deny: true)
        let program = DirectionPolicy(enforced: false, entries: [deny]).datapathProgram(cidrIdentities: CIDRIdentityTable(), ipBlocks: IPBlockTable())
        #expect(program.enforced)
        #expect(Set(program.entries) == [deny, PolicyMapEntry(remoteIdentity: 0, protocol: 0)])
        let open = DirectionPolicy(enforced: false).datapathProgram(cidrIdentities: CIDRIdentityTable(), ipBlocks: IPBlockTable())
        #expect(!open.enforced && open.entries.isEmpty)
        let closed = DirectionPolicy(enforced: true).datapathProgram(cidrIdentities: CIDRIdentityTable(), ipBlocks: IPBlockTable())
        #expect(closed.enforced && closed.entries.isEmpty, "default deny without allows holds no entries and drops everything")
    }

    @Test("CIDR entries become entries of the CIDR identities, and a CIDR deny still beats an identity allow")
    func cidrEntries() {
        var table = CIDRIdentityTable()
        table.update(wanted: [Self.cidr("172.30.0.0/16"), Self.cidr("172.30.1.254/32")])
        let wide = table.identities[Self.cidr("172.30.0.0/16")]!
        let narrow = table.identities[Self.cidr("172.30.1.254/32")]!
        let policy = DirectionPolicy(
            enforced: true,
            entries: [PolicyMapEntry(remoteIdentity: 0, protocol: 6, port: 8080, portPrefixLength: 16)],
            cidrEntries: [
                CIDRPolicyEntry(peer: CIDRPeer(cidr: Self.cidr("172.30.0.0/16")), protocol: 17),
                CIDRPolicyEntry(peer: CIDRPeer(cidr: Self.cidr("172.30.1.254/32")), protocol: 6, port: 8080, portPrefixLength: 16, deny: true),
            ])
        let program = policy.datapathProgram(cidrIdentities: table, ipBlocks: IPBlockTable())
        #expect(program.enforced)
        #expect(program.entries.contains(PolicyMapEntry(remoteIdentity: wide, protocol: 17)))
        #expect(program.entries.contains(PolicyMapEntry(remoteIdentity: narrow, protocol: 17)))
        #expect(program.entries.contains(PolicyMapEntry(remoteIdentity: narrow, protocol: 6, port: 8080, portPrefixLength: 16, deny: true)))
        // The datapath looks up the exact identity and the wildcard; the narrow prefix's deny wins.
        let decided = DirectionPolicy(enforced: true, entries: program.entries)
        #expect(!decided.allows(remoteIdentity: narrow, protocol: 6, port: 8080))
        #expect(decided.allows(remoteIdentity: wide, protocol: 6, port: 8080))
        #expect(decided.allows(remoteIdentity: narrow, protocol: 17, port: 53))
    }
}
