import Foundation
import MeridianCore

/// The decode caches of the service-side records, kept across passes by their reader.
public struct ServiceRecordCaches: Sendable {
    public var services = RecordDecodeCache<KubernetesObject>()
    public var pods = RecordDecodeCache<KubernetesObject>()
    public var statuses = RecordDecodeCache<PodStatus>()
    public var remote = RecordDecodeCache<ClusterService>()
    public var slices = RecordDecodeCache<ClusterService>()
    public var imports = RecordDecodeCache<KubernetesObject>()

    public init() {}
}

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
        var caches = ServiceRecordCaches()
        self.init(services: services, pods: pods, statuses: statuses, remote: remote, imports: imports, remoteSlices: remoteSlices, caches: &caches)
    }

    /// The same, decoding only the records whose bytes changed since `caches` last saw them: an
    /// agent's pass over 10,000 backends' pods and statuses is otherwise mostly JSON decoding.
    public init(services: [String: Data], pods: [String: Data], statuses: [String: Data], remote: [String: Data], imports: [String: Data],
                remoteSlices: [String: Data] = [:], caches: inout ServiceRecordCaches) {
        self.services = caches.services.decode(services).compactMap { entry in
            guard case let .service(service) = entry.record else { return nil }
            return service
        }
        var statusByName: [String: PodStatus] = [:]
        for (key, status) in caches.statuses.decode(statuses) {
            statusByName[String(key.dropFirst(KeyLayout.podStatusPrefix.count))] = status
        }
        self.pods = caches.pods.decode(pods).compactMap { entry in
            guard case let .pod(pod) = entry.record else { return nil }
            return ObservedPod(pod: pod, status: statusByName["\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"])
        }
        self.remote = ServiceSlicing.merge(caches.remote.decode(remote).map(\.record), slices: caches.slices.decode(remoteSlices).map(\.record))
        self.imports = caches.imports.decode(imports).compactMap { entry in
            guard case let .serviceImport(imported) = entry.record else { return nil }
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
