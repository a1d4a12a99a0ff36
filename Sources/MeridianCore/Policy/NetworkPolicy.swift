/// A Kubernetes NetworkPolicy (`networking.k8s.io/v1`): the portable way to say which pods may
/// talk to which. Meridian accepts it unchanged so that manifests written for any cluster work,
/// and enforces it with Cilium's reading of it (identities, namespace labels, cluster label).
public struct NetworkPolicy: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: NetworkPolicySpec

    public init(metadata: ObjectMeta, spec: NetworkPolicySpec) {
        self.apiVersion = ResourceKind.networkPolicy.apiVersion
        self.kind = ResourceKind.networkPolicy.rawValue
        self.metadata = metadata
        self.spec = spec
    }
}

/// Which pods a NetworkPolicy isolates, in which directions, and what it lets through.
public struct NetworkPolicySpec: Codable, Sendable, Hashable {
    /// The pods of the policy's namespace the policy applies to; empty selects them all.
    public var podSelector: LabelSelector
    /// Always filled: when a manifest leaves it out it is defaulted as the API server does,
    /// `Ingress`, plus `Egress` when `egress` holds at least one rule.
    public var policyTypes: [NetworkPolicyType]
    public var ingress: [NetworkPolicyIngressRule]
    public var egress: [NetworkPolicyEgressRule]

    public init(
        podSelector: LabelSelector = LabelSelector(),
        policyTypes: [NetworkPolicyType]? = nil,
        ingress: [NetworkPolicyIngressRule] = [],
        egress: [NetworkPolicyEgressRule] = []
    ) {
        self.podSelector = podSelector
        self.policyTypes = policyTypes ?? Self.defaultPolicyTypes(egress: egress)
        self.ingress = ingress
        self.egress = egress
    }

    static func defaultPolicyTypes(egress: [NetworkPolicyEgressRule]) -> [NetworkPolicyType] {
        egress.isEmpty ? [.ingress] : [.ingress, .egress]
    }

    public func isolates(_ type: NetworkPolicyType) -> Bool {
        policyTypes.contains(type)
    }

    private enum CodingKeys: String, CodingKey {
        case podSelector, policyTypes, ingress, egress
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            podSelector: try container.decodeIfPresent(LabelSelector.self, forKey: .podSelector) ?? LabelSelector(),
            policyTypes: try container.decodeIfPresent([NetworkPolicyType].self, forKey: .policyTypes),
            ingress: try container.decodeIfPresent([NetworkPolicyIngressRule].self, forKey: .ingress) ?? [],
            egress: try container.decodeIfPresent([NetworkPolicyEgressRule].self, forKey: .egress) ?? []
        )
    }
}

/// A direction a NetworkPolicy can isolate.
public enum NetworkPolicyType: String, Codable, Sendable, Hashable, CaseIterable {
    case ingress = "Ingress"
    case egress = "Egress"
}

/// Traffic a NetworkPolicy admits into its pods: from any of `from` (every source when empty)
/// to any of `ports` (every port when empty).
public struct NetworkPolicyIngressRule: Codable, Sendable, Hashable {
    public var from: [NetworkPolicyPeer]
    public var ports: [NetworkPolicyPort]

    public init(from: [NetworkPolicyPeer] = [], ports: [NetworkPolicyPort] = []) {
        self.from = from
        self.ports = ports
    }

    private enum CodingKeys: String, CodingKey {
        case from, ports
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        from = try container.decodeIfPresent([NetworkPolicyPeer].self, forKey: .from) ?? []
        ports = try container.decodeIfPresent([NetworkPolicyPort].self, forKey: .ports) ?? []
    }
}

/// Traffic a NetworkPolicy lets its pods send: to any of `to` (every destination when empty)
/// on any of `ports` (every port when empty).
public struct NetworkPolicyEgressRule: Codable, Sendable, Hashable {
    public var to: [NetworkPolicyPeer]
    public var ports: [NetworkPolicyPort]

