import Foundation
import MeridianEtcd
import MeridianStore

/// The mesh records of one kind as a cluster holds them: its own under `cilium/state`, and
/// those it imported under `cilium/cache`, each with the cluster it belongs to.
enum MeshRecords {
    /// (cluster, relative name, value) of a kind: the local cluster's `cilium/state` records, and
    /// with `allClusters` every cached remote cluster's.
    static func gatherRaw(_ kind: MeshKind, client: any KeyValueStore, localCluster: String, allClusters: Bool) async throws -> [(String, String, Data)] {
        var result: [(String, String, Data)] = []
        let localPrefix = kind.statePrefix(cluster: localCluster)
        for item in try await client.list(prefix: localPrefix).items {
            result.append((localCluster, String(item.key.dropFirst(localPrefix.count)), item.value))
        }
        guard allClusters else { return result }
        // Every peer's cache of the kind is under one root; read it all at once.
        for item in try await client.list(prefix: kind.cacheRoot).items {
            guard let cluster = kind.cacheCluster(ofKey: item.key) else { continue }
            let prefix = kind.cachePrefix(cluster: cluster)
            guard item.key.hasPrefix(prefix) else { continue }
            result.append((cluster, String(item.key.dropFirst(prefix.count)), item.value))
        }
        return result
    }

    static func gather<T: Decodable>(_ kind: MeshKind, client: any KeyValueStore, localCluster: String, allClusters: Bool) async throws -> [(String, T)] {
        try await gatherRaw(kind, client: client, localCluster: localCluster, allClusters: allClusters).compactMap { cluster, _, value in
            (try? JSONDecoder().decode(T.self, from: value)).map { (cluster, $0) }
        }
    }

}
