import CMeridianBPF

/// The numeric ID of one cluster in the mesh.
///
/// Every identity a cluster allocates embeds its cluster ID in the upper bits, so two clusters
/// can never hand out the same security identity. `0` means "clustermesh disabled"; meshed
/// clusters use `1...maxConnectedClusters`. On the wire (etcd JSON) it is a bare number.
public struct ClusterID: RawRepresentable, Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public init(_ rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// The ID of a standalone cluster that takes no part in a mesh.
    public static let disabled = ClusterID(0)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        rawValue = try container.decode(UInt32.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public static func < (lhs: ClusterID, rhs: ClusterID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    public var description: String { String(rawValue) }
}

/// How many clusters a mesh may hold; decides how the 24-bit identity space is split.
///
/// Every cluster of one mesh must use the same value, and it cannot change after installation,
/// because it moves the boundary between the cluster bits and the per-cluster identity bits.
public enum MaxConnectedClusters: UInt32, Codable, Sendable, CaseIterable {
    case c255 = 255
    case c511 = 511
}

/// Why an identity could not be computed from a cluster ID and a local index.
public enum IdentityError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The cluster ID does not fit in the cluster bits of the layout.
    case clusterIDOutOfRange(ClusterID, maxClusterID: UInt32)
    /// The local index is outside what the cluster's identity range can hold.
    case localIndexOutOfRange(UInt32, cluster: ClusterID, allowed: ClosedRange<UInt32>)

    public var description: String {
        switch self {
        case let .clusterIDOutOfRange(cluster, maxClusterID):
            "cluster ID \(cluster) is outside 0...\(maxClusterID)"
        case let .localIndexOutOfRange(index, cluster, allowed):
            "local identity index \(index) for cluster \(cluster) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        }
    }
}

/// The split of the 24-bit numeric identity space between cluster bits and per-cluster bits.
///
/// Identities must fit in 24 bits because the tunnel VNI carries the source identity. The top
/// `clusterIDBits` of those 24 bits are the owning cluster's ID, the remaining `shift` bits
/// number the identities of that cluster.
///
/// Local indices: `identity(cluster:local:)` maps a 1-based index to a numeric identity.
/// - Cluster `N > 0`: identity = `N << shift + local`, local in `1...(1 << shift) - 1`. The
///   first identity of the range (`N << shift`) is never handed out, which leaves
///   `maxIdentitiesPerCluster` usable identities (65 535 in 255 mode, 32 767 in 511 mode).
/// - Cluster `0` (standalone): identities below 256 are reserved, so local index 1 is identity
///   256 and the last index ends at the top of range 0 (65 280 indices in 255 mode).
public struct IdentityLayout: Sendable, Hashable {
    public let maxConnectedClusters: MaxConnectedClusters

    public init(maxConnectedClusters: MaxConnectedClusters) {
        self.maxConnectedClusters = maxConnectedClusters
    }

    /// Width of a numeric identity as it travels in the tunnel VNI.
    public static let identityBits = Int(MER_IDENTITY_BITS)

    /// Identities below this value are reserved or well-known and shared by every cluster.
    public static let firstClusterScopedIdentity = UInt32(MER_FIRST_CLUSTER_IDENTITY)

    /// 8 in 255 mode, 9 in 511 mode.
    public var clusterIDBits: Int {
        switch maxConnectedClusters {
        case .c255: 8
        case .c511: 9
        }
    }

    /// Number of low bits that number identities inside one cluster (16 or 15).
    public var shift: Int { Self.identityBits - clusterIDBits }

    public var maxClusterID: UInt32 { maxConnectedClusters.rawValue }

    /// Identities a cluster with ID > 0 can allocate.
    public var maxIdentitiesPerCluster: Int { (1 << shift) - 1 }

    /// All identities owned by `cluster`, `N << shift ... ((N + 1) << shift) - 1`.
    ///
    /// - Precondition: `cluster.rawValue <= maxClusterID`; validate remote IDs first.
    public func range(of cluster: ClusterID) -> ClosedRange<UInt32> {
        precondition(cluster.rawValue <= maxClusterID, "cluster ID \(cluster) exceeds \(maxClusterID)")
        let lower = cluster.rawValue << UInt32(shift)
        return lower...(lower + (UInt32(1) << UInt32(shift)) - 1)
    }

    /// The cluster an identity belongs to, read from its cluster bits.
    public func clusterID(of identity: UInt32) -> ClusterID {
        ClusterID((identity >> UInt32(shift)) & maxClusterID)
    }

    /// True for identities that are reserved or well-known, and therefore not cluster-scoped.
    public func isReserved(_ identity: UInt32) -> Bool {
        identity < Self.firstClusterScopedIdentity
    }

    /// True when `identity` is a cluster-scoped identity allocated by `cluster`.
    ///
    /// Returns false for reserved identities and for cluster IDs beyond the layout, rather than
    /// trapping, so it is safe on data read from a remote cluster.
    public func isIdentity(_ identity: UInt32, ownedBy cluster: ClusterID) -> Bool {
        guard cluster.rawValue <= maxClusterID, !isReserved(identity) else { return false }
        return range(of: cluster).contains(identity)
    }

    /// Local indices that `identity(cluster:local:)` accepts for `cluster`.
    public func localIndices(of cluster: ClusterID) -> ClosedRange<UInt32> {
        let size = UInt32(1) << UInt32(shift)
        if cluster.rawValue == 0 {
            return 1...(size - Self.firstClusterScopedIdentity)
        }
        return 1...(size - 1)
    }

    /// The numeric identity for the `local`-th identity of `cluster` (see the type's notes).
    public func identity(cluster: ClusterID, local: UInt32) throws(IdentityError) -> UInt32 {
        guard cluster.rawValue <= maxClusterID else {
            throw .clusterIDOutOfRange(cluster, maxClusterID: maxClusterID)
        }
        let allowed = localIndices(of: cluster)
        guard allowed.contains(local) else {
            throw .localIndexOutOfRange(local, cluster: cluster, allowed: allowed)
        }
        if cluster.rawValue == 0 {
            return Self.firstClusterScopedIdentity - 1 + local
        }
        return range(of: cluster).lowerBound + local
    }

    /// The inverse of `identity(cluster:local:)`: the local index of a cluster-scoped identity,
    /// or nil for reserved identities and for the unused first identity of a cluster range.
    public func localIndex(of identity: UInt32) -> UInt32? {
        guard !isReserved(identity), identity < (UInt32(1) << UInt32(Self.identityBits)) else { return nil }
        let cluster = clusterID(of: identity)
        let offset = identity - (cluster.rawValue << UInt32(shift))
        if cluster.rawValue == 0 {
            return offset - Self.firstClusterScopedIdentity + 1
        }
        return offset == 0 ? nil : offset
    }
}

/// Identities with a fixed meaning in every cluster, below the cluster-scoped range.
///
/// They are not cluster-scoped: `ingress` from any cluster is the same identity. Their numbers
/// are the datapath's (`abi.h`), which are Cilium's.
public enum ReservedIdentity: RawRepresentable, Codable, Sendable, Hashable, CaseIterable {
    case host, world, unmanaged, health, `init`, remoteNode, kubeAPIServer, ingress, worldIPv4, worldIPv6

    public var rawValue: UInt32 {
        switch self {
        case .host: UInt32(MER_ID_HOST)
        case .world: UInt32(MER_ID_WORLD)
        case .unmanaged: UInt32(MER_ID_UNMANAGED)
        case .health: UInt32(MER_ID_HEALTH)
        case .`init`: UInt32(MER_ID_INIT)
        case .remoteNode: UInt32(MER_ID_REMOTE_NODE)
        case .kubeAPIServer: UInt32(MER_ID_KUBE_APISERVER)
        case .ingress: UInt32(MER_ID_INGRESS)
        case .worldIPv4: UInt32(MER_ID_WORLD_IPV4)
        case .worldIPv6: UInt32(MER_ID_WORLD_IPV6)
        }
    }

    public init?(rawValue: UInt32) {
        guard let match = Self.allCases.first(where: { $0.rawValue == rawValue }) else { return nil }
        self = match
    }

    /// The key of the identity's `reserved:` label.
    public var labelName: String {
        switch self {
        case .host: "host"
        case .world: "world"
        case .unmanaged: "unmanaged"
        case .health: "health"
        case .`init`: "init"
        case .remoteNode: "remote-node"
        case .kubeAPIServer: "kube-apiserver"
        case .ingress: "ingress"
        case .worldIPv4: "world-ipv4"
        case .worldIPv6: "world-ipv6"
        }
    }

    /// The identity's label, `reserved:<name>` with an empty value.
    public var label: Label {
        Label(source: LabelSource.reserved, key: labelName, value: "")
    }

    /// The reserved identity carrying a given `reserved:` label name, if any.
    public init?(labelName: String) {
        guard let match = Self.allCases.first(where: { $0.labelName == labelName }) else { return nil }
        self = match
    }
}

/// What is wrong with a cluster name, ID or mesh size.
public struct ClusterConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The setting at fault; a string-backed value so new settings need no API change.
    public struct Field: RawRepresentable, ExpressibleByStringLiteral, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        public static let name: Field = "cluster-name"
        public static let id: Field = "cluster-id"
        public static let maxConnectedClusters: Field = "max-connected-clusters"
    }

    public var field: Field
    public var value: String
    public var message: String

    public init(field: Field, value: String, message: String) {
        self.field = field
        self.value = value
        self.message = message
    }

    public var description: String {
        "invalid \(field) \"\(value)\": \(message)"
    }
}