    public init(to: [NetworkPolicyPeer] = [], ports: [NetworkPolicyPort] = []) {
        self.to = to
        self.ports = ports
    }

    private enum CodingKeys: String, CodingKey {
        case to, ports
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        to = try container.decodeIfPresent([NetworkPolicyPeer].self, forKey: .to) ?? []
        ports = try container.decodeIfPresent([NetworkPolicyPort].self, forKey: .ports) ?? []
    }
}

/// One peer of a NetworkPolicy rule. `podSelector` and `namespaceSelector` together select the
/// pods matching both; `ipBlock` stands alone.
public struct NetworkPolicyPeer: Codable, Sendable, Hashable {
    public var podSelector: LabelSelector?
    public var namespaceSelector: LabelSelector?
    public var ipBlock: IPBlock?

    public init(podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil) {
        self.podSelector = podSelector
        self.namespaceSelector = namespaceSelector
        self.ipBlock = ipBlock
    }
}

/// Addresses given as a prefix with holes: a NetworkPolicy `ipBlock` (any address in it, pods'
/// included, as upstream), and (as `CiliumCIDRRule`) a Cilium `fromCIDRSet`/`toCIDRSet` element
/// (addresses outside the clusters only, as Cilium).
public struct IPBlock: Codable, Sendable, Hashable {
    /// As written, such as `10.0.0.0/8`; validated to parse.
    public var cidr: String
    public var except: [String]

    public init(cidr: String, except: [String] = []) {
        self.cidr = cidr
        self.except = except
    }

    private enum CodingKeys: String, CodingKey {
        case cidr, except
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cidr = try container.decode(String.self, forKey: .cidr)
        except = try container.decodeIfPresent([String].self, forKey: .except) ?? []
    }
}

/// A port (or range, or container port name) of a NetworkPolicy rule.
public struct NetworkPolicyPort: Codable, Sendable, Hashable {
    public var `protocol`: TransportProtocol
    /// Every port of the protocol when nil.
    public var port: IntOrString?
    /// Makes `port...endPort` a range; only with a numeric `port`.
    public var endPort: Int?

    public init(protocol: TransportProtocol = .tcp, port: IntOrString? = nil, endPort: Int? = nil) {
        self.protocol = `protocol`
        self.port = port
        self.endPort = endPort
    }

    private enum CodingKeys: String, CodingKey {
        case `protocol`, port, endPort
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        `protocol` = try container.decodeIfPresent(TransportProtocol.self, forKey: .protocol) ?? .tcp
        port = try container.decodeIfPresent(IntOrString.self, forKey: .port)
        endPort = try container.decodeIfPresent(Int.self, forKey: .endPort)
    }
}

// MARK: - Manifest decoding

extension NetworkPolicy {
    init(manifest object: ManifestMapping) throws(FieldError) {
        self.init(
            metadata: try ObjectMeta(manifest: object.required("metadata")),
            spec: try NetworkPolicySpec(manifest: object.required("spec"))
        )
    }
}

