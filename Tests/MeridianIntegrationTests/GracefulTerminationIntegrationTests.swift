import CMeridianBPF
import Foundation
import Glibc
import MeridianCore
import MeridianDatapath
import MeridianLab
import Testing

/// Graceful backend termination across two meshed clusters, on real processes: a rolling update
/// of a global service's backends in cluster1 while a client in cluster2 calls it in a loop, and
/// a terminating backend that keeps its established connections while new ones go elsewhere.
@Suite("Graceful termination across clusters", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct GracefulTerminationIntegrationTests {
    /// The global Service both clusters define; only cluster1 runs its pods.
    static let service = """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          annotations:
            service.cilium.io/global: "true"
        spec:
          selector:
            app: web
          ports:
          - port: 80
            targetPort: http
        ---

        """

    /// What a pod of the global service runs: the echo server, ready once it answers HTTP,
    /// kept serving for `preStop` seconds after its deletion (while the deletion reaches
    /// cluster2's load balancers), then SIGTERM, and SIGKILL `grace` seconds after the deletion.
    static func podSpec(preStop: Int, grace: Int, version: String, indent: String) -> String {
        """
        terminationGracePeriodSeconds: \(grace)
        containers:
        - name: echo
          command: ["meridian", "tool", "echo-server", "--port", "8080"]
          env:
          - {name: VERSION, value: "\(version)"}
          ports:
          - name: http
            containerPort: 8080
          readinessProbe:
            httpGet: {path: /, port: http}
            periodSeconds: 1
          lifecycle:
            preStop:
              sleep: {seconds: \(preStop)}
        """.split(separator: "\n").map { indent + $0 }.joined(separator: "\n")
    }

    static func deployment(replicas: Int, version: String) -> String {
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
        spec:
          replicas: \(replicas)
          selector:
            matchLabels:
              app: web
          template:
            metadata:
              labels:
                app: web
            spec:
        \(podSpec(preStop: 3, grace: 20, version: version, indent: "      "))
        ---

        """
    }

    static func pod(_ name: String, node: String, preStop: Int, grace: Int) -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: \(name)
          labels:
            app: web
        spec:
          nodeName: \(node)
        \(podSpec(preStop: preStop, grace: grace, version: "1", indent: "  "))
        ---

        """
    }

    /// `meridian tool load`'s report.
    struct LoadReport: Decodable {
        var requests: Int
        var failures: Int
        var connections: Int
        var servedBy: [String: Int]
        var failureDetails: [String]
        var seconds: Double
    }

    @Test("a rolling update of a global service's backends in cluster1, under constant load from cluster2, fails no request")
    func rollingUpdateUnderLoad() async throws {
        try await CrossClusterIntegrationTests.mesh { lab in
            try await lab.apply(Self.service + Self.deployment(replicas: 2, version: "1"), context: "cluster1")
            try await lab.apply(Self.service + DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper),
                                context: "cluster2")
            _ = try await lab.waitDeployment("web", ready: 2, timeout: .seconds(60))
            try await lab.waitRunning(["client"], context: "cluster2")
            let address = try await lab.clusterIP("web", context: "cluster2") + ":80"
            try await eventually("cluster2's client reaches both of cluster1's backends", timeout: .seconds(60)) {
                let report = try await lab.load(from: "client", context: "cluster2", ["--duration", "2", "--interval-ms", "20", address])
                return report.servedBy.count == 2 && report.failures == 0
            }

            let stopFile = lab.directory + "/stop-load"
            let (report, timings) = try await withThrowingTaskGroup(of: LoadReport?.self) { group in
                group.addTask {
                    try await lab.load(from: "client", context: "cluster2",
                                       ["--duration", "600", "--interval-ms", "10", "--timeout", "3", "--stop-file", stopFile, address])
                }
                try await Task.sleep(for: .seconds(2))
                var timings: [String: Duration] = [:]
                // A changed template, then `rollout restart`: each a full rolling update.
                var started = ContinuousClock.now
                try await lab.apply(Self.deployment(replicas: 2, version: "2"), context: "cluster1")
                try await lab.run(["rollout", "status", "deployment", "web", "--context", "cluster1", "--timeout", "4m"])
                timings["template change"] = ContinuousClock.now - started
                started = ContinuousClock.now
                try await lab.run(["rollout", "restart", "deployment", "web", "--context", "cluster1"])
                try await lab.run(["rollout", "status", "deployment", "web", "--context", "cluster1", "--timeout", "4m"])
                timings["rollout restart"] = ContinuousClock.now - started
                try await Task.sleep(for: .seconds(2))
                _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
                let report = try await group.next() ?? nil
                return (report, timings)
            }
            let load = try #require(report, "the load run printed no report")
            print("rolling update under load: \(load.requests) requests from cluster2 in \(String(format: "%.1f", load.seconds)) s, "
                  + "\(load.failures) failed; template change rolled out in \(timings["template change"] ?? .zero), "
                  + "rollout restart in \(timings["rollout restart"] ?? .zero); answered by \(load.servedBy.sorted { $0.key < $1.key })")
            #expect(load.failures == 0, "failed requests: \(load.failureDetails)")
            #expect(load.requests > 300, "the load ran throughout: \(load.requests) requests")
            #expect(load.servedBy.count >= 6, "three generations of two pods answered: \(load.servedBy)")
            let pods = try await lab.pods(context: "cluster1").filter { $0.name.hasPrefix("web-") }
            #expect(pods.count == 2 && pods.allSatisfy { $0.status == "Running" }, "\(pods.map { "\($0.name) \($0.status)" })")
        }
    }

    @Test("a terminating backend keeps its established connections (socket and packet path) while new connections go to the other one")
    func terminatingBackendKeepsConnections() async throws {
        try await CrossClusterIntegrationTests.mesh { lab in
            try await lab.apply(Self.service + Self.pod("web-a", node: "node1", preStop: 20, grace: 40), context: "cluster1")
            try await lab.apply(Self.service + DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper)
                                + DatapathIntegrationTests.pod("packet-client", node: "node1", command: DatapathIntegrationTests.sleeper),
                                context: "cluster2")
            let webA = try #require(try await lab.waitRunning(["web-a"], context: "cluster1")["web-a"]?.ip)
            try await lab.waitRunning(["client", "packet-client"], context: "cluster2")
            let address = try await lab.clusterIP("web", context: "cluster2") + ":80"
            try await eventually("cluster2's client reaches web-a", timeout: .seconds(60)) {
                try await lab.load(from: "client", context: "cluster2", ["--duration", "1", address]).servedBy.keys.contains("web-a")
            }

            // Two connections kept alive to web-a, the only backend: one chosen at the socket (a
            // process in the node's pod cgroup, as `meridian exec` runs), one DNATed per packet
            // with a service conntrack entry (a process in a pod's namespace outside the cgroup).
            // The packet-path client has a pod of its own: the kernel picks a socket-balanced
            // connection's source port against the backend's address and a packet-path one's
            // against the ClusterIP, so sharing a namespace with the many short connections
            // below could give both the same tuple at web-a, and web-a would reset the first.
            let state = try #require(lab.lab.loadState())
            let clientNamespace = "\(state.prefix)-c2-default.packet-client"
            let stopFile = lab.directory + "/stop-keepalive"
            let keepAlive = ["--keep-alive", "--interval-ms", "100", "--duration", "300", "--stop-file", stopFile, address]
            let reports = try await withThrowingTaskGroup(of: (String, LoadReport?).self) { group in
                group.addTask { ("socket", try await lab.load(from: "client", context: "cluster2", keepAlive)) }
                group.addTask {
                    let result = try await lab.host(["ip", "netns", "exec", clientNamespace, LabFixture.executable, "tool", "load"] + keepAlive)
                    return ("packet", try? JSONDecoder().decode(LoadReport.self, from: Data(result.stdout.utf8)))
                }
                try await Task.sleep(for: .seconds(2))

                try await lab.apply(Self.pod("web-b", node: "node2", preStop: 1, grace: 10), context: "cluster1")
                try await lab.waitRunning(["web-b"], context: "cluster1")
                try await eventually("cluster2 balances over web-a and web-b", timeout: .seconds(30)) {
                    try await lab.load(from: "client", context: "cluster2", ["--duration", "2", address]).servedBy.count == 2
                }
                let deleted = ContinuousClock.now
                try await lab.run(["delete", "pod", "web-a", "--context", "cluster1"])
                try await eventually("web-a shows Terminating") {
                    try await lab.pods(context: "cluster1").first { $0.name == "web-a" }?.status == "Terminating"
                }
                try await eventually("cluster2 sees web-a terminating", timeout: .seconds(10)) {
                    let list = try await lab.meridian(["service", "list", "--context", "cluster2"]).stdout
                    return list.split(separator: "\n").contains { $0.contains(webA) && $0.contains("terminating") }
                }
                print("deletion in cluster1 → web-a terminating in cluster2's service list after \(ContinuousClock.now - deleted)")
                let node = try #require(try lab.cluster("cluster2").nodes.first { $0.name == "node1" })
                let backends = try BPFMap<UInt32, mer_lb4_backend>(pinnedAt: node.pinDirectory + "/mer_lb4_be")
                let webAValue = try #require(IPAddress(webA)?.datapathValue)
                let flags = backends.entries().filter { $0.value.address == webAValue }.map(\.value.flags)
                #expect(flags == [UInt8(MER_BACKEND_TERMINATING)], "cluster2's node keeps web-a, flagged terminating: \(flags)")

                let fresh = try await lab.load(from: "client", context: "cluster2", ["--duration", "3", address])
                #expect(fresh.failures == 0 && fresh.servedBy.keys.sorted() == ["web-b"],
                        "new connections go to web-b only: \(fresh.servedBy) \(fresh.failureDetails)")
                try await Task.sleep(for: .seconds(1))
                _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
                var reports: [String: LoadReport] = [:]
                for try await (path, report) in group { reports[path] = report }
                return reports
            }
            for path in ["socket", "packet"] {
                let report = try #require(reports[path], "the \(path)-path client printed no report")
                print("\(path)-path keep-alive client: \(report.requests) requests on \(report.connections) connection(s), \(report.failures) failed")
                #expect(report.failures == 0 && report.connections == 1, "\(path): \(report.failureDetails)")
                #expect(report.servedBy.keys.sorted() == ["web-a"], "\(path): the established connection stays with web-a: \(report.servedBy)")
                #expect(report.requests > 50)
            }
            try await eventually("web-a is gone once its preStop and SIGTERM are over", timeout: .seconds(60)) {
                try await !lab.pods(context: "cluster1").contains { $0.name == "web-a" }
            }
            try await eventually("cluster2 no longer lists web-a") {
                !(try await lab.meridian(["service", "list", "--context", "cluster2"]).stdout.contains(webA))
            }
        }
    }
}

