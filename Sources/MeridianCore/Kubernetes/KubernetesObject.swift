/// The resource kinds Meridian understands. It is the single list that the manifest
/// decoder, the store's key layout and the CLI's `get`/`delete` arguments all consult,
/// so a new kind is added here first.
public enum ResourceKind: String, Codable, Sendable, CaseIterable {
    case namespace = "Namespace"
    case service = "Service"
    case pod = "Pod"
    case deployment = "Deployment"
    case networkPolicy = "NetworkPolicy"
    case ciliumNetworkPolicy = "CiliumNetworkPolicy"
    case ciliumClusterwideNetworkPolicy = "CiliumClusterwideNetworkPolicy"
    case serviceExport = "ServiceExport"
    case serviceImport = "ServiceImport"
    case clusterProperty = "ClusterProperty"

    /// The lowercase plural Kubernetes uses in API paths and `kubectl get`.
    public var plural: String {
        switch self {
        case .namespace: "namespaces"
        case .service: "services"
        case .pod: "pods"
        case .deployment: "deployments"
        case .networkPolicy: "networkpolicies"
        case .ciliumNetworkPolicy: "ciliumnetworkpolicies"
        case .ciliumClusterwideNetworkPolicy: "ciliumclusterwidenetworkpolicies"
        case .serviceExport: "serviceexports"
        case .serviceImport: "serviceimports"
        case .clusterProperty: "clusterproperties"
        }
    }

    public var shortName: String {
        switch self {
        case .namespace: "ns"
        case .service: "svc"
        case .pod: "po"
        case .deployment: "deploy"
        case .networkPolicy: "netpol"
        case .ciliumNetworkPolicy: "cnp"
        case .ciliumClusterwideNetworkPolicy: "ccnp"
        case .serviceExport: "svcex"
        case .serviceImport: "svcim"
        case .clusterProperty: "clusterproperty"
        }
    }

    public var isNamespaced: Bool {
        switch self {
        case .namespace, .ciliumClusterwideNetworkPolicy, .clusterProperty: false
        case .service, .pod, .deployment, .networkPolicy, .ciliumNetworkPolicy, .serviceExport, .serviceImport: true
        }
    }

    /// The only `apiVersion` accepted for this kind.
    public var apiVersion: String {
        switch self {
        case .namespace, .service, .pod: "v1"
        case .deployment: "apps/v1"
        case .networkPolicy: "networking.k8s.io/v1"
        case .ciliumNetworkPolicy, .ciliumClusterwideNetworkPolicy: "cilium.io/v2"
        case .serviceExport, .serviceImport: MultiClusterAPI.version
        case .clusterProperty: "about.k8s.io/v1alpha1"
        }
    }

    /// Reads a kind the way a user types it on the command line: singular, plural or
    /// short name, in any letter case.
    public init?(userInput: String) {
        let wanted = userInput.lowercased()
        let match = Self.allCases.first { kind in
            [kind.rawValue.lowercased(), kind.plural, kind.shortName].contains(wanted)
        }
        guard let match else { return nil }
        self = match
    }
}

/// Any object Meridian stores, so that lists, stores and watchers can handle mixed kinds
/// through one type. Its JSON form is the plain Kubernetes JSON of the wrapped object,
/// told apart by its `kind` field.
public enum KubernetesObject: Codable, Sendable, Hashable {
    case namespace(Namespace)
    case service(Service)
    case pod(Pod)
    case deployment(Deployment)
    case networkPolicy(NetworkPolicy)
    case ciliumNetworkPolicy(CiliumNetworkPolicy)
    case ciliumClusterwideNetworkPolicy(CiliumClusterwideNetworkPolicy)
    case serviceExport(ServiceExport)
    case serviceImport(ServiceImport)
    case clusterProperty(ClusterProperty)

    public var kind: ResourceKind {
        switch self {
        case .namespace: .namespace
        case .service: .service
        case .pod: .pod
        case .deployment: .deployment
        case .networkPolicy: .networkPolicy
        case .ciliumNetworkPolicy: .ciliumNetworkPolicy
        case .ciliumClusterwideNetworkPolicy: .ciliumClusterwideNetworkPolicy
        case .serviceExport: .serviceExport
        case .serviceImport: .serviceImport
        case .clusterProperty: .clusterProperty
        }
    }