extension NetworkPolicySpec {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.networkPolicySpec)
        var ingress: [NetworkPolicyIngressRule] = []
        for element in try map.optional("ingress")?.list() ?? [] {
            let rule = try element.mapping(.networkPolicyIngressRule)
            ingress.append(NetworkPolicyIngressRule(
                from: try Self.peers(rule.optional("from")),
                ports: try Self.ports(rule.optional("ports"))
            ))
        }
        var egress: [NetworkPolicyEgressRule] = []
        for element in try map.optional("egress")?.list() ?? [] {
            let rule = try element.mapping(.networkPolicyEgressRule)
            egress.append(NetworkPolicyEgressRule(
                to: try Self.peers(rule.optional("to")),
                ports: try Self.ports(rule.optional("ports"))
            ))
        }
        var policyTypes: [NetworkPolicyType]?
        if let typesValue = map.optional("policyTypes") {
            let elements = try typesValue.list()
            if elements.count > NetworkPolicyType.allCases.count {
                throw FieldError(typesValue.path, "may not specify more than two policyTypes, got \(elements.count)")
            }
            var types: [NetworkPolicyType] = []
            for element in elements {
                let type = try element.enumeration(NetworkPolicyType.self)
                if !types.contains(type) { types.append(type) }
            }
            policyTypes = types.isEmpty ? nil : types
        }
        self.init(
            podSelector: try map.optional("podSelector").map { value throws(FieldError) in try LabelSelector(manifest: value) }
                ?? LabelSelector(),
            policyTypes: policyTypes,
            ingress: ingress,
            egress: egress
        )
    }

    private static func peers(_ value: ManifestValue?) throws(FieldError) -> [NetworkPolicyPeer] {
        var peers: [NetworkPolicyPeer] = []
        for element in try value?.list() ?? [] {
            peers.append(try NetworkPolicyPeer(manifest: element))
        }
        return peers
    }

    private static func ports(_ value: ManifestValue?) throws(FieldError) -> [NetworkPolicyPort] {
        var ports: [NetworkPolicyPort] = []
        for element in try value?.list() ?? [] {
            let map = try element.mapping(.networkPolicyPort)
            ports.append(NetworkPolicyPort(
                protocol: try map.optional("protocol")?.enumeration(TransportProtocol.self) ?? .tcp,
                port: try map.optional("port")?.intOrString(),
                endPort: try map.optional("endPort")?.integer()
            ))
        }
        return ports
    }
}

extension NetworkPolicyPeer {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.networkPolicyPeer)
        var ipBlock: IPBlock?
        if let blockValue = map.optional("ipBlock") {
            let block = try blockValue.mapping(.ipBlock)
            ipBlock = IPBlock(
                cidr: try block.required("cidr").string(),
                except: try block.optional("except")?.stringList() ?? []
            )
        }
        self.init(
            podSelector: try map.optional("podSelector").map { value throws(FieldError) in try LabelSelector(manifest: value) },
            namespaceSelector: try map.optional("namespaceSelector").map { value throws(FieldError) in
                try LabelSelector(manifest: value)
            },
            ipBlock: ipBlock
        )
    }
}

// MARK: - Validation

extension NetworkPolicy {
    func validate() throws(FieldError) {
        try PolicyMetadata.validate(metadata, at: FieldPath().field("metadata"))
        try spec.validate(at: FieldPath().field("spec"))
    }
}

extension NetworkPolicySpec {
    func validate(at path: FieldPath) throws(FieldError) {
        try podSelector.validate(at: path.field("podSelector"))
        for (index, rule) in ingress.enumerated() {
            let rulePath = path.field("ingress").index(index)
            try Self.validate(peers: rule.from, at: rulePath.field("from"))
            try Self.validate(ports: rule.ports, at: rulePath.field("ports"))
        }
        for (index, rule) in egress.enumerated() {
            let rulePath = path.field("egress").index(index)
            try Self.validate(peers: rule.to, at: rulePath.field("to"))
            try Self.validate(ports: rule.ports, at: rulePath.field("ports"))
        }
    }

    private static func validate(peers: [NetworkPolicyPeer], at path: FieldPath) throws(FieldError) {
        for (index, peer) in peers.enumerated() {
            try peer.validate(at: path.index(index))
        }
    }

    private static func validate(ports: [NetworkPolicyPort], at path: FieldPath) throws(FieldError) {
        for (index, port) in ports.enumerated() {
            try port.validate(at: path.index(index))
        }
    }
}

extension NetworkPolicyPeer {
    func validate(at path: FieldPath) throws(FieldError) {
        if let ipBlock {
            if podSelector != nil || namespaceSelector != nil {
                throw FieldError(
                    path,
                    "may not specify both ipBlock and another peer; put podSelector or namespaceSelector in a separate peer"
                )
            }
            try ipBlock.validate(at: path.field("ipBlock"))
            return
        }
        guard podSelector != nil || namespaceSelector != nil else {
            throw FieldError(path, "must specify a peer: podSelector, namespaceSelector or ipBlock")
        }
        try podSelector?.validate(at: path.field("podSelector"))
        try namespaceSelector?.validate(at: path.field("namespaceSelector"))
    }
}

