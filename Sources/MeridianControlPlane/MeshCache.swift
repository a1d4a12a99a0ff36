import Foundation
import MeridianEtcd
import MeridianStore

/// The writes that bring a set of cache keys to a desired state: puts for new or changed
/// values, deletes for keys the source no longer has (the stale-entry sweep after a reconnect).
public struct CacheDiff: Sendable, Hashable {
    public var puts: [String: Data]
    public var deletes: Set<String>

    public init(puts: [String: Data], deletes: Set<String>) {
        self.puts = puts
        self.deletes = deletes
    }

    public init(desired: [String: Data], current: [String: Data]) {
        puts = desired.filter { current[$0.key] != $0.value }
        deletes = Set(current.keys.filter { desired[$0] == nil })
    }

    public var isEmpty: Bool { puts.isEmpty && deletes.isEmpty }
}

/// Writes into and removes from the local cache of remote clusters.
public enum MeshCache {
    /// etcd's per-transaction operation limit is configurable; stay well below the default 128.
    static let batchSize = 100
    /// Bytes of keys and values per transaction: well under etcd's default request limit
    /// (`--max-request-bytes`, 1.5 MiB), so any number of records, each within the per-record
    /// limits of `RemoteRecordValidation`, is written completely. A record larger than this goes
    /// in a transaction of its own.
    static let batchBytes = 1024 * 1024

    public static func apply(_ diff: CacheDiff, to client: any KeyValueStore) async throws(EtcdError) {
        let puts = diff.puts.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
        for batch in batches(puts, size: { $0.key.utf8.count + $0.value.count }) {
            try await client.commit(puts: batch)
        }
        for batch in batches(diff.deletes.sorted(), size: { $0.utf8.count }) {
            try await client.commit(puts: [], deletes: batch)
        }
    }

    /// Consecutive runs of `items` of at most `batchSize` items and `batchBytes` bytes (or one
    /// item, when it alone is larger).
    static func batches<Item>(_ items: [Item], size: (Item) -> Int) -> [[Item]] {
        var batches: [[Item]] = []
        var current: [Item] = []
        var bytes = 0
        for item in items {
            let itemBytes = size(item)
            if !current.isEmpty, current.count == batchSize || bytes + itemBytes > batchBytes {
                batches.append(current)
                current = []
                bytes = 0
            }
            current.append(item)
            bytes += itemBytes
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    /// Removes everything imported from `remote`: the cached records, its canaries and cached
    /// cluster config, and (unless kept) its status record. Services go first, so agents stop
    /// choosing the remote's backends before the routes to them (its nodes and endpoints) go.
    public static func drain(_ client: any KeyValueStore, remote: String, keepStatus: Bool = false) async throws(EtcdError) {
        for kind in [MeshKind.services, .endpoints, .nodes, .identities] {
            try await client.delete(prefix: kind.cachePrefix(cluster: remote))
        }
        try await client.delete(prefix: KeyLayout.syncCanaries(of: remote))
        try await client.delete(KeyLayout.clusterConfig(remote))
        if !keepStatus { try await client.delete(KeyLayout.remoteStatus(remote)) }
    }
}
