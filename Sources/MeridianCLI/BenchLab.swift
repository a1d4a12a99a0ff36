import Foundation
import MeridianAgent
import MeridianDatapath
import MeridianEtcd
import MeridianLab
import MeridianStore

/// A lab brought up for one benchmark: its own prefix and directory, contexts in its own config
/// file, and the `meridian` commands run against it. Torn down whatever happens.
struct BenchLab {
    let lab: Lab
    let prefix: String
    let state: LabState
    let environment: [String: String]

    /// Brings up `clusters` × `nodes` under a fresh prefix, runs `body`, and removes the lab
    /// afterwards unless `keep`.
    static func with<R>(clusters: Int, nodes: Int, keep: Bool = false, _ body: (BenchLab) async throws -> R) async throws -> R {
        let directory = "/tmp/meridian-bench-\(getpid())"
        let prefix = "mbench\(getpid() % 100000)"
        setenv("MERIDIAN_LAB_PREFIX", prefix, 1)
        let lab = Lab(directory: directory, executable: currentExecutable())
        do {
            FileHandle.standardError.write(Data("bench: bringing up \(clusters) cluster(s) × \(nodes) node(s)…\n".utf8))
            let state = try await lab.up(clusters: clusters, nodes: nodes)
            var environment = ProcessInfo.processInfo.environment
            environment["MERIDIAN_LAB_DIR"] = lab.directory
            environment["MERIDIAN_CONFIG"] = lab.directory + "/config.yaml"
            var config = MeridianConfig()
            for cluster in state.clusters { config.upsert(MeridianContext(labCluster: cluster, lab: lab.directory)) }
            try config.save(to: lab.directory + "/config.yaml")
            let result = try await body(BenchLab(lab: lab, prefix: prefix, state: state, environment: environment))
            if !keep { await lab.down(prefix: prefix) }
            return result
        } catch {
            if !keep { await lab.down(prefix: prefix) }
            throw error
        }
    }

    /// Runs `meridian ARGUMENTS` against the lab's config; fails with its output.
    @discardableResult
    func meridian(_ arguments: [String], stdin: String? = nil) throws -> String {
        let (status, output) = try DemoCommand.runChild(currentExecutable(), arguments, environment: environment, stdin: stdin)
        guard status == 0 else { throw CLIError("meridian \(arguments.prefix(4).joined(separator: " ")) failed: \(output.suffix(2000))") }
        return output
    }

    /// Waits until the pods run and returns their addresses.
    func waitForPods(_ names: [String], context: String) async throws -> [String: String] {
        var ips: [String: String] = [:]
        try await Self.waitUntil("pods \(names) running in \(context)") {
            let output = try meridian(["get", "pods", "--context", context, "-o", "json"])
            let rows = (try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]) ?? []
            for row in rows where row["status"] as? String == "Running" {
                if let name = row["name"] as? String, let ip = row["ip"] as? String { ips[name] = ip }
            }
            return names.allSatisfy { ips[$0] != nil }
        }
        try await Task.sleep(for: .milliseconds(500)) // let the servers bind
        return ips
    }

    func serviceIP(_ name: String, context: String) throws -> String {
        let output = try meridian(["get", "services", "--context", context, "-o", "json"])
        let rows = (try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]) ?? []
        guard let ip = rows.first(where: { $0["name"] as? String == name })?["clusterIP"] as? String else {
            throw CLIError("service \(name) has no ClusterIP")
        }
        return ip
    }

    /// Where a tool runs as a process of a pod of `cluster` (1-based ID) on `node` would: in
    /// the pod's network namespace and the node's pod cgroup.
    func podPlace(cluster: Int, node: String, namespace: String = "default", pod: String) throws -> ToolPlace {
        guard let labNode = state.clusters.first(where: { $0.id == cluster })?.nodes.first(where: { $0.name == node }) else {
            throw CLIError("the bench lab has no node \(node) in cluster \(cluster)")
        }
        return ToolPlace(namespace: PodNaming.networkNamespace(prefix: "\(prefix)-c\(cluster)", namespace: namespace, pod: pod),
                         cgroup: lab.cgroup(of: labNode))
    }

    func withClient<R: Sendable>(_ cluster: String, _ body: (EtcdClient) async throws -> R) async throws -> R {
        guard let labCluster = state.cluster(cluster) else { throw CLIError("the bench lab has no \(cluster)") }
        return try await EtcdClient.withClient(try MeridianContext(labCluster: labCluster, lab: nil).clientConfiguration(), body)
    }

    static func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIError("timed out waiting for \(what)")
    }

    /// A pod running the three measuring servers: iperf3, sockperf (TCP 11111) and the echo server (8080).
    static func serverPod(_ name: String, node: String, labels: [String: String]) -> String {
        pod(name, node: node, labels: labels, containers: [
            #"{name: iperf, command: ["iperf3", "-s"]}"#,
            #"{name: sockperf, command: ["sockperf", "sr", "--tcp", "-p", "11111"]}"#,
            #"{name: http, command: ["meridian", "tool", "echo-server", "--port", "8080"]}"#,
        ])
    }

    /// A pod that only sleeps, to run clients in.
    static func clientPod(_ name: String, node: String, labels: [String: String] = [:]) -> String {
        pod(name, node: node, labels: labels, containers: [#"{name: main, command: ["sleep", "infinity"]}"#])
    }

    private static func pod(_ name: String, node: String, labels: [String: String], containers: [String]) -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: \(name)
          labels: {\(labels.sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", "))}
        spec:
          nodeName: \(node)
          containers:
        \(containers.map { "  - " + $0 }.joined(separator: "\n"))
        ---

        """
    }

    static func progress(_ text: String) {
        FileHandle.standardError.write(Data("bench: \(text)\n".utf8))
    }
}

/// Reading the measuring tools' reports; pure, so tests can feed them captured output.
enum BenchParsing {
    /// Gbit/s received, from iperf3's `-J` report.
    static func iperfGbps(_ output: String) -> Double? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
              let bits = received["bits_per_second"] as? Double else { return nil }
        return bits / 1e9
    }

    /// Round trips per second from sockperf ping-pong's `[Total Run]` line.
    static func sockperfRate(_ output: String) -> Double? {
        func number(after label: String) -> Double? {
            guard let range = output.range(of: label) else { return nil }
            return Double(output[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        guard let received = number(after: "ReceivedMessages="), let runtime = number(after: "RunTime="), runtime > 0 else { return nil }
        return received / runtime
    }

    /// wrk's `Requests/sec:`; nil when the run saw errors (non-2xx answers or socket errors).
    static func wrkRate(_ output: String) -> Double? {
        guard !output.contains("Non-2xx"), !output.contains("Socket errors"), let range = output.range(of: "Requests/sec:") else { return nil }
        return Double(output[range.upperBound...].trimmingCharacters(in: .whitespaces).prefix { $0.isNumber || $0 == "." })
    }

    /// The samples of `tool connect-latency` (`connect-us: 51.2 48.9 ...`).
    static func connectLatencies(_ output: String) -> [Double] {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("connect-us:") }) else { return [] }
        return line.dropFirst("connect-us:".count).split(separator: " ").compactMap { Double($0) }
    }
}