extension IPBlock {
    func validate(at path: FieldPath) throws(FieldError) {
        let cidrPath = path.field("cidr")
        let block = try PolicyCIDR.parse(cidr, at: cidrPath)
        for (index, text) in except.enumerated() {
            let exceptPath = path.field("except").index(index)
            let hole = try PolicyCIDR.parse(text, at: exceptPath)
            guard hole.family == block.family, block.contains(hole), hole.prefixLength > block.prefixLength else {
                throw FieldError(exceptPath, "must be a strict subset of cidr \(cidr), got \(text)")
            }
        }
    }

    func peer() throws(IPParseError) -> CIDRPeer {
        var holes: [IPCIDR] = []
        for text in except { holes.append(try IPCIDR(parsing: text)) }
        return CIDRPeer(cidr: try IPCIDR(parsing: cidr), except: holes)
    }
}

extension NetworkPolicyPort {
    func validate(at path: FieldPath) throws(FieldError) {
        switch port {
        case nil:
            if endPort != nil {
                throw FieldError(path.field("endPort"), "may not be specified when port is not specified")
            }
        case let .int(number)?:
            try PolicyPortSyntax.checkNumber(number, at: path.field("port"))
            if let endPort {
                try PolicyPortSyntax.checkNumber(endPort, at: path.field("endPort"))
                guard endPort >= number else {
                    throw FieldError(path.field("endPort"), "must be greater than or equal to port \(number), got \(endPort)")
                }
            }
        case let .string(name)?:
            if let problem = NameSyntax.ianaServiceNameProblem(name) {
                throw FieldError(
                    path.field("port"),
                    "must be a port number or a container port name; invalid port name \(name.debugDescription): \(problem)"
                )
            }
            if endPort != nil {
                throw FieldError(
                    path.field("endPort"), "may not be specified when port is non-numeric (\(name.debugDescription))")
            }
        }
    }

    var selector: PortSelector {
        let ports: PortSelector.Ports = switch port {
        case nil: .all
        case let .int(number)?: .range(first: UInt16(number), last: UInt16(endPort ?? number))
        case let .string(name)?: .named(name)
        }
        return PortSelector(protocol: L4Protocol(`protocol`), ports: ports)
    }
}

// MARK: - Compilation

extension NetworkPolicy {
    /// The normalized rules of the policy as Cilium enforces it in `settings.clusterName`.
    ///
    /// - The subject is `podSelector` within the policy's namespace (and the local cluster).
    /// - Each direction in `policyTypes` puts the subjects into default deny; rules of a direction
    ///   not listed there are ignored. A listed direction without rules yields one rule with no
    ///   peers, which allows nothing and only enforces default deny.
    /// - A peer's `podSelector` alone selects pods of the policy's namespace, unless it names
    ///   `io.kubernetes.pod.namespace` itself. With `namespaceSelector` (an empty one selects every
    ///   namespace) it selects pods in the matching namespaces, through the
    ///   `io.cilium.k8s.namespace.labels.*` labels of their identities. Both in one peer AND.
    /// - Such selectors are restricted to the local cluster when `policyDefaultLocalCluster` is on
    ///   and they do not name `io.cilium.k8s.policy.cluster`.
    /// - An `ipBlock` peer becomes `.ipBlock`: every address in the block minus its `except`
    ///   holes, pods of any cluster included, as upstream Kubernetes defines it (not Cilium's
    ///   reading, where a block never selects a pod).
    /// - Empty `from`/`to` means every peer (`.entity(.all)`), empty `ports` every port.
    public func rules(settings: PolicySettings) -> [PolicyRule] {
        let namespace = metadata.namespace ?? KubernetesObject.defaultNamespace
        let subject = PolicySelectors.subject(
            PolicySelectors.kubernetes(spec.podSelector), namespace: namespace, cluster: settings.clusterName)
        func origin(_ rule: String) -> PolicyOrigin {
            PolicyOrigin(kind: .networkPolicy, namespace: namespace, name: metadata.name, rule: rule)
        }
        func rule(_ direction: TrafficDirection, _ path: String, peers: [PeerSelector], ports: [PortSelector]) -> PolicyRule {
            PolicyRule(
                origin: origin(path), cluster: settings.clusterName, subject: subject,
                direction: direction, peers: peers, ports: ports)
        }
        var rules: [PolicyRule] = []
        if spec.isolates(.ingress) {
            if spec.ingress.isEmpty {
                rules.append(rule(.ingress, "spec.policyTypes", peers: [], ports: []))
            }
            for (index, ingressRule) in spec.ingress.enumerated() {
                rules.append(rule(
                    .ingress, "spec.ingress[\(index)]",
                    peers: peers(ingressRule.from, namespace: namespace, settings: settings),
                    ports: ports(ingressRule.ports)))
            }
        }
        if spec.isolates(.egress) {
            if spec.egress.isEmpty {
                rules.append(rule(.egress, "spec.policyTypes", peers: [], ports: []))
            }
            for (index, egressRule) in spec.egress.enumerated() {
                rules.append(rule(
                    .egress, "spec.egress[\(index)]",
                    peers: peers(egressRule.to, namespace: namespace, settings: settings),
                    ports: ports(egressRule.ports)))
            }
        }
        return rules
    }

