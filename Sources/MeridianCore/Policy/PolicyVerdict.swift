/// One side of a connection as policy sees it: its security identity and labels, and what a
/// trace may additionally know, its IP (needed for CIDR rules) and its named ports (needed when
/// it is the destination of a rule that names a port).
public struct PolicyEndpoint: Sendable, Hashable {
    public var identity: UInt32
    public var labels: LabelSet
    public var ip: IPAddress?
    public var namedPorts: [NamedPort]

    public init(identity: UInt32, labels: LabelSet, ip: IPAddress? = nil, namedPorts: [NamedPort] = []) {
        self.identity = identity
        self.labels = labels
        self.ip = ip
        self.namedPorts = namedPorts
    }

    /// A reserved identity such as `world` or `host`, with its `reserved:` label.
    public static func reserved(_ identity: ReservedIdentity, ip: IPAddress? = nil) -> PolicyEndpoint {
        PolicyEndpoint(identity: identity.rawValue, labels: (try? LabelSet([identity.label])) ?? LabelSet(), ip: ip)
    }
}

/// The outcome of one direction of a trace: at the sender for egress, at the receiver for
/// ingress.
public struct DirectionVerdict: Sendable, Hashable, CustomStringConvertible {
    /// Why the direction decided as it did.
    public enum Reason: String, Sendable, Hashable {
        /// No rule selects the endpoint for this direction with default deny, and none denies.
        case notEnforced = "not enforced"
        case allowedByRule = "allowed by rule"
        case deniedByRule = "denied by rule"
        /// Rules put the endpoint into default deny and none of them allows the traffic.
        case defaultDeny = "default deny"
        /// A pod reaching its own address: the kernel delivers it inside the pod, where no
        /// program of the datapath sees it, so no policy applies (as in Kubernetes).
        case ownAddress = "own address, never leaves the pod"
    }

    public var direction: TrafficDirection
    public var allowed: Bool
    public var reason: Reason
    /// The rules behind the decision: the denying rules, else the allowing rules, else (for
    /// default deny) the rules that enforce it. Empty when not enforced.
    public var decidingRules: [PolicyOrigin]

    public init(direction: TrafficDirection, allowed: Bool, reason: Reason, decidingRules: [PolicyOrigin] = []) {
        self.direction = direction
        self.allowed = allowed
        self.reason = reason
        self.decidingRules = decidingRules
    }

    public var description: String {
        let rules = decidingRules.isEmpty ? "" : ": " + decidingRules.map(\.description).joined(separator: "; ")
        return "\(direction.rawValue) \(allowed ? "allowed" : "denied") (\(reason.rawValue))\(rules)"
    }
}

/// The answer to "may `from` reach `to` on this port?", with the rules that decided it, for
/// `meridian policy trace`. Traffic passes only when the sender's egress policy and the
/// receiver's ingress policy both allow it; each side is judged by the rules compiled for its
/// own cluster, so one list holding the rules of every cluster traces cross-cluster traffic.
public struct PolicyVerdict: Sendable, Hashable, CustomStringConvertible {
    public var allowed: Bool
    public var egress: DirectionVerdict
    public var ingress: DirectionVerdict

    public init(egress: DirectionVerdict, ingress: DirectionVerdict) {
        self.allowed = egress.allowed && ingress.allowed
        self.egress = egress
        self.ingress = ingress
    }

    /// The rules behind the overall answer: those of the denying direction(s) when denied, those
    /// of both directions when allowed.
    public var decidingRules: [PolicyOrigin] {
        let sides = allowed ? [egress, ingress] : [egress, ingress].filter { !$0.allowed }
        return Array(Set(sides.flatMap(\.decidingRules))).sorted()
    }

    /// The policies behind the overall answer, as `Kind namespace/name`.
    public var decidingPolicies: [String] {
        Array(Set(decidingRules.map(\.policyName))).sorted()
    }

    public var description: String {
        "\(allowed ? "allowed" : "denied"): \(egress); \(ingress)"
    }

