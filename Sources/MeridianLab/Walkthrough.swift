import Foundation

/// The seed walkthrough of `meridian demo`, step by step, each step's result checked: the
/// real `meridian` commands a user would type, through a `LabDriver`, in a lab of its own: two
/// meshed clusters with two nodes each, a global Service answered from both, failover,
/// affinity, an unshared Service and a pod-to-pod call across clusters. It records what passed
/// and what it found, for the summary.
public struct Walkthrough: Sendable {
    public let driver: LabDriver
    public let calls: Int
    public private(set) var passed: [String] = []
    public private(set) var findings: [String] = []

    public init(driver: LabDriver, calls: Int) {
        self.driver = driver
        self.calls = calls
    }

    /// A step whose command failed or printed something unexpected, or a wait that ran out.
    public struct StepFailed: Error, CustomStringConvertible {
        public var description: String
    }

    public mutating func run() async throws {
        try await step("Bring up two clusters with two nodes each", ["lab", "up", "--clusters", "2", "--nodes", "2"])
        for name in ["cluster1", "cluster2"] {
            try await step("Enable ClusterMesh in \(name)", ["clustermesh", "enable", "--context", name])
        }
        try await step("Connect the clusters", ["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"]) {
            $0.contains("cluster1 <=> cluster2")
        }
        for name in ["cluster1", "cluster2"] {
            try await step("Wait until \(name) is connected to its peer and ready", ["clustermesh", "status", "--context", name, "--wait", "--wait-duration", "2m"]) {
                $0.contains("1/1 remote clusters ready")
            }
        }
        for name in ["cluster1", "cluster2"] {
            try await step("Deploy the backend (the built-in echo server on 8080) in \(name)", ["apply", "--context", name, "-f", "-"], stdin: Self.backend)
            try await step("Apply the seed's Service manifest verbatim in \(name)", ["apply", "--context", name, "-f", "-"], stdin: Self.seedService) {
                $0.contains("service/my-backend-service")
            }
        }
        try await step("Start a client pod in cluster1", ["apply", "--context", "cluster1", "-f", "-"], stdin: Self.client)
        try await waitFor("backends running in both clusters and the client in cluster1") {
            let cluster1 = try await self.driver.runningPodIPs("cluster1")
            let cluster2 = try await self.driver.runningPodIPs("cluster2")
            return cluster1.count == 3 && cluster2.count == 2
        }
        try await waitFor("cluster1's load balancer to list backends of both clusters") {
            let list = try await self.driver.run(["service", "list", "--context", "cluster1"]).output
            return list.contains("cluster1") && list.contains("cluster2")
        }
        try await step("cluster1's frontend and its backends in both clusters", ["service", "list", "--context", "cluster1"])

        let spread = try await callService("Call the global Service from cluster1 \(calls) times")
        guard (spread["cluster1"] ?? 0) > 0, (spread["cluster2"] ?? 0) > 0, spread["failed"] == nil else {
            throw StepFailed(description: "answers should come from both clusters without failures, got \(spread)")
        }
        findings.append("\(calls) calls to my-backend-service answered by " + Self.describe(spread))

        try await step("Failover: scale cluster1's backends to zero", ["scale", "deployment", "backend", "--replicas", "0", "--context", "cluster1"])
        let started = Date()
        // Converged once ten calls in a row land in cluster2 (the client's node no longer
        // offers cluster1's backends).
        try await waitFor("every call to land in cluster2") {
            let script = "for i in $(seq 10); do curl -s -m 2 \(Self.url) || echo FAILED; echo; done"
            let answer = try await self.driver.run(["exec", "--context", "cluster1", "client", "--", "sh", "-c", script])
            let lines = answer.output.split(separator: "\n").filter { !$0.isEmpty }
            return lines.count == 10 && lines.allSatisfy { $0.contains("\"cluster\":\"cluster2\"") }
        }
        let convergence = Date().timeIntervalSince(started)
        let failover = try await callService("After failover, call again \(calls) times")
        guard failover["cluster2"] == calls else { throw StepFailed(description: "after failover every call must land in cluster2 and succeed, got \(failover)") }
        findings.append(String(format: "failover: cluster1 scaled to zero, all calls served by cluster2 after %.1f s, then %d/%d succeeded", convergence, calls, calls))

        try await step("Scale cluster1's backends back to two", ["scale", "deployment", "backend", "--replicas", "2", "--context", "cluster1"])
        try await step("Set affinity local on cluster1's Service", ["apply", "--context", "cluster1", "-f", "-"],
                 stdin: Self.seedService.replacingOccurrences(of: "    io.cilium/global-service: \"true\"",
                                                              with: "    io.cilium/global-service: \"true\"\n    service.cilium.io/affinity: \"local\""))
        try await waitFor("local backends to be preferred") {
            let localBackends = try await self.driver.runningPodIPs("cluster1").keys.filter { $0.hasPrefix("backend-") }
            let list = try await self.driver.run(["service", "list", "--context", "cluster1"]).output
            return localBackends.count == 2 && !list.contains("cluster2")
        }
        let local = try await callService("With affinity local and healthy local backends, call \(calls) times")
        guard local["cluster1"] == calls else { throw StepFailed(description: "affinity local must keep every call in cluster1, got \(local)") }
        findings.append("affinity local: \(calls)/\(calls) calls stayed in cluster1")

        try await step("Back to affinity none in cluster1; mark cluster2's Service shared: \"false\"", ["apply", "--context", "cluster2", "-f", "-"],
                 stdin: Self.seedService.replacingOccurrences(of: "    io.cilium/global-service: \"true\"",
                                                              with: "    io.cilium/global-service: \"true\"\n    service.cilium.io/shared: \"false\""))
        try await step("cluster1's Service without affinity", ["apply", "--context", "cluster1", "-f", "-"], stdin: Self.seedService)
        try await waitFor("cluster2 to stop exporting its backends") {
            let services = try await self.driver.run(["get", "services", "--context", "cluster1", "--all-clusters"]).output
            let list = try await self.driver.run(["service", "list", "--context", "cluster1"]).output
            return !services.split(separator: "\n").contains { $0.contains("cluster2") && $0.contains("my-backend-service") }
                && !list.contains("cluster2")
        }
        let unshared = try await callService("With cluster2's Service unshared, call \(calls) times")
        guard unshared["cluster1"] == calls else { throw StepFailed(description: "an unshared Service must not receive cluster1's calls, got \(unshared)") }
        findings.append("shared: \"false\" in cluster2: it stopped exporting; \(calls)/\(calls) calls stayed in cluster1")

        let target = try await driver.runningPodIPs("cluster2").first { $0.key.hasPrefix("backend-") }
        guard let target else { throw StepFailed(description: "no backend pod in cluster2 to call") }
        try await step("Pod to pod across clusters: the cluster1 client calls \(target.key) at \(target.value) directly",
                 ["exec", "--context", "cluster1", "client", "--", "curl", "-s", "-m", "5", "http://\(target.value):8080/"]) {
            $0.contains("\"cluster\":\"cluster2\"") && $0.contains(target.key)
        }
        findings.append("pod-to-pod across clusters: cluster1/client reached cluster2/\(target.key) at \(target.value)")
        try await step("Flows of that call, from every node of both clusters",
                       ["observe", "--context", "cluster1", "--all-clusters", "--from-pod", "default/client", "--to-pod", "default/\(target.key)",
                        "--last", "4"]) {
            $0.contains("cluster1/default/client") && $0.contains("cluster2/default/\(target.key)") && $0.contains("FORWARDED")
        }
        findings.append("observe: the call's flows name cluster1/client and cluster2/\(target.key), FORWARDED")
        try await step("Mesh status of cluster1", ["clustermesh", "status", "--context", "cluster1"]) { $0.contains("ready") }
    }

