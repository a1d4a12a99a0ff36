import Foundation
import MeridianCore
import MeridianStore
import Testing
@testable import MeridianControlPlane

/// What the Multi-Cluster Services controller decides from a cluster's records: which
/// ServiceImports it keeps, with whose annotations, and each local ServiceExport's conditions.
@Suite("ServiceImport planning")
struct ServiceImportPlanTests {
    static func resource(_ object: KubernetesObject) -> (String, Data) {
        (ResourceStore.key(for: object), StoreCoding.encode(object))
    }

    static func service(_ name: String, namespace: String = "default") -> KubernetesObject {
        .service(Service(metadata: ObjectMeta(name: name, namespace: namespace),
                         spec: ServiceSpec(selector: ["app": name], ports: [ServicePort(name: "http", port: 80)])))
    }

    static func export(_ name: String, annotations: [String: String] = [:]) -> KubernetesObject {
        .serviceExport(ServiceExport(metadata: ObjectMeta(name: name, namespace: "default", annotations: annotations,
                                                          creationTimestamp: "2026-02-01T00:00:00Z")))
    }

    static func remote(_ peer: String, claiming cluster: String? = nil, namespace: String = "default", at time: String,
                       annotations: [String: String] = [:]) -> (String, Data) {
        let spec = ExportedServiceSpec(cluster: cluster ?? peer, name: "web", namespace: namespace, annotations: annotations,
                                       exportCreationTimestamp: time, ports: [ServiceImportPort(name: "http", port: 80)], type: .clusterSetIP)
        return (MeshKind.serviceExports.cacheKey(cluster: peer, name: "\(namespace)/web"), try! JSONEncoder().encode(spec))
    }

    static func inputs(remote: [(String, Data)]) -> ServiceImportInputs {
        ServiceImportInputs(
            cluster: "cluster1",
            exports: Dictionary(uniqueKeysWithValues: [
                resource(export("web", annotations: ["service.meridian.io/cluster-preference": "cluster1,*"])), resource(export("missing")),
            ]),
            services: Dictionary(uniqueKeysWithValues: [resource(service("web"))]),
            namespaces: Dictionary(uniqueKeysWithValues: [resource(.namespace(Namespace(metadata: ObjectMeta(name: "default"))))]),
            remoteExports: Dictionary(uniqueKeysWithValues: remote))
    }

    @Test("imports only for namespaces the cluster has; this cluster's own annotations steer its clients; a record naming another cluster is ignored")
    func importsAndAnnotations() throws {
        let plan = Self.inputs(remote: [
            Self.remote("cluster2", at: "2026-01-01T00:00:00Z", annotations: ["service.meridian.io/cluster-preference": "cluster2"]),
            Self.remote("cluster2", namespace: "shop", at: "2026-01-01T00:00:00Z"),
            Self.remote("cluster3", claiming: "cluster9", at: "2026-01-01T00:00:00Z"),
        ]).plan(now: "2026-03-01T00:00:00Z")
        #expect(plan.imports.map { "\($0.metadata.namespace ?? "")/\($0.metadata.name)" } == ["default/web"])
        let imported = try #require(plan.imports.first)
        #expect(imported.clusters == ["cluster1", "cluster2"])
        #expect(imported.metadata.annotations == ["service.meridian.io/cluster-preference": "cluster1,*"])
        #expect(imported.spec.ips == nil, "the controller gives the ClusterSetIP when it writes")
    }

    @Test("an export without its Service is not valid; an exported one reports no conflict, or the conflict")
    func exportConditions() throws {
        let plan = Self.inputs(remote: [Self.remote("cluster2", at: "2026-01-01T00:00:00Z")]).plan(now: "2026-03-01T00:00:00Z")
        let missing = try #require(plan.exportStatuses["default/missing"])
        #expect(missing.condition(ServiceExportCondition.valid)?.status == "False")
        #expect(missing.condition(ServiceExportCondition.valid)?.reason == "NoService")
        #expect(missing.condition(ServiceExportCondition.conflict) == nil)
        let web = try #require(plan.exportStatuses["default/web"])
        #expect(web.condition(ServiceExportCondition.valid)?.status == "True")
        #expect(web.condition(ServiceExportCondition.conflict)?.status == "False")

        var conflicting = Self.inputs(remote: [])
        let spec = ExportedServiceSpec(cluster: "cluster2", name: "web", namespace: "default", exportCreationTimestamp: "2026-01-01T00:00:00Z",
                                       ports: [ServiceImportPort(name: "http", port: 8080)], type: .clusterSetIP)
        conflicting.remoteExports = [MeshKind.serviceExports.cacheKey(cluster: "cluster2", name: "default/web"): try JSONEncoder().encode(spec)]
        let conflict = try #require(conflicting.plan(now: "2026-03-01T00:00:00Z").exportStatuses["default/web"]?.condition(ServiceExportCondition.conflict))
        #expect(conflict.status == "True" && conflict.reason == "PortConflict")
        #expect(conflict.message.contains("cluster1 exports port \"http\" as 80/TCP"), "\(conflict.message)")
    }

    @Test("a condition keeps its transition time while its status stays")
    func transitionTimes() {
        let earlier = ServiceExportStatus(conditions: [ServiceExportCondition(type: "Valid", status: "True", reason: "Exported", message: "", lastTransitionTime: "t1")])
        let same = ServiceExportStatus(conditions: [ServiceExportCondition(type: "Valid", status: "True", reason: "Exported", message: "", lastTransitionTime: "t2")])
        let flipped = ServiceExportStatus(conditions: [ServiceExportCondition(type: "Valid", status: "False", reason: "NoService", message: "", lastTransitionTime: "t3")])
        #expect(same.keepingTransitionTimes(of: earlier).conditions.first?.lastTransitionTime == "t1")
        #expect(flipped.keepingTransitionTimes(of: earlier).conditions.first?.lastTransitionTime == "t3")
    }
}
