/// The prefixes CIDR rules name, each given a local-scope identity so the datapath can match
/// CIDR peers with the same identity lookup it uses for endpoints, as Cilium does: the node puts
/// every prefix into its ipcache with its identity, and an address outside the cluster takes the
/// identity of the longest prefix that contains it (`world` when none does).
///
/// Numbers are kept stable across updates while a prefix stays in use, so a policy change that
/// keeps a prefix does not renumber the ipcache under live traffic.
public struct CIDRIdentityTable: Sendable, Hashable {
    /// Local-scope identities start here (Cilium's `1 << 24`).
    public static let firstIdentity: UInt32 = 1 << 24

    public private(set) var identities: [IPCIDR: UInt32] = [:]

    public init() {}

    /// Every IPv4 prefix and hole named by a CIDR peer of `rules`.
    public static func prefixes(in rules: [PolicyRule]) -> Set<IPCIDR> {
        var prefixes: Set<IPCIDR> = []
        for rule in rules {
            for case let .cidr(peer) in rule.peers {
                for prefix in [peer.cidr] + peer.except where prefix.family == .ipv4 {
                    prefixes.insert(prefix)
                }
            }
        }
        return prefixes
    }

    /// Keeps the numbers of prefixes still wanted, frees the others, numbers the new ones.
    public mutating func update(wanted: Set<IPCIDR>) {
        identities = identities.filter { wanted.contains($0.key) }
        var used = Set(identities.values)
        var next = Self.firstIdentity
        for prefix in wanted.sorted() where identities[prefix] == nil {
            while used.contains(next) { next += 1 }
            identities[prefix] = next
            used.insert(next)
        }
    }

    /// The identities a CIDR peer stands for: those of its prefix and of every allocated prefix
    /// inside it that no hole covers, and `world` when the peer is the whole address space
    /// (addresses in no allocated prefix have that identity).
    public func identities(selectedBy peer: CIDRPeer) -> [UInt32] {
        var selected = identities.compactMap { prefix, identity in
            peer.cidr.contains(prefix) && !peer.except.contains { $0.contains(prefix) } ? identity : nil
        }
        if peer.cidr.prefixLength == 0 && peer.cidr.family == .ipv4 {
            selected.append(ReservedIdentity.world.rawValue)
        }
        return selected.sorted()
    }

    /// The labels a CIDR identity carries for selectors and entities: it is outside the cluster.
    public static let labels: LabelSet = (try? LabelSet([ReservedIdentity.world.label])) ?? LabelSet()
}

extension DirectionPolicy {
    /// What the datapath enforces for this direction: whether the map is consulted and the
    /// entries it holds. CIDR entries become entries for the CIDR identities they select. A
    /// direction that is not in default deny but has entries (a deny without an allow-all
    /// policy) is programmed as enforced with an allow for every peer, so its denies apply and
    /// everything else passes, the same answer as `allows`.
    public func datapathProgram(cidrIdentities: CIDRIdentityTable) -> (enforced: Bool, entries: [PolicyMapEntry]) {
        var combined = Set(entries)
        for entry in cidrEntries {
            for identity in cidrIdentities.identities(selectedBy: entry.peer) {
                combined.insert(PolicyMapEntry(remoteIdentity: identity, protocol: entry.protocol, port: entry.port,
                                               portPrefixLength: entry.portPrefixLength, deny: entry.deny))
            }
        }
        if combined.isEmpty { return (enforced, []) }
        if !enforced {
            combined.insert(PolicyMapEntry(remoteIdentity: 0, protocol: 0))
        }
        return (true, PolicyResolver.normalize(combined))
    }
}