    private func peers(_ peers: [NetworkPolicyPeer], namespace: String, settings: PolicySettings) -> [PeerSelector] {
        guard !peers.isEmpty else { return [.entity(.all)] }
        return peers.compactMap { peer in
            if let ipBlock = peer.ipBlock {
                return (try? ipBlock.peer()).map(PeerSelector.ipBlock)
            }
            var selector: EndpointSelector
            if let namespaceSelector = peer.namespaceSelector {
                selector = PolicySelectors.namespaceLabels(namespaceSelector)
                if namespaceSelector.isEmpty {
                    selector = selector.adding(.init(source: LabelSource.k8s, key: LabelKeys.podNamespace, operator: .exists))
                }
                if let podSelector = peer.podSelector {
                    selector = EndpointSelector(selector.requirements + PolicySelectors.kubernetes(podSelector).requirements)
                }
            } else {
                // Without a namespaceSelector a peer is always in the policy's own namespace, even
                // when the podSelector names the namespace label itself.
                selector = PolicySelectors.kubernetes(peer.podSelector ?? LabelSelector())
                    .adding(.equals(LabelSource.k8s, LabelKeys.podNamespace, namespace))
            }
            return .endpoints(PolicySelectors.defaultCluster(selector, settings: settings))
        }
    }

    private func ports(_ ports: [NetworkPolicyPort]) -> [PortSelector] {
        ports.isEmpty ? [.all] : ports.map(\.selector)
    }
}

// MARK: - Shared helpers

/// Metadata checks shared by the policy kinds, whose names (unlike those of Services and pods)
/// may be DNS subdomains, as in Kubernetes.
enum PolicyMetadata {
    static func validate(_ metadata: ObjectMeta, at path: FieldPath) throws(FieldError) {
        let namePath = path.field("name")
        guard !metadata.name.isEmpty else { throw FieldError(namePath, "is required") }
        if let problem = NameSyntax.dns1123SubdomainProblem(metadata.name) {
            throw FieldError(namePath, "invalid name \(metadata.name.debugDescription): \(problem)")
        }
        if let namespace = metadata.namespace, let problem = NameSyntax.dns1123LabelProblem(namespace) {
            throw FieldError(path.field("namespace"), "invalid namespace \(namespace.debugDescription): \(problem)")
        }
        try NameSyntax.validateLabelMap(metadata.labels, at: path.field("labels"))
        try ObjectMeta.validateAnnotations(metadata.annotations, at: path.field("annotations"))
    }
}

