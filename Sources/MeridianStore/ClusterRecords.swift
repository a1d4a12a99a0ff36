import Foundation
import MeridianEtcd

/// A cluster's identity and address plan as its control plane publishes them under
/// `meridian/cluster/settings`; the CLI reads it to validate `clustermesh connect`.
public struct ClusterSettings: Codable, Sendable, Hashable {
    public var name: String
    public var id: UInt32
    public var podCIDR: String
    public var serviceCIDR: String
    public var maxConnectedClusters: UInt32
    /// How other clusters reach this cluster's mesh endpoint (`https://HOST:PORT`); empty when
    /// the control plane serves none.
    public var clientEndpoints: [String]
    /// The DNS name in the mesh endpoint's server certificate that importers verify.
    public var serverName: String
    /// Cilium's `policy-default-local-cluster`: policy selectors without a cluster label match
    /// only this cluster's endpoints. Absent means on.
    public var policyDefaultLocalCluster: Bool?

    public init(name: String, id: UInt32, podCIDR: String, serviceCIDR: String, maxConnectedClusters: UInt32, clientEndpoints: [String], serverName: String) {
        self.name = name
        self.id = id
        self.podCIDR = podCIDR
        self.serviceCIDR = serviceCIDR
        self.maxConnectedClusters = maxConnectedClusters
        self.clientEndpoints = clientEndpoints
        self.serverName = serverName
    }
}

extension ClusterSettings {
    /// The settings the control plane published; `StoreError.clusterSettingsMissing` before it has.
    public static func load(from store: any KeyValueStore) async throws -> ClusterSettings {
        guard let record = try await store.get(KeyLayout.clusterSettings) else { throw StoreError.clusterSettingsMissing }
        return try StoreCoding.decode(ClusterSettings.self, from: record.value, key: record.key)
    }
}

/// Whether clustermesh is enabled on this cluster (`meridian clustermesh enable`), and the knobs
/// the control plane's mesh controllers read.
public struct ClusterMeshSettings: Codable, Sendable, Hashable {
    public var enabled: Bool
    /// Seconds between heartbeat writes; peers reconnect after two missed beats.
    public var heartbeatIntervalSeconds: Double
    /// Seconds an unreachable peer's data is kept before it is withdrawn; 0 keeps it forever.
    public var cacheTTLSeconds: Double
    /// Which endpoints and identities peers may read; nil is `all`.
    public var exportScope: ExportScope?

    public init(enabled: Bool, heartbeatIntervalSeconds: Double = 60, cacheTTLSeconds: Double = 0, exportScope: ExportScope? = nil) {
        self.enabled = enabled
        self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
        self.cacheTTLSeconds = cacheTTLSeconds
        self.exportScope = exportScope == .all ? nil : exportScope
    }

    /// `exportScope`, defaulted.
    public var scope: ExportScope { exportScope ?? .all }
}

/// The certificate (only) of a cluster's mesh CA, published under `meridian/clustermesh/ca`.
/// The mesh CA signs the mesh endpoint's server certificate and the peer credentials; its private
/// key stays in the control plane's data directory.
public struct MeshCertificateAuthorityRecord: Codable, Sendable, Hashable {
    public var certificatePEM: String

    public init(certificatePEM: String) { self.certificatePEM = certificatePEM }
}

/// An administrator's grant (`clustermesh connect`) letting `peer` read this cluster's export:
/// the public half of a key pair the administrator generated, for the control plane to certify.
/// Deleting it (`disconnect`) revokes the peer at once.
public struct PeerGrant: Codable, Sendable, Hashable {
    public var peer: String
    public var publicKeyPEM: String
    /// Lifetime of the certificate to issue; bounded by `PeerGrant.maximumValidity`.
    public var validitySeconds: Int64
    public var requestedAt: Date

    /// Peer credentials last 30 days unless asked otherwise; `connect` again renews them.
    public static let defaultValiditySeconds: Int64 = 30 * 86_400
    /// The longest lifetime a control plane issues, whatever a grant asks for.
    public static let maximumValiditySeconds: Int64 = 365 * 86_400

    public init(peer: String, publicKeyPEM: String, validitySeconds: Int64, requestedAt: Date) {
        self.peer = peer
        self.publicKeyPEM = publicKeyPEM
        self.validitySeconds = validitySeconds
        self.requestedAt = requestedAt
    }
}

