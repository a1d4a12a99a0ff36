/// A Kubernetes Pod: one or more processes sharing a network identity on one node. Pods
/// are the endpoints that Services balance over and that identities and policies are
/// attached to, so the lab needs them as objects of their own. Meridian has no container
/// images: a node runs each container's command directly, inside the pod's network namespace.
///
/// The status a node reports lives in `PodStatus`, stored apart from the pod, because
/// users and controllers write the spec while nodes write the status.
public struct Pod: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: PodSpec

    public init(metadata: ObjectMeta, spec: PodSpec) {
        self.apiVersion = ResourceKind.pod.apiVersion
        self.kind = ResourceKind.pod.rawValue
        self.metadata = metadata
        self.spec = spec
    }
}

/// The part of a pod that matters to a network lab: what to run, which ports it opens,
/// and where. Fields such as `image` or `resources` are accepted in manifests and dropped.
public struct PodSpec: Codable, Sendable, Hashable {
    public var containers: [Container]
    /// Pins the pod to a node; a pinned pod bypasses scheduling, as in Kubernetes.
    public var nodeName: String?
    /// `nil` behaves as `Always`, the Kubernetes default.
    public var restartPolicy: RestartPolicy?
    /// Seconds between the start of a deletion and SIGKILL: the preStop hooks run, then the
    /// containers get SIGTERM, and what is still running when it is over is killed. `nil` is
    /// Kubernetes' default of 30 (`PodTermination.defaultGracePeriodSeconds`).
    public var terminationGracePeriodSeconds: Int?
    /// The pod's hostname; with `subdomain` naming a headless Service, the pod's name under
    /// that service in DNS (`<hostname>.<cluster>.<service>.<namespace>.svc.clusterset.local`).
    public var hostname: String?
    public var subdomain: String?

    public init(containers: [Container], nodeName: String? = nil, restartPolicy: RestartPolicy? = nil,
                terminationGracePeriodSeconds: Int? = nil, hostname: String? = nil, subdomain: String? = nil) {
        self.containers = containers
        self.nodeName = nodeName
        self.restartPolicy = restartPolicy
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.hostname = hostname
        self.subdomain = subdomain
    }

    public var effectiveRestartPolicy: RestartPolicy { restartPolicy ?? .always }

    /// The grace period a deletion gives this pod.
    public var effectiveTerminationGracePeriodSeconds: Int {
        terminationGracePeriodSeconds ?? PodTermination.defaultGracePeriodSeconds
    }

    private enum CodingKeys: String, CodingKey {
        case containers, nodeName, restartPolicy, terminationGracePeriodSeconds, hostname, subdomain
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        containers = try container.decodeIfPresent([Container].self, forKey: .containers) ?? []
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy)
        terminationGracePeriodSeconds = try container.decodeIfPresent(Int.self, forKey: .terminationGracePeriodSeconds)
        hostname = try container.decodeIfPresent(String.self, forKey: .hostname)
        subdomain = try container.decodeIfPresent(String.self, forKey: .subdomain)
    }
}

/// When the node starts a pod's containers again after they exit.
public enum RestartPolicy: String, Codable, Sendable, Hashable, CaseIterable {
    case always = "Always"
    case onFailure = "OnFailure"
    case never = "Never"
}

/// One process of a pod. Without images there is no entrypoint to fall back on, so the
/// command line is `command` followed by `args`, and at least one of them must be given.
public struct Container: Codable, Sendable, Hashable {
    public var name: String
    /// Kept so that manifests round-trip; Meridian never pulls or runs images.
    public var image: String?
    public var command: [String]
    public var args: [String]
    public var ports: [ContainerPort]
    public var env: [EnvVar]
    /// When the container may receive Service traffic; `nil`: as soon as it runs.
    public var readinessProbe: Probe?
    /// What runs before the container is asked to stop.
    public var lifecycle: Lifecycle?

    public init(
        name: String,
        image: String? = nil,
        command: [String] = [],
        args: [String] = [],
        ports: [ContainerPort] = [],
        env: [EnvVar] = [],
        readinessProbe: Probe? = nil,
        lifecycle: Lifecycle? = nil
    ) {
        self.name = name
        self.image = image
        self.command = command
        self.args = args
        self.ports = ports
        self.env = env
        self.readinessProbe = readinessProbe
        self.lifecycle = lifecycle
    }

    /// What the node executes: the program is the first element.
    public var commandLine: [String] { command + args }

    private enum CodingKeys: String, CodingKey {
        case name, image, command, args, ports, env, readinessProbe, lifecycle
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        image = try container.decodeIfPresent(String.self, forKey: .image)
        command = try container.decodeIfPresent([String].self, forKey: .command) ?? []
        args = try container.decodeIfPresent([String].self, forKey: .args) ?? []
        ports = try container.decodeIfPresent([ContainerPort].self, forKey: .ports) ?? []
        env = try container.decodeIfPresent([EnvVar].self, forKey: .env) ?? []
        readinessProbe = try container.decodeIfPresent(Probe.self, forKey: .readinessProbe)
        lifecycle = try container.decodeIfPresent(Lifecycle.self, forKey: .lifecycle)
    }
}

