import Yams

/// Which of the two Cilium policy kinds an object is: namespaced or cluster-wide.
public protocol CiliumPolicyScope: Sendable, Hashable {
    static var kind: ResourceKind { get }
}

extension CiliumPolicyScope {
    /// The namespace the policy's selectors are confined to (nil: any namespace).
    static func namespace(of metadata: ObjectMeta) -> String? {
        kind.isNamespaced ? metadata.namespace ?? KubernetesObject.defaultNamespace : nil
    }
}

/// CiliumNetworkPolicy's scope: its namespace.
public enum CiliumNamespacedScope: CiliumPolicyScope {
    public static let kind = ResourceKind.ciliumNetworkPolicy
}

/// CiliumClusterwideNetworkPolicy's scope: the whole cluster.
public enum CiliumClusterwideScope: CiliumPolicyScope {
    public static let kind = ResourceKind.ciliumClusterwideNetworkPolicy
}

/// A Cilium policy object (`cilium.io/v2`): Cilium's richer policy with entities, CIDR sets,
/// port ranges and explicit deny rules, namespaced (CiliumNetworkPolicy) or cluster-wide
/// (CiliumClusterwideNetworkPolicy, for rules that span namespaces, such as a mesh-wide default
/// deny; its selectors are not confined to any namespace). Meridian accepts both so that
/// policies written for a Cilium ClusterMesh apply unchanged, including ones that select peers
/// by cluster.
public struct CiliumPolicyObject<Scope: CiliumPolicyScope>: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    /// A single rule; `spec` and `specs` may both be given, and their rules add up.
    public var spec: CiliumPolicyRule?
    public var specs: [CiliumPolicyRule]?

    public init(metadata: ObjectMeta, spec: CiliumPolicyRule? = nil, specs: [CiliumPolicyRule]? = nil) {
        self.apiVersion = Scope.kind.apiVersion
        self.kind = Scope.kind.rawValue
        self.metadata = metadata
        self.spec = spec
        self.specs = specs
    }

    /// `spec` followed by `specs`, each with its path in the object.
    public var rules: [(path: String, rule: CiliumPolicyRule)] {
        CiliumPolicyRule.rules(spec: spec, specs: specs)
    }
}

/// `cilium.io/v2` CiliumNetworkPolicy: rules that select endpoints in its own namespace.
public typealias CiliumNetworkPolicy = CiliumPolicyObject<CiliumNamespacedScope>
/// `cilium.io/v2` CiliumClusterwideNetworkPolicy: rules that select endpoints in any namespace.
public typealias CiliumClusterwideNetworkPolicy = CiliumPolicyObject<CiliumClusterwideScope>

/// One rule of a Cilium policy: the endpoints it applies to and its four sections.
///
/// A section that is absent, null or an empty list (`ingress: []`) is the same thing: no rules
/// for that direction (Cilium's `len(r.Ingress) == 0`). A section with at least one element puts
/// the selected endpoints into default deny for its direction, unless `enableDefaultDeny` turns
/// that off; an element that selects nothing, such as `ingress: [{}]`, is how a policy asks for
/// default deny alone. A rule whose four sections are all empty is rejected, as Cilium 1.19+ does.
public struct CiliumPolicyRule: Codable, Sendable, Hashable {
    /// Keys may carry a source prefix (`k8s:app`, `reserved:host`); without one they match a
    /// label of any source.
    public var endpointSelector: LabelSelector
    public var ingress: [CiliumIngressRule]?
    public var ingressDeny: [CiliumIngressRule]?
    public var egress: [CiliumEgressRule]?
    public var egressDeny: [CiliumEgressRule]?
    public var enableDefaultDeny: CiliumDefaultDeny?
    public var description: String?

    public init(
        endpointSelector: LabelSelector = LabelSelector(),
        ingress: [CiliumIngressRule]? = nil,
        ingressDeny: [CiliumIngressRule]? = nil,
        egress: [CiliumEgressRule]? = nil,
        egressDeny: [CiliumEgressRule]? = nil,
        enableDefaultDeny: CiliumDefaultDeny? = nil,
        description: String? = nil
    ) {
        self.endpointSelector = endpointSelector
        self.ingress = ingress
        self.ingressDeny = ingressDeny
        self.egress = egress
        self.egressDeny = egressDeny
        self.enableDefaultDeny = enableDefaultDeny
        self.description = description
    }