/// The certificate a control plane issued for a `PeerGrant`. The mesh endpoint accepts a client
/// exactly when the certificate it presents has this fingerprint and the grant still holds the
/// same public key.
public struct PeerCredential: Codable, Sendable, Hashable {
    public var peer: String
    public var certificatePEM: String
    /// SHA-256 of the certificate's DER, lowercase hex.
    public var fingerprint: String
    public var publicKeyPEM: String
    public var notAfter: Date

    public init(peer: String, certificatePEM: String, fingerprint: String, publicKeyPEM: String, notAfter: Date) {
        self.peer = peer
        self.certificatePEM = certificatePEM
        self.fingerprint = fingerprint
        self.publicKeyPEM = publicKeyPEM
        self.notAfter = notAfter
    }
}

/// A peer this cluster imports from, with the read-only client credential the peer's control
/// plane issued for it and the peer's declared pod CIDR (what its records may claim). Written by
/// `clustermesh connect`, removed by `disconnect`.
public struct PeerRecord: Codable, Sendable, Hashable {
    public var name: String
    public var id: UInt32
    public var endpoints: [String]
    public var serverName: String
    public var caPEM: String
    public var certificatePEM: String
    public var privateKeyPEM: String
    /// The peer's pod CIDR as its settings declared it when the administrator connected the
    /// clusters: the only addresses its endpoints and nodes may claim here. Absent in records
    /// written before it existed; such a peer is refused until connected again.
    public var podCIDR: String?

    public init(name: String, id: UInt32, endpoints: [String], serverName: String, caPEM: String, certificatePEM: String,
                privateKeyPEM: String, podCIDR: String?) {
        self.name = name
        self.id = id
        self.endpoints = endpoints
        self.serverName = serverName
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.podCIDR = podCIDR
    }
}

/// When the importing control plane last said it is alive (`KeyLayout.statusReporter`). The
/// remote statuses are current as long as this is fresh, however old their own stamps are.
public struct StatusReporterRecord: Codable, Sendable, Hashable {
    public var reportedAt: Date

    public init(reportedAt: Date) { self.reportedAt = reportedAt }
}

/// One remote cluster as seen by the importing control plane, derived from its import state
/// machine and published under `meridian/clustermesh/status/<remote>` when it changes, for
/// `clustermesh status` (whether the control plane still reports is told by
/// `StatusReporterRecord`). Its JSON is the documented, stable status format.
public struct RemoteClusterStatus: Codable, Sendable, Hashable {
    /// Phases of the per-remote state machine (`ImportStateMachine`), in order.
    public enum Phase: String, Codable, Sendable, Hashable {
        case connecting, waitingForConfig = "waiting-for-config", syncing, ready, backoff, withdrawn
        /// Disconnected: its data is being removed from the cache (retried until it is gone).
        case draining
    }

    /// Counts per kind; also used for "synced" flags and rejections.
    public struct PerKind<Value: Codable & Sendable & Hashable>: Codable, Sendable, Hashable {
        public var nodes: Value
        public var endpoints: Value
        public var identities: Value
        public var services: Value
        public var serviceExports: Value
        public var serviceSlices: Value

        public init(nodes: Value, endpoints: Value, identities: Value, services: Value, serviceExports: Value, serviceSlices: Value) {
            self.nodes = nodes
            self.endpoints = endpoints
            self.identities = identities
            self.services = services
            self.serviceExports = serviceExports
            self.serviceSlices = serviceSlices
        }

        /// The same value for every kind.
        public init(all value: Value) {
            self.init(nodes: value, endpoints: value, identities: value, services: value, serviceExports: value, serviceSlices: value)
        }

        private enum CodingKeys: String, CodingKey {
            case nodes, endpoints, identities, services, serviceExports, serviceSlices
        }

        /// A status written before service exports and slices were kinds reads them as its services.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            nodes = try container.decode(Value.self, forKey: .nodes)
            endpoints = try container.decode(Value.self, forKey: .endpoints)
            identities = try container.decode(Value.self, forKey: .identities)
            services = try container.decode(Value.self, forKey: .services)
            serviceExports = try container.decodeIfPresent(Value.self, forKey: .serviceExports) ?? services
            serviceSlices = try container.decodeIfPresent(Value.self, forKey: .serviceSlices) ?? services
        }

