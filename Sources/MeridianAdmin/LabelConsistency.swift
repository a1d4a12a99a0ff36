import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// The seed's third lesson as a check: a global service's backends in different clusters
/// should carry the same labels (apart from the cluster label), or a policy written against
/// one cluster's pods silently misses the other's. Compares the identity labels of every
/// backend of every exported global service, local and imported.
enum LabelConsistency {
    static func warnings(_ client: any KeyValueStore, localCluster: String) async throws -> [String] {
        func list(_ prefix: String) async throws -> [EtcdKeyValue] { try await client.list(prefix: prefix).items }
        // Exported global services, local and imported, by namespace/name.
        var services: [String: [ClusterService]] = [:]
        for prefix in [MeshKind.services.statePrefix(cluster: localCluster), MeshKind.services.cacheRoot] {
            for item in try await list(prefix) {
                if let service = try? StoreCoding.decode(ClusterService.self, from: item.value, key: item.key) {
                    services[service.namespacedName, default: []].append(service)
                }
            }
        }
        services = services.filter { Set($0.value.map(\.cluster)).count > 1 }
        // Only the clusters that share a global service are read: at hundreds of clusters, listing
        // every endpoint of the mesh made `clustermesh status` take tens of seconds.
        let clusters = Set(services.values.flatMap { $0.map(\.cluster) })
        var identityOf: [String: [String: UInt32]] = [:]
        var labelsOf: [String: [UInt32: Set<String>]] = [:]
        for cluster in clusters {
            let local = cluster == localCluster
            for item in try await list(local ? MeshKind.endpoints.statePrefix(cluster: cluster) : MeshKind.endpoints.cachePrefix(cluster: cluster)) {
                if let pair = try? StoreCoding.decode(IPIdentityPair.self, from: item.value, key: item.key) { identityOf[cluster, default: [:]][pair.ip] = pair.id }
            }
            for item in try await list(local ? MeshKind.identities.statePrefix(cluster: cluster) : MeshKind.identities.cachePrefix(cluster: cluster)) {
                if let id = UInt32(item.key.split(separator: "/").last ?? "") { labelsOf[cluster, default: [:]][id] = Self.labels(item.stringValue) }
            }
        }
        var warnings: [String] = []
        for (name, exports) in services.sorted(by: { $0.key < $1.key }) {
            var byCluster: [String: Set<Set<String>>] = [:]
            for export in exports {
                for ip in export.backends.keys {
                    guard let id = identityOf[export.cluster]?[ip], let labels = labelsOf[export.cluster]?[id] else { continue }
                    byCluster[export.cluster, default: []].insert(labels)
                }
            }
            let distinct = Set(byCluster.values.flatMap { $0 })
            guard distinct.count > 1, byCluster.count > 1 else { continue }
            let detail = byCluster.sorted { $0.key < $1.key }.map { cluster, sets in
                "\(cluster): " + sets.map { $0.sorted().joined(separator: ",") }.sorted().joined(separator: " | ")
            }.joined(separator: "; ")
            warnings.append("global service \(name): backends carry different labels in different clusters (\(detail)); "
                            + "policies written for one cluster's pods will not match the other's")
        }
        return warnings
    }

    /// Labels of an identity record without the cluster label (which differs by design).
    static func labels(_ text: String) -> Set<String> {
        Set(text.split(separator: ";").map(String.init).filter { !$0.isEmpty && !$0.contains(LabelKeys.cluster) })
    }
}
