/// A Kubernetes namespace. Services and workloads live in one, and ClusterMesh treats
/// same-named namespaces in different clusters as the same tenant, so it must exist as
/// an object of its own.
///
/// Every namespace carries `kubernetes.io/metadata.name` with its own name, as the Kubernetes
/// API server sets it: given on create, put back if a manifest leaves it out, overwritten if a
/// manifest gives another value. It is what `namespaceSelector`s written for Kubernetes select by.
public struct Namespace: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta

    public init(metadata: ObjectMeta) {
        self.apiVersion = ResourceKind.namespace.apiVersion
        self.kind = ResourceKind.namespace.rawValue
        self.metadata = metadata
        self.metadata.labels[LabelKeys.namespaceMetadataName] = metadata.name
    }
}

extension Namespace {
    /// Namespaces are cluster-scoped: a `metadata.namespace` in the manifest is dropped,
    /// as the Kubernetes API server does.
    init(manifest object: ManifestMapping) throws(FieldError) {
        var metadata = try ObjectMeta(manifest: object.required("metadata"))
        metadata.namespace = nil
        self.init(metadata: metadata)
    }

    func validate() throws(FieldError) {
        try metadata.validate(at: FieldPath().field("metadata"))
    }
}
