/// A Kubernetes Service: the stable name and ports in front of a set of pods. It is
/// the unit ClusterMesh shares between clusters, so it is the central object of Meridian.
public struct Service: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: ServiceSpec

    public init(metadata: ObjectMeta, spec: ServiceSpec) {
        self.apiVersion = ResourceKind.service.apiVersion
        self.kind = ResourceKind.service.rawValue
        self.metadata = metadata
        self.spec = spec
    }
}

/// How a Service is exposed and which pods and ports it fronts.
public struct ServiceSpec: Codable, Sendable, Hashable {
    public var type: ServiceType
    public var clusterIP: String?
    public var clusterIPs: [String]?
    public var selector: [String: String]
    public var ports: [ServicePort]
    public var sessionAffinity: String?
    /// The DNS name an `ExternalName` Service aliases.
    public var externalName: String?

    public init(
        type: ServiceType = .clusterIP,
        clusterIP: String? = nil,
        clusterIPs: [String]? = nil,
        selector: [String: String] = [:],
        ports: [ServicePort] = [],
        sessionAffinity: String? = nil,
        externalName: String? = nil
    ) {
        self.type = type
        self.clusterIP = clusterIP
        self.clusterIPs = clusterIPs
        self.selector = selector
        self.ports = ports
        self.sessionAffinity = sessionAffinity
        self.externalName = externalName
    }

    /// The marker `clusterIP` value that asks for a Service without a virtual IP.
    public static let headlessClusterIP = "None"

    /// A headless Service gets no virtual IP; clients resolve the backing pods directly.
    public var isHeadless: Bool {
        clusterIP == Self.headlessClusterIP || clusterIPs?.first == Self.headlessClusterIP
    }

    private enum CodingKeys: String, CodingKey {
        case type, clusterIP, clusterIPs, selector, ports, sessionAffinity, externalName
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decodeIfPresent(ServiceType.self, forKey: .type) ?? .clusterIP
        clusterIP = try container.decodeIfPresent(String.self, forKey: .clusterIP)
        clusterIPs = try container.decodeIfPresent([String].self, forKey: .clusterIPs)
        selector = try container.decodeIfPresent([String: String].self, forKey: .selector) ?? [:]
        ports = try container.decodeIfPresent([ServicePort].self, forKey: .ports) ?? []
        sessionAffinity = try container.decodeIfPresent(String.self, forKey: .sessionAffinity)
        externalName = try container.decodeIfPresent(String.self, forKey: .externalName)
    }
}

/// How far outside the cluster a Service is reachable.
public enum ServiceType: String, Codable, Sendable, Hashable, CaseIterable {
    case clusterIP = "ClusterIP"
    case nodePort = "NodePort"
    case loadBalancer = "LoadBalancer"
    case externalName = "ExternalName"

    /// Only these types open a port on every node, so only they may carry `nodePort`.
    public var allocatesNodePorts: Bool {
        self == .nodePort || self == .loadBalancer
    }
}

/// One port a Service listens on and where on the backing pods it forwards to.
public struct ServicePort: Codable, Sendable, Hashable {
    public var name: String?
    public var `protocol`: TransportProtocol
    public var port: Int
    public var targetPort: IntOrString?
    public var nodePort: Int?

    public init(
        name: String? = nil,
        protocol: TransportProtocol = .tcp,
        port: Int,
        targetPort: IntOrString? = nil,
        nodePort: Int? = nil
    ) {
        self.name = name
        self.protocol = `protocol`
        self.port = port
        self.targetPort = targetPort
        self.nodePort = nodePort
    }

    /// The pod port traffic goes to: `targetPort`, or the Service port when it is unset.
    public var effectiveTargetPort: IntOrString {
        targetPort ?? .int(port)
    }

    private enum CodingKeys: String, CodingKey {
        case name, `protocol`, port, targetPort, nodePort
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        `protocol` = try container.decodeIfPresent(TransportProtocol.self, forKey: .protocol) ?? .tcp
        port = try container.decode(Int.self, forKey: .port)
        targetPort = try container.decodeIfPresent(IntOrString.self, forKey: .targetPort)
        nodePort = try container.decodeIfPresent(Int.self, forKey: .nodePort)
    }
}

/// A port given either by number or by the name of a container port, as Kubernetes
/// allows for `targetPort`; both `8080` and `"http"` must survive storage unchanged.
public enum IntOrString: Codable, Sendable, Hashable, CustomStringConvertible,
    ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    case int(Int)
    case string(String)

    public init(integerLiteral value: Int) {
        self = .int(value)
    }

    public init(stringLiteral value: String) {
        self = .string(value)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int.self) {
            self = .int(number)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .int(number): try container.encode(number)
        case let .string(text): try container.encode(text)
        }
    }

    public var description: String {
        switch self {
        case let .int(number): String(number)
        case let .string(text): text
        }
    }
}

