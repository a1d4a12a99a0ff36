/// Turns every policy object of a cluster into normalized rules, so callers holding a mixed list
/// of stored objects need not know which kinds carry policy.
public enum PolicyCompiler {
    /// The rules of every NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
    /// in `objects`, in object order; other kinds are skipped.
    public static func rules(for objects: [KubernetesObject], settings: PolicySettings) -> [PolicyRule] {
        objects.flatMap { $0.policyRules(settings: settings) }
    }
}

extension KubernetesObject {
    /// The normalized rules of a policy object; empty for other kinds.
    public func policyRules(settings: PolicySettings) -> [PolicyRule] {
        switch self {
        case let .networkPolicy(policy): policy.rules(settings: settings)
        case let .ciliumNetworkPolicy(policy): policy.rules(settings: settings)
        case let .ciliumClusterwideNetworkPolicy(policy): policy.rules(settings: settings)
        case .namespace, .service, .pod, .deployment, .serviceExport, .serviceImport, .clusterProperty: []
        }
    }
}

// MARK: - Policy map entries

/// One entry of an endpoint's policy map for one direction: traffic with a peer identity, an IP
/// protocol and a destination port block is allowed or denied.
///
/// The map is keyed like Cilium's LPM policy map. The key is `remoteIdentity` (exact; 0 is the
/// wildcard entry consulted for every peer), then `prefixLength` bits of (protocol, port):
/// 0 bits for "any protocol, any port", 8 for "this protocol, any port", `8 + portPrefixLength`
/// for a port block. See `DirectionPolicy.allows` for the lookup.
public struct PolicyMapEntry: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The peer's numeric security identity; 0 matches every peer.
    public var remoteIdentity: UInt32
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP); 0 matches every protocol and then `port`
    /// and `portPrefixLength` are 0.
    public var `protocol`: UInt8
    /// The first destination port of the block.
    public var port: UInt16
    /// Fixed leading bits of the port, 0...16 (16 for one port, 0 for every port).
    public var portPrefixLength: UInt8
    public var deny: Bool

    public init(remoteIdentity: UInt32, protocol: UInt8, port: UInt16 = 0, portPrefixLength: UInt8 = 0, deny: Bool = false) {
        self.remoteIdentity = remoteIdentity
        self.protocol = `protocol`
        self.port = port
        self.portPrefixLength = `protocol` == 0 ? 0 : portPrefixLength
        self.deny = deny
    }

    init(remoteIdentity: UInt32, key: L4Key, deny: Bool) {
        self.init(
            remoteIdentity: remoteIdentity, protocol: key.protocol, port: key.ports.port,
            portPrefixLength: key.ports.prefixLength, deny: deny)
    }

    /// The LPM prefix length over the 24 bits of (protocol, port).
    public var prefixLength: UInt8 { `protocol` == 0 ? 0 : 8 + portPrefixLength }

    var l4: L4Key { L4Key(protocol: `protocol`, ports: PortPrefix(port: port, prefixLength: portPrefixLength)) }

    public func matches(protocol probe: UInt8, port probePort: UInt16) -> Bool {
        l4.matches(protocol: probe, port: probePort)
    }

    public static func < (lhs: PolicyMapEntry, rhs: PolicyMapEntry) -> Bool {
        (lhs.remoteIdentity, lhs.protocol, lhs.port, lhs.portPrefixLength, lhs.deny ? 1 : 0)
            < (rhs.remoteIdentity, rhs.protocol, rhs.port, rhs.portPrefixLength, rhs.deny ? 1 : 0)
    }

    /// `deny identity 0 proto 6 port 8080/14`.
    public var description: String {
        "\(deny ? "deny" : "allow") identity \(remoteIdentity) \(l4)"
    }
}

/// A policy-map entry whose peer is a CIDR. The datapath allocates local identities for CIDRs
/// later, so these are kept apart from identity entries.
public struct CIDRPolicyEntry: Codable, Sendable, Hashable, CustomStringConvertible {
    public var peer: CIDRPeer
    public var `protocol`: UInt8
    public var port: UInt16
    public var portPrefixLength: UInt8
    public var deny: Bool

    public init(peer: CIDRPeer, protocol: UInt8, port: UInt16 = 0, portPrefixLength: UInt8 = 0, deny: Bool = false) {
        self.peer = peer
        self.protocol = `protocol`
        self.port = port
        self.portPrefixLength = `protocol` == 0 ? 0 : portPrefixLength
        self.deny = deny
    }

    init(peer: CIDRPeer, key: L4Key, deny: Bool) {
        self.init(peer: peer, protocol: key.protocol, port: key.ports.port, portPrefixLength: key.ports.prefixLength, deny: deny)
    }

    var l4: L4Key { L4Key(protocol: `protocol`, ports: PortPrefix(port: port, prefixLength: portPrefixLength)) }