    static func rules(spec: CiliumPolicyRule?, specs: [CiliumPolicyRule]?) -> [(path: String, rule: CiliumPolicyRule)] {
        fieldRules(spec: spec, specs: specs).map { ($0.path.description, $0.rule) }
    }

    static func fieldRules(spec: CiliumPolicyRule?, specs: [CiliumPolicyRule]?) -> [(path: FieldPath, rule: CiliumPolicyRule)] {
        var result: [(path: FieldPath, rule: CiliumPolicyRule)] = []
        if let spec { result.append((FieldPath().field("spec"), spec)) }
        for (index, rule) in (specs ?? []).enumerated() { result.append((FieldPath().field("specs").index(index), rule)) }
        return result
    }
}

/// Per-direction override of whether a rule's sections switch its endpoints to default deny.
public struct CiliumDefaultDeny: Codable, Sendable, Hashable {
    public var ingress: Bool?
    public var egress: Bool?

    public init(ingress: Bool? = nil, egress: Bool? = nil) {
        self.ingress = ingress
        self.egress = egress
    }
}

/// Which side of a rule an element describes; names its peer fields (`fromEndpoints`,
/// `toEndpoints`, ...).
public protocol CiliumRuleSide: Sendable, Hashable {
    /// `from` or `to`.
    static var fieldPrefix: String { get }
    /// Cilium's fields of an element on this side that Meridian refuses.
    static var unsupportedFields: [String] { get }
}

/// The side of `ingress` and `ingressDeny` elements.
public enum CiliumIngressSide: CiliumRuleSide {
    public static let fieldPrefix = "from"
    public static let unsupportedFields = ["fromRequires", "fromNodes", "fromGroups", "icmps", "authentication"]
}

/// The side of `egress` and `egressDeny` elements.
public enum CiliumEgressSide: CiliumRuleSide {
    public static let fieldPrefix = "to"
    public static let unsupportedFields = ["toRequires", "toNodes", "toGroups", "toServices", "toFQDNs", "icmps", "authentication"]
}

/// One element of a rule's `ingress`/`ingressDeny` (`from...` peers) or `egress`/`egressDeny`
/// (`to...` peers): the peers (at most one kind of peer field per element, as in Cilium) and
/// the ports. Both sides are one type, decoded, validated and compiled by the same code.
///
/// A peer field given as an empty list (`fromEndpoints: []`) makes the element select no peer
/// at all, even with `toPorts`. With no peer field, an element with `toPorts` applies to every
/// peer on those ports, and an element with neither (`{}`) allows nothing.
public struct CiliumPeerRule<Side: CiliumRuleSide>: Codable, Sendable, Hashable {
    public var endpoints: [LabelSelector]?
    public var entities: [PolicyEntity]?
    public var cidr: [String]?
    public var cidrSet: [CiliumCIDRRule]?
    public var toPorts: [CiliumPortRule]?

    public init(endpoints: [LabelSelector]? = nil, entities: [PolicyEntity]? = nil, cidr: [String]? = nil,
                cidrSet: [CiliumCIDRRule]? = nil, toPorts: [CiliumPortRule]? = nil) {
        self.endpoints = endpoints
        self.entities = entities
        self.cidr = cidr
        self.cidrSet = cidrSet
        self.toPorts = toPorts
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        init(_ field: String) { stringValue = Side.fieldPrefix + field }
        static var toPorts: Key { Key(stringValue: "toPorts") }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        self.init(endpoints: try container.decodeIfPresent([LabelSelector].self, forKey: Key("Endpoints")),
                  entities: try container.decodeIfPresent([PolicyEntity].self, forKey: Key("Entities")),
                  cidr: try container.decodeIfPresent([String].self, forKey: Key("CIDR")),
                  cidrSet: try container.decodeIfPresent([CiliumCIDRRule].self, forKey: Key("CIDRSet")),
                  toPorts: try container.decodeIfPresent([CiliumPortRule].self, forKey: .toPorts))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encodeIfPresent(endpoints, forKey: Key("Endpoints"))
        try container.encodeIfPresent(entities, forKey: Key("Entities"))
        try container.encodeIfPresent(cidr, forKey: Key("CIDR"))
        try container.encodeIfPresent(cidrSet, forKey: Key("CIDRSet"))
        try container.encodeIfPresent(toPorts, forKey: .toPorts)
    }

