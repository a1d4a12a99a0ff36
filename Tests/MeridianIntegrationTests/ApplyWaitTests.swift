import Foundation
import MeridianCore
import MeridianEtcd
import MeridianLab
import MeridianStore
import Testing

/// `meridian apply --wait` and `meridian wait --for programmed`: they return once every node of
/// the cluster has programmed what was applied, and fail, naming the node, when one has not
/// within the timeout.
@Suite("apply --wait and wait --for programmed", .serialized)
struct ApplyWaitTests {
    static func policy(port: Int) -> String {
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web-ingress, namespace: default}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress:
          - ports: [{port: \(port)}]
        """
    }

    /// Each node's reported revision, by node.
    static func programmed(_ lab: LabFixture) async throws -> [String: Int64] {
        try await lab.withAdmin("cluster1") { client in
            var result: [String: Int64] = [:]
            for item in try await client.list(prefix: KeyLayout.nodeStatusPrefix).items {
                let status = try StoreCoding.decode(NodePolicyStatus.self, from: item.value, key: item.key)
                result[status.node] = status.revision
            }
            return result
        }
    }

    @Test("apply --wait and wait --for programmed return when every node has programmed the applied revision; with a node's agent stopped it fails, naming the node, and succeeds once it is back")
    func waitsForEveryNode() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            let applied = try await lab.meridian(["apply", "--context", "cluster1", "--wait", "-f", "-"], stdin: Self.policy(port: 8080))
            try #require(applied.status == 0, "apply --wait failed: \(applied.stderr)")
            #expect(applied.stdout.contains("networkpolicy/web-ingress created"), "\(applied.stdout)")
            #expect(applied.stdout.contains("programmed on every node of cluster1"), "\(applied.stdout)")
            let key = KeyLayout.resource(plural: ResourceKind.networkPolicy.plural, namespace: "default", name: "web-ingress")
            let revision = try #require(try await lab.withAdmin("cluster1") { try await $0.get(key)?.modRevision })
            let nodes = try await Self.programmed(lab)
            #expect(nodes.count == 2 && nodes.values.allSatisfy { $0 >= revision },
                    "apply --wait returned before every node programmed revision \(revision): \(nodes)")

            let waited = try await lab.meridian(["wait", "--context", "cluster1", "--for", "programmed", "networkpolicy/web-ingress"])
            #expect(waited.status == 0 && waited.stdout.contains("programmed on every node of cluster1"), "\(waited.stdout) \(waited.stderr)")
            let missing = try await lab.meridian(["wait", "--context", "cluster1", "--for", "programmed", "networkpolicy/absent"])
            #expect(missing.status != 0 && missing.stderr.contains("\"default/absent\" not found"), "\(missing.stderr)")

            try await lab.run(["lab", "fault", "stop", "agent", "cluster1/node2", "--directory", lab.labDirectory])
            let stuck = try await lab.meridian(["apply", "--context", "cluster1", "--wait", "--timeout", "3s", "-f", "-"],
                                               stdin: Self.policy(port: 9090))
            #expect(stuck.status != 0, "apply --wait succeeded with node2's agent stopped: \(stuck.stdout)")
            #expect(stuck.stdout.contains("networkpolicy/web-ingress configured"), "the apply itself is reported: \(stuck.stdout)")
            #expect(stuck.stderr.contains("node2") && stuck.stderr.contains("have not programmed"), "\(stuck.stderr)")
            #expect(!stuck.stderr.contains("node1"), "node1 programmed it: \(stuck.stderr)")
            let waitStuck = try await lab.meridian(["wait", "--context", "cluster1", "--for", "programmed", "networkpolicy/web-ingress",
                                                    "--timeout", "2s"])
            #expect(waitStuck.status != 0 && waitStuck.stderr.contains("node2"), "\(waitStuck.stdout) \(waitStuck.stderr)")

            try await lab.run(["lab", "fault", "start", "agent", "cluster1/node2", "--directory", lab.labDirectory])
            let again = try await lab.meridian(["apply", "--context", "cluster1", "--wait", "--timeout", "60s", "-f", "-"],
                                               stdin: Self.policy(port: 9090))
            #expect(again.status == 0, "apply --wait after node2's agent returned: \(again.stderr)")
            #expect(again.stdout.contains("networkpolicy/web-ingress unchanged"), "\(again.stdout)")

            let bad = try await lab.meridian(["apply", "--context", "cluster1", "--wait", "--timeout", "soon", "-f", "-"],
                                             stdin: Self.policy(port: 9090))
            #expect(bad.status != 0 && bad.stderr.contains("--timeout"), "\(bad.stderr)")
        }
    }
}