    static let url = "http://my-backend-service.default.svc.cluster.local/"

    /// Calls the global Service `calls` times from the cluster1 client in one shell loop and
    /// counts the answering cluster of each call.
    mutating func callService(_ title: String) async throws -> [String: Int] {
        let script = "for i in $(seq \(calls)); do curl -s -m 3 \(Self.url) || echo FAILED; echo; done"
        let output = try await step(title, ["exec", "--context", "cluster1", "client", "--", "sh", "-c", script], echo: false)
        var counts: [String: Int] = [:]
        for line in output.split(separator: "\n") where !line.isEmpty {
            if let range = line.range(of: "\"cluster\":\""), let end = line[range.upperBound...].firstIndex(of: "\"") {
                counts[String(line[range.upperBound..<end]), default: 0] += 1
            } else {
                counts["failed", default: 0] += 1
            }
        }
        print("  answers: " + Self.describe(counts))
        return counts
    }

    static func describe(_ counts: [String: Int]) -> String {
        counts.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
    }

    @discardableResult
    mutating func step(_ title: String, _ arguments: [String], stdin: String? = nil, echo: Bool = true,
                       expect: (String) -> Bool = { _ in true }) async throws -> String {
        print("\n▶ \(title)\n$ meridian \(arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " "))")
        let result = try await driver.run(arguments, stdin: stdin)
        if echo { print(result.output, terminator: result.output.hasSuffix("\n") ? "" : "\n") }
        guard result.succeeded, expect(result.output) else {
            if !echo { print(result.output) }
            throw StepFailed(description: "step failed: \(title)")
        }
        passed.append(title)
        return result.output
    }

    func waitFor(_ what: String, timeout: Duration = .seconds(90), _ condition: () async throws -> Bool) async throws {
        print("\n… waiting for \(what)")
        do {
            try await LabDriver.waitUntil(what, timeout: timeout, interval: .milliseconds(300), condition)
        } catch let error as LabError {
            throw StepFailed(description: "\(error)")
        }
    }

    static let backend = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: backend
    spec:
      replicas: 2
      selector:
        matchLabels:
          app: backend
      template:
        metadata:
          labels:
            app: backend
        spec:
          containers:
          - name: echo
            command: ["meridian", "tool", "echo-server", "--port", "8080"]
            ports:
            - containerPort: 8080
    """

    static let client = """
    apiVersion: v1
    kind: Pod
    metadata:
      name: client
      labels:
        app: client
    spec:
      containers:
      - name: client
        command: ["sleep", "infinity"]
    """

    static let seedService = """
    apiVersion: v1
    kind: Service
    metadata:
      name: my-backend-service
      annotations:
        io.cilium/global-service: "true"
    spec:
      selector:
        app: backend
      ports:
        - port: 80
          targetPort: 8080
    """
}