    /// The peer fields that are present, with their names on this side.
    func presentPeerFields() -> [(name: String, count: Int)] {
        var fields: [(name: String, count: Int)] = []
        if let endpoints { fields.append(("\(Side.fieldPrefix)Endpoints", endpoints.count)) }
        if let entities { fields.append(("\(Side.fieldPrefix)Entities", entities.count)) }
        if let cidr { fields.append(("\(Side.fieldPrefix)CIDR", cidr.count)) }
        if let cidrSet { fields.append(("\(Side.fieldPrefix)CIDRSet", cidrSet.count)) }
        return fields
    }
}

/// One `ingress` or `ingressDeny` element: its peers (`from…`) and ports.
public typealias CiliumIngressRule = CiliumPeerRule<CiliumIngressSide>
/// One `egress` or `egressDeny` element: its peers (`to…`) and ports.
public typealias CiliumEgressRule = CiliumPeerRule<CiliumEgressSide>

extension CiliumPeerRule where Side == CiliumIngressSide {
    public var fromEndpoints: [LabelSelector]? { endpoints }
    public var fromEntities: [PolicyEntity]? { entities }
    public var fromCIDR: [String]? { cidr }
    public var fromCIDRSet: [CiliumCIDRRule]? { cidrSet }
}

extension CiliumPeerRule where Side == CiliumEgressSide {
    public var toEndpoints: [LabelSelector]? { endpoints }
    public var toEntities: [PolicyEntity]? { entities }
    public var toCIDR: [String]? { cidr }
    public var toCIDRSet: [CiliumCIDRRule]? { cidrSet }
}

/// A CIDR with holes, Cilium's `fromCIDRSet`/`toCIDRSet` element: the same shape as a
/// NetworkPolicy `ipBlock`, validated by Cilium's rules (`validateAsCIDRSet`).
public typealias CiliumCIDRRule = IPBlock

/// A `toPorts` element: a list of ports. Layer-7 rules are not supported.
public struct CiliumPortRule: Codable, Sendable, Hashable {
    public var ports: [CiliumPortProtocol]

    public init(ports: [CiliumPortProtocol]) {
        self.ports = ports
    }

    private enum CodingKeys: String, CodingKey {
        case ports
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ports = try container.decodeIfPresent([CiliumPortProtocol].self, forKey: .ports) ?? []
    }
}

/// A port of a Cilium rule: a number (`"0"` for every port), a range with `endPort`, or a
/// container port name (kept in lowercase, as Cilium compares names case-insensitively).
public struct CiliumPortProtocol: Codable, Sendable, Hashable {
    public var port: String
    /// `ANY` (the default) stands for TCP, UDP and SCTP.
    public var `protocol`: L4Protocol
    public var endPort: Int?

    public init(port: String, protocol: L4Protocol = .any, endPort: Int? = nil) {
        self.port = port
        self.protocol = `protocol`
        self.endPort = endPort
    }

    private enum CodingKeys: String, CodingKey {
        case port, `protocol`, endPort
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        port = try container.decode(String.self, forKey: .port)
        `protocol` = try container.decodeIfPresent(L4Protocol.self, forKey: .protocol) ?? .any
        endPort = try container.decodeIfPresent(Int.self, forKey: .endPort)
    }

    /// The port as a number, or nil for a name.
    public var number: Int? {
        guard !port.isEmpty, port.allSatisfy(NameSyntax.isDigit) else { return nil }
        return Int(port)
    }

    var selector: PortSelector {
        guard let number else { return PortSelector(protocol: `protocol`, ports: .named(port)) }
        if number == 0 { return PortSelector(protocol: `protocol`, ports: .all) }
        return PortSelector(protocol: `protocol`, ports: .range(first: UInt16(number), last: UInt16(endPort ?? number)))
    }
}

// MARK: - Manifest decoding

