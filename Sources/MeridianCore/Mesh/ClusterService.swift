/// Transport protocol of a service port, spelled as on the wire (`"TCP"`).
public enum L4Protocol: String, Codable, Sendable, Hashable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"
    /// Any protocol; used internally, never by Kubernetes Services.
    case any = "ANY"
}

/// A protocol and port pair, the value of one named port of a frontend or backend.
///
/// JSON keys are capitalised (`{"Protocol":"TCP","Port":80}`) because the wire format follows the
/// field names of Cilium's Go type, which carries no json tags.
public struct L4Addr: Codable, Sendable, Hashable {
    public var `protocol`: L4Protocol
    public var port: UInt16

    public init(protocol: L4Protocol, port: UInt16) {
        self.protocol = `protocol`
        self.port = port
    }

    private enum CodingKeys: String, CodingKey {
        case `protocol` = "Protocol"
        case port = "Port"
    }
}

/// A global service as one cluster exports it, stored at
/// `cilium/state/services/v1/<cluster>/<namespace>/<name>`.
///
/// Other clusters attach its `backends` to their own local Service of the same namespace and
/// name; its `frontends` are informational only. Maps are keyed by IP, then by port name.
/// `hostnames` is omitted from the JSON when empty; `labels` and `selector` are always written.
///
/// `backendStates` is Meridian's extension of Cilium's format: backend IP → state, for the
/// backends that are not `active` (today: `terminating`, a deleted pod still serving its
/// connections). It is omitted when every backend is active, so the record is then exactly
/// Cilium's; a Cilium peer ignores the field and treats a terminating backend as active, as it
/// would without the extension.
public struct ClusterService: Codable, Sendable, Hashable {
    public var cluster: String
    public var namespace: String
    public var name: String
    public var frontends: [String: [String: L4Addr]]
    public var backends: [String: [String: L4Addr]]
    /// Backend IP → pod hostname, for headless services.
    public var hostnames: [String: String]?
    public var labels: [String: String]
    public var selector: [String: String]
    /// The service is global: receivers may merge remote backends into it.
    public var includeExternal: Bool
    /// The service's backends are exported to other clusters.
    public var shared: Bool
    public var clusterID: UInt32
    /// Backend IP → state (`BackendState`'s raw value), for backends that are not active.
    /// Kept as text so that an importer can refuse a state it does not know with a reason.
    public var backendStates: [String: String]?
    /// Meridian's extension for large services (`ServiceSlicing`): on the record at the
    /// service's key, the number of slices its backends are split into (its own `backends` are
    /// then empty); on a slice, the same number. Absent: the record holds every backend, as
    /// Cilium's does.
    public var backendSlices: Int?
    /// On a slice record (`cilium/state/serviceslices/v1/...`), which slice it is.
    public var slice: Int?

    /// The states a cluster may export: health checking (`quarantined`) and operators
    /// (`maintenance`) act on a cluster's own view and are not exported.
    public static let exportedBackendStates: Set<BackendState> = [.active, .terminating]

    public init(
        cluster: String,
        namespace: String,
        name: String,
        frontends: [String: [String: L4Addr]] = [:],
        backends: [String: [String: L4Addr]] = [:],
        hostnames: [String: String]? = nil,
        labels: [String: String] = [:],
        selector: [String: String] = [:],
        includeExternal: Bool,
        shared: Bool,
        clusterID: UInt32,
        backendStates: [String: String]? = nil,
        backendSlices: Int? = nil,
        slice: Int? = nil
    ) {
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.frontends = frontends
        self.backends = backends
        self.hostnames = hostnames
        self.labels = labels
        self.selector = selector
        self.includeExternal = includeExternal
        self.shared = shared
        self.clusterID = clusterID
        self.backendStates = backendStates
        self.backendSlices = backendSlices
        self.slice = slice
    }

    /// The state of the backend at `ip`: active unless `backendStates` says otherwise.
    public func state(of ip: String) -> BackendState {
        backendStates?[ip].flatMap(BackendState.init(rawValue:)) ?? .active
    }

    /// `<namespace>/<name>`: the key below the per-cluster prefix, and the merge key.
    public var namespacedName: String { "\(namespace)/\(name)" }

    private enum CodingKeys: String, CodingKey {
        case cluster, namespace, name, frontends, backends, hostnames, labels, selector
        case includeExternal, shared, clusterID, backendStates, backendSlices, slice
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try container.decodeIfPresent(String.self, forKey: .cluster) ?? ""
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace) ?? ""
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        frontends = try container.decodeIfPresent([String: [String: L4Addr]].self, forKey: .frontends) ?? [:]
        backends = try container.decodeIfPresent([String: [String: L4Addr]].self, forKey: .backends) ?? [:]
        hostnames = try container.decodeIfPresent([String: String].self, forKey: .hostnames)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        selector = try container.decodeIfPresent([String: String].self, forKey: .selector) ?? [:]
        includeExternal = try container.decodeIfPresent(Bool.self, forKey: .includeExternal) ?? false
        shared = try container.decodeIfPresent(Bool.self, forKey: .shared) ?? false
        clusterID = try container.decodeIfPresent(UInt32.self, forKey: .clusterID) ?? 0
        backendStates = try container.decodeIfPresent([String: String].self, forKey: .backendStates)
        backendSlices = try container.decodeIfPresent(Int.self, forKey: .backendSlices)
        slice = try container.decodeIfPresent(Int.self, forKey: .slice)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(cluster, forKey: .cluster)
        try container.encode(namespace, forKey: .namespace)
        try container.encode(name, forKey: .name)
        try container.encode(frontends, forKey: .frontends)
        try container.encode(backends, forKey: .backends)
        if let hostnames, !hostnames.isEmpty {
            try container.encode(hostnames, forKey: .hostnames)
        }
        try container.encode(labels, forKey: .labels)
        try container.encode(selector, forKey: .selector)
        try container.encode(includeExternal, forKey: .includeExternal)
        try container.encode(shared, forKey: .shared)
        try container.encode(clusterID, forKey: .clusterID)
        if let backendStates, !backendStates.isEmpty {
            try container.encode(backendStates, forKey: .backendStates)
        }
        try container.encodeIfPresent(backendSlices, forKey: .backendSlices)
        try container.encodeIfPresent(slice, forKey: .slice)
    }
}
