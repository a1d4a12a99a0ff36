import Foundation
@testable import MeridianCore
import Testing

/// The Multi-Cluster Services API without a lab: KEP-1645's merge of exports (oldest wins,
/// union of ports, conflicts), the frontends and names an import makes, the validation of a
/// peer's export, and the manifests.
@Suite("Multi-Cluster Services")
struct MultiClusterServiceTests {
    static func spec(_ cluster: String, at time: String, ports: [ServiceImportPort] = [ServiceImportPort(name: "http", port: 80)],
                     type: ServiceImportType = .clusterSetIP, affinity: String = "None", annotations: [String: String] = [:]) -> ExportedServiceSpec {
        ExportedServiceSpec(cluster: cluster, name: "web", namespace: "default", annotations: annotations, exportCreationTimestamp: time,
                            ports: ports, type: type, sessionAffinity: affinity)
    }

    @Test("the oldest export decides; later ports are added; the import lists every exporting cluster")
    func oldestWinsAndPortsAreUnited() throws {
        let decisions = ServiceImportResolver.resolve([
            Self.spec("cluster3", at: "2026-01-03T00:00:00Z", ports: [ServiceImportPort(name: "http", port: 80), ServiceImportPort(name: "metrics", port: 9090)]),
            Self.spec("cluster2", at: "2026-01-01T00:00:00Z", annotations: ["service.meridian.io/cluster-preference": "cluster2,*"]),
        ])
        let decision = try #require(decisions.first)
        #expect(decisions.count == 1)
        #expect(decision.clusters == ["cluster2", "cluster3"])
        #expect(decision.spec.ports.map(\.port) == [80, 9090])
        #expect(decision.conflicts.isEmpty && decision.conflictReason == nil)
        #expect(decision.annotations == ["service.meridian.io/cluster-preference": "cluster2,*"], "the oldest export's annotations")
    }

    @Test("a port of the same name with another number, a number under another name, a type and an affinity conflict; the oldest is kept")
    func conflicts() throws {
        let older = Self.spec("cluster2", at: "2026-01-01T00:00:00Z")
        let port = try #require(ServiceImportResolver.resolve([older, Self.spec("cluster1", at: "2026-01-02T00:00:00Z", ports: [ServiceImportPort(name: "http", port: 81)])]).first)
        #expect(port.conflictReason == "PortConflict")
        #expect(port.spec.ports.map(\.port) == [80])
        #expect(port.conflicts == ["cluster1 exports port \"http\" as 81/TCP, an older export as 80/TCP, which is kept"])
        let renamed = try #require(ServiceImportResolver.resolve([older, Self.spec("cluster1", at: "2026-01-02T00:00:00Z", ports: [ServiceImportPort(name: "web", port: 80)])]).first)
        #expect(renamed.conflictReason == "PortConflict" && renamed.spec.ports.map(\.name) == ["http"])
        let type = try #require(ServiceImportResolver.resolve([older, Self.spec("cluster1", at: "2026-01-02T00:00:00Z", type: .headless)]).first)
        #expect(type.conflictReason == "TypeConflict" && type.spec.type == .clusterSetIP)
        let affinity = try #require(ServiceImportResolver.resolve([older, Self.spec("cluster1", at: "2026-01-02T00:00:00Z", affinity: "ClientIP")]).first)
        #expect(affinity.conflictReason == "SessionAffinityConflict" && affinity.spec.sessionAffinity == "None")
    }