/// A port a container listens on. Declaring it is what lets a Service refer to it by
/// name in `targetPort`.
public struct ContainerPort: Codable, Sendable, Hashable {
    public var name: String?
    public var containerPort: Int
    public var `protocol`: TransportProtocol

    public init(name: String? = nil, containerPort: Int, protocol: TransportProtocol = .tcp) {
        self.name = name
        self.containerPort = containerPort
        self.protocol = `protocol`
    }

    private enum CodingKeys: String, CodingKey {
        case name, containerPort, `protocol`
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        containerPort = try container.decode(Int.self, forKey: .containerPort)
        `protocol` = try container.decodeIfPresent(TransportProtocol.self, forKey: .protocol) ?? .tcp
    }
}

/// An environment variable of a container, given inline.
public struct EnvVar: Codable, Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String = "") {
        self.name = name
        self.value = value
    }

    private enum CodingKeys: String, CodingKey {
        case name, value
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        value = try container.decodeIfPresent(String.self, forKey: .value) ?? ""
    }
}

// MARK: - Manifest decoding

extension Pod {
    init(manifest object: ManifestMapping) throws(FieldError) {
        self.init(
            metadata: try ObjectMeta(manifest: object.required("metadata")),
            spec: try PodSpec(manifest: object.required("spec"))
        )
    }
}

extension PodSpec {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.podSpec)
        var containers: [Container] = []
        for element in try map.optional("containers")?.list() ?? [] {
            containers.append(try Container(manifest: element))
        }
        let nodeName = try map.optional("nodeName")?.string()
        self.init(
            containers: containers,
            nodeName: nodeName?.isEmpty == true ? nil : nodeName,
            restartPolicy: try map.optional("restartPolicy")?.enumeration(RestartPolicy.self),
            terminationGracePeriodSeconds: try map.optional("terminationGracePeriodSeconds")?.integer(),
            hostname: try map.optional("hostname")?.string(),
            subdomain: try map.optional("subdomain")?.string()
        )
    }
}

extension Container {
    /// Values from Secrets, ConfigMaps or the downward API would silently come out empty,
    /// so those forms are refused rather than ignored like `image` or `resources`.
    static let unsupportedEnvironmentMessage = "is not supported: Meridian has no Secrets, ConfigMaps "
        + "or downward API; give each variable inline with name and value"

    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.container)
        if let envFrom = map.optional("envFrom") {
            throw FieldError(envFrom.path, Self.unsupportedEnvironmentMessage)
        }
        var ports: [ContainerPort] = []
        for element in try map.optional("ports")?.list() ?? [] {
            ports.append(try ContainerPort(manifest: element))
        }
        var env: [EnvVar] = []
        for element in try map.optional("env")?.list() ?? [] {
            env.append(try EnvVar(manifest: element))
        }
        self.init(
            name: try map.required("name").string(),
            image: try map.optional("image")?.string(),
            command: try map.optional("command")?.stringList() ?? [],
            args: try map.optional("args")?.stringList() ?? [],
            ports: ports,
            env: env,
            readinessProbe: try map.optional("readinessProbe").map { value throws(FieldError) in try Probe(manifest: value) },
            lifecycle: try map.optional("lifecycle").map { value throws(FieldError) in try Lifecycle(manifest: value) }
        )
    }
}

extension ContainerPort {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.containerPort)
        let name = try map.optional("name")?.string()
        self.init(
            name: name?.isEmpty == true ? nil : name,
            containerPort: try map.required("containerPort").integer(),
            protocol: try map.optional("protocol")?.enumeration(TransportProtocol.self) ?? .tcp
        )
    }
}

extension EnvVar {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.envVar)
        if let valueFrom = map.optional("valueFrom") {
            throw FieldError(valueFrom.path, Container.unsupportedEnvironmentMessage)
        }
        self.init(
            name: try map.required("name").string(),
            value: try map.optional("value")?.string() ?? ""
        )
    }
}

// MARK: - Validation

extension Pod {
    func validate() throws(FieldError) {
        try metadata.validate(at: FieldPath().field("metadata"))
        try spec.validate(at: FieldPath().field("spec"))
    }
}

