import Foundation

/// The etcd key layout, in one place. Cilium's `cilium/...` keys are the wire protocol between
/// clusters (so the exported state is what ClusterMesh users know and can inspect with etcdctl);
/// `meridian/...` keys are this cluster's own, readable only by its administrators.
public enum KeyLayout {
    public static let heartbeat = "cilium/.heartbeat"
    public static let statePrefix = "cilium/state/"
    public static let cachePrefix = "cilium/cache/"
    public static let clusterConfigPrefix = "cilium/cluster-config/"
    public static let syncedPrefix = "cilium/synced/"

    public static func clusterConfig(_ cluster: String) -> String { clusterConfigPrefix + cluster }

    /// Every sync canary `cluster` writes (and a peer may read).
    public static func syncCanaries(of cluster: String) -> String { "\(syncedPrefix)\(cluster)/" }

    /// Sync canary for `prefix` (for example `cilium/state/nodes/v1`) written by `cluster`.
    public static func syncCanary(cluster: String, prefix: String) -> String { syncCanaries(of: cluster) + prefix }

    // Meridian's own keys.
    public static let meridianPrefix = "meridian/"
    public static let clusterSettings = "meridian/cluster/settings"
    /// Where earlier versions kept the CA with its private key; bootstrap deletes it. No secret
    /// key material is stored in etcd.
    public static let retiredCertificateAuthority = "meridian/secrets/ca"
    /// The mesh CA's certificate (never its key): what `clustermesh connect` compares between
    /// clusters and hands to importers to verify the mesh endpoint.
    public static let meshCertificateAuthority = "meridian/clustermesh/ca"
    /// `meridian/clustermesh/grants/<peer>`: the administrator's grant of read access to a peer
    /// (`PeerGrant`, with the public key to certify).
    public static let peerGrantsPrefix = "meridian/clustermesh/grants/"
    /// `meridian/clustermesh/credentials/<peer>`: the certificate the control plane issued for a
    /// grant (`PeerCredential`); the mesh endpoint accepts exactly these certificates.
    public static let peerCredentialsPrefix = "meridian/clustermesh/credentials/"
    /// What the mesh endpoint refused, per peer and reason (`MeshEndpointStatusRecord`).
    public static let meshEndpointStatus = "meridian/clustermesh/endpoint"
    public static let clusterMeshSettings = "meridian/clustermesh/settings"
    public static let peersPrefix = "meridian/clustermesh/peers/"
    public static let remoteStatusPrefix = "meridian/clustermesh/status/"
    /// The control plane's liveness beside the remote statuses (a name no cluster can have):
    /// rewritten every few seconds, so a remote's status is rewritten only when it changes.
    public static let statusReporter = remoteStatusPrefix + ".reporter"
    public static let resourcesPrefix = "meridian/resources/"
    public static let serviceIPPrefix = "meridian/ipam/services/"
    /// `meridian/ipam/podcidrs/<cidr with / as _>` holds the node a pod CIDR is carved out for.
    public static let podCIDRPrefix = "meridian/ipam/podcidrs/"
    /// `meridian/status/pods/<namespace>/<name>`: what the node running a pod reports.
    public static let podStatusPrefix = "meridian/status/pods/"
    /// `meridian/status/nodes/<node>`: the policy a node's agent has programmed (`NodePolicyStatus`).
    public static let nodeStatusPrefix = "meridian/status/nodes/"
    /// `meridian/status/encryption/<node>`: a node's transparent encryption as its agent sees it
    /// (`NodeEncryptionStatus`), read by `meridian encryption status`.
    public static let encryptionStatusPrefix = "meridian/status/encryption/"
    /// `meridian/identities/labels/<labels>`: the numeric identity of a label set.
    public static let identityIndexPrefix = "meridian/identities/labels/"

    /// The label index entry of an identity's labels (Cilium's label string).
    public static func identityIndex(_ labels: String) -> String { identityIndexPrefix + labels }
    /// Pod statuses of one namespace.
    public static func podStatuses(namespace: String) -> String { "\(podStatusPrefix)\(namespace)/" }

    public static func podCIDR(_ cidr: String) -> String { podCIDRPrefix + cidr.replacingOccurrences(of: "/", with: "_") }
    public static func nodeStatus(_ node: String) -> String { nodeStatusPrefix + node }
    public static func encryptionStatus(_ node: String) -> String { encryptionStatusPrefix + node }
    /// `meridian/encryption/rotate/<node>`: written by `meridian encryption rotate`; the node's
    /// agent makes a new key pair once per write (the key's mod revision), agents only read it.
    public static let encryptionRotationPrefix = "meridian/encryption/rotate/"
    public static func encryptionRotation(_ node: String) -> String { encryptionRotationPrefix + node }
    /// `meridian/status/store`: the control plane's last look at its store's space (`StoreSpaceRecord`).
    public static let storeSpace = "meridian/status/store"
    public static func podStatus(namespace: String, name: String) -> String { "\(podStatusPrefix)\(namespace)/\(name)" }
    /// `meridian/status/serviceexports/<namespace>/<name>`: a ServiceExport's conditions
    /// (`ServiceExportStatus`), written by the control plane beside the object.
    public static let serviceExportStatusPrefix = "meridian/status/serviceexports/"
    public static func serviceExportStatus(namespace: String, name: String) -> String { "\(serviceExportStatusPrefix)\(namespace)/\(name)" }

