/// The one shape that NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
/// all compile to, so that resolution, the datapath and `meridian policy trace` handle a single
/// rule language instead of three.
///
/// A rule says: for endpoints matched by `subject`, traffic in `direction` to or from any peer
/// in `peers` on any port in `ports` is allowed (or denied). Each list is a union. An empty
/// `peers` or `ports` list matches no traffic at all; "every peer" is spelled `.entity(.all)`
/// and "every port" is one `PortSelector.all`. Whether the rule also switches its subjects to
/// default deny for that direction is `enablesDefaultDeny`; a rule with no peers still does,
/// which is how "deny everything" policies are represented.
public struct PolicyRule: Codable, Sendable, Hashable {
    /// Which policy object and which part of it produced the rule.
    public var origin: PolicyOrigin
    /// The cluster whose agent enforces the rule. Subjects are always endpoints of this cluster,
    /// and the `cluster` entity means this cluster.
    public var cluster: String
    public var subject: EndpointSelector
    public var direction: TrafficDirection
    public var action: PolicyAction
    public var enablesDefaultDeny: Bool
    public var peers: [PeerSelector]
    public var ports: [PortSelector]

    public init(
        origin: PolicyOrigin,
        cluster: String,
        subject: EndpointSelector,
        direction: TrafficDirection,
        action: PolicyAction = .allow,
        enablesDefaultDeny: Bool = true,
        peers: [PeerSelector],
        ports: [PortSelector] = [.all]
    ) {
        self.origin = origin
        self.cluster = cluster
        self.subject = subject
        self.direction = direction
        self.action = action
        self.enablesDefaultDeny = enablesDefaultDeny
        self.peers = peers
        self.ports = ports
    }
}

/// Which way traffic flows relative to the endpoint a rule applies to.
public enum TrafficDirection: String, Codable, Sendable, Hashable, CaseIterable {
    /// Traffic arriving at the subject, checked at the receiver.
    case ingress
    /// Traffic leaving the subject, checked at the sender.
    case egress
}

/// What a matching rule does to traffic; a deny wins over any allow.
public enum PolicyAction: String, Codable, Sendable, Hashable, CaseIterable {
    case allow
    case deny
}

/// Names the policy object, and the rule inside it, that a normalized rule came from, so that a
/// trace can tell the user which YAML to edit.
public struct PolicyOrigin: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var kind: ResourceKind
    /// `nil` for cluster-scoped kinds.
    public var namespace: String?
    public var name: String
    /// The path of the rule inside the object, such as `spec.ingress[0]` or `specs[1].egressDeny[0]`.
    public var rule: String

    public init(kind: ResourceKind, namespace: String?, name: String, rule: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.rule = rule
    }

    /// `Kind namespace/name`, the way the policy is named on the command line.
    public var policyName: String {
        "\(kind.rawValue) \(namespace.map { "\($0)/" } ?? "")\(name)"
    }

    public var description: String { "\(policyName) (\(rule))" }

    public static func < (lhs: PolicyOrigin, rhs: PolicyOrigin) -> Bool {
        (lhs.kind.rawValue, lhs.namespace ?? "", lhs.name, lhs.rule)
            < (rhs.kind.rawValue, rhs.namespace ?? "", rhs.name, rhs.rule)
    }
}

/// The per-cluster settings that change how policies compile.
public struct PolicySettings: Codable, Sendable, Hashable {
    /// The cluster the policies are applied in; its agent enforces them on its own endpoints.
    public var clusterName: String
    /// Cilium's `policy-default-local-cluster` (the default since Cilium 1.19): a peer endpoint
    /// selector that says nothing about `io.cilium.k8s.policy.cluster` matches only endpoints of
    /// the local cluster. When false, such a selector matches endpoints of every cluster.
    public var policyDefaultLocalCluster: Bool

    public init(clusterName: String, policyDefaultLocalCluster: Bool = true) {
        self.clusterName = clusterName
        self.policyDefaultLocalCluster = policyDefaultLocalCluster
    }
}

// MARK: - Selectors

