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

/// The prefixes NetworkPolicy `ipBlock` peers name, each numbered for the node's ipBlock map
/// (`mer_ipblock4`, an LPM map from address to number), so the datapath can match a peer by its
/// address whatever its identity: a pod's address resolves to the pod's identity in the
/// ipcache, and two pods of one identity may lie on either side of a block, so blocks cannot be
/// identities in the ipcache as Cilium's CIDR rules are.
///
/// A new connection's peer address is looked up in the map; the longest prefix holding it
/// gives a number, and the endpoint's policy map is consulted with that number as the identity.
/// An endpoint's entries for number `n` are those of its ipBlock peers that contain the prefix
/// of `n` and whose holes do not. Since the prefixes holding one address are nested and every
/// block and hole is in the table, an address is in a peer exactly when its longest prefix is.
///
/// Numbers are kept while a prefix stays in use and handed out from a high-water mark, never
/// reusing a freed number while the table lives: the map is written before the endpoints'
/// entries, so a reused number would briefly carry another prefix's entries.
public struct IPBlockTable: Sendable, Hashable {
    /// ipBlock numbers live in `[firstIdentity, limit)`, apart from cluster identities (< 1 << 24)
    /// and CIDR identities (from 1 << 24); `MER_IPBLOCK_FIRST_IDENTITY` in abi.h.
    public static let firstIdentity: UInt32 = 1 << 30
    public static let limit: UInt32 = 1 << 31

    public private(set) var numbers: [IPCIDR: UInt32] = [:]
    private var next: UInt32 = firstIdentity

    /// A table holding `existing` (what a restarted agent finds in the pinned map); numbers
    /// outside the range are dropped.
    public init(existing: [IPCIDR: UInt32] = [:]) {
        numbers = existing.filter { (Self.firstIdentity..<Self.limit).contains($0.value) }
        next = (numbers.values.max() ?? Self.firstIdentity - 1) + 1
    }

    /// Every IPv4 prefix and hole named by an ipBlock peer of `rules` (the datapath is IPv4).
    public static func prefixes(in rules: [PolicyRule]) -> Set<IPCIDR> {
        var prefixes: Set<IPCIDR> = []
        for rule in rules {
            for case let .ipBlock(peer) in rule.peers {
                for prefix in [peer.cidr] + peer.except where prefix.family == .ipv4 {
                    prefixes.insert(prefix)
                }
            }
        }
        return prefixes
    }

    /// Keeps the numbers of prefixes still wanted, forgets the others, numbers the new ones.
    public mutating func update(wanted: Set<IPCIDR>) {
        numbers = numbers.filter { wanted.contains($0.key) }
        var used = Set(numbers.values)
        for prefix in wanted.sorted() where numbers[prefix] == nil {
            var candidate = next
            while used.contains(candidate) || !(Self.firstIdentity..<Self.limit).contains(candidate) {
                candidate = candidate + 1 >= Self.limit ? Self.firstIdentity : candidate + 1
            }
            numbers[prefix] = candidate
            used.insert(candidate)
            next = candidate + 1
        }
    }

    /// The numbers an ipBlock peer stands for: those of the table's prefixes inside its block
    /// that none of its holes covers.
    public func identities(selectedBy peer: CIDRPeer) -> [UInt32] {
        numbers.compactMap { prefix, number in
            peer.cidr.contains(prefix) && !peer.except.contains { $0.contains(prefix) } ? number : nil
        }.sorted()
    }

    /// The number the datapath finds for `address`: that of the longest prefix holding it.
    public func number(for address: IPAddress) -> UInt32? {
        numbers.filter { $0.key.contains(address) }.max { $0.key.prefixLength < $1.key.prefixLength }?.value
    }
}

extension DirectionPolicy {
    /// What the datapath enforces for this direction: whether the map is consulted and the
    /// entries it holds. CIDR entries become entries for the CIDR identities they select, and
    /// ipBlock entries entries for the ipBlock numbers they select. A direction that is not in
    /// default deny but has entries (a deny without an allow-all policy) is programmed as
    /// enforced with an allow for every peer, so its denies apply and everything else passes,
    /// the same answer as `allows`.
    public func datapathProgram(
        cidrIdentities: CIDRIdentityTable, ipBlocks: IPBlockTable
    ) -> (enforced: Bool, entries: [PolicyMapEntry]) {
        var combined = Set(entries)
        for entry in cidrEntries {
            for identity in cidrIdentities.identities(selectedBy: entry.peer) {
                combined.insert(PolicyMapEntry(remoteIdentity: identity, protocol: entry.protocol, port: entry.port,
                                               portPrefixLength: entry.portPrefixLength, deny: entry.deny))
            }
        }
        for entry in ipBlockEntries {
            for number in ipBlocks.identities(selectedBy: entry.peer) {
                combined.insert(PolicyMapEntry(remoteIdentity: number, protocol: entry.protocol, port: entry.port,
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
