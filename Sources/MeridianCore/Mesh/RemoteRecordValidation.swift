import Foundation

/// Why a record read from a remote cluster was refused, with enough context to log and count it.
public struct RemoteRecordRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of record that was refused.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case node
        case service
        case ipIdentityPair = "ip-identity-pair"
        case identity
        case serviceExport = "service-export"
        case serviceSlice = "service-slice"
    }

    /// The rule that was broken; the label to count rejections by.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// The record claims a cluster name or ID other than the remote it came from.
        case wrongCluster = "wrong-cluster"
        /// A cluster-scoped identity outside the remote cluster's identity range.
        case identityOutOfRange = "identity-out-of-range"
        /// The etcd key does not name the record it holds.
        case keyMismatch = "key-mismatch"
        /// The value cannot be decoded or holds invalid fields.
        case malformed
        /// A pod address or prefix (ipcache entry, node pod CIDR, health IP, service backend)
        /// outside the peer's pod CIDRs: a peer could otherwise take over addresses of this
        /// cluster's pods or of anything else the datapath routes.
        case outsidePodCIDR = "outside-pod-cidr"
        /// A default route (`/0`), or a prefix that covers a whole pod CIDR of the peer and more:
        /// one record would capture traffic for everything it spans.
        case overBroadPrefix = "over-broad-prefix"
        /// A reserved identity number (1...255) as an ipcache identity or identity key. These
        /// numbers mean the same in every cluster (host, world, remote-node, ...), Meridian's
        /// exporter never publishes them, and a peer that did could recast its pods as this
        /// cluster's host or relabel `world`.
        case reservedIdentity = "reserved-identity"
        /// An identity label with the `reserved` source (`reserved:host`, `reserved:world`):
        /// policy matches entities by these labels, so only this cluster may assign them.
        case reservedLabel = "reserved-label"
        /// A node, namespace, service, pod, port or host name that breaks Kubernetes' naming
        /// rules, or an identity label with a non-printing character. These strings become keys
        /// and are printed; escape sequences and `../` have no place in them.
        case invalidName = "invalid-name"
        /// The raw value exceeds `RemoteRecordLimits` for its kind; refused before decoding.
        case tooLarge = "too-large"
        /// A node address or tunnel endpoint that is unspecified, loopback, multicast or the
        /// broadcast address: tunnelling there would loop back into this node or fan out.
        case unusableAddress = "unusable-address"
        /// Accepting the record would take the peer past `RemoteRecordLimits`' records or bytes
        /// per kind; the records whose keys sort first are kept.
        case overQuota = "over-quota"
        /// A node address inside this cluster's pod or service CIDR: this cluster's own addresses.
        case localAddress = "local-address"
        /// A service backend state that is not one a cluster exports (`active`, `terminating`),
        /// or a state for an address that is not one of the service's backends.
        case unknownBackendState = "unknown-backend-state"
        /// A node's `WireguardPubKey` that is not the base64 of a 32-byte key (or is the
        /// all-zero key): it would be configured into every node's WireGuard device.
        case invalidWireGuardKey = "invalid-wireguard-key"
    }

    public var kind: Kind
    /// The key name below the kind's prefix (e.g. `<cluster>/<node>`, `<ns>/<name>`, an IP, an ID).
    public var key: String
    public var reason: Reason
    /// Built with peer strings escaped (`TerminalSafe`) and shortened.
    public var message: String

    public init(kind: Kind, key: String, reason: Reason, message: String) {
        self.kind = kind
        self.key = key
        self.reason = reason
        self.message = message
    }

    /// The key is peer-controlled, so it is escaped and shortened here.
    public var description: String {
        "rejected \(kind.rawValue) \"\(TerminalSafe.escape(key, maxScalars: 256))\" (\(reason.rawValue)): \(message)"
    }
}

