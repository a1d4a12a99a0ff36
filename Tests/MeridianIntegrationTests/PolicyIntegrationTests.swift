import Foundation
import MeridianLab
import Glibc
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTools
import Testing

/// Network policy on a real mesh: two clusters of two nodes, pods in several namespaces, a
/// server outside every cluster, and for each case of `ReachabilityCases` real TCP handshakes
/// and UDP echoes checked against the expected verdicts. Each case waits until every node
/// reports its policy programmed from a store revision at least as new as the case's apply.
@Suite("Network policy on the lab", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct PolicyIntegrationTests {
    static let clusters = ["c1": "cluster1", "c2": "cluster2"]

    /// The cases the matrix runs: all of them, or with `MERIDIAN_REACHABILITY_CASES=<text>` only
    /// those whose name contains the text (to rerun a few cases without the whole matrix).
    static var matrixCases: [ReachabilityCase] {
        guard let filter = ProcessInfo.processInfo.environment["MERIDIAN_REACHABILITY_CASES"], !filter.isEmpty else {
            return ReachabilityCases.all
        }
        return ReachabilityCases.all.filter { $0.name.contains(filter) }
    }

    @Test("the reachability matrix: every case's probes, TCP and UDP, on two nodes and two clusters")
    func reachabilityMatrix() async throws {
        let cases = Self.matrixCases
        try #require(!cases.isEmpty, "MERIDIAN_REACHABILITY_CASES selects no case")
        try await CrossClusterIntegrationTests.mesh { lab in
            try await Self.withTopology(lab) { mesh in
                var failures: [String] = []
                var probes = 0
                for testCase in cases {
                    let parsed = try testCase.probes.map(ReachabilityProbe.init(parsing:))
                    // Policies that name pods by address get the addresses the lab gave them.
                    let policies = try testCase.resolvedPolicies { pod in
                        try #require(mesh.addresses[PolicyMesh.key(pod.cluster, pod.namespace, pod.name)], "no address for \(pod)")
                    }
                    try await mesh.enforce(policies)
                    let outcomes = try await mesh.probe(parsed)
                    for (text, probe) in zip(testCase.probes, parsed) where outcomes[probe] != probe.allowed {
                        failures.append("\(testCase.name): \(text) — got \(outcomes[probe] == true ? "allowed" : "denied")")
                    }
                    probes += parsed.count
                    try await mesh.remove(policies)
                }
                print("reachability matrix: \(cases.count) cases, \(probes) probes, \(failures.count) wrong")
                #expect(failures.isEmpty, "\(failures.count) probes disagree:\n\(failures.joined(separator: "\n"))")
            }
        }
    }

    @Test("identities follow pod and namespace label changes in both clusters, and policy follows without restarting pods")
    func labelChanges() async throws {
        try await CrossClusterIntegrationTests.mesh { lab in
            try await Self.withTopology(lab) { mesh in
                let policy = """
                    apiVersion: cilium.io/v2
                    kind: CiliumClusterwideNetworkPolicy
                    metadata: {name: web-from-alpha-clients}
                    spec:
                      endpointSelector: {matchLabels: {app: web, k8s:io.kubernetes.pod.namespace: alpha}}
                      ingress:
                      - fromEndpoints:
                        - matchLabels: {app: client, io.cilium.k8s.namespace.labels.team: alpha}
                        - matchLabels: {app: client, io.cilium.k8s.policy.cluster: cluster2, io.cilium.k8s.namespace.labels.team: alpha}
                    """
                try await mesh.enforce(["cluster1": policy])
                let fromAlpha = try ReachabilityProbe(parsing: "c1 alpha/client -> c1 alpha/web 8080/tcp allow")
                let fromBeta = try ReachabilityProbe(parsing: "c1 beta/client -> c1 alpha/web 8080/tcp deny")
                let fromCluster2 = try ReachabilityProbe(parsing: "c2 alpha/client -> c1 alpha/web 5353/udp allow")
                try await mesh.expect([fromAlpha, fromBeta, fromCluster2], "before any label change")
                let restartsBefore = try await mesh.restarts()

                // A pod's own labels: alpha/client stops being a client, then is one again.
                try await mesh.relabel(pod: "c1 alpha/client", labels: ["app": "intruder"])
                try await mesh.expect([fromAlpha.expecting(false)], "alpha/client relabelled app=intruder")
                try await mesh.relabel(pod: "c1 alpha/client", labels: ["app": "client"])
                try await mesh.expect([fromAlpha], "alpha/client relabelled back")

                // A namespace's labels: beta joins team alpha.
                try await mesh.relabel(namespace: "c1 beta", labels: ["team": "alpha", "env": "dev"])
                try await mesh.expect([fromBeta.expecting(true)], "namespace beta relabelled team=alpha")

                // The other cluster's view: cluster2's client changes labels in cluster2, and cluster1
                // sees the new identity.
                try await mesh.relabel(pod: "c2 alpha/client", labels: ["app": "intruder"])
                try await mesh.expect([fromCluster2.expecting(false)], "cluster2's alpha/client relabelled app=intruder")
                try await mesh.relabel(pod: "c2 alpha/client", labels: ["app": "client"])
                try await mesh.expect([fromCluster2], "cluster2's alpha/client relabelled back")

                #expect(try await mesh.restarts() == restartsBefore, "label changes must not restart pods")
            }
        }
    }

    @Test("policy trace and get policies explain what is enforced")
    func traceAndList() async throws {
        try await CrossClusterIntegrationTests.mesh { lab in
            try await Self.withTopology(lab) { mesh in
                let policy = """
                    apiVersion: networking.k8s.io/v1
                    kind: NetworkPolicy
                    metadata: {name: web-http-only, namespace: alpha}
                    spec:
                      podSelector: {matchLabels: {app: web}}
                      ingress:
                      - ports: [{port: http}]
                    """
                try await mesh.enforce(["cluster1": policy])
                let denied = try await lab.meridian(["policy", "trace", "--context", "cluster1", "--from", "alpha/client", "--to", "alpha/web",
                                                     "--port", "9090/TCP"])
                #expect(denied.status == 0, "\(denied.stderr)")
                #expect(denied.stdout.contains("Final verdict: DENIED"), "\(denied.stdout)")
                #expect(denied.stdout.contains("NetworkPolicy alpha/web-http-only"), "the trace names the deciding policy:\n\(denied.stdout)")
                let allowed = try await lab.meridian(["policy", "trace", "--context", "cluster1", "--from-context", "cluster2", "--from", "alpha/client",
                                                      "--to", "alpha/web", "--port", "8080/TCP"])
                #expect(allowed.stdout.contains("Final verdict: ALLOWED"), "\(allowed.stdout)\(allowed.stderr)")
                let bad = try await lab.meridian(["policy", "trace", "--context", "cluster1", "--from", "alpha/nobody", "--to", "alpha/web",
                                                  "--port", "8080/TCP"])
                #expect(bad.status != 0 && bad.stderr.contains("alpha/nobody"), "an unknown pod is a clear error: \(bad.stderr)")

                let list = try await lab.meridian(["get", "policies", "--context", "cluster1"])
                #expect(list.status == 0, "\(list.stderr)")
                let row = list.stdout.split(separator: "\n").first { $0.contains("web-http-only") }.map(String.init) ?? ""
                #expect(row.contains("alpha/web") && row.contains("1/1") && row.contains("ingress"), "get policies:\n\(list.stdout)")

                // ipBlock by a pod's address: trace and datapath agree, for a local and a remote pod.
                let client = try #require(mesh.addresses[PolicyMesh.key("cluster1", "alpha", "client")])
                let remoteClient = try #require(mesh.addresses[PolicyMesh.key("cluster2", "alpha", "client")])
                try await mesh.enforce(["cluster1": """
                    apiVersion: networking.k8s.io/v1
                    kind: NetworkPolicy
                    metadata: {name: api-from-addresses, namespace: alpha}
                    spec:
                      podSelector: {matchLabels: {app: api}}
                      ingress:
                      - from:
                        - ipBlock: {cidr: \(client)/32}
                        - ipBlock: {cidr: 10.2.0.0/16, except: [\(remoteClient)/32]}
                    """])
                for (fromContext, from, to, allowed) in [("cluster1", "alpha/client", "alpha/api", true), ("cluster1", "beta/client", "alpha/api", false),
                                                         ("cluster2", "alpha/web", "alpha/api", true), ("cluster2", "alpha/client", "alpha/api", false)] {
                    let trace = try await lab.meridian(["policy", "trace", "--context", "cluster1", "--from-context", fromContext, "--from", from,
                                                        "--to", to, "--port", "8080/TCP"])
                    #expect(trace.stdout.contains("Final verdict: \(allowed ? "ALLOWED" : "DENIED")"), "\(fromContext) \(from):\n\(trace.stdout)\(trace.stderr)")
                    #expect(trace.stdout.contains("NetworkPolicy alpha/api-from-addresses"), "the trace names the ipBlock policy:\n\(trace.stdout)")
                    let short = fromContext == "cluster1" ? "c1" : "c2"
                    try await mesh.expect([try ReachabilityProbe(parsing: "\(short) \(from) -> c1 \(to) 8080/tcp \(allowed ? "allow" : "deny")")],
                                          "the datapath agrees with the trace")
                }
                // A ClusterIP is judged as its backend in the datapath: the trace refuses it rather than guess.
                let service = try await lab.meridian(["policy", "trace", "--context", "cluster1", "--from", "alpha/client", "--to", "10.101.0.10",
                                                      "--port", "80/TCP"])
                #expect(service.status != 0 && service.stderr.contains("service range 10.101.0.0/16"), "\(service.stdout)\(service.stderr)")
            }
        }
    }

    // MARK: Harness

    /// Brings up `ReachabilityTopology` on a meshed lab and a server outside the clusters, runs
    /// `body`, and stops the server whatever happens.
    static func withTopology(_ lab: LabFixture, _ body: (PolicyMesh) async throws -> Void) async throws {
        for (short, cluster) in clusters {
            var documents: [String] = []
            for (namespace, labels) in ReachabilityTopology.namespaces[cluster] ?? [:] {
                documents.append(PolicyMesh.namespaceManifest(namespace, labels: labels))
            }
            for pod in ReachabilityTopology.pods where pod.cluster == cluster {
                documents.append(PolicyMesh.podManifest(pod, labels: pod.labels))
            }
            let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"], stdin: documents.joined(separator: "---\n"))
            try #require(result.status == 0, "topology for \(short) failed: \(result.stderr)")
        }
        let world = Process()
        world.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        world.arguments = ["ip", "netns", "exec", "\(lab.prefix)-underlay", LabFixture.executable, "tool", "echo-server",
                           "--port", "8080", "--udp-port", "5353"]
        world.standardOutput = FileHandle.nullDevice
        world.standardError = FileHandle.nullDevice
        try world.run()
        defer {
            world.terminate()
            world.waitUntilExit()
        }
        var mesh = PolicyMesh(lab: lab)
        try await mesh.waitForPods()
        try await body(mesh)
    }
}

/// The lab as the policy tests drive it: pods by (cluster, namespace, name), policies applied
/// and removed per cluster with a wait for enforcement, probes run from inside pods.
struct PolicyMesh {
    let lab: LabFixture
    var addresses: [String: String] = [:]

    init(lab: LabFixture) {
        self.lab = lab
    }

    static let containerPorts = """
            ports:
            - {name: http, containerPort: 8080}
            - {name: admin, containerPort: 9090}
            - {name: dns, containerPort: 5353, protocol: UDP}
            - {containerPort: 6363, protocol: UDP}
        """

    static func podManifest(_ pod: ReachabilityPod, labels: [String: String]) -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: \(pod.name)
          namespace: \(pod.namespace)
          labels: {\(labels.sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", "))}
        spec:
          nodeName: \(pod.node)
          containers:
          - name: echo
            command: ["meridian", "tool", "echo-server", "--port", "8080", "--port", "9090", "--udp-port", "5353", "--udp-port", "6363"]
        \(containerPorts)

        """
    }

    static func namespaceManifest(_ name: String, labels: [String: String]) -> String {
        """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: \(name)
          labels: {\(labels.sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", "))}

        """
    }

    static func key(_ cluster: String, _ namespace: String, _ name: String) -> String { "\(cluster)/\(namespace)/\(name)" }

    /// Waits for every topology pod to run with an address, in both clusters.
    mutating func waitForPods() async throws {
        var found: [String: String] = [:]
        try await eventually("every topology pod running", timeout: .seconds(60)) {
            found = [:]
            for cluster in PolicyIntegrationTests.clusters.values {
                let result = try await lab.meridian(["get", "pods", "-o", "json", "--context", cluster])
                for row in try JSONDecoder().decode([PodRow].self, from: Data(result.stdout.utf8)) where row.status == "Running" {
                    if let ip = row.ip { found[Self.key(cluster, row.namespace, row.name)] = ip }
                }
            }
            return ReachabilityTopology.pods.allSatisfy { found[Self.key($0.cluster, $0.namespace, $0.name)] != nil }
        }
        addresses = found
    }

    /// Applies each cluster's documents, then waits until every node of every cluster reports its
    /// policy programmed from a store revision at least as new as the apply.
    func enforce(_ policies: [String: String]) async throws {
        for (cluster, yaml) in policies.sorted(by: { $0.key < $1.key }) where !yaml.isEmpty {
            let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"], stdin: yaml)
            try #require(result.status == 0, "apply to \(cluster) failed: \(result.stderr)\n\(yaml)")
        }
        try await waitProgrammed()
    }

    func remove(_ policies: [String: String]) async throws {
        for (cluster, yaml) in policies.sorted(by: { $0.key < $1.key }) where !yaml.isEmpty {
            let result = try await lab.meridian(["delete", "--context", cluster, "-f", "-"], stdin: yaml)
            try #require(result.status == 0, "delete from \(cluster) failed: \(result.stderr)")
        }
        try await waitProgrammed()
    }

    /// Waits until every node of both clusters has programmed policy from a store revision at
    /// least as new as everything written so far. Nodes report the revision of the resource watch
    /// they computed from, which moves only with resource events, so a marker namespace is
    /// relabelled first: its event comes after every earlier change in the same watch.
    func waitProgrammed() async throws {
        for cluster in PolicyIntegrationTests.clusters.values.sorted() {
            let marker = "policy-sync"
            let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"],
                                                stdin: Self.namespaceManifest(marker, labels: ["sync": String(UUID().uuidString.prefix(8).lowercased())]))
            try #require(result.status == 0, "marker apply failed: \(result.stderr)")
            let key = KeyLayout.resource(plural: ResourceKind.namespace.plural, namespace: nil, name: marker)
            let revision = try await lab.withAdmin(cluster) { try await $0.list(prefix: key).items.first?.modRevision ?? 0 }
            try await eventually("every node of \(cluster) programmed from revision \(revision)", timeout: .seconds(20)) {
                let statuses = try await lab.withAdmin(cluster) { client in
                    try await client.list(prefix: KeyLayout.nodeStatusPrefix).items.map {
                        try StoreCoding.decode(NodePolicyStatus.self, from: $0.value, key: $0.key)
                    }
                }
                return statuses.count == 2 && statuses.allSatisfy { $0.revision >= revision }
            }
        }
    }

    /// Runs the probes, one `tool reach` per source pod, all sources at once; true = reached.
    func probe(_ probes: [ReachabilityProbe]) async throws -> [ReachabilityProbe: Bool] {
        var bySource: [String: [ReachabilityProbe]] = [:]
        for probe in probes {
            bySource[Self.key(probe.fromCluster, probe.fromNamespace, probe.fromPod), default: []].append(probe)
        }
        return try await withThrowingTaskGroup(of: [ReachabilityProbe: Bool].self) { group in
            for (_, sourceProbes) in bySource {
                let first = sourceProbes[0]
                let targets = try sourceProbes.map { try target($0) }
                group.addTask {
                    // The world server's side runs in the lab's underlay, from the server's address.
                    let output: String
                    if first.fromWorld {
                        output = try await lab.command(["ip", "netns", "exec", "\(lab.prefix)-underlay", LabFixture.executable, "tool", "reach",
                                                        "--timeout", "1", "-o", "json", "--source", ReachabilityTopology.worldAddress] + targets)
                    } else {
                        let result = try await lab.meridian(["exec", "--context", first.fromCluster, "-n", first.fromNamespace, first.fromPod, "--",
                                                             "meridian", "tool", "reach", "--timeout", "1", "-o", "json"] + targets)
                        try #require(result.status == 0, "reach from \(first.fromNamespace)/\(first.fromPod) failed: \(result.stderr)")
                        output = result.stdout
                    }
                    let results = try JSONDecoder().decode([ReachProbe.Result].self, from: Data(output.utf8))
                    try #require(results.map(\.target) == targets, "tool reach -o json answered other targets: \(output)")
                    return Dictionary(zip(sourceProbes, results).map { ($0, $1.reached) }, uniquingKeysWith: { a, _ in a })
                }
            }
            var outcomes: [ReachabilityProbe: Bool] = [:]
            for try await partial in group { outcomes.merge(partial, uniquingKeysWith: { a, _ in a }) }
            return outcomes
        }
    }

    func target(_ probe: ReachabilityProbe) throws -> String {
        let address: String
        switch probe.to {
        case .world:
            address = ReachabilityTopology.worldAddress
        case let .pod(cluster, namespace, name):
            address = try #require(addresses[Self.key(cluster, namespace, name)], "no address for \(cluster) \(namespace)/\(name)")
        }
        return "\(probe.transport == .udp ? "udp" : "tcp"):\(address):\(probe.port)"
    }

    /// Polls the probes until each gives its expected answer (label changes travel through
    /// identities and the mesh, which no single revision covers).
    func expect(_ probes: [ReachabilityProbe], _ what: String) async throws {
        var last: [ReachabilityProbe: Bool] = [:]
        try await eventually("\(what): \(probes.map(\.description))", timeout: .seconds(30)) {
            last = try await probe(probes)
            return probes.allSatisfy { last[$0] == $0.allowed }
        }
    }

    func relabel(pod reference: String, labels: [String: String]) async throws {
        let parts = reference.split(separator: " ")
        let cluster = PolicyIntegrationTests.clusters[String(parts[0])]!
        let names = parts[1].split(separator: "/")
        let pod = try #require(ReachabilityTopology.pods.first { $0.cluster == cluster && $0.namespace == names[0] && $0.name == names[1] })
        let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"], stdin: Self.podManifest(pod, labels: labels))
        try #require(result.status == 0, "relabel failed: \(result.stderr)")
    }

    func relabel(namespace reference: String, labels: [String: String]) async throws {
        let parts = reference.split(separator: " ")
        let cluster = PolicyIntegrationTests.clusters[String(parts[0])]!
        let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"],
                                            stdin: Self.namespaceManifest(String(parts[1]), labels: labels))
        try #require(result.status == 0, "relabel failed: \(result.stderr)")
    }

    /// Restarts of every pod, to show label changes do not restart anything.
    func restarts() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for cluster in PolicyIntegrationTests.clusters.values {
            let result = try await lab.meridian(["get", "pods", "-o", "json", "--context", cluster])
            for row in try JSONDecoder().decode([PodRow].self, from: Data(result.stdout.utf8)) {
                counts[Self.key(cluster, row.namespace, row.name)] = row.restarts
            }
        }
        return counts
    }
}

extension ReachabilityProbe {
    func expecting(_ allowed: Bool) -> ReachabilityProbe {
        var copy = self
        copy.allowed = allowed
        return copy
    }
}