    public func matches(protocol probe: UInt8, port probePort: UInt16) -> Bool {
        l4.matches(protocol: probe, port: probePort)
    }

    public var description: String {
        "\(deny ? "deny" : "allow") cidr \(peer) \(l4)"
    }
}

/// The (protocol, port block) part of a policy-map key.
struct L4Key: Hashable, Comparable, CustomStringConvertible {
    var `protocol`: UInt8
    var ports: PortPrefix

    func matches(protocol probe: UInt8, port: UInt16) -> Bool {
        `protocol` == 0 || (`protocol` == probe && ports.contains(port))
    }

    /// True when every (protocol, port) this key matches is matched by `self`.
    func covers(_ other: L4Key) -> Bool {
        if `protocol` == 0 { return true }
        return `protocol` == other.protocol && ports.covers(other.ports)
    }

    static func < (lhs: L4Key, rhs: L4Key) -> Bool {
        (lhs.protocol, lhs.ports) < (rhs.protocol, rhs.ports)
    }

    var description: String {
        `protocol` == 0 ? "any" : "proto \(`protocol`) port \(ports)"
    }
}

/// What the datapath needs for one endpoint and one direction.
public struct DirectionPolicy: Codable, Sendable, Hashable {
    /// True when some rule selecting the endpoint for this direction enables default deny;
    /// traffic that no entry allows is then dropped. Otherwise it passes unless denied.
    public var enforced: Bool
    /// Identity entries, sorted, after deny precedence has been applied (see `allows`).
    public var entries: [PolicyMapEntry]
    /// CIDR entries (Cilium's CIDR rules), sorted by prefix, deduplicated (a deny replaces an
    /// identical allow). They select only peers outside the clusters.
    public var cidrEntries: [CIDRPolicyEntry]
    /// ipBlock entries (NetworkPolicy's), sorted and deduplicated like `cidrEntries`. They
    /// select every peer whose address is in the block, pods of any cluster included.
    public var ipBlockEntries: [CIDRPolicyEntry]

    public init(
        enforced: Bool = false, entries: [PolicyMapEntry] = [], cidrEntries: [CIDRPolicyEntry] = [],
        ipBlockEntries: [CIDRPolicyEntry] = []
    ) {
        self.enforced = enforced
        self.entries = entries
        self.cidrEntries = cidrEntries
        self.ipBlockEntries = ipBlockEntries
    }

    /// The verdict of the datapath lookup, the reference for the BPF implementation:
    ///
    /// 1. Among the identity entries for `remoteIdentity` and for 0 that match the protocol and
    ///    port, take the one with the longest `prefixLength`; on equal length the entry for the
    ///    peer's own identity wins. Entries are normalized so that this single choice honours
    ///    "deny wins": an allow is dropped when a deny for the same or the wildcard identity
    ///    covers it, and a deny for a specific identity is repeated at the prefix of any wildcard
    ///    allow it covers.
    /// 2. CIDR entries apply only to peers outside the cluster (world identities, identities with
    ///    `reserved:world`, or local CIDR identities `>= 1 << 24`) whose `remoteIP` they contain.
    /// 3. ipBlock entries apply to every peer whose `remoteIP` they contain, whatever its identity.
    /// 4. A deny from step 1, or any matching CIDR or ipBlock deny, drops; else an allow from any
    ///    of them passes; else the traffic is dropped exactly when the direction is `enforced`.
    public func allows(
        remoteIdentity: UInt32, remoteLabels: LabelSet = LabelSet(), remoteIP: IPAddress? = nil,
        protocol probe: UInt8, port: UInt16
    ) -> Bool {
        let candidates = entries.filter {
            ($0.remoteIdentity == remoteIdentity || $0.remoteIdentity == 0) && $0.matches(protocol: probe, port: port)
        }
        let best = candidates.max { lhs, rhs in
            if lhs.prefixLength != rhs.prefixLength { return lhs.prefixLength < rhs.prefixLength }
            return lhs.remoteIdentity == 0 && rhs.remoteIdentity != 0
        }
        var cidrDeny = false
        var cidrAllow = false
        if let remoteIP, PolicyPeers.isOutsideCluster(identity: remoteIdentity, labels: remoteLabels) {
            for entry in cidrEntries where entry.peer.contains(remoteIP) && entry.matches(protocol: probe, port: port) {
                if entry.deny { cidrDeny = true } else { cidrAllow = true }
            }
        }
        var blockDeny = false
        var blockAllow = false
        if let remoteIP {
            for entry in ipBlockEntries where entry.peer.contains(remoteIP) && entry.matches(protocol: probe, port: port) {
                if entry.deny { blockDeny = true } else { blockAllow = true }
            }
        }
        if best?.deny == true || cidrDeny || blockDeny { return false }
        if best != nil || cidrAllow || blockAllow { return true }
        return !enforced
    }
}