    public var metadata: ObjectMeta {
        get {
            switch self {
            case let .namespace(namespace): namespace.metadata
            case let .service(service): service.metadata
            case let .pod(pod): pod.metadata
            case let .deployment(deployment): deployment.metadata
            case let .networkPolicy(policy): policy.metadata
            case let .ciliumNetworkPolicy(policy): policy.metadata
            case let .ciliumClusterwideNetworkPolicy(policy): policy.metadata
            case let .serviceExport(export): export.metadata
            case let .serviceImport(imported): imported.metadata
            case let .clusterProperty(property): property.metadata
            }
        }
        set {
            switch self {
            case var .namespace(namespace):
                namespace.metadata = newValue
                self = .namespace(namespace)
            case var .service(service):
                service.metadata = newValue
                self = .service(service)
            case var .pod(pod):
                pod.metadata = newValue
                self = .pod(pod)
            case var .deployment(deployment):
                deployment.metadata = newValue
                self = .deployment(deployment)
            case var .networkPolicy(policy):
                policy.metadata = newValue
                self = .networkPolicy(policy)
            case var .ciliumNetworkPolicy(policy):
                policy.metadata = newValue
                self = .ciliumNetworkPolicy(policy)
            case var .ciliumClusterwideNetworkPolicy(policy):
                policy.metadata = newValue
                self = .ciliumClusterwideNetworkPolicy(policy)
            case var .serviceExport(export):
                export.metadata = newValue
                self = .serviceExport(export)
            case var .serviceImport(imported):
                imported.metadata = newValue
                self = .serviceImport(imported)
            case var .clusterProperty(property):
                property.metadata = newValue
                self = .clusterProperty(property)
            }
        }
    }

    public var name: String { metadata.name }

    /// `nil` for cluster-scoped kinds; `"default"` when a namespaced object names none.
    public var namespace: String? {
        guard kind.isNamespaced else { return nil }
        return metadata.namespace ?? Self.defaultNamespace
    }

    public static let defaultNamespace = "default"

    private enum DiscriminatorKeys: String, CodingKey {
        case kind
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: DiscriminatorKeys.self)
        let rawKind = try container.decode(String.self, forKey: .kind)
        guard let kind = ResourceKind(rawValue: rawKind) else {
            throw DecodingError.dataCorruptedError(
                forKey: .kind,
                in: container,
                debugDescription: "unsupported kind \(rawKind.debugDescription)"
            )
        }
        switch kind {
        case .namespace: self = .namespace(try Namespace(from: decoder))
        case .service: self = .service(try Service(from: decoder))
        case .pod: self = .pod(try Pod(from: decoder))
        case .deployment: self = .deployment(try Deployment(from: decoder))
        case .networkPolicy: self = .networkPolicy(try NetworkPolicy(from: decoder))
        case .ciliumNetworkPolicy: self = .ciliumNetworkPolicy(try CiliumNetworkPolicy(from: decoder))
        case .ciliumClusterwideNetworkPolicy:
            self = .ciliumClusterwideNetworkPolicy(try CiliumClusterwideNetworkPolicy(from: decoder))
        case .serviceExport: self = .serviceExport(try ServiceExport(from: decoder))
        case .serviceImport: self = .serviceImport(try ServiceImport(from: decoder))
        case .clusterProperty: self = .clusterProperty(try ClusterProperty(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case let .namespace(namespace): try namespace.encode(to: encoder)
        case let .service(service): try service.encode(to: encoder)
        case let .pod(pod): try pod.encode(to: encoder)
        case let .deployment(deployment): try deployment.encode(to: encoder)
        case let .networkPolicy(policy): try policy.encode(to: encoder)
        case let .ciliumNetworkPolicy(policy): try policy.encode(to: encoder)
        case let .ciliumClusterwideNetworkPolicy(policy): try policy.encode(to: encoder)
        case let .serviceExport(export): try export.encode(to: encoder)
        case let .serviceImport(imported): try imported.encode(to: encoder)
        case let .clusterProperty(property): try property.encode(to: encoder)
        }
    }
}

extension KubernetesObject {
    func validate() throws(FieldError) {
        switch self {
        case let .namespace(namespace): try namespace.validate()
        case let .service(service): try service.validate()
        case let .pod(pod): try pod.validate()
        case let .deployment(deployment): try deployment.validate()
        case let .networkPolicy(policy): try policy.validate()
        case let .ciliumNetworkPolicy(policy): try policy.validate()
        case let .ciliumClusterwideNetworkPolicy(policy): try policy.validate()
        case let .serviceExport(export): try export.validate()
        case let .serviceImport(imported): try imported.validate()
        case let .clusterProperty(property): try property.validate()
        }
    }
}
