/// A Kubernetes Deployment: keeps a number of identical pods running from one template.
/// It is how lab users get several backends behind a Service without naming each pod,
/// and how a template change rolls out to all of them.
public struct Deployment: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: DeploymentSpec

    public init(metadata: ObjectMeta, spec: DeploymentSpec) {
        self.apiVersion = ResourceKind.deployment.apiVersion
        self.kind = ResourceKind.deployment.rawValue
        self.metadata = metadata
        self.spec = spec
    }
}

/// How many pods a Deployment wants, which pods it counts as its own, and what they look like.
public struct DeploymentSpec: Codable, Sendable, Hashable {
    public static let defaultReplicas = 1

    public var replicas: Int
    /// Must select the template's labels; Kubernetes refuses a Deployment whose pods its
    /// own selector would not match.
    public var selector: LabelSelector
    public var template: PodTemplateSpec
    /// How a template change replaces the pods; `nil` is a rolling update with 25% surge and
    /// 25% unavailable, Kubernetes' default.
    public var strategy: DeploymentStrategy?

    public init(replicas: Int = defaultReplicas, selector: LabelSelector, template: PodTemplateSpec, strategy: DeploymentStrategy? = nil) {
        self.replicas = replicas
        self.selector = selector
        self.template = template
        self.strategy = strategy
    }

    private enum CodingKeys: String, CodingKey {
        case replicas, selector, template, strategy
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? Self.defaultReplicas
        selector = try container.decode(LabelSelector.self, forKey: .selector)
        template = try container.decode(PodTemplateSpec.self, forKey: .template)
        strategy = try container.decodeIfPresent(DeploymentStrategy.self, forKey: .strategy)
    }
}

/// Kubernetes' `DeploymentStrategy`: replace pods all at once (`Recreate`: the old ones are
/// gone before a new one starts) or a few at a time (`RollingUpdate`: new pods first, old ones
/// only while enough pods stay ready), so a Service keeps serving through the change.
public struct DeploymentStrategy: Codable, Sendable, Hashable {
    /// The two kinds of replacement, spelled as in Kubernetes.
    public enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
        case rollingUpdate = "RollingUpdate"
        case recreate = "Recreate"
    }

    public var type: Kind?
    public var rollingUpdate: RollingUpdateDeployment?

    public init(type: Kind? = nil, rollingUpdate: RollingUpdateDeployment? = nil) {
        self.type = type
        self.rollingUpdate = rollingUpdate
    }

    public var effectiveType: Kind { type ?? .rollingUpdate }
}

/// How far a rolling update may go above the replica count (`maxSurge`) and below it in ready
/// pods (`maxUnavailable`): a number of pods, or a percentage of the replicas (`"25%"`).
public struct RollingUpdateDeployment: Codable, Sendable, Hashable {
    public var maxSurge: IntOrString?
    public var maxUnavailable: IntOrString?

    public static let defaultPercent: IntOrString = "25%"

    public init(maxSurge: IntOrString? = nil, maxUnavailable: IntOrString? = nil) {
        self.maxSurge = maxSurge
        self.maxUnavailable = maxUnavailable
    }

    /// Pods above `replicas` and ready pods below it, as Kubernetes resolves them: a
    /// percentage of the surge rounds up, of the unavailable down, and when both come out 0 one
    /// pod may be unavailable (else nothing could move).
    public func limits(replicas: Int) -> (surge: Int, unavailable: Int) {
        let surge = Self.resolve(maxSurge ?? Self.defaultPercent, of: replicas, roundingUp: true)
        var unavailable = Self.resolve(maxUnavailable ?? Self.defaultPercent, of: replicas, roundingUp: false)
        if surge == 0 && unavailable == 0 { unavailable = 1 }
        return (surge, unavailable)
    }

    static func resolve(_ value: IntOrString, of replicas: Int, roundingUp: Bool) -> Int {
        switch value {
        case let .int(number):
            return max(number, 0)
        case let .string(text):
            guard let percent = percentage(text) else { return 0 }
            let scaled = percent * max(replicas, 0)
            return roundingUp ? (scaled + 99) / 100 : scaled / 100
        }
    }

    /// The number in `"N%"`, or nil when the text is not of that form.
    static func percentage(_ text: String) -> Int? {
        guard text.hasSuffix("%"), let number = Int(text.dropLast()), number >= 0 else { return nil }
        return number
    }
}

/// The pod a Deployment stamps out: labels and annotations for each copy, and its spec.
public struct PodTemplateSpec: Codable, Sendable, Hashable {
    public var metadata: PodTemplateMetadata
    public var spec: PodSpec

    public init(metadata: PodTemplateMetadata = PodTemplateMetadata(), spec: PodSpec) {
        self.metadata = metadata
        self.spec = spec
    }

    private enum CodingKeys: String, CodingKey {
        case metadata, spec
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        metadata = try container.decodeIfPresent(PodTemplateMetadata.self, forKey: .metadata) ?? PodTemplateMetadata()
        spec = try container.decode(PodSpec.self, forKey: .spec)
    }
}

/// The metadata of a pod template. Unlike `ObjectMeta` it has no name: each pod made
/// from the template gets a generated one.
public struct PodTemplateMetadata: Codable, Sendable, Hashable {
    public var labels: [String: String]
    public var annotations: [String: String]

    public init(labels: [String: String] = [:], annotations: [String: String] = [:]) {
        self.labels = labels
        self.annotations = annotations
    }

    private enum CodingKeys: String, CodingKey {
        case labels, annotations
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
    }
}

// MARK: - Manifest decoding

extension Deployment {
    init(manifest object: ManifestMapping) throws(FieldError) {
        self.init(
            metadata: try ObjectMeta(manifest: object.required("metadata")),
            spec: try DeploymentSpec(manifest: object.required("spec"))
        )
    }
}