/// The rules a cluster's name and ID must follow before it may join a mesh.
public enum ClusterValidation {
    public static let maxNameLength = 32

    /// The name that only a standalone cluster (ID 0) may use.
    public static let defaultClusterName = "default"

    /// Checks a cluster name and ID for use in a mesh of size `max`.
    ///
    /// - Parameter allowZero: accept ID 0 ("clustermesh disabled"), for a cluster that runs
    ///   standalone; such a cluster may keep the name `default`.
    public static func validate(
        name: String, id: UInt32, max: MaxConnectedClusters, allowZero: Bool = false
    ) throws(ClusterConfigError) {
        try validateName(name)
        if id == 0 {
            guard allowZero else {
                throw ClusterConfigError(
                    field: .id, value: "0",
                    message: "0 disables clustermesh; a meshed cluster needs an ID in 1...\(max.rawValue)")
            }
            return
        }
        guard id <= max.rawValue else {
            throw ClusterConfigError(
                field: .id, value: String(id),
                message: "must be in 1...\(max.rawValue) with max-connected-clusters=\(max.rawValue)")
        }
        guard name != defaultClusterName else {
            throw ClusterConfigError(
                field: .name, value: name,
                message: "\"\(defaultClusterName)\" is reserved for standalone clusters (ID 0); choose a unique name")
        }
    }

    /// Checks the name alone: 1 to 32 characters of `[-a-z0-9]`, starting and ending alphanumeric.
    public static func validateName(_ name: String) throws(ClusterConfigError) {
        guard !name.isEmpty else {
            throw ClusterConfigError(field: .name, value: name, message: "must not be empty")
        }
        guard name.utf8.count <= maxNameLength else {
            throw ClusterConfigError(
                field: .name, value: name,
                message: "is \(name.utf8.count) characters long; at most \(maxNameLength) are allowed")
        }
        let isAlphanumeric: (UInt8) -> Bool = { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) }
        guard name.utf8.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else {
            throw ClusterConfigError(
                field: .name, value: name,
                message: "may contain only lowercase letters, digits and '-'")
        }
        guard let first = name.utf8.first, let last = name.utf8.last, isAlphanumeric(first), isAlphanumeric(last) else {
            throw ClusterConfigError(
                field: .name, value: name,
                message: "must start and end with a lowercase letter or digit")
        }
    }
}
