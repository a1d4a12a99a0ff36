import Foundation
import MeridianCore
import MeridianEtcd

/// Which of a cluster's endpoints and identities its peers may read. Cilium exports every
/// namespace's by default, which at hundreds of clusters costs every agent memory for pods no
/// other cluster talks to (cilium/design-cfps CFP-39876); `globalNamespaces` exports only those
/// of namespaces annotated `clustermesh.cilium.io/global: "true"`, with the global services.
public enum ExportScope: String, Codable, Sendable, CaseIterable {
    case all
    case globalNamespaces = "global-namespaces"
}

/// The rule the mesh endpoint applies to what it relays when the scope is `globalNamespaces`:
/// an ipcache entry of a pod in another namespace, or an identity of such a pod, is not
/// exported. Records that name no namespace (nodes, services, the cluster config) pass.
public struct ExportFilter: Sendable, Hashable {
    /// Namespaces annotated `clustermesh.cilium.io/global: "true"`.
    public var globalNamespaces: Set<String>

    public init(globalNamespaces: Set<String>) {
        self.globalNamespaces = globalNamespaces
    }

    /// The annotation that marks a namespace global (Cilium's).
    public static let globalAnnotation = "clustermesh.cilium.io/global"

    /// The prefixes whose records the filter judges.
    public static let judgedPrefixes = [MeshKind.endpoints.statePrefix(cluster: ""), MeshKind.identities.statePrefix(cluster: "")]

    /// Whether a range from `key` to `rangeEnd` (etcd's convention: empty for one key) may hold
    /// a judged record.
    public static func mayJudge(key: Data, rangeEnd: Data) -> Bool {
        judgedPrefixes.contains { prefix in
            let start = Data(prefix.utf8)
            if rangeEnd.isEmpty { return key.starts(with: start) }
            let beforeEnd = key.lexicographicallyPrecedes(EtcdClient.prefixEnd(prefix))
            if rangeEnd == Data([0]) { return beforeEnd }
            return beforeEnd && start.lexicographicallyPrecedes(rangeEnd)
        }
    }

    /// Whether the record at `key` with `value` is exported.
    public func admits(key: String, value: Data) -> Bool {
        if key.hasPrefix(MeshKind.endpoints.statePrefix(cluster: "")) {
            guard let pair = try? CiliumJSON.decoder().decode(IPIdentityPair.self, from: value) else { return false }
            return pair.k8sNamespace.isEmpty || globalNamespaces.contains(pair.k8sNamespace)
        }
        if key.hasPrefix(MeshKind.identities.statePrefix(cluster: "")) {
            let marker = "k8s:\(LabelKeys.podNamespace)="
            guard let label = String(decoding: value, as: UTF8.self).split(separator: ";").first(where: { $0.hasPrefix(marker) }) else {
                return true
            }
            return globalNamespaces.contains(String(label.dropFirst(marker.count)))
        }
        return true
    }

    /// The global namespaces among the stored Namespace resources.
    public static func globalNamespaces(in namespaces: [String: Data]) -> Set<String> {
        Set(namespaces.compactMap { key, value -> String? in
            guard case let .namespace(namespace)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key),
                  namespace.metadata.annotations[globalAnnotation]?.lowercased() == "true" else { return nil }
            return namespace.metadata.name
        })
    }
}