extension LabFixture {
    func apply(_ yaml: String, context: String) async throws {
        let result = try await meridian(["apply", "--context", context, "-f", "-"], stdin: yaml)
        try #require(result.status == 0, "apply to \(context) failed: \(result.stderr)")
    }

    func pods(context: String) async throws -> [PodRow] {
        let result = try await meridian(["get", "pods", "--context", context, "-o", "json"])
        try #require(result.status == 0, "get pods failed: \(result.stderr)")
        return try JSONDecoder().decode([PodRow].self, from: Data(result.stdout.utf8))
    }

    @discardableResult
    func waitRunning(_ names: [String], context: String, timeout: Duration = .seconds(60)) async throws -> [String: PodRow] {
        var found: [String: PodRow] = [:]
        try await eventually("pods \(names) running in \(context)", timeout: timeout) {
            found = Dictionary(try await pods(context: context).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            return names.allSatisfy { found[$0]?.status == "Running" && found[$0]?.ip != nil }
        }
        return found
    }

    func clusterIP(_ service: String, context: String) async throws -> String {
        let result = try await meridian(["get", "services", "--context", context, "-o", "json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        return try #require(rows.first { $0["name"] as? String == service }?["clusterIP"] as? String)
    }

    /// Runs `meridian tool load ARGS` in a pod (through `meridian exec`) and decodes its report.
    func load(from pod: String, context: String, _ arguments: [String]) async throws -> GracefulTerminationIntegrationTests.LoadReport {
        let result = try await meridian(["exec", "--context", context, pod, "--", "meridian", "tool", "load"] + arguments)
        try #require(result.status == 0, "tool load failed: \(result.stdout) \(result.stderr)")
        return try JSONDecoder().decode(GracefulTerminationIntegrationTests.LoadReport.self, from: Data(result.stdout.utf8))
    }
}