extension DeploymentSpec {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.deploymentSpec)
        guard let selector = map.optional("selector") else {
            throw FieldError(map.path.field("selector"), "is required and must match spec.template.metadata.labels")
        }
        self.init(
            replicas: try map.optional("replicas")?.integer() ?? Self.defaultReplicas,
            selector: try LabelSelector(manifest: selector),
            template: try PodTemplateSpec(manifest: map.required("template")),
            strategy: try map.optional("strategy").map { value throws(FieldError) in try DeploymentStrategy(manifest: value) }
        )
    }
}

extension DeploymentStrategy {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.deploymentStrategy)
        var rolling: RollingUpdateDeployment?
        if let rollingValue = map.optional("rollingUpdate") {
            let rollingMap = try rollingValue.mapping(.rollingUpdateDeployment)
            rolling = RollingUpdateDeployment(maxSurge: try rollingMap.optional("maxSurge")?.intOrString(),
                                              maxUnavailable: try rollingMap.optional("maxUnavailable")?.intOrString())
        }
        self.init(type: try map.optional("type")?.enumeration(Kind.self), rollingUpdate: rolling)
    }

    func validate(at path: FieldPath) throws(FieldError) {
        guard let rollingUpdate else { return }
        let rollingPath = path.field("rollingUpdate")
        if effectiveType == .recreate {
            throw FieldError(rollingPath, "may not be given when type is Recreate")
        }
        for (field, value) in [("maxSurge", rollingUpdate.maxSurge), ("maxUnavailable", rollingUpdate.maxUnavailable)] {
            switch value {
            case let .int(number)? where number < 0:
                throw FieldError(rollingPath.field(field), "must be 0 or more, got \(number)")
            case let .string(text)?:
                guard let percent = RollingUpdateDeployment.percentage(text) else {
                    throw FieldError(rollingPath.field(field), "must be a number of pods or a percentage such as \"25%\", got \(text.debugDescription)")
                }
                if field == "maxUnavailable" && percent > 100 {
                    throw FieldError(rollingPath.field(field), "must be at most 100%, got \(text)")
                }
            default:
                break
            }
        }
        func isZero(_ value: IntOrString?) -> Bool {
            switch value {
            case .int(0)?: true
            case let .string(text)?: RollingUpdateDeployment.percentage(text) == 0
            default: false
            }
        }
        if isZero(rollingUpdate.maxSurge) && isZero(rollingUpdate.maxUnavailable) {
            throw FieldError(rollingPath.field("maxUnavailable"), "may not be 0 when maxSurge is 0")
        }
    }
}

extension PodTemplateSpec {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.podTemplateSpec)
        var metadata = PodTemplateMetadata()
        if let metadataValue = map.optional("metadata") {
            metadata = try PodTemplateMetadata(manifest: metadataValue)
        }
        self.init(metadata: metadata, spec: try PodSpec(manifest: map.required("spec")))
    }
}

extension PodTemplateMetadata {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.podTemplateMetadata)
        self.init(
            labels: try map.optional("labels")?.stringMap() ?? [:],
            annotations: try map.optional("annotations")?.stringMap() ?? [:]
        )
    }
}

// MARK: - Validation

extension Deployment {
    func validate() throws(FieldError) {
        try metadata.validate(at: FieldPath().field("metadata"))
        try spec.validate(at: FieldPath().field("spec"))
    }
}

extension DeploymentSpec {
    func validate(at path: FieldPath) throws(FieldError) {
        guard replicas >= 0 else {
            throw FieldError(path.field("replicas"), "must be 0 or more, got \(replicas)")
        }
        let selectorPath = path.field("selector")
        guard !selector.isEmpty else {
            throw FieldError(selectorPath, "must not be empty; it would claim every pod in the namespace")
        }
        try selector.validate(at: selectorPath)
        try template.validate(at: path.field("template"))
        try strategy?.validate(at: path.field("strategy"))
        if let mismatch = Self.mismatch(of: selector, with: template.metadata.labels) {
            throw FieldError(selectorPath, "selector does not match template labels: \(mismatch)")
        }
    }

    /// The first selector term that the template's labels fail, worded for the user.
    private static func mismatch(of selector: LabelSelector, with labels: [String: String]) -> String? {
        for (key, wanted) in selector.matchLabels.sorted(by: { $0.key < $1.key }) where labels[key] != wanted {
            let have = labels[key].map { "has \(key)=\($0)" } ?? "has no label \(key.debugDescription)"
            return "matchLabels wants \(key)=\(wanted), spec.template.metadata.labels \(have)"
        }
        for (index, requirement) in selector.matchExpressions.enumerated() where !requirement.matches(labels) {
            let values = requirement.values.isEmpty ? "" : " [\(requirement.values.joined(separator: ", "))]"
            return "spec.template.metadata.labels fail matchExpressions[\(index)] "
                + "(\(requirement.key) \(requirement.operator.rawValue)\(values))"
        }
        return nil
    }
}

extension PodTemplateSpec {
    func validate(at path: FieldPath) throws(FieldError) {
        let metadataPath = path.field("metadata")
        try NameSyntax.validateLabelMap(metadata.labels, at: metadataPath.field("labels"))
        try ObjectMeta.validateAnnotations(metadata.annotations, at: metadataPath.field("annotations"))
        let specPath = path.field("spec")
        try spec.validate(at: specPath)
        if let restartPolicy = spec.restartPolicy, restartPolicy != .always {
            throw FieldError(
                specPath.field("restartPolicy"),
                "must be Always in a Deployment, got \(restartPolicy.rawValue); "
                    + "a Deployment keeps its pods running, use a bare Pod for a command that should finish"
            )
        }
    }
}