    public static func peer(_ name: String) -> String { peersPrefix + name }
    public static func peerGrant(_ name: String) -> String { peerGrantsPrefix + name }
    public static func peerCredential(_ name: String) -> String { peerCredentialsPrefix + name }

    /// What a peer may read of `cluster` through the mesh endpoint, and nothing else: the
    /// heartbeat, the exported state, the cluster's own config and its sync canaries.
    public static func meshReadable(cluster: String) -> [MeshReadableRange] {
        [
            MeshReadableRange(key: heartbeat, isPrefix: false),
            MeshReadableRange(key: statePrefix, isPrefix: true),
            MeshReadableRange(key: clusterConfig(cluster), isPrefix: false),
            MeshReadableRange(key: syncCanaries(of: cluster), isPrefix: true),
        ]
    }
    public static func remoteStatus(_ name: String) -> String { remoteStatusPrefix + name }
    public static func serviceIP(_ ip: String) -> String { serviceIPPrefix + ip }

    /// `meridian/resources/<plural>/<namespace>/<name>`, or without the namespace for
    /// cluster-scoped kinds.
    public static func resource(plural: String, namespace: String?, name: String) -> String {
        if let namespace { return "\(resourcesPrefix)\(plural)/\(namespace)/\(name)" }
        return "\(resourcesPrefix)\(plural)/\(name)"
    }

    public static func resources(plural: String, namespace: String? = nil) -> String {
        if let namespace { return "\(resourcesPrefix)\(plural)/\(namespace)/" }
        return "\(resourcesPrefix)\(plural)/"
    }
}

/// The four kinds of state a cluster exports and its peers import, each with its Cilium key
/// prefixes in the exporting cluster (`state`) and in the importing cluster's cache.
public enum MeshKind: String, Sendable, Hashable, CaseIterable, Codable {
    case nodes, endpoints, identities, services
    /// Multi-Cluster Services API exports (`ExportedServiceSpec`).
    case serviceExports = "serviceexports"
    /// The backends of large global services, in slices (`ServiceSlicing`).
    case serviceSlices = "serviceslices"

    /// The versioned prefix used in sync canaries, e.g. `cilium/state/nodes/v1`.
    public var stateCanaryPrefix: String {
        switch self {
        case .nodes: "cilium/state/nodes/v1"
        case .endpoints: "cilium/state/ip/v1"
        case .identities: "cilium/state/identities/v1"
        case .services: "cilium/state/services/v1"
        case .serviceExports: "cilium/state/serviceexports/v1"
        case .serviceSlices: "cilium/state/serviceslices/v1"
        }
    }

    public var cacheCanaryPrefix: String {
        KeyLayout.cachePrefix + stateCanaryPrefix.dropFirst(KeyLayout.statePrefix.count)
    }

    /// Where an importing cluster caches this kind of every peer (`cilium/cache/ip/v1/`).
    public var cacheRoot: String { cacheCanaryPrefix + "/" }

    /// The peer a cache key of this kind belongs to (`cilium/cache/ip/v1/<peer>/...`).
    public func cacheCluster(ofKey key: String) -> String? {
        guard key.hasPrefix(cacheRoot) else { return nil }
        let rest = key.dropFirst(cacheRoot.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return String(rest[..<slash])
    }

    /// Where `cluster` publishes this kind in its own etcd. Endpoints and identities are not
    /// namespaced by cluster in Cilium's layout (identities carry the cluster in their ID bits).
    public func statePrefix(cluster: String) -> String {
        switch self {
        case .nodes: "cilium/state/nodes/v1/\(cluster)/"
        case .endpoints: "cilium/state/ip/v1/default/"
        case .identities: "cilium/state/identities/v1/id/"
        case .services: "cilium/state/services/v1/\(cluster)/"
        case .serviceExports: "cilium/state/serviceexports/v1/\(cluster)/"
        case .serviceSlices: "cilium/state/serviceslices/v1/\(cluster)/"
        }
    }

    /// Where an importing cluster caches what it read from `cluster`.
    public func cachePrefix(cluster: String) -> String {
        cacheRoot + cluster + (self == .identities ? "/id/" : "/")
    }

    /// The key of one record under `statePrefix`, e.g. `node1`, `10.1.0.5`, `65536`, `default/web`.
    public func stateKey(cluster: String, name: String) -> String { statePrefix(cluster: cluster) + name }
    public func cacheKey(cluster: String, name: String) -> String { cachePrefix(cluster: cluster) + name }

    /// The name a user sees for the kind (`meridian get nodes`).
    public var displayName: String { rawValue }
}

/// One key, or every key under a prefix, that a peer may read through the mesh endpoint.
public struct MeshReadableRange: Sendable, Hashable {
    public var key: String
    public var isPrefix: Bool

    public init(key: String, isPrefix: Bool) {
        self.key = key
        self.isPrefix = isPrefix
    }
}
