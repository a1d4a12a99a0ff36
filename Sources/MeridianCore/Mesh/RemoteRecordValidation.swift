import Foundation

/// Why a record read from a remote cluster was refused, with enough context to log and count it.
public struct RemoteRecordRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of record that was refused.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case node
        case service
        case ipIdentityPair = "ip-identity-pair"
        case identity
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
    }

    public var kind: Kind
    /// The key name below the kind's prefix (e.g. `<cluster>/<node>`, `<ns>/<name>`, an IP, an ID).
    public var key: String
    public var reason: Reason
    public var message: String

    public init(kind: Kind, key: String, reason: Reason, message: String) {
        self.kind = kind
        self.key = key
        self.reason = reason
        self.message = message
    }

    public var description: String {
        "rejected \(kind.rawValue) \"\(key)\" (\(reason.rawValue)): \(message)"
    }
}

/// The checks applied to every record imported from one remote cluster.
///
/// A remote cluster may only publish data about itself: nodes and services carrying its own
/// name and ID, and cluster-scoped identities inside its own identity range. Anything else is
/// refused rather than imported, so a misconfigured or hostile peer cannot inject identities or
/// backends in another cluster's name. Key names are given relative to the kind's prefix
/// (`cilium/state/nodes/v1/`, `cilium/state/services/v1/<cluster>/`,
/// `cilium/state/ip/v1/default/`, `cilium/state/identities/v1/id/`, or their
/// `cilium/cache/...` equivalents).
///
/// Each check returns normally or throws a `RemoteRecordRejection`; the `decode...` variants
/// also turn undecodable JSON into a `.malformed` rejection. Use `Result { try ... }` where a
/// value is more convenient than a throw.
public struct RemoteRecordValidation: Sendable, Hashable {
    public let remoteName: String
    public let remoteID: ClusterID
    public let layout: IdentityLayout

    /// - Throws: when the remote's own name or ID is not valid for a mesh of this layout.
    public init(remoteName: String, remoteID: ClusterID, layout: IdentityLayout) throws(ClusterConfigError) {
        try ClusterValidation.validate(name: remoteName, id: remoteID.rawValue, max: layout.maxConnectedClusters)
        self.remoteName = remoteName
        self.remoteID = remoteID
        self.layout = layout
    }

    public init(remote: (name: String, id: ClusterID), layout: IdentityLayout) throws(ClusterConfigError) {
        try self.init(remoteName: remote.name, remoteID: remote.id, layout: layout)
    }

    /// The identities the remote may allocate.
    public var identityRange: ClosedRange<UInt32> { layout.range(of: remoteID) }

    // MARK: Nodes

    /// A node must be named, belong to the remote by name and ID, sit under `<cluster>/<name>`,
    /// and carry parseable addresses.
    public func validate(node: NodeRecord, keyName: String) throws(RemoteRecordRejection) {
        func reject(_ reason: RemoteRecordRejection.Reason, _ message: String) -> RemoteRecordRejection {
            RemoteRecordRejection(kind: .node, key: keyName, reason: reason, message: message)
        }
        guard !node.name.isEmpty else { throw reject(.malformed, "node has no Name") }
        try checkCluster(name: node.cluster, id: node.clusterID, field: ("Cluster", "ClusterID"), reject)
        guard keyName == node.keyName else {
            throw reject(.keyMismatch, "key should be \"\(node.keyName)\" for node \(node.name) of cluster \(node.cluster)")
        }
        for address in node.ipAddresses where IPAddress(address.ip) == nil {
            throw reject(.malformed, "address \"\(address.ip)\" of type \(address.type) is not an IP address")
        }
        for (field, ip) in [("IPv4HealthIP", node.ipv4HealthIP), ("IPv6HealthIP", node.ipv6HealthIP)]
        where !ip.isEmpty && IPAddress(ip) == nil {
            throw reject(.malformed, "\(field) \"\(ip)\" is not an IP address")
        }
    }

    public func decodeNode(keyName: String, value: Data) throws(RemoteRecordRejection) -> NodeRecord {
        let node: NodeRecord = try decode(value, kind: .node, keyName: keyName)
        try validate(node: node, keyName: keyName)
        return node
    }

    // MARK: Services

    /// A service must belong to the remote by name and ID, be named, sit under `<ns>/<name>`,
    /// and key its frontends, backends and hostnames by parseable IPs.
    public func validate(service: ClusterService, keyName: String) throws(RemoteRecordRejection) {
        func reject(_ reason: RemoteRecordRejection.Reason, _ message: String) -> RemoteRecordRejection {
            RemoteRecordRejection(kind: .service, key: keyName, reason: reason, message: message)
        }
        try checkCluster(name: service.cluster, id: service.clusterID, field: ("cluster", "clusterID"), reject)
        guard !service.namespace.isEmpty, !service.name.isEmpty else {
            throw reject(.malformed, "service has an empty namespace or name")
        }
        guard keyName == service.namespacedName else {
            throw reject(.keyMismatch, "key should be \"\(service.namespacedName)\"")
        }
        let addressMaps: [(String, [String])] = [
            ("frontend", Array(service.frontends.keys)),
            ("backend", Array(service.backends.keys)),
            ("hostname", Array((service.hostnames ?? [:]).keys)),
        ]
        for (role, ips) in addressMaps {
            for ip in ips.sorted() where IPAddress(ip) == nil {
                throw reject(.malformed, "\(role) \"\(ip)\" is not an IP address")
            }
        }
    }

