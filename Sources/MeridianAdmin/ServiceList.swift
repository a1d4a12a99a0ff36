import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// `meridian service list`: every frontend the cluster's nodes program, with its backends, their
/// cluster, state and whether the service's affinity prefers them, computed from the store by
/// the merge the agents run.
public enum ServiceList {
    public static func load(_ context: MeridianContext) async throws -> [ServiceFrontend] {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let settings = try await ClusterAccessInfo.load(context, client: client).settings
            func records(_ prefix: String) async throws -> [String: Data] {
                Dictionary(try await client.list(prefix: prefix).items.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            }
            return ServiceRecords(
                services: try await records(KeyLayout.resources(plural: ResourceKind.service.plural)),
                pods: try await records(KeyLayout.resources(plural: ResourceKind.pod.plural)),
                statuses: try await records(KeyLayout.podStatusPrefix),
                remote: try await records(MeshKind.services.cacheRoot),
                imports: try await records(KeyLayout.resources(plural: ResourceKind.serviceImport.plural)),
                remoteSlices: try await records(MeshKind.serviceSlices.cacheRoot)
            ).frontends(cluster: settings.name, clusterID: settings.id)
        }
    }

    /// The table `service list` prints.
    public static func table(_ frontends: [ServiceFrontend]) -> Table {
        var rows: [[String]] = []
        for frontend in frontends {
            let name = "\(frontend.namespace)/\(frontend.name)"
            let address = "\(frontend.address):\(frontend.port)/\(frontend.proto)"
            let scope = frontend.serviceImport == true ? "clusterset" : "global"
            let mode = !frontend.global ? "local" : frontend.preference.map { "\(scope), \($0)" } ?? "\(scope), affinity \(frontend.affinity)"
            if frontend.backends.isEmpty {
                rows.append([address, name, mode, "<none>", "", "", "", ""])
            }
            for (index, backend) in frontend.backends.enumerated() {
                rows.append([index == 0 ? address : "", index == 0 ? name : "", index == 0 ? mode : "",
                             "\(backend.ip):\(backend.port)", backend.cluster, backend.state, backend.preferred ? "yes" : "",
                             "\(backend.slots ?? 1)"])
            }
        }
        return Table(headers: ["FRONTEND", "SERVICE", "MODE", "BACKEND", "CLUSTER", "STATE", "PREFERRED", "SLOTS"], rows: rows)
    }
}