/// Parsing of the CIDR fields of policies, with errors that name the field.
enum PolicyCIDR {
    static func parse(_ text: String, at path: FieldPath) throws(FieldError) -> IPCIDR {
        do throws(IPParseError) {
            return try IPCIDR(parsing: text)
        } catch {
            throw FieldError(
                path, "must be a CIDR such as 10.0.0.0/8 or fd00::/64, got \(text.debugDescription): \(error.reason)")
        }
    }

    /// Cilium's `fromCIDR`/`toCIDR` also take a bare address, meaning that one host.
    static func parsePrefixOrAddress(_ text: String, at path: FieldPath) throws(FieldError) -> IPCIDR {
        guard !text.contains("/") else { return try parse(text, at: path) }
        do throws(IPParseError) {
            let address = try IPAddress(parsing: text)
            return try IPCIDR(address: address, prefixLength: address.family.bitWidth)
        } catch {
            throw FieldError(
                path, "must be a CIDR such as 10.0.0.0/8 or an IP address, got \(text.debugDescription): \(error.reason)")
        }
    }
}

enum PolicyPortSyntax {
    static func checkNumber(_ number: Int, at path: FieldPath) throws(FieldError) {
        let valid = ServicePort.validPortNumbers
        guard valid.contains(number) else {
            throw FieldError(path, "must be between \(valid.lowerBound) and \(valid.upperBound), got \(number)")
        }
    }
}

/// How policy label selectors become identity selectors, following Cilium's translation of
/// Kubernetes and Cilium policies.
enum PolicySelectors {
    /// A Kubernetes label selector over pod labels: every key reads source `k8s`.
    static func kubernetes(_ selector: LabelSelector) -> EndpointSelector {
        translate(selector) { (LabelSource.k8s, $0) }
    }

    /// A namespace selector: every key `k` reads `k8s:io.cilium.k8s.namespace.labels.k`.
    static func namespaceLabels(_ selector: LabelSelector) -> EndpointSelector {
        translate(selector) { (LabelSource.k8s, LabelKeys.namespaceLabelsPrefix + $0) }
    }

    /// A Cilium selector: keys may carry a source (`k8s:app`, `reserved:host`); without one they
    /// read any source.
    static func cilium(_ selector: LabelSelector) -> EndpointSelector {
        translate(selector, key: CiliumSelectorKey.split)
    }

    private static func translate(
        _ selector: LabelSelector, key: (String) -> (source: String?, key: String)
    ) -> EndpointSelector {
        var requirements: [EndpointSelector.Requirement] = []
        for (name, value) in selector.matchLabels.sorted(by: { $0.key < $1.key }) {
            let (source, key) = key(name)
            requirements.append(.equals(source, key, value))
        }
        for expression in selector.matchExpressions {
            let (source, key) = key(expression.key)
            requirements.append(.init(source: source, key: key, operator: expression.operator, values: expression.values))
        }
        return EndpointSelector(requirements)
    }

    /// A subject selector: restricted to `namespace` (nil for clusterwide policies) and, always,
    /// to the enforcing cluster.
    static func subject(_ selector: EndpointSelector, namespace: String?, cluster: String) -> EndpointSelector {
        var result = selector
        if let namespace {
            result = result.adding(.equals(LabelSource.k8s, LabelKeys.podNamespace, namespace))
        }
        return result.adding(.equals(LabelSource.k8s, LabelKeys.cluster, cluster))
    }

    /// Adds `k8s:io.cilium.k8s.policy.cluster=<local>` under `policyDefaultLocalCluster` unless
    /// the selector already says which cluster it wants.
    static func defaultCluster(_ selector: EndpointSelector, settings: PolicySettings) -> EndpointSelector {
        guard settings.policyDefaultLocalCluster, !selector.constrains(kubernetesKey: LabelKeys.cluster) else {
            return selector
        }
        return selector.adding(.equals(LabelSource.k8s, LabelKeys.cluster, settings.clusterName))
    }
}
