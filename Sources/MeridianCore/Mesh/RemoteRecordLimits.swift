/// The largest value accepted from a peer for one record, per kind, checked on the raw bytes
/// before anything is decoded.
///
/// A peer's etcd accepts values up to its request limit (1.5 MiB by default), and every value
/// is decoded, kept in the local cache and decoded again by every agent. The limits keep one
/// record's cost bounded while leaving room well beyond what an exporter writes:
///
/// - nodes, 16 KiB: Meridian's node record is about 320 bytes; Cilium's also carries the
///   node's labels and annotations.
/// - ipcache entries, 4 KiB: about 130 bytes plus at most 58 per named port (port names are
///   at most 15 characters), so at least 65 named ports fit.
/// - identities, 8 KiB: the label string holds the pod's labels, one copy of each of its
///   namespace's labels and the derived labels; a Kubernetes label can take about 420 bytes
///   here (a 253-character key prefix, a 63-character name and value, the namespace-label
///   prefix), so 8 KiB holds 19 labels of the longest kind, or 60 of 130 bytes. A
///   rejected identity makes its pods' traffic unknown to this cluster, so this limit is the
///   generous one.
/// - services, 1 MiB: a ClusterService grows with its backends, about 95 bytes per backend
///   with two ports as Meridian writes it (Cilium measured 787 KiB for 5000 backends, 161
///   bytes each); 1 MiB admits 6500 to 11000 backends. A limit at etcd's 1.5 MiB would bound
///   nothing.
/// - service exports, 64 KiB: a Multi-Cluster Services export lists at most 100 ports and
///   three annotations, under 10 KiB.
/// - service slices, 1 MiB like a service: a slice holds 500 to 1,000 backends on average
///   (`ServiceSlicing`), about 95 KiB. A peer may hold at most 2,000 of them: each one that
///   names a namespace this cluster has takes a ClusterSetIP from this cluster's service CIDR.
public enum RemoteRecordLimits {
    public static let nodeBytes = 16 * 1024
    public static let ipIdentityPairBytes = 4 * 1024
    public static let identityBytes = 8 * 1024
    public static let serviceBytes = 1024 * 1024
    public static let serviceExportBytes = 64 * 1024

    /// What one peer may hold in this cluster's cache, per kind: records and bytes. Far beyond
    /// real clusters (Cilium's scale target is 5,000 nodes and 100,000 endpoints per cluster),
    /// it bounds what one hostile peer can make this cluster's store and agents carry: at most
    /// 320 MiB in all.
    public static func maximumRecordsPerPeer(of kind: RemoteRecordRejection.Kind) -> Int {
        switch kind {
        case .node: 10_000
        case .ipIdentityPair: 1_000_000
        case .identity: 65_536
        case .service: 10_000
        case .serviceExport: 2_000
        case .serviceSlice: 100_000
        }
    }

    public static func maximumBytesPerPeer(of kind: RemoteRecordRejection.Kind) -> Int {
        switch kind {
        case .node: 32 << 20
        case .ipIdentityPair: 128 << 20
        case .identity: 32 << 20
        case .service: 128 << 20
        case .serviceExport: 32 << 20
        case .serviceSlice: 128 << 20
        }
    }

    /// The limit for one record of `kind`.
    public static func maximumBytes(of kind: RemoteRecordRejection.Kind) -> Int {
        switch kind {
        case .node: nodeBytes
        case .service: serviceBytes
        case .ipIdentityPair: ipIdentityPairBytes
        case .identity: identityBytes
        case .serviceExport: serviceExportBytes
        case .serviceSlice: serviceBytes
        }
    }
}