extension CiliumPolicyObject {
    /// A cluster-wide policy drops a `metadata.namespace` of the manifest, as the API server does.
    init(manifest object: ManifestMapping) throws(FieldError) {
        var metadata = try ObjectMeta(manifest: object.required("metadata"))
        if !Scope.kind.isNamespaced { metadata.namespace = nil }
        let (spec, specs) = try CiliumPolicyRule.decodeSpecs(object)
        self.init(metadata: metadata, spec: spec, specs: specs)
    }
}

extension CiliumPolicyRule {
    static func decodeSpecs(_ object: ManifestMapping) throws(FieldError) -> (CiliumPolicyRule?, [CiliumPolicyRule]?) {
        let spec = try object.optional("spec").map { value throws(FieldError) in try CiliumPolicyRule(manifest: value) }
        var specs: [CiliumPolicyRule]?
        if let specsValue = object.optional("specs") {
            var rules: [CiliumPolicyRule] = []
            for element in try specsValue.list() { rules.append(try CiliumPolicyRule(manifest: element)) }
            specs = rules
        }
        if spec == nil, specs?.isEmpty != false {
            throw FieldError(object.path.field("spec"), "is required: give one rule in spec or a list of rules in specs")
        }
        return (spec, specs)
    }

    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.ciliumRule)
        if let nodeSelector = map.optional("nodeSelector") {
            throw FieldError(
                nodeSelector.path,
                "is not supported: Meridian enforces policy on pods only; select them with endpointSelector"
            )
        }
        guard let selector = map.optional("endpointSelector") else {
            throw FieldError(
                map.path.field("endpointSelector"),
                "is required; endpointSelector: {} selects every endpoint the policy covers"
            )
        }
        var enableDefaultDeny: CiliumDefaultDeny?
        if let defaultDeny = map.optional("enableDefaultDeny") {
            let flags = try defaultDeny.mapping(.ciliumDefaultDeny)
            enableDefaultDeny = CiliumDefaultDeny(
                ingress: try flags.optional("ingress")?.boolean(),
                egress: try flags.optional("egress")?.boolean()
            )
        }
        self.init(
            endpointSelector: try LabelSelector(manifest: selector),
            ingress: try Self.section(map.optional("ingress")),
            ingressDeny: try Self.section(map.optional("ingressDeny")),
            egress: try Self.section(map.optional("egress")),
            egressDeny: try Self.section(map.optional("egressDeny")),
            enableDefaultDeny: enableDefaultDeny,
            description: try map.optional("description")?.string()
        )
    }

    static let unsupportedPortRuleFields = ["rules", "serverNames", "listener", "terminatingTLS", "originatingTLS"]

    private static func section<Side>(_ value: ManifestValue?) throws(FieldError) -> [CiliumPeerRule<Side>]? {
        guard let value else { return nil }
        let prefix = Side.fieldPrefix
        var elements: [CiliumPeerRule<Side>] = []
        for element in try value.list() {
            let map = try element.mapping(.ciliumPeerRule(Side.self))
            for field in Side.unsupportedFields {
                if let present = map.optional(field) {
                    throw FieldError(present.path, "is not supported by Meridian")
                }
            }
            var cidrSet: [CiliumCIDRRule]?
            if let setValue = map.optional("\(prefix)CIDRSet") {
                var rules: [CiliumCIDRRule] = []
                for entry in try setValue.list() { rules.append(try CiliumCIDRRule(cidrSetManifest: entry)) }
                cidrSet = rules
            }
            var endpoints: [LabelSelector]?
            if let endpointsValue = map.optional("\(prefix)Endpoints") {
                var selectors: [LabelSelector] = []
                for entry in try endpointsValue.list() { selectors.append(try LabelSelector(manifest: entry)) }
                endpoints = selectors
            }
            var entities: [PolicyEntity]?
            if let entitiesValue = map.optional("\(prefix)Entities") {
                var names: [PolicyEntity] = []
                for entry in try entitiesValue.list() {
                    let text = try entry.string()
                    guard let entity = PolicyEntity(rawValue: text) else {
                        let known = PolicyEntity.allCases.map(\.rawValue).joined(separator: ", ")
                        throw FieldError(entry.path, "unsupported entity \(text.debugDescription); expected one of \(known)")
                    }
                    names.append(entity)
                }
                entities = names
            }
            var toPorts: [CiliumPortRule]?
            if let portsValue = map.optional("toPorts") {
                var rules: [CiliumPortRule] = []
                for entry in try portsValue.list() { rules.append(try CiliumPortRule(manifest: entry)) }
                toPorts = rules
            }
            elements.append(CiliumPeerRule(endpoints: endpoints, entities: entities, cidr: try map.optional("\(prefix)CIDR")?.stringList(),
                                           cidrSet: cidrSet, toPorts: toPorts))
        }
        return elements
    }
}