/// The checks applied to every record imported from one remote cluster.
///
/// A remote cluster may only publish data about itself: nodes and services carrying its own
/// name and ID, pod addresses inside the pod CIDRs the local administrator recorded for it at
/// `connect`, cluster-scoped identities inside its own identity range with labels it may
/// assign, valid Kubernetes names, and records of bounded size. Anything else is refused rather
/// than imported, so a misconfigured or hostile peer cannot inject identities, routes or
/// backends in another cluster's name. Key names are given relative to the kind's prefix
/// (`cilium/state/nodes/v1/`, `cilium/state/services/v1/<cluster>/`,
/// `cilium/state/ip/v1/default/`, `cilium/state/identities/v1/id/`, or their
/// `cilium/cache/...` equivalents).
///
/// Each check returns normally or throws a `RemoteRecordRejection`. Importers use the
/// `decode...` variants: they take the raw value, refuse it by size before decoding, and turn
/// undecodable JSON into a `.malformed` rejection. The `validate...` variants check a value
/// already decoded and cannot check its size. Use `Result { try ... }` where a value is more
/// convenient than a throw.
public struct RemoteRecordValidation: Sendable, Hashable {
    public let remoteName: String
    public let remoteID: ClusterID
    /// The peer's pod CIDRs as the local administrator recorded them; every pod address the
    /// peer publishes must lie inside one of them. Empty refuses every such record.
    public let podCIDRs: [IPCIDR]
    public let layout: IdentityLayout

    /// - Parameter podCIDRs: the peer's pod CIDRs from the local `connect` record, never from
    ///   the peer itself.
    /// - Throws: when the remote's own name or ID is not valid for a mesh of this layout, or a
    ///   pod CIDR is a default route (a peer owning every address cannot be held to anything).
    public init(
        remoteName: String, remoteID: ClusterID, podCIDRs: [IPCIDR], layout: IdentityLayout
    ) throws(ClusterConfigError) {
        try ClusterValidation.validate(name: remoteName, id: remoteID.rawValue, max: layout.maxConnectedClusters)
        if let everything = podCIDRs.first(where: { $0.prefixLength == 0 }) {
            throw ClusterConfigError(
                field: .podCIDR, value: everything.description, message: "a peer's pod CIDR cannot be a default route")
        }
        self.remoteName = remoteName
        self.remoteID = remoteID
        self.podCIDRs = podCIDRs
        self.layout = layout
    }

    public init(
        remote: (name: String, id: ClusterID), podCIDRs: [IPCIDR], layout: IdentityLayout
    ) throws(ClusterConfigError) {
        try self.init(remoteName: remote.name, remoteID: remote.id, podCIDRs: podCIDRs, layout: layout)
    }

    /// Kept so that callers compile until they pass the peer's pod CIDRs. Without them every
    /// record carrying a pod address (ipcache entries, node pod CIDRs, service backends) is
    /// refused as `outside-pod-cidr`: failing closed is the point of the check.
    @available(*, deprecated, message: "pass the peer's pod CIDRs from its connect record: init(remoteName:remoteID:podCIDRs:layout:)")
    public init(remoteName: String, remoteID: ClusterID, layout: IdentityLayout) throws(ClusterConfigError) {
        try self.init(remoteName: remoteName, remoteID: remoteID, podCIDRs: [], layout: layout)
    }

    /// The identities the remote may allocate.
    public var identityRange: ClosedRange<UInt32> { layout.range(of: remoteID) }

    // MARK: Shared checks

    typealias Reject = (RemoteRecordRejection.Reason, String) -> RemoteRecordRejection

    static func rejecter(_ kind: RemoteRecordRejection.Kind, _ keyName: String) -> Reject {
        { reason, message in RemoteRecordRejection(kind: kind, key: keyName, reason: reason, message: message) }
    }

    /// A peer string for a message: escaped, shortened, quoted.
    static func quoted(_ text: some StringProtocol) -> String {
        "\"\(TerminalSafe.escape(text, maxScalars: 64))\""
    }

    func checkSize(_ byteCount: Int, _ kind: RemoteRecordRejection.Kind, _ reject: Reject) throws(RemoteRecordRejection) {
        let limit = RemoteRecordLimits.maximumBytes(of: kind)
        guard byteCount <= limit else {
            throw reject(.tooLarge, "value is \(byteCount) bytes; a \(kind.rawValue) may have at most \(limit)")
        }
    }

    func checkCluster(name: String, id: UInt32, field: (name: String, id: String), _ reject: Reject) throws(RemoteRecordRejection) {
        guard !name.isEmpty else { throw reject(.malformed, "\(field.name) is empty") }
        guard name == remoteName else {
            throw reject(.wrongCluster, "\(field.name) \(Self.quoted(name)) is not the remote cluster \"\(remoteName)\"")
        }
        guard id == remoteID.rawValue else {
            throw reject(.wrongCluster, "\(field.id) \(id) is not the remote cluster's ID \(remoteID)")
        }
    }