        public subscript(kind: MeshKind) -> Value {
            get {
                switch kind {
                case .nodes: nodes
                case .endpoints: endpoints
                case .identities: identities
                case .services: services
                case .serviceExports: serviceExports
                case .serviceSlices: serviceSlices
                }
            }
            set {
                switch kind {
                case .nodes: nodes = newValue
                case .endpoints: endpoints = newValue
                case .identities: identities = newValue
                case .services: services = newValue
                case .serviceExports: serviceExports = newValue
                case .serviceSlices: serviceSlices = newValue
                }
            }
        }
    }

    public var name: String
    public var phase: Phase
    public var connected: Bool
    public var ready: Bool
    public var configRetrieved: Bool
    public var remoteClusterID: UInt32?
    public var syncCanaries: Bool
    public var synced: PerKind<Bool>
    public var counts: PerKind<Int>
    public var rejected: PerKind<Int>
    /// Rejected records by rule broken (`RemoteRecordRejection.Reason` raw values); nil until one.
    public var rejectedByReason: [String: Int]?
    /// The latest rejected records (newest last, at most `RejectedRecord.kept`); nil until one.
    public var recentRejections: [RejectedRecord]?
    public var numFailures: Int
    public var lastFailure: Date?
    public var lastError: String?
    public var lastHeartbeat: Date?
    /// Writes of this remote's data into the local store that failed and were retried (the
    /// connection to the remote stays up meanwhile); nil until the first.
    public var localStoreRetries: Int?
    /// When the status last changed.
    public var updated: Date
    /// When the control plane last published it (when it changed; its liveness is in
    /// `StatusReporterRecord`).
    public var reportedAt: Date?

    public init(name: String) {
        self.name = name
        phase = .connecting
        connected = false
        ready = false
        configRetrieved = false
        remoteClusterID = nil
        syncCanaries = false
        synced = .init(all: false)
        counts = .init(all: 0)
        rejected = .init(all: 0)
        numFailures = 0
        lastFailure = nil
        lastError = nil
        lastHeartbeat = nil
        updated = Date()
    }

    /// One record refused at the import boundary: which, why, and when. `key` and `message`
    /// carry text the remote controls, stored escaped (`TerminalSafe`) and cut, so they are safe
    /// to print as they are.
    public struct RejectedRecord: Codable, Sendable, Hashable {
        public var kind: String
        public var key: String
        public var reason: String
        public var message: String
        public var at: Date

        /// How many are kept per remote.
        public static let kept = 10

        public init(kind: String, key: String, reason: String, message: String, at: Date) {
            self.kind = kind
            self.key = key
            self.reason = reason
            self.message = message
            self.at = at
        }
    }

    /// Kinds not yet synced, in a fixed order, for "still syncing: ..." messages.
    public var pendingKinds: [MeshKind] { MeshKind.allCases.filter { !synced[$0] } }
}

/// JSON coding shared by every record Meridian stores, so dates and key order are the same
/// everywhere.
public enum StoreCoding {
    public static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        // Encoding plain Codable structs without custom encoders cannot fail.
        return try! encoder.encode(value)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, key: String) throws(StoreError) -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(type, from: data)
        } catch {
            throw StoreError.malformed(key: key, detail: "\(error)")
        }
    }
}

/// Failures reading or writing Meridian's records, each naming the record, document or labels
/// it concerns.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    case malformed(key: String, detail: String)
    /// The cluster's settings are not published (its control plane has not bootstrapped).
    case clusterSettingsMissing
    /// A document of an apply (`label` names the source, the document and the object).
    case duplicateObject(label: String)
    case namespaceMissing(label: String, namespace: String)
    case clusterIPRefused(label: String, reason: String)
    /// An apply of more objects than one transaction holds operations (`source` names the file).
    case tooManyObjects(source: String, objects: Int, limit: Int)
    /// An apply whose transaction would hold more operations than etcd takes in one.
    case tooManyOperations(source: String, operations: Int, limit: Int)
    /// An apply whose transaction would be larger than etcd takes in one request.
    case requestTooLarge(source: String, bytes: Int, limit: Int)
    case identitiesExhausted(cluster: UInt32, labels: String)
    case identityAllocationContended(labels: String)
    /// An apply of a pod that is being deleted (its node is stopping it).
    case objectTerminating(label: String)
    /// An apply that sets the cluster's name in the clusterset (`cluster.clusterset.k8s.io`)
    /// to something other than the cluster's name.
    case clusterPropertyFixed(label: String, cluster: String)

    public var description: String {
        switch self {
        case let .malformed(key, detail): "record \(key) is malformed: \(detail)"
        case .clusterSettingsMissing: "cluster settings (is the control plane running?) not found"
        case let .duplicateObject(label): "\(label): the same object appears twice in one apply"
        case let .namespaceMissing(label, namespace):
            "\(label): metadata.namespace: namespace \"\(namespace)\" not found; create it first or include it in the same file"
        case let .clusterIPRefused(label, reason): "\(label): spec.clusterIP: \(reason)"
        case let .tooManyObjects(source, objects, limit):
            "\(source): \(objects) objects are more than one apply can write: it is one store transaction of at most "
                + "\(limit) operations, one per object written; nothing was written, split the file"
        case let .tooManyOperations(source, operations, limit):
            "\(source): applying it takes \(operations) store operations (one per object written, one more per Service "
                + "claiming a ClusterIP), more than the \(limit) one transaction may hold; nothing was written, split the file"
        case let .requestTooLarge(source, bytes, limit):
            "\(source): applying it writes \(bytes) bytes in one transaction, more than the \(limit) one store request "
                + "may hold; nothing was written, split the file"
        case let .identitiesExhausted(cluster, labels): "no free identity left in cluster \(cluster)'s range for \(labels)"
        case let .identityAllocationContended(labels): "identity allocation for \(labels) kept conflicting; giving up"
        case let .objectTerminating(label):
            "\(label): it is being deleted (Terminating); apply it again once it is gone, or delete it with --force first"
        case let .clusterPropertyFixed(label, cluster):
            "\(label): spec.value: cluster.clusterset.k8s.io is this cluster's name, \"\(cluster)\"; it cannot be set to anything else"
        }
    }
}