extension CiliumCIDRRule {
    init(cidrSetManifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.ciliumCIDRRule)
        for field in ["cidrGroupRef", "cidrGroupSelector"] {
            if let present = map.optional(field) {
                throw FieldError(present.path, "is not supported by Meridian; give the prefix in cidr")
            }
        }
        self.init(
            cidr: try map.required("cidr").string(),
            except: try map.optional("except")?.stringList() ?? []
        )
    }
}

extension CiliumPortRule {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.ciliumPortRule)
        for field in CiliumPolicyRule.unsupportedPortRuleFields {
            if let present = map.optional(field) {
                throw FieldError(present.path, "is not supported: Meridian enforces policy at layers 3 and 4 only")
            }
        }
        var ports: [CiliumPortProtocol] = []
        for element in try map.optional("ports")?.list() ?? [] {
            ports.append(try CiliumPortProtocol(manifest: element))
        }
        self.init(ports: ports)
    }
}

extension CiliumPortProtocol {
    static let supportedProtocols: [L4Protocol] = [.tcp, .udp, .sctp, .any]
    static let unsupportedProtocols = ["ICMP", "ICMPV6", "VRRP", "IGMP"]

    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.ciliumPortProtocol)
        guard let portValue = map.optional("port") else {
            throw FieldError(map.path.field("port"), "is required; use \"0\" for every port")
        }
        let port: String = switch try portValue.intOrString() {
        case let .int(number): String(number)
        case let .string(text): text.lowercased()
        }
        self.init(
            port: port,
            protocol: try map.optional("protocol").map { value throws(FieldError) in try Self.parseProtocol(value) } ?? .any,
            endPort: try map.optional("endPort")?.integer()
        )
    }

    private static func parseProtocol(_ value: ManifestValue) throws(FieldError) -> L4Protocol {
        let text = try value.string()
        if let parsed = L4Protocol(rawValue: text.uppercased()), supportedProtocols.contains(parsed) {
            return parsed
        }
        let choices = supportedProtocols.map(\.rawValue).joined(separator: ", ")
        if unsupportedProtocols.contains(text.uppercased()) {
            throw FieldError(value.path, "protocol \(text) is not supported by Meridian; expected one of \(choices)")
        }
        throw FieldError(value.path, "expected one of \(choices), got \(text.debugDescription)")
    }
}

extension ManifestValue {
    /// A YAML boolean (`true`/`false`); a quoted `"true"` is text and is refused.
    func boolean() throws(FieldError) -> Bool {
        guard case let .scalar(scalar) = node, Tag.Name(rawValue: node.tag.rawValue) == .bool,
            let value = Bool.construct(from: scalar)
        else {
            let shown: String = switch node {
            case let .scalar(scalar): scalar.string.debugDescription
            case .mapping: "a mapping"
            case .sequence: "a list"
            case .alias: "an alias"
            }
            throw FieldError(path, "expected a boolean (true or false), got \(shown)")
        }
        return value
    }
}

// MARK: - Validation

extension CiliumPolicyObject {
    func validate() throws(FieldError) {
        try PolicyMetadata.validate(metadata, at: FieldPath().field("metadata"))
        for (path, rule) in CiliumPolicyRule.fieldRules(spec: spec, specs: specs) {
            try rule.validate(at: path)
        }
    }
}

extension CiliumPolicyRule {
    /// The maximum number of ports in one `toPorts` element, Cilium's `maxPorts`.
    static let maximumPorts = 40