    /// Traces traffic from `from` to `to`'s `port` over `protocol` through `rules`.
    ///
    /// For each direction, the rules that apply are those whose subject matches the endpoint
    /// (the sender for egress, the receiver for ingress). A matching deny rule denies; else a
    /// matching allow rule allows; else the traffic is denied when some applicable rule enables
    /// default deny, and allowed otherwise. A rule matches when one of its peers selects the
    /// other endpoint and one of its ports matches; named ports are those of `to`. CIDR peers
    /// (Cilium's) match only endpoints outside the cluster whose `ip` is given and inside the
    /// CIDR; `ipBlock` peers (NetworkPolicy's) match any endpoint whose `ip` is given and inside
    /// the block, pods included. An egress rule's named port never pairs with an address peer:
    /// the name belongs to a destination pod, which a block does not name (the datapath holds
    /// no entry for it either).
    public static func explain(
        from: PolicyEndpoint,
        to: PolicyEndpoint,
        port: UInt16,
        protocol transport: TransportProtocol,
        rules: [PolicyRule]
    ) -> PolicyVerdict {
        if let address = from.ip, address == to.ip, from.identity == to.identity {
            return PolicyVerdict(egress: DirectionVerdict(direction: .egress, allowed: true, reason: .ownAddress),
                                 ingress: DirectionVerdict(direction: .ingress, allowed: true, reason: .ownAddress))
        }
        return PolicyVerdict(
            egress: evaluate(.egress, subject: from, peer: to, destination: to, port: port, protocol: transport, rules: rules),
            ingress: evaluate(.ingress, subject: to, peer: from, destination: to, port: port, protocol: transport, rules: rules)
        )
    }

    static func evaluate(
        _ direction: TrafficDirection,
        subject: PolicyEndpoint,
        peer: PolicyEndpoint,
        destination: PolicyEndpoint,
        port: UInt16,
        protocol transport: TransportProtocol,
        rules: [PolicyRule]
    ) -> DirectionVerdict {
        let applicable = rules.filter { $0.direction == direction && $0.subject.matches(subject.labels) }
        let matching = applicable.filter { rule in
            rule.peers.contains { selector in
                selector.selects(peer, cluster: rule.cluster) && rule.ports.contains { portSelector in
                    if direction == .egress, selector.isAddressBlock, case .named = portSelector.ports { return false }
                    return portSelector.matches(port: port, protocol: transport, namedPorts: destination.namedPorts)
                }
            }
        }
        let denying = matching.filter { $0.action == .deny }
        if !denying.isEmpty {
            return DirectionVerdict(direction: direction, allowed: false, reason: .deniedByRule, decidingRules: origins(denying))
        }
        let allowing = matching.filter { $0.action == .allow }
        if !allowing.isEmpty {
            return DirectionVerdict(direction: direction, allowed: true, reason: .allowedByRule, decidingRules: origins(allowing))
        }
        let enforcing = applicable.filter(\.enablesDefaultDeny)
        if !enforcing.isEmpty {
            return DirectionVerdict(direction: direction, allowed: false, reason: .defaultDeny, decidingRules: origins(enforcing))
        }
        return DirectionVerdict(direction: direction, allowed: true, reason: .notEnforced)
    }

    private static func origins(_ rules: [PolicyRule]) -> [PolicyOrigin] {
        Array(Set(rules.map(\.origin))).sorted()
    }
}

extension PeerSelector {
    /// True when the peer selects `endpoint`; `cluster` is the enforcing cluster of the rule.
    public func selects(_ endpoint: PolicyEndpoint, cluster: String) -> Bool {
        switch self {
        case let .endpoints(selector):
            return selector.matches(endpoint.labels)
        case let .entity(entity):
            return entity.contains(identity: endpoint.identity, labels: endpoint.labels, cluster: cluster)
        case let .cidr(peer):
            guard let ip = endpoint.ip, PolicyPeers.isOutsideCluster(identity: endpoint.identity, labels: endpoint.labels) else {
                return false
            }
            return peer.contains(ip)
        case let .ipBlock(peer):
            return endpoint.ip.map(peer.contains) ?? false
        }
    }
}
