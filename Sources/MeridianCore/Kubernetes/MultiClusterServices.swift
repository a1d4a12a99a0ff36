import Foundation

/// The Multi-Cluster Services API group (KEP-1645) both MCS kinds belong to.
public enum MultiClusterAPI {
    public static let version = "multicluster.x-k8s.io/v1alpha1"
}

/// A user's request to share the Service of the same namespace and name with every cluster of
/// the clusterset (KEP-1645). It has no spec: its existence is the export. Its status (whether
/// the export is valid, in conflict with other clusters' exports) is kept by the control plane
/// apart from the object, so an apply never overwrites it.
public struct ServiceExport: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta

    public init(metadata: ObjectMeta) {
        self.apiVersion = MultiClusterAPI.version
        self.kind = ResourceKind.serviceExport.rawValue
        self.metadata = metadata
    }
}

/// How a multi-cluster service is reached: one virtual IP in front of every exporting cluster's
/// backends, or the backends' own addresses (headless).
public enum ServiceImportType: String, Codable, Sendable, Hashable, CaseIterable {
    case clusterSetIP = "ClusterSetIP"
    case headless = "Headless"
}

/// One port of a ServiceImport (or of an exported service spec): the service port, not the
/// backends' target port, which each cluster keeps to itself.
public struct ServiceImportPort: Codable, Sendable, Hashable, Comparable {
    public var name: String?
    public var `protocol`: TransportProtocol
    public var appProtocol: String?
    public var port: Int

    public init(name: String? = nil, protocol: TransportProtocol = .tcp, appProtocol: String? = nil, port: Int) {
        self.name = name
        self.protocol = `protocol`
        self.appProtocol = appProtocol
        self.port = port
    }

    public var description: String { "\(name.map { "\($0) " } ?? "")\(port)/\(self.protocol.rawValue)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.port, lhs.protocol.rawValue, lhs.name ?? "") < (rhs.port, rhs.protocol.rawValue, rhs.name ?? "")
    }
}

/// What a ServiceImport offers: its type, ports and, for ClusterSetIP, the virtual IP this
/// cluster gave it.
public struct ServiceImportSpec: Codable, Sendable, Hashable {
    public var type: ServiceImportType
    public var ports: [ServiceImportPort]
    public var ips: [String]?
    public var sessionAffinity: String?

    public init(type: ServiceImportType, ports: [ServiceImportPort], ips: [String]? = nil, sessionAffinity: String? = nil) {
        self.type = type
        self.ports = ports
        self.ips = ips
        self.sessionAffinity = sessionAffinity
    }
}

/// The clusters whose exports make up a ServiceImport.
public struct ServiceImportStatus: Codable, Sendable, Hashable {
    public struct ClusterStatus: Codable, Sendable, Hashable {
        public var cluster: String

        public init(cluster: String) {
            self.cluster = cluster
        }
    }

    public var clusters: [ClusterStatus]

    public init(clusters: [ClusterStatus]) {
        self.clusters = clusters
    }
}

/// The consuming side of the Multi-Cluster Services API: made by the control plane in every
/// cluster that has the namespace, from all clusters' exports of one service, never applied by
/// users. Agents program its ClusterSetIP and the node DNS answers its `clusterset.local` names.
public struct ServiceImport: Codable, Sendable, Hashable {
    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: ServiceImportSpec
    public var status: ServiceImportStatus

    public init(metadata: ObjectMeta, spec: ServiceImportSpec, status: ServiceImportStatus) {
        self.apiVersion = MultiClusterAPI.version
        self.kind = ResourceKind.serviceImport.rawValue
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }

    /// The exporting clusters, in name order.
    public var clusters: [String] { status.clusters.map(\.cluster) }
}

/// A condition of a ServiceExport's status, in the shape of Kubernetes' `metav1.Condition`.
public struct ServiceExportCondition: Codable, Sendable, Hashable {
    /// `Valid` (the export names a Service that can be exported) or `Conflict` (this cluster's
    /// export disagrees with another cluster's).
    public var type: String
    /// `"True"` or `"False"`.
    public var status: String
    public var reason: String
    public var message: String
    public var lastTransitionTime: String