    var hasRules: Bool {
        [ingress?.count, ingressDeny?.count, egress?.count, egressDeny?.count].contains { ($0 ?? 0) > 0 }
    }

    func validate(at path: FieldPath) throws(FieldError) {
        try CiliumSelectorKey.validate(endpointSelector, at: path.field("endpointSelector"))
        guard hasRules else {
            throw FieldError(
                path,
                "rule must have at least one of ingress, ingressDeny, egress, egressDeny with an element; "
                    + "write ingress: [{}] to only put the selected endpoints into default deny"
            )
        }
        for (index, rule) in (ingress ?? []).enumerated() {
            try rule.validate(at: path.field("ingress").index(index))
        }
        for (index, rule) in (ingressDeny ?? []).enumerated() {
            try rule.validate(at: path.field("ingressDeny").index(index))
        }
        for (index, rule) in (egress ?? []).enumerated() {
            try rule.validate(at: path.field("egress").index(index))
        }
        for (index, rule) in (egressDeny ?? []).enumerated() {
            try rule.validate(at: path.field("egressDeny").index(index))
        }
    }
}

extension CiliumPeerRule {
    func validate(at path: FieldPath) throws(FieldError) {
        let prefix = Side.fieldPrefix
        let used = presentPeerFields().filter { $0.count > 0 }
        if used.count > 1 {
            throw FieldError(
                path,
                "combining \(used[0].name) and \(used[1].name) in one rule is not supported (nor by Cilium); "
                    + "put them in separate rules"
            )
        }
        for (index, selector) in (endpoints ?? []).enumerated() {
            try CiliumSelectorKey.validate(selector, at: path.field("\(prefix)Endpoints").index(index))
        }
        for (index, text) in (cidr ?? []).enumerated() {
            _ = try PolicyCIDR.parsePrefixOrAddress(text, at: path.field("\(prefix)CIDR").index(index))
        }
        for (index, rule) in (cidrSet ?? []).enumerated() {
            try rule.validateAsCIDRSet(at: path.field("\(prefix)CIDRSet").index(index))
        }
        for (index, rule) in (toPorts ?? []).enumerated() {
            let rulePath = path.field("toPorts").index(index)
            if rule.ports.count > CiliumPolicyRule.maximumPorts {
                throw FieldError(
                    rulePath.field("ports"),
                    "too many ports, the maximum is \(CiliumPolicyRule.maximumPorts), got \(rule.ports.count)"
                )
            }
            for (portIndex, port) in rule.ports.enumerated() {
                try port.validate(at: rulePath.field("ports").index(portIndex))
            }
        }
    }
}

extension CiliumCIDRRule {
    /// Cilium's rule for holes: inside the prefix (a hole may equal it).
    func validateAsCIDRSet(at path: FieldPath) throws(FieldError) {
        let block = try PolicyCIDR.parse(cidr, at: path.field("cidr"))
        for (index, text) in except.enumerated() {
            let exceptPath = path.field("except").index(index)
            let hole = try PolicyCIDR.parse(text, at: exceptPath)
            guard hole.family == block.family, block.contains(hole) else {
                throw FieldError(exceptPath, "must lie inside cidr \(cidr), got \(text)")
            }
        }
    }
}

extension CiliumPortProtocol {
    func validate(at path: FieldPath) throws(FieldError) {
        let portPath = path.field("port")
        guard let number else {
            if let problem = NameSyntax.ianaServiceNameProblem(port) {
                throw FieldError(
                    portPath,
                    "must be a port number or a container port name; invalid port name \(port.debugDescription): \(problem)"
                )
            }
            if endPort != nil {
                throw FieldError(path.field("endPort"), "may not be specified when port is a name (\(port.debugDescription))")
            }
            return
        }
        guard (0...65535).contains(number) else {
            throw FieldError(portPath, "must be between 0 (every port) and 65535, got \(number)")
        }
        guard let endPort else { return }
        if number == 0 {
            throw FieldError(path.field("endPort"), "may not be specified when port is 0 (every port)")
        }
        try PolicyPortSyntax.checkNumber(endPort, at: path.field("endPort"))
        guard endPort >= number else {
            throw FieldError(path.field("endPort"), "must be greater than or equal to port \(number), got \(endPort)")
        }
    }
}

