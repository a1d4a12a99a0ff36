import MeridianCore

/// What one node's agent has programmed into its policy map, published under
/// `meridian/status/nodes/<node>` after every policy pass. `get policies` reads it to show what is
/// in force, and `revision` lets a caller wait until a policy it applied is enforced: every
/// resource change up to that store revision is reflected in the node's maps.
public struct NodePolicyStatus: Codable, Sendable, Hashable {
    public var node: String
    public var cluster: String
    /// The store revision of the resources (policies, pods, namespaces) the programmed policy
    /// was computed from.
    public var revision: Int64
    public var endpoints: [EndpointPolicyStatus]
    /// Addresses that more than one record claims (the first `AddressConflictReport.kept`, by
    /// prefix); nil when there are none.
    public var addressConflicts: [AddressConflictReport]?
    /// Where the node's flow observer listens (`HOST:PORT` or `unix:PATH`), for the relay.
    public var observer: String?

    public init(node: String, cluster: String, revision: Int64, endpoints: [EndpointPolicyStatus],
                addressConflicts: [AddressConflictReport]? = nil, observer: String? = nil) {
        self.observer = observer
        self.node = node
        self.cluster = cluster
        self.revision = revision
        self.endpoints = endpoints
        self.addressConflicts = addressConflicts
    }
}

/// An ipcache prefix claimed by several records, as a node programmed it: which record (or
/// local range) holds it and which were refused. Record keys may carry a peer's text; they are
/// stored escaped (`TerminalSafe`).
public struct AddressConflictReport: Codable, Sendable, Hashable {
    public var prefix: String
    public var holder: String
    public var refused: [String]

    /// How many a node reports.
    public static let kept = 20

    public init(prefix: String, holder: String, refused: [String]) {
        self.prefix = prefix
        self.holder = TerminalSafe.escape(holder, maxScalars: 256)
        self.refused = refused.map { TerminalSafe.escape($0, maxScalars: 256) }
    }
}

/// One local endpoint's programmed policy.
public struct EndpointPolicyStatus: Codable, Sendable, Hashable {
    public var namespace: String
    public var pod: String
    public var identity: UInt32
    public var endpointID: UInt16
    public var ingressEnforced: Bool
    public var egressEnforced: Bool
    /// Policy-map entries per direction.
    public var ingressEntries: Int
    public var egressEntries: Int

    public init(namespace: String, pod: String, identity: UInt32, endpointID: UInt16, ingressEnforced: Bool, egressEnforced: Bool,
                ingressEntries: Int, egressEntries: Int) {
        self.namespace = namespace
        self.pod = pod
        self.identity = identity
        self.endpointID = endpointID
        self.ingressEnforced = ingressEnforced
        self.egressEnforced = egressEnforced
        self.ingressEntries = ingressEntries
        self.egressEntries = egressEntries
    }
}
