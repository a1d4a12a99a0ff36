import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAdmin

/// `apply --wait` of a ServiceExport waits for the ServiceImport the control plane makes of it,
/// on a real etcd (no control plane runs: the test writes the import itself).
@Suite("ServiceExport wait")
struct ServiceExportWaitTests {
    @Test("the wait ends with the import's revision once the import lists the cluster; without one it times out naming it; without a Service there is nothing to wait for")
    func waitsForTheImport() async throws {
        try await ScratchEtcd.with { client, _ in
            let export = KubernetesObject.serviceExport(ServiceExport(metadata: ObjectMeta(name: "web", namespace: "default")))
            #expect(try await Resources.importRevision(of: export, cluster: "cluster1", client: client, until: .now) == 0,
                    "no Service: the export is not valid and makes no import")
            let service = KubernetesObject.service(Service(metadata: ObjectMeta(name: "web", namespace: "default"),
                                                           spec: ServiceSpec(selector: ["app": "web"], ports: [ServicePort(name: "http", port: 80)])))
            try await client.put(ResourceStore.key(for: service), StoreCoding.encode(service))
            await #expect(throws: AdminError.notImported(namespace: "default", name: "web", cluster: "cluster1")) {
                try await Resources.importRevision(of: export, cluster: "cluster1", client: client, until: .now + .milliseconds(300))
            }
            func imported(_ clusters: [String]) -> KubernetesObject {
                .serviceImport(ServiceImport(metadata: ObjectMeta(name: "web", namespace: "default"),
                                             spec: ServiceImportSpec(type: .clusterSetIP, ports: [ServiceImportPort(name: "http", port: 80)], ips: ["10.101.0.20"]),
                                             status: ServiceImportStatus(clusters: clusters.map(ServiceImportStatus.ClusterStatus.init))))
            }
            let key = ResourceStore.key(for: imported([]))
            try await client.put(key, StoreCoding.encode(imported(["cluster2"])))
            await #expect(throws: AdminError.self) {
                try await Resources.importRevision(of: export, cluster: "cluster1", client: client, until: .now + .milliseconds(300))
            }
            async let written: Int64 = {
                try await Task.sleep(for: .milliseconds(500))
                return try await client.put(key, StoreCoding.encode(imported(["cluster1", "cluster2"])))
            }()
            let revision = try await Resources.importRevision(of: export, cluster: "cluster1", client: client, until: .now + .seconds(10))
            #expect(revision == (try await written))
        }
    }
}