/// The keys of Cilium endpoint selectors: an optional label source, then a label key.
enum CiliumSelectorKey {
    static let sources = [LabelSource.k8s, LabelSource.any, LabelSource.reserved]

    /// Splits `source:key`; `any:` and no prefix both read any source (`nil`).
    static func split(_ text: String) -> (source: String?, key: String) {
        guard let colon = text.firstIndex(of: ":") else { return (nil, text) }
        let source = String(text[..<colon])
        return (source == LabelSource.any ? nil : source, String(text[text.index(after: colon)...]))
    }

    static func problem(_ text: String) -> String? {
        var source: String?
        var key = text
        if let colon = text.firstIndex(of: ":") {
            source = String(text[..<colon])
            key = String(text[text.index(after: colon)...])
        }
        if let source, !sources.contains(source) {
            return "unknown label source \(source.debugDescription); use k8s:, reserved:, any: or no prefix"
        }
        if source == LabelSource.reserved {
            if ReservedIdentity(labelName: key) == nil {
                let names = ReservedIdentity.allCases.map(\.labelName).joined(separator: ", ")
                return "unknown reserved label \(key.debugDescription); expected one of \(names)"
            }
            return nil
        }
        if key.hasPrefix(LabelKeys.namespaceLabelsPrefix) {
            return NameSyntax.qualifiedNameProblem(String(key.dropFirst(LabelKeys.namespaceLabelsPrefix.count)))
                .map { "namespace label key: \($0)" }
        }
        return NameSyntax.qualifiedNameProblem(key)
    }

    static func validate(_ selector: LabelSelector, at path: FieldPath) throws(FieldError) {
        let labelsPath = path.field("matchLabels")
        for (key, value) in selector.matchLabels.sorted(by: { $0.key < $1.key }) {
            if let problem = problem(key) {
                throw FieldError(labelsPath.key(key), "invalid label key: \(problem)")
            }
            if let problem = NameSyntax.labelValueProblem(value) {
                throw FieldError(labelsPath.key(key), "invalid label value \(value.debugDescription): \(problem)")
            }
        }
        for (index, requirement) in selector.matchExpressions.enumerated() {
            let requirementPath = path.field("matchExpressions").index(index)
            if let problem = problem(requirement.key) {
                throw FieldError(requirementPath.field("key"), "invalid label key: \(problem)")
            }
            let valuesPath = requirementPath.field("values")
            let op = requirement.operator
            if op.takesValues, requirement.values.isEmpty {
                throw FieldError(valuesPath, "operator \(op.rawValue) needs at least one value")
            }
            if !op.takesValues, !requirement.values.isEmpty {
                throw FieldError(valuesPath, "operator \(op.rawValue) takes no values, got \(requirement.values.count)")
            }
            for (valueIndex, value) in requirement.values.enumerated() {
                if let problem = NameSyntax.labelValueProblem(value) {
                    throw FieldError(valuesPath.index(valueIndex), "invalid label value \(value.debugDescription): \(problem)")
                }
            }
        }
    }
}

// MARK: - Compilation

extension CiliumPolicyObject {
    /// The normalized rules as enforced in `settings.clusterName`; see `CiliumPolicyCompiler`.
    public func rules(settings: PolicySettings) -> [PolicyRule] {
        CiliumPolicyCompiler(kind: Scope.kind, namespace: Scope.namespace(of: metadata), name: metadata.name, settings: settings)
            .compile(rules)
    }
}

/// Compiles Cilium rules the way Cilium's agent reads them:
///
/// - The subject is `endpointSelector`, within the policy's namespace for CiliumNetworkPolicy
///   (anywhere for the clusterwide kind) and always within the enforcing cluster.
/// - `fromEndpoints`/`toEndpoints` selectors that name a `reserved:` label are taken as written.
///   Otherwise, unless they name `io.kubernetes.pod.namespace`, they are confined to the policy's
///   namespace (CiliumNetworkPolicy, unless they name an `io.cilium.k8s.namespace.labels.*` key)
///   or to endpoints that have a namespace (clusterwide). Then, under
///   `policyDefaultLocalCluster`, to the local cluster unless they name
///   `io.cilium.k8s.policy.cluster`.
/// - Each element of a non-empty section yields one rule; `enableDefaultDeny.<direction>`
///   (default true) says whether it switches the subjects to default deny.
/// - `toPorts` absent or empty means every port; `ANY` stands for TCP, UDP and SCTP.
struct CiliumPolicyCompiler {
    var kind: ResourceKind
    var namespace: String?
    var name: String
    var settings: PolicySettings