/// The transport protocols a Service port can carry; Kubernetes spells them in capitals.
public enum TransportProtocol: String, Codable, Sendable, Hashable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"
}

// MARK: - Manifest decoding

extension Service {
    init(manifest object: ManifestMapping) throws(FieldError) {
        let metadata = try ObjectMeta(manifest: object.required("metadata"))
        var spec = ServiceSpec()
        if let specValue = object.optional("spec") {
            spec = try ServiceSpec(manifest: specValue)
        }
        self.init(metadata: metadata, spec: spec)
    }
}

extension ServiceSpec {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.serviceSpec)
        self.init(
            type: try map.optional("type")?.enumeration(ServiceType.self) ?? .clusterIP,
            clusterIP: try map.optional("clusterIP")?.string(),
            clusterIPs: try map.optional("clusterIPs")?.stringList(),
            selector: try map.optional("selector")?.stringMap() ?? [:],
            ports: try Self.decodePorts(map.optional("ports")),
            sessionAffinity: try map.optional("sessionAffinity")?.string(),
            externalName: try map.optional("externalName")?.string()
        )
    }

    private static func decodePorts(_ value: ManifestValue?) throws(FieldError) -> [ServicePort] {
        guard let value else { return [] }
        var ports: [ServicePort] = []
        for element in try value.list() {
            ports.append(try ServicePort(manifest: element))
        }
        return ports
    }
}

extension ServicePort {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.servicePort)
        self.init(
            name: try map.optional("name")?.string(),
            protocol: try map.optional("protocol")?.enumeration(TransportProtocol.self) ?? .tcp,
            port: try map.required("port").integer(),
            targetPort: try map.optional("targetPort")?.intOrString(),
            nodePort: try map.optional("nodePort")?.integer()
        )
    }
}

// MARK: - Validation

extension Service {
    func validate() throws(FieldError) {
        let metadataPath = FieldPath().field("metadata")
        try metadata.validate(at: metadataPath)
        try validateMeshAnnotations(at: metadataPath.field("annotations"))
        try spec.validate(at: FieldPath().field("spec"))
    }

    private func validateMeshAnnotations(at path: FieldPath) throws(FieldError) {
        do throws(ServiceMeshAnnotationError) {
            _ = try ServiceMeshAnnotations.parse(metadata.annotations)
        } catch {
            throw FieldError(
                path.key(error.annotation),
                "expected \(error.expected), got \(error.value.debugDescription)"
            )
        }
    }
}

extension ServiceSpec {
    static let sessionAffinities = ["None", "ClientIP"]

    func validate(at path: FieldPath) throws(FieldError) {
        try validateExternalName(at: path)
        try validateClusterIP(at: path.field("clusterIP"))
        try validateClusterIPs(at: path.field("clusterIPs"))
        try NameSyntax.validateLabelMap(selector, at: path.field("selector"))
        try validateSessionAffinity(at: path.field("sessionAffinity"))
        try validatePorts(at: path.field("ports"))
    }

    private func validateExternalName(at path: FieldPath) throws(FieldError) {
        guard type == .externalName else { return }
        guard let externalName, !externalName.isEmpty else {
            throw FieldError(path.field("externalName"), "is required when type is ExternalName")
        }
        let hostName = externalName.hasSuffix(".") ? String(externalName.dropLast()) : externalName
        if let problem = NameSyntax.dns1123SubdomainProblem(hostName) {
            throw FieldError(path.field("externalName"), "invalid DNS name \(externalName.debugDescription): \(problem)")
        }
        if let clusterIP, !clusterIP.isEmpty {
            throw FieldError(path.field("clusterIP"), "must be empty when type is ExternalName, got \(clusterIP.debugDescription)")
        }
    }

    private func validateClusterIP(at path: FieldPath) throws(FieldError) {
        guard let clusterIP, !clusterIP.isEmpty else { return }
        if clusterIP == Self.headlessClusterIP {
            if type.allocatesNodePorts {
                throw FieldError(path, "may not be \"None\" (headless) when type is \(type.rawValue)")
            }
            return
        }
        do throws(IPParseError) {
            _ = try IPAddress(parsing: clusterIP)
        } catch {
            throw FieldError(
                path,
                "must be \"None\", empty, or an IPv4 or IPv6 address, got \(clusterIP.debugDescription): \(error.reason)"
            )
        }
    }

