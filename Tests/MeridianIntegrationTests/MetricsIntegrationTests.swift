import Foundation
import Glibc
import MeridianLab
import Testing

/// The metrics of a lab, as a real Prometheus (Debian's, started by `lab up --prometheus`)
/// scrapes them: every daemon is a target that is up, the agent's drop counter for policy
/// rises when a probe is denied, and the control plane's readiness metric for a remote cluster
/// follows that cluster's store going away and coming back.
@Suite("Prometheus metrics on the lab", .serialized,
       .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"),
       .enabled(if: FileManager.default.isExecutableFile(atPath: Lab.prometheusExecutable), "needs Debian's prometheus (scripts/setup.sh)"))
struct MetricsIntegrationTests {
    static let denyIngress = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: server-no-ingress
          namespace: default
        spec:
          podSelector:
            matchLabels:
              app: server
          policyTypes:
          - Ingress

        """

    @Test("Prometheus scrapes every daemon; the POLICY_DENIED drop counter rises after a denied probe; cluster1's readiness for cluster2 falls while cluster2's control plane (and the store it runs) is stopped and rises when it is back")
    func prometheusScrapesTheLab() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1, prometheus: true) { lab in
            let statusOutput = try await lab.meridian(["lab", "status", "-o", "json", "--directory", lab.labDirectory])
            try #require(statusOutput.status == 0, "lab status -o json: \(statusOutput.stderr)")
            let report = try JSONDecoder().decode(LabStatusReport.self, from: Data(statusOutput.stdout.utf8))
            let prometheus = try #require(report.prometheus, "lab status lists no Prometheus")
            let targets = report.clusters.flatMap { [$0.controlPlane.metrics] + $0.agents.map(\.metrics) }
            #expect(targets.count == 4 && targets.allSatisfy { $0 != nil }, "every control plane and agent has a metrics address: \(targets)")

            try await eventually("Prometheus sees all four targets up", timeout: .seconds(30)) {
                try await Self.query(lab, prometheus, "sum(up)") == 4
            }
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let readiness = #"meridian_clustermesh_remote_cluster_readiness_status{cluster="cluster1",target_cluster="cluster2"}"#
            try await eventually("cluster1 reports cluster2 ready", timeout: .seconds(30)) {
                try await Self.query(lab, prometheus, readiness) == 1
            }

            // A denied probe: the server answers the client until a policy takes its ingress away.
            try await lab.apply(DatapathIntegrationTests.pod("server", node: "node1", labels: ["app": "server"])
                                + DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper),
                                context: "cluster1")
            let pods = try await lab.waitRunning(["server", "client"], context: "cluster1")
            let server = try #require(pods["server"]?.ip)
            let probe = ["exec", "--context", "cluster1", "client", "--", "curl", "-s", "-m", "2", "-o", "/dev/null", "http://\(server):8080/"]
            try await eventually("the client reaches the server before any policy") { try await lab.meridian(probe).status == 0 }
            let drops = #"sum(meridian_drop_count_total{cluster="cluster1",direction="INGRESS",reason="POLICY_DENIED"})"#
            try await eventually("Prometheus has the agent's drop counter", timeout: .seconds(30)) {
                try await Self.query(lab, prometheus, drops) != nil
            }
            let dropsBefore = try #require(try await Self.query(lab, prometheus, drops))
            try await lab.apply(Self.denyIngress, context: "cluster1")
            try await eventually("the probe is denied once the policy is programmed") { try await lab.meridian(probe).status != 0 }
            try await eventually("the POLICY_DENIED drop counter rises above \(dropsBefore)", timeout: .seconds(30)) {
                (try await Self.query(lab, prometheus, drops) ?? 0) > dropsBefore
            }
            let denied = #"sum(meridian_policy_verdict_total{cluster="cluster1",direction="INGRESS",action="denied"})"#
            try await eventually("the ingress denied policy verdicts of cluster1 are counted", timeout: .seconds(30)) {
                (try await Self.query(lab, prometheus, denied) ?? 0) > 0
            }
            let identities = #"max(meridian_identity_count{cluster="cluster1",source_cluster="cluster1"})"#
            try await eventually("cluster1's agent counts its cluster's identities", timeout: .seconds(30)) {
                (try await Self.query(lab, prometheus, identities) ?? 0) >= 1
            }

            // cluster2's store goes away with its control plane (a single-member store is run by
            // the control plane, so stopping the control plane stops the etcd too).
            try await lab.run(["lab", "fault", "stop", "control-plane", "cluster2", "--directory", lab.labDirectory])
            try await eventually("cluster1 reports cluster2 not ready", timeout: .seconds(60)) {
                try await Self.query(lab, prometheus, readiness) == 0
            }
            try await lab.run(["lab", "fault", "start", "control-plane", "cluster2", "--directory", lab.labDirectory])
            try await eventually("cluster1 reports cluster2 ready again", timeout: .seconds(90)) {
                try await Self.query(lab, prometheus, readiness) == 1
            }
        }
    }

    /// The value of an instant query with one result; nil when it has none.
    static func query(_ lab: LabFixture, _ prometheus: String, _ expression: String) async throws -> Double? {
        let result = try await lab.host(["curl", "-s", "-m", "5", "-G", "--data-urlencode", "query=\(expression)", "http://\(prometheus)/api/v1/query"])
        try #require(result.status == 0, "query \(expression): \(result.stderr)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        try #require(answer["status"] as? String == "success", "query \(expression): \(result.stdout)")
        let series = (answer["data"] as? [String: Any])?["result"] as? [[String: Any]] ?? []
        try #require(series.count <= 1, "query \(expression) has \(series.count) series")
        guard let value = series.first?["value"] as? [Any], value.count == 2, let text = value[1] as? String else { return nil }
        return Double(text)
    }
}