    /// Identity 0 is malformed; reserved numbers are refused; the rest must be the remote's.
    func checkIdentity(_ id: UInt32, _ reject: Reject) throws(RemoteRecordRejection) {
        guard id != 0 else { throw reject(.malformed, "identity 0 is the invalid identity") }
        guard !layout.isReserved(id) else {
            throw reject(.reservedIdentity, "identity \(id) is reserved; a peer may only publish identities of its own range")
        }
        guard identityRange.contains(id) else {
            throw reject(
                .identityOutOfRange,
                "identity \(id) is outside \(identityRange.lowerBound)...\(identityRange.upperBound)"
                    + " of cluster \(remoteName) (ID \(remoteID))")
        }
    }

    /// A prefix of pod addresses: never `/0`, never wider than a pod CIDR it covers, and
    /// otherwise inside one of the peer's pod CIDRs (equal to one is fine).
    func checkPodPrefix(_ prefix: IPCIDR, field: String, _ reject: Reject) throws(RemoteRecordRejection) {
        guard prefix.prefixLength > 0 else {
            throw reject(.overBroadPrefix, "\(field) \(prefix) is a default route")
        }
        if let covered = podCIDRs.first(where: { prefix.contains($0) && prefix != $0 }) {
            throw reject(.overBroadPrefix, "\(field) \(prefix) is wider than the peer's pod CIDR \(covered)")
        }
        guard podCIDRs.contains(where: { $0.contains(prefix) }) else {
            throw reject(.outsidePodCIDR, "\(field) \(prefix) is outside the peer's pod CIDRs \(podCIDRList)")
        }
    }

    /// One pod address inside one of the peer's pod CIDRs.
    func checkPodAddress(_ address: IPAddress, field: String, _ reject: Reject) throws(RemoteRecordRejection) {
        guard podCIDRs.contains(where: { $0.contains(address) }) else {
            throw reject(.outsidePodCIDR, "\(field) \(address) is outside the peer's pod CIDRs \(podCIDRList)")
        }
    }

    /// An address a packet may be tunnelled to.
    func checkUsable(_ address: IPAddress, field: String, _ reject: Reject) throws(RemoteRecordRejection) {
        let problems = [
            (address.isUnspecified, "unspecified"), (address.isLoopback, "a loopback address"),
            (address.isMulticast, "a multicast address"), (address.isLimitedBroadcast, "the broadcast address"),
        ]
        if let (_, problem) = problems.first(where: { $0.0 }) {
            throw reject(.unusableAddress, "\(field) \(address) is \(problem)")
        }
    }

    /// A Kubernetes name: `problem` is one of `NameSyntax`'s checks.
    func checkName(_ name: String, field: String, _ problem: (String) -> String?, _ reject: Reject) throws(RemoteRecordRejection) {
        if let problem = problem(name) {
            throw reject(.invalidName, "\(field) \(Self.quoted(name)) \(problem)")
        }
    }

    private var podCIDRList: String {
        podCIDRs.isEmpty ? "(none recorded)" : podCIDRs.map(\.description).joined(separator: ", ")
    }

    func decode<Record: Decodable>(
        _ value: Data, kind: RemoteRecordRejection.Kind, keyName: String
    ) throws(RemoteRecordRejection) -> Record {
        let reject = Self.rejecter(kind, keyName)
        try checkSize(value.count, kind, reject)
        do {
            return try CiliumJSON.decoder().decode(Record.self, from: value)
        } catch {
            throw reject(.malformed, "cannot decode JSON: \(TerminalSafe.escape(Self.describe(error), maxScalars: 512))")
        }
    }

    private static func describe(_ error: any Error) -> String {
        guard let decodingError = error as? DecodingError else { return String(describing: error) }
        switch decodingError {
        case let .dataCorrupted(context), let .keyNotFound(_, context), let .typeMismatch(_, context),
            let .valueNotFound(_, context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        @unknown default:
            return String(describing: decodingError)
        }
    }
}

extension ClusterConfigError.Field {
    /// A pod CIDR recorded for a cluster.
    public static let podCIDR: Self = "pod-cidr"
}