    public func decodeService(keyName: String, value: Data) throws(RemoteRecordRejection) -> ClusterService {
        let service: ClusterService = try decode(value, kind: .service, keyName: keyName)
        try validate(service: service, keyName: keyName)
        return service
    }

    // MARK: ipcache entries

    /// An ipcache entry must sit under its own IP (or `IP/length` when it has a `Mask`), carry a
    /// parseable host IP, and an identity that is reserved (1...255) or inside the remote's
    /// range. Identity 0, the invalid identity, is refused as malformed.
    public func validate(ipIdentityPair pair: IPIdentityPair, keyName: String) throws(RemoteRecordRejection) {
        func reject(_ reason: RemoteRecordRejection.Reason, _ message: String) -> RemoteRecordRejection {
            RemoteRecordRejection(kind: .ipIdentityPair, key: keyName, reason: reason, message: message)
        }
        let prefix: IPCIDR
        do {
            prefix = try pair.prefix()
        } catch {
            throw reject(.malformed, error.description)
        }
        if !pair.hostIP.isEmpty, IPAddress(pair.hostIP) == nil {
            throw reject(.malformed, "HostIP \"\(pair.hostIP)\" is not an IP address")
        }
        let keyMatches: Bool
        if pair.mask == nil {
            keyMatches = IPAddress(keyName) == prefix.address
        } else {
            keyMatches = IPCIDR(keyName) == prefix
        }
        guard keyMatches else {
            let expected = pair.mask == nil ? prefix.address.description : prefix.description
            throw reject(.keyMismatch, "key should be \"\(expected)\" for IP \(pair.ip)")
        }
        try checkIdentity(pair.id, reject)
    }

    public func decodeIPIdentityPair(keyName: String, value: Data) throws(RemoteRecordRejection) -> IPIdentityPair {
        let pair: IPIdentityPair = try decode(value, kind: .ipIdentityPair, keyName: keyName)
        try validate(ipIdentityPair: pair, keyName: keyName)
        return pair
    }

    // MARK: Identities

    /// An identity entry (`id/<ID>` → label string) must have a decimal ID that is reserved or in
    /// the remote's range, a parseable label string, and, when it carries the cluster label,
    /// the remote's name in it.
    ///
    /// - Returns: the numeric identity and its labels.
    public func validateIdentity(
        keyName: String, labels: String
    ) throws(RemoteRecordRejection) -> (id: UInt32, labels: LabelSet) {
        func reject(_ reason: RemoteRecordRejection.Reason, _ message: String) -> RemoteRecordRejection {
            RemoteRecordRejection(kind: .identity, key: keyName, reason: reason, message: message)
        }
        guard !keyName.isEmpty, keyName.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let id = UInt32(keyName) else {
            throw reject(.malformed, "identity key is not a decimal number")
        }
        try checkIdentity(id, reject)
        let set: LabelSet
        do {
            set = try LabelSet(ciliumString: labels)
        } catch {
            throw reject(.malformed, error.description)
        }
        if let cluster = set.clusterName, cluster != remoteName {
            throw reject(.wrongCluster, "label \(LabelKeys.cluster)=\(cluster) names another cluster than \(remoteName)")
        }
        return (id, set)
    }

    public func decodeIdentity(
        keyName: String, value: Data
    ) throws(RemoteRecordRejection) -> (id: UInt32, labels: LabelSet) {
        guard let text = String(data: value, encoding: .utf8) else {
            throw RemoteRecordRejection(
                kind: .identity, key: keyName, reason: .malformed, message: "label string is not UTF-8")
        }
        return try validateIdentity(keyName: keyName, labels: text)
    }

    // MARK: Shared checks

    private func checkCluster(
        name: String, id: UInt32, field: (name: String, id: String),
        _ reject: (RemoteRecordRejection.Reason, String) -> RemoteRecordRejection
    ) throws(RemoteRecordRejection) {
        guard !name.isEmpty else { throw reject(.malformed, "\(field.name) is empty") }
        guard name == remoteName else {
            throw reject(.wrongCluster, "\(field.name) \"\(name)\" is not the remote cluster \"\(remoteName)\"")
        }
        guard id == remoteID.rawValue else {
            throw reject(.wrongCluster, "\(field.id) \(id) is not the remote cluster's ID \(remoteID)")
        }
    }

    private func checkIdentity(
        _ id: UInt32, _ reject: (RemoteRecordRejection.Reason, String) -> RemoteRecordRejection
    ) throws(RemoteRecordRejection) {
        guard id != 0 else { throw reject(.malformed, "identity 0 is the invalid identity") }
        guard layout.isReserved(id) || identityRange.contains(id) else {
            throw reject(
                .identityOutOfRange,
                "identity \(id) is outside \(identityRange.lowerBound)...\(identityRange.upperBound)"
                    + " of cluster \(remoteName) (ID \(remoteID))")
        }
    }

    private func decode<Record: Decodable>(
        _ value: Data, kind: RemoteRecordRejection.Kind, keyName: String
    ) throws(RemoteRecordRejection) -> Record {
        do {
            return try CiliumJSON.decoder().decode(Record.self, from: value)
        } catch {
            throw RemoteRecordRejection(
                kind: kind, key: keyName, reason: .malformed, message: "cannot decode JSON: \(Self.describe(error))")
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
