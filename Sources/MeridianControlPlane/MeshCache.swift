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

    public static func apply(_ diff: CacheDiff, to client: any KeyValueStore) async throws(EtcdError) {
        let puts = diff.puts.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
        let deletes = diff.deletes.sorted()
        var start = 0
        while start < puts.count {
            let end = min(start + batchSize, puts.count)
            try await client.commit(puts: Array(puts[start..<end]))
            start = end
        }
        start = 0
        while start < deletes.count {
            let end = min(start + batchSize, deletes.count)
            try await client.commit(puts: [], deletes: Array(deletes[start..<end]))
            start = end
        }
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