    public init(type: String, status: String, reason: String, message: String, lastTransitionTime: String) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }

    public static let valid = "Valid"
    public static let conflict = "Conflict"
}

/// The status the control plane keeps for one ServiceExport, beside the object.
public struct ServiceExportStatus: Codable, Sendable, Hashable {
    public var conditions: [ServiceExportCondition]

    public init(conditions: [ServiceExportCondition]) {
        self.conditions = conditions
    }

    public func condition(_ type: String) -> ServiceExportCondition? {
        conditions.first { $0.type == type }
    }

    /// The same conditions with the transition times of `previous` kept where a condition's
    /// status did not change, as Kubernetes controllers do.
    public func keepingTransitionTimes(of previous: ServiceExportStatus?) -> ServiceExportStatus {
        guard let previous else { return self }
        var kept = self
        for index in kept.conditions.indices {
            if let old = previous.condition(kept.conditions[index].type), old.status == kept.conditions[index].status {
                kept.conditions[index].lastTransitionTime = old.lastTransitionTime
            }
        }
        return kept
    }
}

extension ServiceExport {
    /// A ServiceExport has no spec; `spec` and `status` are accepted and dropped.
    init(manifest object: ManifestMapping) throws(FieldError) {
        var metadata = try ObjectMeta(manifest: object.required("metadata"))
        metadata.creationTimestamp = nil
        self.init(metadata: metadata)
    }

    func validate() throws(FieldError) {
        try metadata.validate(at: FieldPath().field("metadata"))
    }
}

extension ServiceImport {
    func validate() throws(FieldError) {
        try metadata.validate(at: FieldPath().field("metadata"))
    }
}

/// A property of the cluster (KEP-2149, `about.k8s.io/v1alpha1`), cluster-scoped. Two are
/// well known: `cluster.clusterset.k8s.io`, the cluster's name within the clusterset, which the
/// control plane keeps equal to its cluster name and no apply may change, and
/// `clusterset.k8s.io`, the clusterset's name, which the control plane creates as `default`
/// when absent and users may set.
public struct ClusterProperty: Codable, Sendable, Hashable {
    public struct Spec: Codable, Sendable, Hashable {
        public var value: String

        public init(value: String) {
            self.value = value
        }
    }

    public var apiVersion: String
    public var kind: String
    public var metadata: ObjectMeta
    public var spec: Spec

    public init(metadata: ObjectMeta, spec: Spec) {
        self.apiVersion = ResourceKind.clusterProperty.apiVersion
        self.kind = ResourceKind.clusterProperty.rawValue
        self.metadata = metadata
        self.spec = spec
    }

    public static let clusterID = "cluster.clusterset.k8s.io"
    public static let clusterSet = "clusterset.k8s.io"
    /// The value `clusterset.k8s.io` gets until a user sets one.
    public static let defaultClusterSet = "default"
    /// KEP-2149 caps a value at 128 Unicode code points.
    public static let maximumValueLength = 128
}

extension ClusterProperty {
    init(manifest object: ManifestMapping) throws(FieldError) {
        var metadata = try ObjectMeta(manifest: object.required("metadata"))
        metadata.namespace = nil
        let spec = try object.required("spec").mapping(.clusterPropertySpec)
        self.init(metadata: metadata, spec: Spec(value: try spec.required("value").string()))
    }

    func validate() throws(FieldError) {
        let path = FieldPath().field("metadata")
        guard !metadata.name.isEmpty else { throw FieldError(path.field("name"), "is required") }
        if let problem = NameSyntax.dns1123SubdomainProblem(metadata.name) {
            throw FieldError(path.field("name"), "invalid name \(metadata.name.debugDescription): \(problem)")
        }
        let valuePath = FieldPath().field("spec").field("value")
        guard !spec.value.isEmpty, spec.value.unicodeScalars.count <= Self.maximumValueLength else {
            throw FieldError(valuePath, "must be 1 to \(Self.maximumValueLength) characters, got \(spec.value.unicodeScalars.count)")
        }
        if [Self.clusterID, Self.clusterSet].contains(metadata.name), let problem = NameSyntax.dns1123SubdomainProblem(spec.value) {
            throw FieldError(valuePath, "\(metadata.name) must be a DNS subdomain: \(problem)")
        }
    }
}
