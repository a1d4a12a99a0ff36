import Foundation
import MeridianCore
import MeridianEtcd

/// The cluster's pods joined with their statuses, read in one go.
public enum ObservedPods {
    public static func list(_ client: any KeyValueStore) async throws -> (pods: [ObservedPod], revision: Int64) {
        let specs = try await client.list(prefix: KeyLayout.resources(plural: ResourceKind.pod.plural))
        let statuses = try await client.list(prefix: KeyLayout.podStatusPrefix)
        return (decode(pods: specs.items.map { ($0.key, $0.value) }, statuses: statuses.items.map { ($0.key, $0.value) }),
                max(specs.revision, statuses.revision))
    }

    /// Pairs pod records with status records (both as key and value).
    public static func decode(pods: [(String, Data)], statuses: [(String, Data)]) -> [ObservedPod] {
        var byName: [String: PodStatus] = [:]
        for (key, value) in statuses {
            byName[String(key.dropFirst(KeyLayout.podStatusPrefix.count))] = try? StoreCoding.decode(PodStatus.self, from: value, key: key)
        }
        return pods.compactMap { key, value in
            guard case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            let namespace = pod.metadata.namespace ?? KubernetesObject.defaultNamespace
            return ObservedPod(pod: pod, status: byName["\(namespace)/\(pod.metadata.name)"])
        }
    }
}
