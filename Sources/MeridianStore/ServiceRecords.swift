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

    public init(services: [Service], pods: [ObservedPod], remote: [ClusterService], imports: [ServiceImport]) {
        self.services = services
        self.pods = pods
        self.remote = remote
        self.imports = imports
    }

    /// Keys and values as listed from `meridian/resources/services/`, `.../pods/`,
    /// `meridian/status/pods/`, `cilium/cache/services/v1/`, `meridian/resources/serviceimports/`
    /// and `cilium/cache/serviceslices/v1/` (merged into the records that announce them),
    /// decoded at once; records that do not decode are left out. What follows a store's
    /// changes keeps a `ServiceIndex` instead.
    public init(services: [String: Data], pods: [String: Data], statuses: [String: Data], remote: [String: Data], imports: [String: Data],
                remoteSlices: [String: Data] = [:]) {
        func objects(_ records: [String: Data]) -> [KubernetesObject] {
            records.compactMap { try? StoreCoding.decode(KubernetesObject.self, from: $0.value, key: $0.key) }
        }
        func clusterServices(_ records: [String: Data]) -> [ClusterService] {
            records.compactMap { try? StoreCoding.decode(ClusterService.self, from: $0.value, key: $0.key) }
        }
        self.services = objects(services).compactMap { object in
            guard case let .service(service) = object else { return nil }
            return service
        }
        var statusByName: [String: PodStatus] = [:]
        for (key, value) in statuses {
            statusByName[String(key.dropFirst(KeyLayout.podStatusPrefix.count))] = try? StoreCoding.decode(PodStatus.self, from: value, key: key)
        }
        self.pods = objects(pods).compactMap { object in
            guard case let .pod(pod) = object else { return nil }
            return ObservedPod(pod: pod, status: statusByName["\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"])
        }
        self.remote = ServiceSlicing.merge(clusterServices(remote), slices: clusterServices(remoteSlices))
        self.imports = objects(imports).compactMap { object in
            guard case let .serviceImport(imported) = object else { return nil }
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