/// Selects security identities by their labels (`LabelSet`), the way Cilium's endpoint selectors
/// do: every requirement must hold. A requirement names the label source it wants (`k8s`,
/// `reserved`, ...) or accepts any source. The empty selector selects every identity.
public struct EndpointSelector: Codable, Sendable, Hashable, CustomStringConvertible {
    public var requirements: [Requirement]

    public init(_ requirements: [Requirement] = []) {
        self.requirements = requirements
    }

    /// One condition on one label key of an identity.
    public struct Requirement: Codable, Sendable, Hashable, CustomStringConvertible {
        /// The label source the requirement reads, or `nil` for any source (Cilium's `any:`).
        public var source: String?
        public var key: String
        public var `operator`: LabelSelectorRequirement.Operator
        public var values: [String]

        public init(source: String?, key: String, operator: LabelSelectorRequirement.Operator, values: [String] = []) {
            self.source = source
            self.key = key
            self.operator = `operator`
            self.values = values
        }

        /// `source:key = value`, the form of a `matchLabels` entry.
        public static func equals(_ source: String?, _ key: String, _ value: String) -> Requirement {
            Requirement(source: source, key: key, operator: .in, values: [value])
        }

        /// The value of the label the requirement reads, or nil when the identity lacks it.
        public func value(in labels: LabelSet) -> String? {
            guard let label = labels[key] else { return nil }
            if let source, source != LabelSource.any, label.source != source { return nil }
            return label.value
        }

        public func matches(_ labels: LabelSet) -> Bool {
            let value = value(in: labels)
            switch `operator` {
            case .in: return value.map(values.contains) ?? false
            case .notIn: return value.map { !values.contains($0) } ?? true
            case .exists: return value != nil
            case .doesNotExist: return value == nil
            }
        }

        /// True when the requirement can read labels of source `k8s` (it names that source or none).
        var readsKubernetesLabels: Bool {
            source == nil || source == LabelSource.any || source == LabelSource.k8s
        }

        public var description: String {
            let name = "\(source ?? LabelSource.any):\(key)"
            switch `operator` {
            case .in where values.count == 1: return "\(name)=\(values[0])"
            case .in: return "\(name) in (\(values.joined(separator: ", ")))"
            case .notIn: return "\(name) notin (\(values.joined(separator: ", ")))"
            case .exists: return name
            case .doesNotExist: return "!\(name)"
            }
        }
    }

    public var isEmpty: Bool { requirements.isEmpty }

    public func matches(_ labels: LabelSet) -> Bool {
        requirements.allSatisfy { $0.matches(labels) }
    }

    /// True when some requirement reads the Kubernetes label `key`, whatever it asks of it.
    public func constrains(kubernetesKey key: String) -> Bool {
        requirements.contains { $0.key == key && $0.readsKubernetesLabels }
    }

    func constrainsKubernetesKey(withPrefix prefix: String) -> Bool {
        requirements.contains { $0.key.hasPrefix(prefix) && $0.readsKubernetesLabels }
    }

    func reads(source wanted: String) -> Bool {
        requirements.contains { $0.source == wanted }
    }

    func adding(_ requirement: Requirement) -> EndpointSelector {
        EndpointSelector(requirements + [requirement])
    }

    /// `{}` for the empty selector, otherwise the requirements joined by commas.
    public var description: String {
        requirements.isEmpty ? "{}" : requirements.map(\.description).joined(separator: ", ")
    }
}

/// Who a rule lets a subject talk to (or denies): endpoints chosen by their labels, a named
/// class of peers, addresses outside the clusters (Cilium's CIDR rules), or any address in a
/// block (Kubernetes `ipBlock`).
public enum PeerSelector: Codable, Sendable, Hashable, CustomStringConvertible {
    /// Identities whose labels match; namespace and cluster restrictions are requirements of the
    /// selector, added at compile time.
    case endpoints(EndpointSelector)
    case entity(PolicyEntity)
    /// Addresses in `cidr` but in none of `except`, Cilium's `fromCIDR`/`toCIDR`/`CIDRSet`: like
    /// Cilium, a CIDR never selects an endpoint that has an identity of its own in the clusters
    /// (a pod, a node), only outside peers. Matched by identity (CIDR identities).
    case cidr(CIDRPeer)
    /// Addresses in `cidr` but in none of `except`, whoever holds them: pods of this cluster and
    /// of remote clusters, nodes and outside peers alike. A Kubernetes NetworkPolicy `ipBlock`,
    /// as upstream defines it. Matched by the peer's address (the datapath's ipBlock map), since
    /// two pods of one identity may lie on either side of a block.
    case ipBlock(CIDRPeer)

