import Foundation
import MeridianCore

extension GlobalServiceMerge {
    /// The merge of the store's records (keys and values as listed): Services, pods and their
    /// statuses, and the ClusterServices imported from peers.
    public static func frontends(cluster: String, clusterID: UInt32, serviceRecords: [String: Data], podRecords: [String: Data],
                               statusRecords: [String: Data], remoteRecords: [String: Data]) -> [ServiceFrontend] {
        let services = serviceRecords.compactMap { key, value -> Service? in
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            return service
        }
        let pods = ObservedPods.decode(pods: podRecords.map { ($0.key, $0.value) }, statuses: statusRecords.map { ($0.key, $0.value) })
        let remote = remoteRecords.compactMap { key, value in try? StoreCoding.decode(ClusterService.self, from: value, key: key) }
        return frontends(cluster: cluster, clusterID: clusterID, services: services, pods: pods, remote: remote)
    }
}