    func compile(_ rules: [(path: String, rule: CiliumPolicyRule)]) -> [PolicyRule] {
        rules.flatMap { compile($0.rule, path: $0.path) }
    }

    private func compile(_ rule: CiliumPolicyRule, path: String) -> [PolicyRule] {
        let subject = PolicySelectors.subject(
            PolicySelectors.cilium(rule.endpointSelector), namespace: namespace, cluster: settings.clusterName)
        let ingressDefaultDeny = rule.enableDefaultDeny?.ingress ?? true
        let egressDefaultDeny = rule.enableDefaultDeny?.egress ?? true
        var result: [PolicyRule] = []
        func add<Side>(_ section: String, _ direction: TrafficDirection, _ action: PolicyAction, _ defaultDeny: Bool,
                       _ elements: [CiliumPeerRule<Side>]?) {
            for (index, element) in (elements ?? []).enumerated() {
                result.append(PolicyRule(
                    origin: PolicyOrigin(kind: kind, namespace: namespace, name: name, rule: "\(path).\(section)[\(index)]"),
                    cluster: settings.clusterName,
                    subject: subject,
                    direction: direction,
                    action: action,
                    enablesDefaultDeny: defaultDeny,
                    peers: peers(element),
                    ports: ports(element.toPorts)
                ))
            }
        }
        add("ingress", .ingress, .allow, ingressDefaultDeny, rule.ingress)
        add("ingressDeny", .ingress, .deny, ingressDefaultDeny, rule.ingressDeny)
        add("egress", .egress, .allow, egressDefaultDeny, rule.egress)
        add("egressDeny", .egress, .deny, egressDefaultDeny, rule.egressDeny)
        return result
    }

    private func peers<Side>(_ element: CiliumPeerRule<Side>) -> [PeerSelector] {
        let fields = [element.endpoints?.count, element.entities?.count, element.cidr?.count, element.cidrSet?.count]
        if fields.contains(0) { return [] }
        if fields.allSatisfy({ $0 == nil }) {
            return (element.toPorts ?? []).isEmpty ? [] : [.entity(.all)]
        }
        var peers: [PeerSelector] = []
        for selector in element.endpoints ?? [] {
            peers.append(.endpoints(peerSelector(selector)))
        }
        for entity in element.entities ?? [] {
            peers.append(.entity(entity))
        }
        for text in element.cidr ?? [] {
            if let prefix = try? PolicyCIDR.parsePrefixOrAddress(text, at: FieldPath()) {
                peers.append(.cidr(CIDRPeer(cidr: prefix)))
            }
        }
        for rule in element.cidrSet ?? [] {
            if let peer = try? rule.peer() { peers.append(.cidr(peer)) }
        }
        return peers
    }

    private func peerSelector(_ labelSelector: LabelSelector) -> EndpointSelector {
        var selector = PolicySelectors.cilium(labelSelector)
        if selector.reads(source: LabelSource.reserved) { return selector }
        if !selector.constrains(kubernetesKey: LabelKeys.podNamespace) {
            if let namespace {
                if !selector.constrainsKubernetesKey(withPrefix: LabelKeys.namespaceLabelsPrefix) {
                    selector = selector.adding(.equals(LabelSource.k8s, LabelKeys.podNamespace, namespace))
                }
            } else {
                selector = selector.adding(.init(source: LabelSource.k8s, key: LabelKeys.podNamespace, operator: .exists))
            }
        }
        return PolicySelectors.defaultCluster(selector, settings: settings)
    }

    private func ports(_ portRules: [CiliumPortRule]?) -> [PortSelector] {
        guard let portRules, !portRules.isEmpty else { return [.all] }
        return portRules.flatMap { $0.ports.map(\.selector) }
    }
}
