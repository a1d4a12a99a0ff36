import Foundation
import Glibc
import MeridianEtcd
import MeridianLab
import Testing

/// The Multi-Cluster Services API (KEP-1645) across three meshed clusters, on real processes:
/// ServiceExports in one, two and three clusters, the ServiceImports every cluster with the
/// namespace gets, connections through the ClusterSetIP, `clusterset.local` DNS, unexport, a
/// namespace one cluster lacks and a port conflict.
@Suite("Multi-Cluster Services across three clusters", .serialized,
       .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct MultiClusterServicesIntegrationTests {
    /// The Service `web` without any mesh annotation: only the MCS API shares it.
    static let webService = """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        spec:
          selector:
            app: web
          ports:
          - name: http
            port: 80
            targetPort: 8080
        ---

        """

    static func export(_ name: String, namespace: String = "default") -> String {
        """
        apiVersion: multicluster.x-k8s.io/v1alpha1
        kind: ServiceExport
        metadata:
          name: \(name)
          namespace: \(namespace)
        ---

        """
    }

    struct ImportRow: Decodable {
        struct Metadata: Decodable { var name: String; var namespace: String? }
        struct Spec: Decodable {
            struct Port: Decodable { var name: String?; var port: Int; var `protocol`: String }
            var type: String
            var ips: [String]?
            var ports: [Port]
        }
        struct Status: Decodable {
            struct Cluster: Decodable { var cluster: String }
            var clusters: [Cluster]
        }
        var metadata: Metadata
        var spec: Spec
        var status: Status
        var clusters: [String] { status.clusters.map(\.cluster) }
    }

    struct ExportRow: Decodable {
        struct Metadata: Decodable { var name: String; var creationTimestamp: String? }
        struct Status: Decodable {
            struct Condition: Decodable { var type: String; var status: String; var reason: String; var message: String }
            var conditions: [Condition]
        }
        var metadata: Metadata
        var status: Status?
        func condition(_ type: String) -> Status.Condition? { status?.conditions.first { $0.type == type } }
    }

    static func imports(_ lab: LabFixture, context: String) async throws -> [String: ImportRow] {
        let result = try await lab.meridian(["get", "serviceimports", "--context", context, "-o", "json"])
        try #require(result.status == 0, "get serviceimports: \(result.stderr)")
        let rows = try JSONDecoder().decode([ImportRow].self, from: Data(result.stdout.utf8))
        return Dictionary(rows.map { ("\($0.metadata.namespace ?? "default")/\($0.metadata.name)", $0) }, uniquingKeysWith: { a, _ in a })
    }

    static func exports(_ lab: LabFixture, context: String) async throws -> [String: ExportRow] {
        let result = try await lab.meridian(["get", "serviceexports", "--context", context, "-o", "json"])
        try #require(result.status == 0, "get serviceexports: \(result.stderr)")
        let rows = try JSONDecoder().decode([ExportRow].self, from: Data(result.stdout.utf8))
        return Dictionary(rows.map { ($0.metadata.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Clusters whose pods answered calls to `address` from cluster1's client (`web-one-…` pods
    /// are cluster1's, `web-two-…` cluster2's, `web-three-…` cluster3's).
    static func answered(_ lab: LabFixture, _ address: String) async throws -> [String: Int] {
        let report = try await lab.load(from: "client", context: "cluster1", ["--duration", "2", "--interval-ms", "10", address])
        var result: [String: Int] = [:]
        for (pod, count) in report.servedBy {
            let cluster = pod.hasPrefix("web-one-") ? "cluster1" : pod.hasPrefix("web-two-") ? "cluster2" : pod.hasPrefix("web-three-") ? "cluster3" : pod
            result[cluster, default: 0] += count
        }
        if report.failures > 0 { result["failed"] = report.failures }
        return result
    }

    /// The IPv4 addresses `name` resolves to in cluster1's client pod (empty when it does not).
    static func resolve(_ lab: LabFixture, _ name: String) async throws -> [String] {
        let result = try await lab.meridian(["exec", "--context", "cluster1", "client", "--", "getent", "ahostsv4", name])
        guard result.status == 0 else { return [] }
        return Set(result.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }).sorted()
    }

    @Test("exports in one, two and three clusters make one ServiceImport per cluster; the ClusterSetIP and clusterset.local reach every exporting cluster while cluster.local stays local; unexport; a namespace one cluster lacks; a port conflict and its condition; headless names")
    func exportsImportsAndNames() async throws {
        try await LabFixture.with(clusters: 3, nodes: 1, heartbeat: 1) { lab in
            try await lab.connect("cluster1", ["cluster2", "cluster3"])
            try await lab.connect("cluster2", ["cluster3"])
            for cluster in ["cluster1", "cluster2", "cluster3"] { try await lab.waitReady(cluster) }
            let names = ["cluster1": "web-one", "cluster2": "web-two", "cluster3": "web-three"]
            for (cluster, deployment) in names {
                try await lab.apply(Self.webService + LabWorkloads.webDeployment(deployment, replicas: 1), context: cluster)
            }
            try await lab.apply(DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper), context: "cluster1")
            try await lab.waitRunning(["client"], context: "cluster1")

            // One exporting cluster: every cluster (all have the namespace) imports it. `--wait`
            // returns once cluster2's import exists and its nodes have programmed it.
            let waited = try await lab.meridian(["apply", "--wait", "--timeout", "60s", "--context", "cluster2", "-f", "-"], stdin: Self.export("web"))
            try #require(waited.status == 0, "apply --wait: \(waited.stderr)")
            #expect(try await Self.imports(lab, context: "cluster2")["default/web"]?.clusters == ["cluster2"], "the import exists when --wait returns")
            let waitFor = try await lab.meridian(["wait", "--for", "programmed", "serviceexport/web", "--context", "cluster2", "--timeout", "30s"])
            #expect(waitFor.status == 0, "\(waitFor.stderr)")
            for cluster in ["cluster1", "cluster2", "cluster3"] {
                try await eventually("\(cluster) imports default/web from cluster2", timeout: .seconds(30)) {
                    try await Self.imports(lab, context: cluster)["default/web"]?.clusters == ["cluster2"]
                }
            }
            let imported = try #require(try await Self.imports(lab, context: "cluster1")["default/web"])
            #expect(imported.spec.type == "ClusterSetIP")
            #expect(imported.spec.ports.map { "\($0.name ?? "")/\($0.port)/\($0.protocol)" } == ["http/80/TCP"])
            let clusterSetIP = try #require(imported.spec.ips?.first)
            let clusterIP = try await lab.clusterIP("web", context: "cluster1")
            #expect(clusterSetIP != clusterIP)
            let export = try #require(try await Self.exports(lab, context: "cluster2")["web"])
            #expect(export.metadata.creationTimestamp != nil)
            #expect(export.condition("Valid")?.status == "True")
            #expect(export.condition("Conflict")?.status == "False")

            try await eventually("the ClusterSetIP reaches cluster2 only", timeout: .seconds(30)) {
                try await Self.answered(lab, clusterSetIP + ":80").keys.sorted() == ["cluster2"]
            }
            #expect(try await Self.answered(lab, clusterIP + ":80").keys.sorted() == ["cluster1"],
                    "the ClusterIP of the (not global) Service stays cluster1's")
            #expect(try await Self.resolve(lab, "web.default.svc.clusterset.local.") == [clusterSetIP])
            #expect(try await Self.resolve(lab, "web.default.svc.cluster.local.") == [clusterIP])
            #expect(try await Self.resolve(lab, "nothing.default.svc.clusterset.local.").isEmpty)

            // Two, then three exporting clusters.
            try await lab.apply(Self.export("web"), context: "cluster3")
            try await eventually("the ClusterSetIP reaches cluster2 and cluster3", timeout: .seconds(30)) {
                try await Self.answered(lab, clusterSetIP + ":80").keys.sorted() == ["cluster2", "cluster3"]
            }
            try await lab.apply(Self.export("web"), context: "cluster1")
            try await eventually("the ClusterSetIP reaches all three clusters", timeout: .seconds(30)) {
                try await Self.answered(lab, clusterSetIP + ":80").keys.sorted() == ["cluster1", "cluster2", "cluster3"]
            }
            let spread = try await Self.answered(lab, clusterSetIP + ":80")
            print("MCS: ClusterSetIP \(clusterSetIP) (ClusterIP \(clusterIP)) answered by \(spread.sorted { $0.key < $1.key })")
            #expect(try await Self.imports(lab, context: "cluster3")["default/web"]?.clusters == ["cluster1", "cluster2", "cluster3"])
            #expect(try await Self.imports(lab, context: "cluster1")["default/web"]?.spec.ips == [clusterSetIP], "the ClusterSetIP is kept")
            let listed = try await lab.meridian(["service", "list", "--context", "cluster1"]).stdout
            #expect(listed.contains("\(clusterSetIP):80/TCP") && listed.contains("clusterset, affinity none"), "\(listed)")

            // cluster1's own export steers cluster1's clients: cluster3 first.
            let preferring = Self.export("web").replacingOccurrences(
                of: "  namespace: default\n", with: "  namespace: default\n  annotations:\n    service.meridian.io/cluster-preference: \"cluster3,*\"\n")
            try await lab.apply(preferring, context: "cluster1")
            try await eventually("with cluster1's preference, the ClusterSetIP reaches cluster3 only", timeout: .seconds(30)) {
                try await Self.answered(lab, clusterSetIP + ":80").keys.sorted() == ["cluster3"]
            }
            try await lab.apply(Self.export("web"), context: "cluster1")

            // Unexport in cluster3.
            #expect(try await lab.meridian(["delete", "serviceexport", "web", "--context", "cluster3"]).status == 0)
            try await eventually("cluster1's import no longer lists cluster3", timeout: .seconds(30)) {
                try await Self.imports(lab, context: "cluster1")["default/web"]?.clusters == ["cluster1", "cluster2"]
            }
            try await eventually("the ClusterSetIP no longer reaches cluster3", timeout: .seconds(30)) {
                try await Self.answered(lab, clusterSetIP + ":80").keys.sorted() == ["cluster1", "cluster2"]
            }

            // A namespace cluster1 does not have: cluster2 and cluster3 import, cluster1 does not.
            let shop = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n"
            let shopService = Self.webService.replacingOccurrences(of: "  name: web\n", with: "  name: web\n  namespace: shop\n")
            for cluster in ["cluster2", "cluster3"] { try await lab.apply(shop + shopService, context: cluster) }
            try await lab.apply(Self.export("web", namespace: "shop"), context: "cluster2")
            for cluster in ["cluster2", "cluster3"] {
                try await eventually("\(cluster) imports shop/web", timeout: .seconds(30)) {
                    try await Self.imports(lab, context: cluster)["shop/web"]?.clusters == ["cluster2"]
                }
            }
            #expect(try await Self.imports(lab, context: "cluster1")["shop/web"] == nil, "cluster1 has no namespace shop")
            // Deleting the namespace in cluster3 removes its import there and releases the ClusterSetIP.
            let shopIP = try #require(try await Self.imports(lab, context: "cluster3")["shop/web"]?.spec.ips?.first)
            #expect(try await lab.meridian(["delete", "namespace", "shop", "--context", "cluster3"]).status == 0)
            try await eventually("cluster3 releases the ClusterSetIP of shop/web", timeout: .seconds(30)) {
                try await lab.withAdmin("cluster3") { try await $0.get("meridian/ipam/services/\(shopIP)") } == nil
            }
            #expect(try await Self.imports(lab, context: "cluster3")["shop/web"] == nil)

            // A port conflict: cluster3 exports `api` with port http as 81 after cluster2 as 80.
            let api = { (port: Int) in
                Self.webService.replacingOccurrences(of: "name: web", with: "name: api").replacingOccurrences(of: "port: 80\n", with: "port: \(port)\n")
            }
            try await lab.apply(api(80) + Self.export("api"), context: "cluster2")
            try await eventually("cluster3 imports api from cluster2", timeout: .seconds(30)) {
                try await Self.imports(lab, context: "cluster3")["default/api"] != nil
            }
            try await lab.apply(api(81) + Self.export("api"), context: "cluster3")
            for cluster in ["cluster2", "cluster3"] {
                try await eventually("\(cluster)'s export of api reports the conflict", timeout: .seconds(30)) {
                    let condition = try await Self.exports(lab, context: cluster)["api"]?.condition("Conflict")
                    return condition?.status == "True" && condition?.reason == "PortConflict"
                        && condition?.message.contains("cluster3 exports port \"http\" as 81/TCP") == true
                }
            }
            let apiImport = try #require(try await Self.imports(lab, context: "cluster1")["default/api"])
            #expect(apiImport.spec.ports.map(\.port) == [80], "the oldest export's port is kept")
            #expect(apiImport.clusters == ["cluster2", "cluster3"])
            let exportTable = try await lab.meridian(["get", "serviceexports", "--context", "cluster3"]).stdout
            #expect(exportTable.contains("cluster3 exports port"), "\(exportTable)")

            // A ServiceExport without its Service is not valid.
            try await lab.apply(Self.export("missing"), context: "cluster1")
            try await eventually("an export without a Service is reported invalid", timeout: .seconds(30)) {
                let valid = try await Self.exports(lab, context: "cluster1")["missing"]?.condition("Valid")
                return valid?.status == "False" && valid?.reason == "NoService"
            }
            #expect(try await Self.imports(lab, context: "cluster1")["default/missing"] == nil)

            // Headless: pods with a hostname under the service answer by name in every cluster.
            for (cluster, pod) in [("cluster2", "db-two"), ("cluster3", "db-three")] {
                try await lab.apply(Self.headless + Self.hostnamedPod(pod) + Self.export("db"), context: cluster)
                try await lab.waitRunning([pod], context: cluster)
            }
            let dbTwo = try #require(try await lab.waitRunning(["db-two"], context: "cluster2")["db-two"]?.ip)
            let dbThree = try #require(try await lab.waitRunning(["db-three"], context: "cluster3")["db-three"]?.ip)
            try await eventually("cluster1 imports db as Headless from both", timeout: .seconds(30)) {
                let row = try await Self.imports(lab, context: "cluster1")["default/db"]
                return row?.spec.type == "Headless" && row?.clusters == ["cluster2", "cluster3"] && row?.spec.ips == nil
            }
            try await eventually("db.default.svc.clusterset.local answers both pods", timeout: .seconds(30)) {
                try await Self.resolve(lab, "db.default.svc.clusterset.local.") == [dbTwo, dbThree].sorted()
            }
            #expect(try await Self.resolve(lab, "db-two.cluster2.db.default.svc.clusterset.local.") == [dbTwo])
            #expect(try await Self.resolve(lab, "db-three.cluster3.db.default.svc.clusterset.local.") == [dbThree])
            #expect(try await Self.resolve(lab, "db-two.cluster3.db.default.svc.clusterset.local.").isEmpty)

            // The cluster's properties (KEP-2149).
            let properties = try await lab.meridian(["get", "clusterproperties", "--context", "cluster2"]).stdout
            #expect(properties.contains("cluster.clusterset.k8s.io") && properties.contains("cluster2"), "\(properties)")
            let renamed = "apiVersion: about.k8s.io/v1alpha1\nkind: ClusterProperty\nmetadata:\n  name: cluster.clusterset.k8s.io\nspec:\n  value: other\n"
            let refused = try await lab.meridian(["apply", "--context", "cluster2", "-f", "-"], stdin: renamed)
            #expect(refused.status != 0 && refused.stderr.contains("cannot be set"), "\(refused.stderr)")
        }
    }

    static let headless = """
        apiVersion: v1
        kind: Service
        metadata:
          name: db
        spec:
          clusterIP: None
          selector:
            app: db
          ports:
          - name: tcp
            port: 5432
        ---

        """

    static func hostnamedPod(_ name: String) -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: \(name)
          labels: {app: db}
        spec:
          hostname: \(name)
          subdomain: db
          containers:
          - name: main
            command: ["sleep", "100000"]
        ---

        """
    }
}
