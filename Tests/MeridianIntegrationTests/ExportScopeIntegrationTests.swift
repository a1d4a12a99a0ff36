import Foundation
import Glibc
import MeridianLab
import Testing

/// Export scope on real processes: a cluster that exports only its global namespaces'
/// endpoints and identities, followed by its peer as namespaces are marked and unmarked.
@Suite("Export scope", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct ExportScopeIntegrationTests {
    struct EndpointRow: Decodable {
        struct Record: Decodable {
            var ip: String
            var namespace: String
            enum CodingKeys: String, CodingKey { case ip = "IP", namespace = "K8sNamespace" }
        }
        var cluster: String
        var record: Record
    }

    struct IdentityRow: Decodable {
        var cluster: String
        var labels: String
    }

    /// Namespaces whose endpoints and identities cluster1 holds of cluster2.
    static func imported(_ lab: LabFixture) async throws -> (endpoints: Set<String>, identities: Set<String>) {
        let endpoints = try await lab.meridian(["get", "endpoints", "--context", "cluster1", "--all-clusters", "-o", "json"])
        let identities = try await lab.meridian(["get", "identities", "--context", "cluster1", "--all-clusters", "-o", "json"])
        let endpointRows = try JSONDecoder().decode([EndpointRow].self, from: Data(endpoints.stdout.utf8))
        let identityRows = try JSONDecoder().decode([IdentityRow].self, from: Data(identities.stdout.utf8))
        let namespaceLabel = "k8s:io.kubernetes.pod.namespace="
        return (Set(endpointRows.filter { $0.cluster == "cluster2" && !$0.record.namespace.isEmpty }.map(\.record.namespace)),
                Set(identityRows.filter { $0.cluster == "cluster2" }.compactMap { row in
                    row.labels.range(of: namespaceLabel).map { String(row.labels[$0.upperBound...].prefix { $0 != ";" }) }
                }))
    }

    static func namespace(_ name: String, global: Bool?) -> String {
        let annotation = global.map { "\n  annotations:\n    clustermesh.cilium.io/global: \"\($0)\"" } ?? ""
        return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \(name)\(annotation)\n---\n"
    }

    static func sleeper(_ name: String, namespace: String) -> String {
        DatapathIntegrationTests.pod(name, node: "node1", labels: ["app": name], command: DatapathIntegrationTests.sleeper)
            .replacingOccurrences(of: "  name: \(name)\n", with: "  name: \(name)\n  namespace: \(namespace)\n")
    }

    @Test("with export scope global-namespaces, the peer holds only global namespaces' endpoints and identities, and follows a namespace marked and unmarked")
    func globalNamespacesOnly() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.apply(Self.namespace("alpha", global: true) + Self.namespace("beta", global: nil)
                                + Self.sleeper("a", namespace: "alpha") + Self.sleeper("b", namespace: "beta"), context: "cluster2")
            try await eventually("cluster1 imports both namespaces' endpoints and identities (scope all)", timeout: .seconds(60)) {
                let imported = try await Self.imported(lab)
                return imported.endpoints == ["alpha", "beta"] && imported.identities.isSuperset(of: ["alpha", "beta"])
            }

            let enable = try await lab.meridian(["clustermesh", "enable", "--context", "cluster2", "--heartbeat-interval", "1",
                                                 "--export-scope", "global-namespaces"])
            try #require(enable.status == 0, "\(enable.stderr)")
            try await eventually("cluster1 holds only alpha of cluster2", timeout: .seconds(60)) {
                let imported = try await Self.imported(lab)
                return imported.endpoints == ["alpha"] && !imported.identities.contains("beta") && imported.identities.contains("alpha")
            }
            try await lab.waitReady("cluster1")

            try await lab.apply(Self.namespace("beta", global: true), context: "cluster2")
            try await eventually("marked global, beta is exported again", timeout: .seconds(60)) {
                let imported = try await Self.imported(lab)
                return imported.endpoints == ["alpha", "beta"] && imported.identities.contains("beta")
            }
            try await lab.apply(Self.namespace("beta", global: false), context: "cluster2")
            try await eventually("unmarked, beta is withdrawn", timeout: .seconds(60)) {
                let imported = try await Self.imported(lab)
                return imported.endpoints == ["alpha"] && !imported.identities.contains("beta")
            }

            // A pod of beta started while beta is not exported never reaches cluster1.
            try await lab.apply(Self.sleeper("b2", namespace: "beta"), context: "cluster2")
            try await lab.waitRunning(["b2"], context: "cluster2")
            try await Task.sleep(for: .seconds(3))
            #expect(try await Self.imported(lab).endpoints == ["alpha"])
        }
    }
}
