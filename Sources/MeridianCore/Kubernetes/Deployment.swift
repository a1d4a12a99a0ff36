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

    public init(replicas: Int = defaultReplicas, selector: LabelSelector, template: PodTemplateSpec) {
        self.replicas = replicas
        self.selector = selector
        self.template = template
    }

    private enum CodingKeys: String, CodingKey {
        case replicas, selector, template
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? Self.defaultReplicas
        selector = try container.decode(LabelSelector.self, forKey: .selector)
        template = try container.decode(PodTemplateSpec.self, forKey: .template)
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
            template: try PodTemplateSpec(manifest: map.required("template"))
        )
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
