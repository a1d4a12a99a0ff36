import Foundation

/// How much one etcd transaction may carry. Meridian's etcd is started with these, the test stores
/// enforce them, and a writer that must be all-or-nothing (an apply) checks its transaction against
/// them before sending it, so that an oversized one is refused with its size and nothing written.
public enum EtcdTransactionLimits {
    /// Operations in one transaction: etcd's `--max-txn-ops` (its own default is 128).
    public static let maximumOperations = 4096
    /// Bytes in one request: etcd's `--max-request-bytes`, at its default of 1.5 MiB.
    public static let maximumRequestBytes = 1_572_864

    /// The etcd command-line flags that set these limits, for every etcd Meridian starts.
    public static var etcdFlags: [String] {
        ["--max-txn-ops", String(maximumOperations), "--max-request-bytes", String(maximumRequestBytes)]
    }

    /// More than the protobuf framing one operation adds to a request beyond its key and value:
    /// the tags and lengths of the operation, of the put or delete, and of their fields.
    static let framingBytesPerOperation = 32
    /// More than the rest of a request takes: its header (request id, user, auth revision).
    static let requestHeaderBytes = 1024

    /// The size of a transaction request with these puts and deletes, rounded up: never less
    /// than what etcd measures, so a transaction within `maximumRequestBytes` by this count is.
    public static func requestBytes(puts: [(key: String, value: Data)], deletes: [String]) -> Int {
        let putBytes = puts.reduce(0) { $0 + $1.key.utf8.count + $1.value.count }
        let deleteBytes = deletes.reduce(0) { $0 + $1.utf8.count }
        return requestHeaderBytes + putBytes + deleteBytes + framingBytesPerOperation * (puts.count + deletes.count)
    }
}
