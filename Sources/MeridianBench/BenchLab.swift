import Foundation
import MeridianAdmin
import MeridianLab

/// What every benchmark shares: a lab of its own driven through the `meridian` binary (a
/// `LabDriver` with a directory, prefix and config file named after this process, removed
/// afterwards unless kept), the pods that carry the measuring tools, and progress on stderr.
public enum BenchLab {
    /// Brings up `clusters` × `nodes` under a fresh prefix, runs `body`, and removes the lab
    /// afterwards unless `keep`.
    static func with<R: Sendable>(clusters: Int, nodes: Int, keep: Bool = false, up extra: [String] = [],
                                  _ body: (LabDriver) async throws -> R) async throws -> R {
        let directory = "/tmp/meridian-bench-\(getpid())"
        let driver = LabDriver(directory: directory, prefix: "mbench\(getpid() % 100000)", executable: currentExecutable(),
                               configPath: directory + "/config.yaml")
        progress("bringing up \(clusters) cluster(s) × \(nodes) node(s)…")
        return try await LabDriver.with(driver, up: ["--clusters", "\(clusters)", "--nodes", "\(nodes)"] + extra, keep: keep, body)
    }

    /// Fails naming the first of `tools` that is not installed.
    static func require(_ tools: [String]) throws(BenchError) {
        for tool in tools where !onPath(tool) { throw .toolMissing(tool) }
    }

    static func onPath(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
        }
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
public enum BenchParsing {
    /// Gbit/s received, from iperf3's `-J` report.
    public static func iperfGbps(_ output: String) -> Double? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
              let bits = received["bits_per_second"] as? Double else { return nil }
        return bits / 1e9
    }

    /// Round trips per second from sockperf ping-pong's `[Total Run]` line.
    public static func sockperfRate(_ output: String) -> Double? {
        func number(after label: String) -> Double? {
            guard let range = output.range(of: label) else { return nil }
            return Double(output[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        guard let received = number(after: "ReceivedMessages="), let runtime = number(after: "RunTime="), runtime > 0 else { return nil }
        return received / runtime
    }

    /// wrk's `Requests/sec:`; nil when the run saw errors (non-2xx answers or socket errors).
    public static func wrkRate(_ output: String) -> Double? {
        guard !output.contains("Non-2xx"), !output.contains("Socket errors"), let range = output.range(of: "Requests/sec:") else { return nil }
        return Double(output[range.upperBound...].trimmingCharacters(in: .whitespaces).prefix { $0.isNumber || $0 == "." })
    }

    /// The samples of `tool connect-latency` (`connect-us: 51.2 48.9 ...`).
    public static func connectLatencies(_ output: String) -> [Double] {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("connect-us:") }) else { return [] }
        return line.dropFirst("connect-us:".count).split(separator: " ").compactMap { Double($0) }
    }
}

/// Why a benchmark could not measure, with what it was measuring.
public enum BenchError: Error, Sendable, CustomStringConvertible {
    case toolMissing(String)
    case invalidOption(String)
    case unreadableOutput(tool: String, target: String, output: String)
    case timedOut(String)
    case missing(String)
    case miswired(String)
    case mockFailed(name: String, reason: String, log: String)

    public var description: String {
        switch self {
        case let .toolMissing(tool): "\(tool) is not installed; run ./scripts/setup.sh"
        case let .invalidOption(message): message
        case let .unreadableOutput(tool, target, output): "\(tool) against \(target) failed or printed nothing readable: \(output.suffix(300))"
        case let .timedOut(what): "timed out: \(what)"
        case let .missing(what): "the bench lab has no \(what)"
        case let .miswired(what): what
        case let .mockFailed(name, reason, log): "mock etcd \(name) \(reason); see \(log)"
        }
    }
}