/// The policy of one local endpoint (identity), per direction.
public struct EndpointPolicy: Codable, Sendable, Hashable {
    public var identity: UInt32
    public var ingress: DirectionPolicy
    public var egress: DirectionPolicy

    public init(identity: UInt32, ingress: DirectionPolicy, egress: DirectionPolicy) {
        self.identity = identity
        self.ingress = ingress
        self.egress = egress
    }

    public subscript(direction: TrafficDirection) -> DirectionPolicy {
        direction == .ingress ? ingress : egress
    }
}

// MARK: - Resolution

/// Computes, without I/O, the policy-map entries of the local endpoints from the rules in force,
/// the identities known in the mesh and their named ports.
///
/// - Local endpoints are the identities (>= 256) whose `io.cilium.k8s.policy.cluster` label is
///   `localCluster`. Rules apply to an endpoint when their subject selector matches its labels;
///   subjects always include the enforcing cluster, so rules compiled for another cluster never
///   apply here.
/// - Endpoint and entity peers become one entry per selected identity; `.entity(.all)` becomes
///   identity 0. Reserved identities 1...10 are always known, with their `reserved:` labels.
/// - CIDR peers become `cidrEntries`, ipBlock peers `ipBlockEntries`.
/// - Ports: `ANY` with a port or range becomes TCP, UDP and SCTP entries; ranges are cut into
///   `PortPrefix.decompose` blocks. A named port resolves against the destination's named ports:
///   the local endpoint's for ingress, each peer identity's for egress (a wildcard peer is
///   expanded to every known identity that has the name). A name that does not resolve yields
///   no entry; so does an egress name towards a CIDR or an ipBlock.
public struct PolicyResolver: Sendable {
    public var rules: [PolicyRule]
    public var identities: [UInt32: LabelSet]
    public var namedPorts: [UInt32: [NamedPort]]
    public var localCluster: String

    public init(
        rules: [PolicyRule],
        identities: [UInt32: LabelSet],
        namedPorts: [UInt32: [NamedPort]] = [:],
        localCluster: String
    ) {
        self.rules = rules
        self.identities = identities
        for reserved in ReservedIdentity.allCases where self.identities[reserved.rawValue] == nil {
            self.identities[reserved.rawValue] = (try? LabelSet([reserved.label])) ?? LabelSet()
        }
        self.namedPorts = namedPorts
        self.localCluster = localCluster
    }

    /// The local endpoints' identities, ascending.
    public var localIdentities: [UInt32] {
        identities.compactMap { identity, labels in
            identity >= IdentityLayout.firstClusterScopedIdentity && labels.clusterName == localCluster ? identity : nil
        }.sorted()
    }

    /// The policy of every local endpoint.
    public func resolve() -> [UInt32: EndpointPolicy] {
        var result: [UInt32: EndpointPolicy] = [:]
        for identity in localIdentities {
            result[identity] = resolve(identity: identity)
        }
        return result
    }

    /// The policy of one local endpoint.
    public func resolve(identity: UInt32) -> EndpointPolicy {
        EndpointPolicy(
            identity: identity,
            ingress: resolve(identity: identity, direction: .ingress),
            egress: resolve(identity: identity, direction: .egress))
    }

    private func resolve(identity: UInt32, direction: TrafficDirection) -> DirectionPolicy {
        let labels = identities[identity] ?? LabelSet()
        let applicable = rules.filter { $0.direction == direction && $0.subject.matches(labels) }
        var entries: Set<PolicyMapEntry> = []
        var cidrEntries: Set<CIDRPolicyEntry> = []
        var ipBlockEntries: Set<CIDRPolicyEntry> = []
        for rule in applicable {
            let deny = rule.action == .deny
            for peer in rule.peers {
                for port in rule.ports {
                    switch peer {
                    case let .cidr(cidrPeer):
                        let destinationPorts = direction == .ingress ? namedPorts[identity] ?? [] : []
                        for key in Self.l4Keys(port, namedPorts: destinationPorts) {
                            cidrEntries.insert(CIDRPolicyEntry(peer: cidrPeer, key: key, deny: deny))
                        }
                    case let .ipBlock(block):
                        let destinationPorts = direction == .ingress ? namedPorts[identity] ?? [] : []
                        for key in Self.l4Keys(port, namedPorts: destinationPorts) {
                            ipBlockEntries.insert(CIDRPolicyEntry(peer: block, key: key, deny: deny))
                        }
                    case .endpoints, .entity:
                        for remote in peerIdentities(peer, rule: rule, port: port, direction: direction) {
                            let destination = direction == .ingress ? identity : remote
                            for key in Self.l4Keys(port, namedPorts: namedPorts[destination] ?? []) {
                                entries.insert(PolicyMapEntry(remoteIdentity: remote, key: key, deny: deny))
                            }
                        }
                    }
                }
            }
        }
        return DirectionPolicy(
            enforced: applicable.contains(where: \.enablesDefaultDeny),
            entries: Self.normalize(entries),
            cidrEntries: Self.normalize(cidrEntries),
            ipBlockEntries: Self.normalize(ipBlockEntries))
    }