    /// True for peers matched by address rather than by identity labels.
    public var isAddressBlock: Bool {
        switch self {
        case .cidr, .ipBlock: true
        case .endpoints, .entity: false
        }
    }

    public var description: String {
        switch self {
        case let .endpoints(selector): "endpoints{\(selector)}"
        case let .entity(entity): "entity \(entity.rawValue)"
        case let .cidr(peer): "cidr \(peer)"
        case let .ipBlock(peer): "ipBlock \(peer)"
        }
    }
}

/// A CIDR peer with its holes.
public struct CIDRPeer: Codable, Sendable, Hashable, CustomStringConvertible {
    public var cidr: IPCIDR
    public var except: [IPCIDR]

    public init(cidr: IPCIDR, except: [IPCIDR] = []) {
        self.cidr = cidr
        self.except = except
    }

    public func contains(_ address: IPAddress) -> Bool {
        cidr.contains(address) && !except.contains { $0.contains(address) }
    }

    /// The prefixes that cover exactly `cidr` minus `except`, shortest first.
    public var effectivePrefixes: [IPCIDR] {
        cidr.subtracting(except)
    }

    public var description: String {
        except.isEmpty ? cidr.description : "\(cidr) except \(except.map(\.description).joined(separator: ", "))"
    }
}

/// The classes of peers Cilium's `fromEntities`/`toEntities` name. Each maps to reserved
/// identities (and `cluster` to the identities of the enforcing cluster as well).
public enum PolicyEntity: String, Codable, Sendable, Hashable, CaseIterable {
    /// Every peer, inside or outside the cluster: identity 0 in the policy map.
    case all
    /// Everything outside the cluster: `reserved:world` (2) and its per-family variants (9, 10).
    case world
    case worldIPv4 = "world-ipv4"
    case worldIPv6 = "world-ipv6"
    /// The enforcing cluster: its endpoints plus host, remote-node, init, ingress, health,
    /// unmanaged and kube-apiserver.
    case cluster
    case host
    case remoteNode = "remote-node"
    case kubeAPIServer = "kube-apiserver"
    case ingress
    case `init`
    case health
    case unmanaged
    /// Selects nothing; valid so that policies written for Cilium still apply.
    case none

    /// The reserved identities the entity always stands for, whether or not they are known.
    public var reservedIdentities: [ReservedIdentity] {
        switch self {
        case .all, .none: []
        case .world: [.world, .worldIPv4, .worldIPv6]
        case .worldIPv4: [.worldIPv4]
        case .worldIPv6: [.worldIPv6]
        case .cluster: [.host, .remoteNode, .`init`, .ingress, .health, .unmanaged, .kubeAPIServer]
        case .host: [.host]
        case .remoteNode: [.remoteNode]
        case .kubeAPIServer: [.kubeAPIServer]
        case .ingress: [.ingress]
        case .`init`: [.`init`]
        case .health: [.health]
        case .unmanaged: [.unmanaged]
        }
    }

    /// True when the identity belongs to the entity. An identity counts by its number or by the
    /// `reserved:` labels it carries (a CIDR identity carries `reserved:world`); for `cluster`,
    /// also by `io.cilium.k8s.policy.cluster` equal to `cluster`.
    public func contains(identity: UInt32, labels: LabelSet, cluster: String) -> Bool {
        switch self {
        case .all: return true
        case .none: return false
        case .cluster:
            if labels[LabelKeys.cluster].map({ $0.source == LabelSource.k8s && $0.value == cluster }) == true {
                return true
            }
            fallthrough
        default:
            return reservedIdentities.contains { reserved in
                reserved.rawValue == identity
                    || labels[reserved.labelName].map { $0.source == LabelSource.reserved } == true
            }
        }
    }
}