extension PodSpec {
    func validate(at path: FieldPath) throws(FieldError) {
        let containersPath = path.field("containers")
        guard !containers.isEmpty else {
            throw FieldError(containersPath, "at least one container is required")
        }
        var containerPathByName: [String: FieldPath] = [:]
        var portPathByName: [String: FieldPath] = [:]
        for (index, container) in containers.enumerated() {
            let containerPath = containersPath.index(index)
            try container.validate(at: containerPath)
            if let earlier = containerPathByName[container.name] {
                throw FieldError(
                    containerPath.field("name"),
                    "duplicate container name \(container.name.debugDescription) (already used by \(earlier))"
                )
            }
            containerPathByName[container.name] = containerPath
            try checkPortNames(of: container, at: containerPath.field("ports"), seen: &portPathByName)
        }
        try validateNodeName(at: path.field("nodeName"))
        for (field, value) in [("hostname", hostname), ("subdomain", subdomain)] {
            if let value, let problem = NameSyntax.dns1123LabelProblem(value) {
                throw FieldError(path.field(field), "invalid \(field) \(value.debugDescription): \(problem)")
            }
        }
        let gracePath = path.field("terminationGracePeriodSeconds")
        if let grace = terminationGracePeriodSeconds, !PodTermination.gracePeriodSeconds.contains(grace) {
            throw FieldError(gracePath, "must be between \(PodTermination.gracePeriodSeconds.lowerBound) and "
                             + "\(PodTermination.gracePeriodSeconds.upperBound) seconds, got \(grace)")
        }
        for (index, container) in containers.enumerated() {
            let containerPath = containersPath.index(index)
            if let probe = container.readinessProbe {
                try probe.validate(at: containerPath.field("readinessProbe"), ports: containers.flatMap(\.ports))
            }
            if let sleep = container.lifecycle?.preStop?.sleep {
                try sleep.validate(at: containerPath.field("lifecycle").field("preStop").field("sleep").field("seconds"),
                                   gracePeriod: effectiveTerminationGracePeriodSeconds)
            }
        }
    }

    /// Port names identify ports across the whole pod, since a Service's `targetPort`
    /// names a port without saying which container opens it.
    private func checkPortNames(
        of container: Container,
        at path: FieldPath,
        seen: inout [String: FieldPath]
    ) throws(FieldError) {
        for (index, port) in container.ports.enumerated() {
            guard let name = port.name else { continue }
            let portPath = path.index(index)
            if let earlier = seen[name] {
                throw FieldError(
                    portPath.field("name"),
                    "duplicate port name \(name.debugDescription) (already used by \(earlier))"
                )
            }
            seen[name] = portPath
        }
    }

    private func validateNodeName(at path: FieldPath) throws(FieldError) {
        guard let nodeName else { return }
        if let problem = NameSyntax.dns1123SubdomainProblem(nodeName) {
            throw FieldError(path, "invalid node name \(nodeName.debugDescription): \(problem)")
        }
    }
}

extension Container {
    func validate(at path: FieldPath) throws(FieldError) {
        if let problem = NameSyntax.dns1123LabelProblem(name) {
            throw FieldError(path.field("name"), "invalid container name \(name.debugDescription): \(problem)")
        }
        try validateCommand(at: path)
        for (index, port) in ports.enumerated() {
            try port.validate(at: path.field("ports").index(index))
        }
        for (index, variable) in env.enumerated() {
            try variable.validate(at: path.field("env").index(index))
        }
    }

    private func validateCommand(at path: FieldPath) throws(FieldError) {
        guard let program = commandLine.first else {
            throw FieldError(
                path.field("command"),
                "a command is required because Meridian runs the container's command directly on the node "
                    + "(there are no images); set command, or args to give the whole command line"
            )
        }
        if program.isEmpty {
            let programPath = command.isEmpty ? path.field("args").index(0) : path.field("command").index(0)
            throw FieldError(programPath, "the program to run must not be empty")
        }
        for (field, words) in [("command", command), ("args", args)] {
            if let index = words.firstIndex(where: { $0.contains("\0") }) {
                throw FieldError(path.field(field).index(index), "must not contain NUL")
            }
        }
    }
}

extension ContainerPort {
    func validate(at path: FieldPath) throws(FieldError) {
        if let name, let problem = NameSyntax.ianaServiceNameProblem(name) {
            throw FieldError(path.field("name"), "invalid port name \(name.debugDescription): \(problem)")
        }
        let valid = ServicePort.validPortNumbers
        guard valid.contains(containerPort) else {
            throw FieldError(
                path.field("containerPort"),
                "must be between \(valid.lowerBound) and \(valid.upperBound), got \(containerPort)"
            )
        }
    }
}

extension EnvVar {
    func validate(at path: FieldPath) throws(FieldError) {
        if name.isEmpty {
            throw FieldError(path.field("name"), "must not be empty")
        }
        if name.contains("=") || name.contains("\0") {
            throw FieldError(
                path.field("name"),
                "invalid variable name \(name.debugDescription): must not contain '=' or NUL"
            )
        }
        if value.contains("\0") {
            throw FieldError(path.field("value"), "must not contain NUL")
        }
    }
}