    /// The identities a peer stands for; 0 for every peer. An egress named port towards every
    /// peer is expanded to the identities that declare the name, since it resolves per peer.
    private func peerIdentities(
        _ peer: PeerSelector, rule: PolicyRule, port: PortSelector, direction: TrafficDirection
    ) -> [UInt32] {
        switch peer {
        case .cidr, .ipBlock:
            return []
        case .entity(.all):
            guard direction == .egress, case let .named(name) = port.ports else { return [0] }
            return namedPorts.compactMap { identity, ports in
                ports.contains { $0.name == name } && identities[identity] != nil ? identity : nil
            }.sorted()
        case let .entity(entity):
            var selected = Set(entity.reservedIdentities.map(\.rawValue))
            for (identity, labels) in identities
            where entity.contains(identity: identity, labels: labels, cluster: rule.cluster) {
                selected.insert(identity)
            }
            return selected.sorted()
        case let .endpoints(selector):
            return identities.compactMap { selector.matches($1) ? $0 : nil }.sorted()
        }
    }

    /// The (protocol, port block) keys of a port selector, named ports taken from `namedPorts`.
    static func l4Keys(_ selector: PortSelector, namedPorts: [NamedPort]) -> [L4Key] {
        switch selector.ports {
        case .all:
            return [L4Key(protocol: selector.protocol.ipProtocolNumber, ports: PortPrefix(port: 0, prefixLength: 0))]
        case let .range(first, last):
            return selector.protocol.concreteProtocols.flatMap { transport in
                PortPrefix.decompose(first, last).map { L4Key(protocol: transport.ipProtocolNumber, ports: $0) }
            }
        case let .named(name):
            let protocols = selector.protocol.concreteProtocols
            return Set(namedPorts.filter { $0.name == name && protocols.contains($0.protocol) }.map {
                L4Key(protocol: $0.protocol.ipProtocolNumber, ports: PortPrefix(port: $0.port, prefixLength: 16))
            }).sorted()
        }
    }

    /// Applies deny precedence so that the longest-prefix lookup of `DirectionPolicy.allows`
    /// gives the answer "any matching deny drops":
    /// 1. an allow with the same key as a deny is dropped;
    /// 2. an allow covered by a deny for the same identity or for identity 0 is dropped;
    /// 3. for a wildcard (identity 0) allow covered by a deny for a specific identity, that deny
    ///    is repeated at the allow's prefix, so the peer's own entry wins the lookup.
    static func normalize(_ entries: Set<PolicyMapEntry>) -> [PolicyMapEntry] {
        let denies = entries.filter(\.deny)
        var result = denies
        var allows = entries.filter { !$0.deny }
        allows = allows.filter { allow in
            !denies.contains { deny in
                (deny.remoteIdentity == allow.remoteIdentity || deny.remoteIdentity == 0) && deny.l4.covers(allow.l4)
            }
        }
        for allow in allows where allow.remoteIdentity == 0 {
            for deny in denies where deny.remoteIdentity != 0 && deny.l4.covers(allow.l4) {
                result.insert(PolicyMapEntry(remoteIdentity: deny.remoteIdentity, key: allow.l4, deny: true))
            }
        }
        return (result.union(allows)).sorted()
    }

    /// Drops allows that have a deny with the same key; CIDR precedence beyond that is left to
    /// the datapath, which sees the CIDR identities.
    static func normalize(_ entries: Set<CIDRPolicyEntry>) -> [CIDRPolicyEntry] {
        let denied = Set(entries.filter(\.deny).map { CIDRPolicyEntry(peer: $0.peer, key: $0.l4, deny: false) })
        return entries.filter { $0.deny || !denied.contains($0) }.sorted { lhs, rhs in
            (lhs.peer.cidr, lhs.l4, lhs.deny ? 1 : 0, lhs.peer.description)
                < (rhs.peer.cidr, rhs.l4, rhs.deny ? 1 : 0, rhs.peer.description)
        }
    }
}

/// Peer classification shared by resolution and tracing.
enum PolicyPeers {
    /// Local-scope identities (CIDR identities the agent allocates) start here, as in Cilium.
    static let firstLocalScopeIdentity: UInt32 = 1 << 24

    /// True for peers that CIDR selectors may match: anything that is not a cluster endpoint.
    static func isOutsideCluster(identity: UInt32, labels: LabelSet) -> Bool {
        identity >= firstLocalScopeIdentity || PolicyEntity.world.contains(identity: identity, labels: labels, cluster: "")
    }
}