// MARK: - Ports

/// The L4 part of a rule: a protocol and a set of ports, a range or a container port name.
public struct PortSelector: Codable, Sendable, Hashable, CustomStringConvertible {
    /// `.any` stands for TCP, UDP and SCTP (and, without a port, for every protocol).
    public var `protocol`: L4Protocol
    public var ports: Ports

    public init(protocol: L4Protocol, ports: Ports) {
        self.protocol = `protocol`
        self.ports = ports
    }

    /// Which ports of the protocol match.
    public enum Ports: Codable, Sendable, Hashable {
        case all
        /// `first...last`, both inclusive; a single port has `first == last`.
        case range(first: UInt16, last: UInt16)
        /// A container port name, resolved against the named ports of the destination: the
        /// subject for ingress, the peer for egress.
        case named(String)
    }

    /// Every port of every protocol.
    public static let all = PortSelector(protocol: .any, ports: .all)

    public static func port(_ number: UInt16, _ protocol: L4Protocol = .tcp) -> PortSelector {
        PortSelector(protocol: `protocol`, ports: .range(first: number, last: number))
    }

    /// True when traffic to `port` over `protocol` matches; named ports are looked up in
    /// `namedPorts`, the destination's.
    public func matches(port: UInt16, protocol probe: TransportProtocol, namedPorts: [NamedPort]) -> Bool {
        let probeProtocol = L4Protocol(probe)
        guard `protocol` == .any || `protocol` == probeProtocol else { return false }
        switch ports {
        case .all:
            return true
        case let .range(first, last):
            return (first...last).contains(port)
        case let .named(name):
            return namedPorts.contains { $0.name == name && $0.port == port && $0.protocol == probeProtocol }
        }
    }

    public var description: String {
        let portText: String
        switch ports {
        case .all: portText = "all"
        case let .range(first, last): portText = first == last ? "\(first)" : "\(first)-\(last)"
        case let .named(name): portText = name
        }
        return "\(portText)/\(`protocol`.rawValue)"
    }
}

extension L4Protocol {
    init(_ transport: TransportProtocol) {
        switch transport {
        case .tcp: self = .tcp
        case .udp: self = .udp
        case .sctp: self = .sctp
        }
    }

    /// The IP protocol number the datapath matches on; 0 means any protocol.
    public var ipProtocolNumber: UInt8 {
        switch self {
        case .tcp: 6
        case .udp: 17
        case .sctp: 132
        case .any: 0
        }
    }

    /// The protocols a port given for `.any` stands for.
    var concreteProtocols: [L4Protocol] {
        self == .any ? [.tcp, .udp, .sctp] : [self]
    }
}

extension IPCIDR {
    /// The prefixes that cover this prefix minus every prefix in `holes`, ordered by address.
    /// Holes of the other family, or outside this prefix, are ignored.
    public func subtracting(_ holes: [IPCIDR]) -> [IPCIDR] {
        var remaining: [IPCIDR] = [self]
        for hole in holes where hole.family == family {
            remaining = remaining.flatMap { piece -> [IPCIDR] in
                if hole.contains(piece) { return [] }
                guard piece.contains(hole) else { return [piece] }
                return piece.splitting(around: hole)
            }
        }
        return remaining.sorted()
    }

    /// Splits this prefix into the sibling halves on the way down to `hole`, leaving `hole` out.
    private func splitting(around hole: IPCIDR) -> [IPCIDR] {
        var pieces: [IPCIDR] = []
        var current = self
        while current.prefixLength < hole.prefixLength {
            let length = current.prefixLength + 1
            let lower = try! IPCIDR(address: current.address, prefixLength: length)
            let bit = UInt128(1) << UInt128(family.bitWidth - length)
            let upper = try! IPCIDR(
                address: IPAddress(family: family, value: current.address.value | bit), prefixLength: length)
            if lower.contains(hole) {
                pieces.append(upper)
                current = lower
            } else {
                pieces.append(lower)
                current = upper
            }
        }
        return pieces
    }
}
