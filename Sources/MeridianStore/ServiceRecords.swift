import Foundation
import MeridianCore

/// The service-side records of a cluster's store, decoded once: Services, pods with their
/// statuses, the ClusterServices imported from peers and the cluster's ServiceImports. What
/// the agent programs and `service list` prints are both made from it.
public struct ServiceRecords: Sendable {
    public var services: [Service]
    public var pods: [ObservedPod]
    public var remote: [ClusterService]
    public var imports: [ServiceImport]

    /// Keys and values as listed from `meridian/resources/services/`, `.../pods/`,
    /// `meridian/status/pods/`, `cilium/cache/services/v1/`, `meridian/resources/serviceimports/`
    /// and `cilium/cache/serviceslices/v1/` (merged into the records that announce them).
    public init(services: [String: Data], pods: [String: Data], statuses: [String: Data], remote: [String: Data], imports: [String: Data],
                remoteSlices: [String: Data] = [:]) {
        self.services = services.compactMap { key, value in
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            return service
        }
        self.pods = ObservedPods.decode(pods: pods.map { ($0.key, $0.value) }, statuses: statuses.map { ($0.key, $0.value) })
        var slices: [String: [ClusterService]] = [:]
        for (key, value) in remoteSlices {
            guard let slice = try? StoreCoding.decode(ClusterService.self, from: value, key: key) else { continue }
            slices["\(slice.cluster)/\(slice.namespacedName)", default: []].append(slice)
        }
        self.remote = remote.compactMap { key, value in
            guard let record = try? StoreCoding.decode(ClusterService.self, from: value, key: key) else { return nil }
            return ServiceSlicing.merge(record, slices: slices["\(record.cluster)/\(record.namespacedName)"] ?? [])
        }
        self.imports = imports.compactMap { key, value in
            guard case let .serviceImport(imported)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            return imported
        }
    }

    /// Every frontend: the Services' (with the global-service merge) and the ServiceImports'
    /// ClusterSetIPs.
    public func frontends(cluster: String, clusterID: UInt32) -> [ServiceFrontend] {
        GlobalServiceMerge.frontends(cluster: cluster, clusterID: clusterID, services: services, pods: pods, remote: remote)
            + MultiClusterServiceMerge.frontends(cluster: cluster, clusterID: clusterID, imports: imports, services: services, pods: pods,
                                                 remote: remote)
    }
}