/// What the control plane last saw of its store's space, and the last time it had to recover
/// from a NOSPACE alarm (etcd refuses every write until the alarm is disarmed), for
/// `clustermesh status`.
public struct StoreSpaceRecord: Codable, Sendable, Hashable {
    /// One recovery: compaction to `revision`, defragmentation, the alarm disarmed.
    public struct Recovery: Codable, Sendable, Hashable {
        public var at: Date
        public var revision: Int64
        public var backendBytesBefore: Int64
        public var backendBytesAfter: Int64

        public init(at: Date, revision: Int64, backendBytesBefore: Int64, backendBytesAfter: Int64) {
            self.at = at
            self.revision = revision
            self.backendBytesBefore = backendBytesBefore
            self.backendBytesAfter = backendBytesAfter
        }
    }

    /// The filesystem under the store's data directory: etcd does not refuse writes when its disk
    /// is full, it exits (and, restarted, exits again at its next write) until space is freed, so
    /// the control plane refuses writes itself before that (a NOSPACE alarm) and says why here.
    public struct Filesystem: Codable, Sendable, Hashable {
        /// The store's data directory.
        public var path: String
        public var availableBytes: Int64
        public var totalBytes: Int64
        /// Below this much free space writes are refused until space is freed.
        public var minimumFreeBytes: Int64

        public init(path: String, availableBytes: Int64, totalBytes: Int64, minimumFreeBytes: Int64) {
            self.path = path
            self.availableBytes = availableBytes
            self.totalBytes = totalBytes
            self.minimumFreeBytes = minimumFreeBytes
        }

        public var isShort: Bool { availableBytes < minimumFreeBytes }
    }

    public var checkedAt: Date
    public var backendBytes: Int64
    public var quotaBytes: Int64?
    public var lastRecovery: Recovery?
    /// Present for a store whose data directory the control plane can see (a managed etcd).
    public var filesystem: Filesystem?

    public init(checkedAt: Date, backendBytes: Int64, quotaBytes: Int64?, lastRecovery: Recovery?, filesystem: Filesystem? = nil) {
        self.checkedAt = checkedAt
        self.backendBytes = backendBytes
        self.quotaBytes = quotaBytes
        self.lastRecovery = lastRecovery
        self.filesystem = filesystem
    }
}

/// The calls the mesh endpoint refused since the control plane started, per peer (`-` when the
/// caller presented no current credential) and reason, published for `clustermesh status`.
public struct MeshEndpointStatusRecord: Codable, Sendable, Hashable {
    public var refusals: [String: [String: Int]]
    public var updatedAt: Date

    public init(refusals: [String: [String: Int]], updatedAt: Date) {
        self.refusals = refusals
        self.updatedAt = updatedAt
    }

    public var total: Int { refusals.values.reduce(0) { $0 + $1.values.reduce(0, +) } }
}

extension PeerRecord: CustomStringConvertible {
    /// Names the peer and where it is reached; never the private key.
    public var description: String {
        "PeerRecord(name: \(name), id: \(id), endpoints: \(endpoints), serverName: \(serverName), podCIDR: \(podCIDR ?? "-"), privateKey: <redacted>)"
    }
}
