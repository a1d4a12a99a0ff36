import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// A pod as `get pods` and `exec` show it: the spec joined with the status its node reported.
public struct PodView: Encodable, Sendable {
    public var namespace: String
    public var name: String
    public var status: String
    public var restarts: Int
    public var ip: String?
    public var node: String?
    public var identity: UInt32?
    public var labels: [String: String]
    public var message: String?

    public static func load(client: any KeyValueStore, namespace: String?) async throws -> [PodView] {
        let objects = try await ResourceStore(client: client).list(.pod, namespace: namespace)
        let statusPrefix = namespace.map(KeyLayout.podStatuses) ?? KeyLayout.podStatusPrefix
        var statuses: [String: PodStatus] = [:]
        for item in try await client.list(prefix: statusPrefix).items {
            statuses[String(item.key.dropFirst(KeyLayout.podStatusPrefix.count))] = try? StoreCoding.decode(PodStatus.self, from: item.value, key: item.key)
        }
        return objects.compactMap { object -> PodView? in
            guard case let .pod(pod) = object else { return nil }
            let ns = object.namespace ?? KubernetesObject.defaultNamespace
            let status = statuses["\(ns)/\(pod.metadata.name)"]
            // A deleted pod shows as Terminating until its node has removed it, as in kubectl.
            let shown = pod.metadata.isBeingDeleted ? PodTermination.displayStatus : status?.displayStatus ?? PodPhase.pending.rawValue
            return PodView(namespace: ns, name: pod.metadata.name, status: shown,
                           restarts: status?.restartCount ?? 0, ip: status?.podIP, node: status?.nodeName ?? pod.spec.nodeName,
                           identity: status?.identity, labels: pod.metadata.labels, message: status?.message)
        }
    }
}