    private func validateClusterIPs(at path: FieldPath) throws(FieldError) {
        guard let clusterIPs, !clusterIPs.isEmpty else { return }
        if clusterIPs == [Self.headlessClusterIP] { return }
        if clusterIPs.count > 2 {
            throw FieldError(path, "may hold at most two addresses, one per IP family, got \(clusterIPs.count)")
        }
        var families: [IPAddress.Family] = []
        for (index, address) in clusterIPs.enumerated() {
            do throws(IPParseError) {
                families.append(try IPAddress(parsing: address).family)
            } catch {
                throw FieldError(
                    path.index(index),
                    "must be an IPv4 or IPv6 address, got \(address.debugDescription): \(error.reason)"
                )
            }
        }
        if families.count == 2, families[0] == families[1] {
            throw FieldError(path.index(1), "must be of a different IP family than clusterIPs[0]")
        }
        if let clusterIP, !clusterIP.isEmpty, clusterIP != clusterIPs[0] {
            throw FieldError(
                path.index(0),
                "must equal spec.clusterIP \(clusterIP.debugDescription), got \(clusterIPs[0].debugDescription)"
            )
        }
    }

    private func validateSessionAffinity(at path: FieldPath) throws(FieldError) {
        guard let sessionAffinity, !Self.sessionAffinities.contains(sessionAffinity) else { return }
        let choices = Self.sessionAffinities.joined(separator: ", ")
        throw FieldError(path, "expected one of \(choices), got \(sessionAffinity.debugDescription)")
    }

    private func validatePorts(at path: FieldPath) throws(FieldError) {
        if ports.isEmpty {
            guard type == .externalName || isHeadless else {
                throw FieldError(path, "at least one port is required")
            }
            return
        }
        var indexByName: [String: Int] = [:]
        var indexByEndpoint: [PortEndpoint: Int] = [:]
        for (index, port) in ports.enumerated() {
            let portPath = path.index(index)
            try port.validate(at: portPath, serviceType: type)
            try checkPortName(port, at: portPath, index: index, seen: &indexByName, in: path)
            let endpoint = PortEndpoint(port: port.port, protocol: port.protocol)
            if let earlier = indexByEndpoint[endpoint] {
                throw FieldError(portPath, "duplicate port \(endpoint) (already used by \(path.index(earlier)))")
            }
            indexByEndpoint[endpoint] = index
        }
    }

    private func checkPortName(
        _ port: ServicePort,
        at portPath: FieldPath,
        index: Int,
        seen: inout [String: Int],
        in path: FieldPath
    ) throws(FieldError) {
        guard let name = port.name, !name.isEmpty else {
            if ports.count > 1 {
                throw FieldError(portPath.field("name"), "is required when a Service has more than one port")
            }
            return
        }
        if let earlier = seen[name] {
            throw FieldError(
                portPath.field("name"),
                "duplicate port name \(name.debugDescription) (already used by \(path.index(earlier)))"
            )
        }
        seen[name] = index
    }
}

/// A port number together with its protocol: the unit that must be unique within a Service.
private struct PortEndpoint: Hashable, CustomStringConvertible {
    var port: Int
    var `protocol`: TransportProtocol

    var description: String { "\(port)/\(`protocol`.rawValue)" }
}

extension ServicePort {
    static let validPortNumbers = 1...65535

    func validate(at path: FieldPath, serviceType: ServiceType) throws(FieldError) {
        if let name, !name.isEmpty, let problem = NameSyntax.dns1123LabelProblem(name) {
            throw FieldError(path.field("name"), "invalid port name \(name.debugDescription): \(problem)")
        }
        try Self.checkPortNumber(port, at: path.field("port"))
        try validateTargetPort(at: path.field("targetPort"))
        try validateNodePort(at: path.field("nodePort"), serviceType: serviceType)
    }

    private func validateTargetPort(at path: FieldPath) throws(FieldError) {
        switch targetPort {
        case nil:
            return
        case let .int(number)?:
            try Self.checkPortNumber(number, at: path)
        case let .string(name)?:
            if let problem = NameSyntax.ianaServiceNameProblem(name) {
                throw FieldError(
                    path,
                    "must be a port number or a port name; invalid port name \(name.debugDescription): \(problem)"
                )
            }
        }
    }

    private func validateNodePort(at path: FieldPath, serviceType: ServiceType) throws(FieldError) {
        guard let nodePort else { return }
        guard serviceType.allocatesNodePorts else {
            throw FieldError(path, "may only be set when type is NodePort or LoadBalancer, not \(serviceType.rawValue)")
        }
        try Self.checkPortNumber(nodePort, at: path)
    }

    private static func checkPortNumber(_ number: Int, at path: FieldPath) throws(FieldError) {
        guard validPortNumbers.contains(number) else {
            let range = "\(validPortNumbers.lowerBound) and \(validPortNumbers.upperBound)"
            throw FieldError(path, "must be between \(range), got \(number)")
        }
    }
}