    @Test("equal timestamps are ordered by cluster name; one that does not parse sorts last")
    func ordering() throws {
        let tie = try #require(ServiceImportResolver.resolve([
            Self.spec("cluster2", at: "2026-01-01T00:00:00Z", ports: [ServiceImportPort(name: "http", port: 82)]),
            Self.spec("cluster1", at: "2026-01-01T00:00:00Z"),
        ]).first)
        #expect(tie.spec.ports.map(\.port) == [80])
        let broken = try #require(ServiceImportResolver.resolve([
            Self.spec("cluster1", at: "yesterday", ports: [ServiceImportPort(name: "http", port: 82)]),
            Self.spec("cluster2", at: "2026-01-01T00:00:00Z"),
        ]).first)
        #expect(broken.spec.ports.map(\.port) == [80])
    }

    static func importing(_ clusters: [String], type: ServiceImportType = .clusterSetIP, annotations: [String: String] = [:]) -> ServiceImport {
        ServiceImport(metadata: ObjectMeta(name: "web", namespace: "default", annotations: annotations),
                      spec: ServiceImportSpec(type: type, ports: [ServiceImportPort(name: "http", port: 80)], ips: type == .headless ? nil : ["10.101.0.20"]),
                      status: ServiceImportStatus(clusters: clusters.map(ServiceImportStatus.ClusterStatus.init)))
    }

    @Test("the ClusterSetIP balances over the local Service's pods and the listed clusters' exports only")
    func frontendsFollowTheImport() throws {
        let service = GlobalServiceMergeTests.service()
        let pods = [GlobalServiceMergeTests.pod("a", ip: "10.1.1.2")]
        let remote = [GlobalServiceMergeTests.remote("cluster2", id: 2, backends: ["10.2.1.2"], global: false),
                      GlobalServiceMergeTests.remote("cluster3", id: 3, backends: ["10.3.1.2"], global: false)]
        let all = MultiClusterServiceMerge.frontends(cluster: "cluster1", clusterID: 1, imports: [Self.importing(["cluster1", "cluster2", "cluster3"])],
                                                     services: [service], pods: pods, remote: remote)
        #expect(all.map(\.address) == ["10.101.0.20"])
        #expect(all.first?.backends.map(\.ip) == ["10.1.1.2", "10.2.1.2", "10.3.1.2"])
        let twoRemote = MultiClusterServiceMerge.frontends(cluster: "cluster1", clusterID: 1, imports: [Self.importing(["cluster2"])],
                                                           services: [service], pods: pods, remote: remote)
        #expect(twoRemote.first?.backends.map(\.cluster) == ["cluster2"], "cluster1 does not export it, cluster3's export is not listed")
        let ordered = MultiClusterServiceMerge.frontends(
            cluster: "cluster1", clusterID: 1,
            imports: [Self.importing(["cluster1", "cluster2", "cluster3"], annotations: ["service.meridian.io/cluster-preference": "cluster3,*"])],
            services: [service], pods: pods, remote: remote)
        #expect(ordered.first?.backends.map(\.cluster) == ["cluster3"])
        #expect(MultiClusterServiceMerge.frontends(cluster: "cluster1", clusterID: 1, imports: [Self.importing(["cluster2"], type: .headless)],
                                                   services: [service], pods: pods, remote: remote).isEmpty)
    }

    @Test("a headless import's names: every listed cluster's backends, with the hostnames of pods under the service")
    func headlessEndpoints() throws {
        var service = GlobalServiceMergeTests.service()
        service.spec.clusterIP = ServiceSpec.headlessClusterIP
        var named = GlobalServiceMergeTests.pod("db-0", ip: "10.1.1.2")
        named.pod.spec.hostname = "db-0"
        named.pod.spec.subdomain = "web"
        var elsewhere = GlobalServiceMergeTests.pod("db-1", ip: "10.1.1.3")
        elsewhere.pod.spec.hostname = "db-1"
        elsewhere.pod.spec.subdomain = "other"
        var remote = GlobalServiceMergeTests.remote("cluster2", id: 2, backends: ["10.2.1.2"], global: false)
        remote.hostnames = ["10.2.1.2": "db-7"]
        let endpoints = MultiClusterServiceMerge.endpoints(of: Self.importing(["cluster1", "cluster2"], type: .headless), cluster: "cluster1",
                                                           services: [service], pods: [named, elsewhere], remote: [remote])
        #expect(endpoints.map(\.ip) == ["10.1.1.2", "10.1.1.3", "10.2.1.2"])
        #expect(endpoints.map(\.hostname) == ["db-0", nil, "db-7"])
    }

    static func validator() throws -> RemoteRecordValidation {
        try RemoteRecordValidation(remote: (name: "cluster2", id: ClusterID(2)), podCIDRs: RemoteValidationTests.podCIDRs, layout: RemoteValidationTests.layout)
    }

    @Test(arguments: [
        ("wrong cluster", RemoteRecordRejection.Reason.wrongCluster),
        ("key", .keyMismatch),
        ("timestamp", .malformed),
        ("ancient", .malformed),
        ("port", .malformed),
        ("ports", .malformed),
        ("duplicate port", .malformed),
        ("port name", .invalidName),
        ("appProtocol", .invalidName),
        ("annotation", .malformed),
        ("preference", .malformed),
        ("affinity", .malformed),
    ])
    func refusesBadExports(problem: String, reason: RemoteRecordRejection.Reason) throws {
        let v = try Self.validator()
        var export = Self.spec("cluster2", at: "2026-01-01T00:00:00Z")
        var key = "default/web"
        switch problem {
        case "wrong cluster": export.cluster = "cluster1"
        case "key": key = "default/api"
        case "timestamp": export.exportCreationTimestamp = "soon"
        case "ancient": export.exportCreationTimestamp = "1970-01-01T00:00:00Z"
        case "port": export.ports = [ServiceImportPort(port: 70_000)]
        case "ports": export.ports = (1...101).map { ServiceImportPort(name: "p\($0)", port: $0) }
        case "duplicate port": export.ports = [ServiceImportPort(name: "a", port: 1), ServiceImportPort(name: "a", port: 2)]
        case "port name": export.ports = [ServiceImportPort(name: "HTTP\u{1B}", port: 80)]
        case "appProtocol": export.ports = [ServiceImportPort(name: "http", appProtocol: "a b", port: 80)]
        case "annotation": export.annotations = ["service.cilium.io/global": "true"]
        case "preference": export.annotations = ["service.meridian.io/cluster-preference": ",,"]
        default: export.sessionAffinity = "Sticky"
        }
        let error = #expect(throws: RemoteRecordRejection.self) { try v.validate(export: export, keyName: key) }
        #expect(error?.reason == reason, "\(problem): \(String(describing: error))")
        #expect(error?.kind == .serviceExport)
        try v.validate(export: Self.spec("cluster2", at: "2026-01-01T00:00:00Z", annotations: ["service.meridian.io/cluster-preference": "cluster2,*"]),
                       keyName: "default/web")
    }

    @Test("a ServiceExport decodes; a ServiceImport is refused with the reason; a ClusterProperty's value is checked")
    func manifests() throws {
        let export = try ManifestDecoder.decode("""
            apiVersion: multicluster.x-k8s.io/v1alpha1
            kind: ServiceExport
            metadata: {name: web, namespace: shop, creationTimestamp: "1999-01-01T00:00:00Z"}
            """, source: "export.yaml")
        guard case let .serviceExport(decoded)? = export.first else { Issue.record("not a ServiceExport: \(export)"); return }
        #expect(decoded.metadata.namespace == "shop" && decoded.metadata.creationTimestamp == nil, "the store stamps the creation time")
        let imported = #expect(throws: ManifestError.self) {
            try ManifestDecoder.decode("apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: web}\n", source: "import.yaml")
        }
        #expect(imported?.description.contains("made by the control plane") == true, "\(String(describing: imported))")
        let property = #expect(throws: ManifestError.self) {
            try ManifestDecoder.decode("apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata: {name: clusterset.k8s.io}\nspec: {value: \"Not A Name\"}\n",
                                source: "property.yaml")
        }
        #expect(property?.field == "spec.value", "\(String(describing: property))")
    }
}
