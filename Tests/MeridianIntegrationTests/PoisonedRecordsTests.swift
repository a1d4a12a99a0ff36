import Foundation
import Glibc
import MeridianCore
import MeridianEtcd
import MeridianLab
import MeridianStore
import MeridianTestSupport
import Testing

/// A peer that exports poison: one record per rule a peer may break, written straight into
/// cluster2's exported state. cluster1 must refuse each, say why in `clustermesh status`
/// (escaped), and real traffic in cluster1 (across its nodes, to the world, through a policy
/// that admits one remote app) must behave exactly as before.
@Suite("Poisoned records from a peer", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct PoisonedRecordsTests {
    static let policies = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: web-from-remote-clients, namespace: alpha}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
          - fromEndpoints:
            - matchLabels: {app: client, io.cilium.k8s.policy.cluster: cluster2}
        ---
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: db-from-host, namespace: beta}
        spec:
          endpointSelector: {matchLabels: {app: db}}
          ingress:
          - fromEntities: [host]
        """

    /// What must hold in cluster1 before and after the poison.
    static let probes = [
        "c1 beta/client -> c1 alpha/api 8080/tcp allow",
        "c1 alpha/client -> world 8080/tcp allow",
        "c2 alpha/client -> c1 alpha/web 8080/tcp allow",
        "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
        "world -> c1 alpha/web 8080/tcp deny",
        "c2 gamma/client -> c1 beta/db 8080/tcp deny",
    ]

    @Test("every kind of poison is refused and reported, and cluster1's traffic and policy do not change")
    func poisonChangesNothing() async throws {
        try await CrossClusterIntegrationTests.mesh { lab in
            try await PolicyIntegrationTests.withTopology(lab) { mesh in
                try await mesh.enforce(["cluster1": Self.policies])
                let probes = try Self.probes.map(ReachabilityProbe.init(parsing:))
                try await mesh.expect(probes, "before the poison")

                let api = try #require(mesh.addresses[PolicyMesh.key("cluster1", "alpha", "api")])
                let node2 = try await lab.withAdmin("cluster1") { c1 in
                    try StoreCoding.decode(NodeRecord.self, from: try #require(try await c1.get("cilium/state/nodes/v1/cluster1/node2")).value, key: "node2")
                }
                let node2IP = try #require(node2.ipAddresses.first?.ip)
                let node2CIDR = try #require(node2.ipv4AllocCIDR?.description)
                let gammaClient = try #require(mesh.addresses[PolicyMesh.key("cluster2", "gamma", "client")])
                let poison: [(reason: String, key: String, value: String)] = try await lab.withAdmin("cluster2") { c2 in
                    let gammaIdentity = try #require(try await c2.get("cilium/state/ip/v1/default/\(gammaClient)").flatMap {
                        try? CiliumJSON.decoder().decode(IPIdentityPair.self, from: $0.value).id
                    })
                    let host = try #require(try await c2.get("cilium/state/ip/v1/default/\(gammaClient)").flatMap {
                        try? CiliumJSON.decoder().decode(IPIdentityPair.self, from: $0.value).hostIP
                    })
                    let padding = String(repeating: "x", count: 20 * 1024)
                    return [
                        ("outside-pod-cidr", "cilium/state/ip/v1/default/\(api)",
                         StateFixtures.endpoint(ip: api, identity: gammaIdentity, hostIP: host, namespace: "alpha", pod: "api")),
                        ("over-broad-prefix", "cilium/state/ip/v1/default/0.0.0.0/0",
                         #"{"IP":"0.0.0.0","Mask":"AAAAAA==","HostIP":"\#(host)","ID":\#(gammaIdentity),"Key":0,"Metadata":"","K8sNamespace":"","K8sPodName":""}"#),
                        ("reserved-identity", "cilium/state/ip/v1/default/10.2.200.1",
                         StateFixtures.endpoint(ip: "10.2.200.1", identity: 2, hostIP: host, pod: "world")),
                        ("malformed", "cilium/state/ip/v1/default/10.2.200.2", "not json"),
                        ("outside-pod-cidr", "cilium/state/nodes/v1/cluster2/evil",
                         StateFixtures.node(cluster: "cluster2", id: 2, name: "evil", ip: node2IP, podCIDR: node2CIDR)),
                        ("invalid-name", "cilium/state/nodes/v1/cluster2/\u{1B}[31mred",
                         StateFixtures.node(cluster: "cluster2", id: 2, name: #"\u001b[31mred"#, ip: "172.30.2.77", podCIDR: "10.2.77.0/24")),
                        ("too-large", "cilium/state/nodes/v1/cluster2/large",
                         StateFixtures.node(cluster: "cluster2", id: 2, name: "large", ip: "172.30.2.78", podCIDR: "10.2.78.0/24")
                            .replacingOccurrences(of: #""Labels":{}"#, with: #""Labels":{"pad":"\#(padding)"}"#)),
                        ("reserved-identity", "cilium/state/identities/v1/id/2",
                         "k8s:app=client;k8s:io.cilium.k8s.policy.cluster=cluster2;k8s:io.kubernetes.pod.namespace=alpha;"),
                        ("reserved-label", "cilium/state/identities/v1/id/\(gammaIdentity)", "reserved:host;"),
                        // An MCS export in cluster2's store that claims to be cluster1's.
                        ("wrong-cluster", "cilium/state/serviceexports/v1/cluster2/alpha/api",
                         #"{"cluster":"cluster1","namespace":"alpha","name":"api","exportCreationTimestamp":"2026-01-01T00:00:00Z","type":"ClusterSetIP","ports":[{"protocol":"TCP","port":80}]}"#),
                    ]
                }
                try await lab.withAdmin("cluster2") { c2 in
                    for record in poison { try await c2.put(record.key, Data(record.value.utf8)) }
                }

                var reasons: [String: Int] = [:]
                let deadline = ContinuousClock.now + .seconds(30)
                while !Set(poison.map(\.reason)).allSatisfy({ reasons[$0] != nil }), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                    let status = try await lab.status("cluster1")
                    let remote = (status["remoteClusters"] as? [[String: Any]])?.first { $0["name"] as? String == "cluster2" }
                    reasons = remote?["rejectedByReason"] as? [String: Int] ?? [:]
                }
                #expect(Set(reasons.keys).isSuperset(of: poison.map(\.reason)), "reported: \(reasons)")
                let text = try await lab.meridian(["clustermesh", "status", "--context", "cluster1"])
                #expect(!text.stdout.contains("\u{1B}"), "a peer's escape sequence reached the terminal: \(text.stdout)")
                #expect(text.stdout.contains("\\u{1B}[31mred"), "the refused name is shown escaped: \(text.stdout)")
                #expect(reasons["outside-pod-cidr"] == 2 && reasons["reserved-identity"] == 2, "every poisoned record counted: \(reasons)")
                // No poisoned record reached the cache, under the key it would have had there.
                try await lab.withAdmin("cluster1") { c1 in
                    try Task.checkCancellation()
                    for record in poison {
                        let cacheKey = record.key
                            .replacingOccurrences(of: "cilium/state/ip/v1/default/", with: "cilium/cache/ip/v1/cluster2/")
                            .replacingOccurrences(of: "cilium/state/nodes/v1/cluster2/", with: "cilium/cache/nodes/v1/cluster2/")
                            .replacingOccurrences(of: "cilium/state/identities/v1/id/", with: "cilium/cache/identities/v1/cluster2/id/")
                            .replacingOccurrences(of: "cilium/state/serviceexports/v1/", with: "cilium/cache/serviceexports/v1/")
                        #expect(cacheKey.hasPrefix("cilium/cache/"), "\(cacheKey)")
                        let cached = try await c1.get(cacheKey)
                        #expect(cached == nil || cached?.value != Data(record.value.utf8), "\(record.reason) record cached at \(cacheKey)")
                    }
                }

                let imports = try await lab.meridian(["get", "serviceimports", "--context", "cluster1", "-o", "json"]).stdout
                #expect(!imports.contains("\"api\""), "the refused export made no ServiceImport: \(imports)")
                try await mesh.expect(probes, "after the poison")
                try await mesh.remove(["cluster1": Self.policies])
            }
        }
    }
}
