import Foundation
import MeridianAdmin
import MeridianLab

/// `meridian bench failover`: how long a global service takes to move a client's calls to the
/// other cluster when the preferred cluster's backends go away. A client in cluster1 calls the
/// service every 10 ms on a new connection while cluster1's deployment scales to zero; from the
/// client's timeline: the time from the scale command to the first answer from cluster2, and
/// the outage (first failed call to the first success after the last failure). Ordered
/// preference (`service.meridian.io/cluster-preference: cluster1,cluster2`) is measured against
/// Cilium's local affinity in the same run, on the same lab and pods.
public struct FailoverBenchmark: Sendable {
    public var runs = 3
    /// One run per row.
    public var quick = false
    /// Leave the lab up afterwards.
    public var keep = false

    public init() {}

    /// One way of preferring clusters, with its figures over the runs.
    public struct Row: Codable, Sendable {
        public var name: String
        public var what: String
        /// Scale-to-zero command → first answer from cluster2.
        public var failoverMilliseconds: SampleSummary
        /// First failed call → first success after the last failure (0 when no call failed).
        public var outageMilliseconds: SampleSummary
        public var failedCalls: SampleSummary
        /// Scale-back command → first answer from cluster1 again (a new pod's start included).
        public var failbackMilliseconds: SampleSummary
    }

    /// What `bench failover` prints: its rows and the ratio of ordered preference to local affinity.
    public struct Report: Codable, Sendable {
        public var runs: Int
        public var callIntervalMilliseconds: Int
        public var rows: [Row]
        public var ratios: [String: Double]
    }

    static let intervalMilliseconds = 10

    public func validate() throws(BenchError) {
        guard (1...20).contains(runs) else { throw .invalidOption("--runs must be 1...20") }
    }

    public func run() async throws -> Report {
        try validate()
        return try await BenchLab.with(clusters: 2, nodes: 1, keep: keep) { lab in try await measure(lab) }
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        let runCount = quick ? 1 : runs
        for cluster in ["cluster1", "cluster2"] {
            try await bench.mustRun(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "1"])
        }
        try await bench.mustRun(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"])
        try await bench.mustRun(["clustermesh", "status", "--context", "cluster1", "--wait", "--wait-duration", "60s"])
        try await bench.mustRun(["apply", "--context", "cluster2", "-f", "-"], stdin: LabWorkloads.globalWebService() + LabWorkloads.webDeployment("web-two", replicas: 2))
        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"],
                                stdin: LabWorkloads.globalWebService() + LabWorkloads.webDeployment("web-one", replicas: 2) + BenchLab.clientPod("client", node: "node1"))
        _ = try await bench.waitForPods(["client"], context: "cluster1")
        let address = try await bench.serviceIP("web", context: "cluster1") + ":80"
        let rows: [(String, String, [String: String])] = [
            ("affinity_local", "Cilium's service.cilium.io/affinity: local (baseline)", ["service.cilium.io/affinity": "local"]),
            ("preference_ordered", "service.meridian.io/cluster-preference: cluster1,cluster2", ["service.meridian.io/cluster-preference": "cluster1,cluster2"]),
        ]
        var results: [Row] = []
        for (name, what, annotations) in rows {
            try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"], stdin: LabWorkloads.globalWebService(annotations))
            var failovers: [Double] = [], outages: [Double] = [], failed: [Double] = [], failbacks: [Double] = []
            for run in 1...runCount {
                BenchLab.progress("\(name): run \(run)/\(runCount)…")
                try await waitAnswering(bench, address, only: "web-one-")
                let stopFile = bench.lab.directory + "/failover-stop"
                try? FileManager.default.removeItem(atPath: stopFile)
                let timeline = try await withThrowingTaskGroup(of: [Timeline.Entry]?.self) { group in
                    group.addTask {
                        let output = try await bench.mustRun(["exec", "--context", "cluster1", "client", "--", "meridian", "tool", "load", address,
                                                              "--interval-ms", "\(Self.intervalMilliseconds)", "--duration", "120", "--timeline",
                                                              "--stop-file", stopFile])
                        return try Timeline.entries(output)
                    }
                    try await Task.sleep(for: .seconds(2))
                    let scaledAt = Date().timeIntervalSince1970
                    try await bench.mustRun(["scale", "deployment", "web-one", "--replicas", "0", "--context", "cluster1"])
                    try await Task.sleep(for: .seconds(quick ? 5 : 8))
                    FileManager.default.createFile(atPath: stopFile, contents: nil)
                    var entries: [Timeline.Entry] = []
                    for try await result in group { entries = result ?? [] }
                    return (scaledAt, entries)
                }
                let figures = try Timeline.failover(after: timeline.0, timeline.1, fallback: "web-two-")
                failovers.append(figures.failover * 1000)
                outages.append(figures.outage * 1000)
                failed.append(Double(figures.failedCalls))
                let scaledBack = Date()
                try await bench.mustRun(["scale", "deployment", "web-one", "--replicas", "2", "--context", "cluster1"])
                try await waitAnswering(bench, address, only: "web-one-", seconds: 1)
                failbacks.append(Date().timeIntervalSince(scaledBack) * 1000)
            }
            results.append(Row(name: name, what: what, failoverMilliseconds: SampleSummary(failovers)!, outageMilliseconds: SampleSummary(outages)!,
                               failedCalls: SampleSummary(failed)!, failbackMilliseconds: SampleSummary(failbacks)!))
        }
        var ratios: [String: Double] = [:]
        if results.count == 2 {
            ratios["preference_ordered_vs_affinity_local_failover"] = results[1].failoverMilliseconds.p50 / max(results[0].failoverMilliseconds.p50, 1e-9)
        }
        return Report(runs: runCount, callIntervalMilliseconds: Self.intervalMilliseconds, rows: results, ratios: ratios)
    }

    /// Waits until a second of calls is answered by pods named `only`… alone.
    private func waitAnswering(_ bench: LabDriver, _ address: String, only prefix: String, seconds: Int = 1) async throws {
        try await LabDriver.waitUntil("calls answered by \(prefix)* only", timeout: .seconds(120)) {
            let output = try await bench.mustRun(["exec", "--context", "cluster1", "client", "--", "meridian", "tool", "load", address,
                                                  "--interval-ms", "20", "--duration", "\(seconds)", "--timeline"])
            let entries = try Timeline.entries(output)
            return !entries.isEmpty && entries.allSatisfy { $0.servedBy?.hasPrefix(prefix) == true }
        }
    }

    public static func text(_ report: Report) -> String {
        let rows = report.rows.map { row in
            [row.name, String(format: "%.0f", row.failoverMilliseconds.p50), String(format: "%.0f–%.0f", row.failoverMilliseconds.min, row.failoverMilliseconds.max),
             String(format: "%.0f", row.outageMilliseconds.p50), String(format: "%.0f", row.failedCalls.p50),
             String(format: "%.0f", row.failbackMilliseconds.p50), row.what]
        }
        var lines = ["Failover, \(report.runs) run(s) per row, a call every \(report.callIntervalMilliseconds) ms on a new connection (median, then min–max):",
                     Table(headers: ["ROW", "FAILOVER MS", "SPREAD", "OUTAGE MS", "FAILED CALLS", "FAILBACK MS", "WHAT"], rows: rows).render()]
        lines.append("Ratios (p50 / p50):")
        for (name, value) in report.ratios.sorted(by: { $0.key < $1.key }) { lines.append(String(format: "  %@ = %.3f", name, value)) }
        return lines.joined(separator: "\n")
    }
}

/// A `tool load --timeline` report, read: pure, so tests can feed it captured output.
enum Timeline {
    struct Entry: Decodable, Sendable {
        var at: Double
        var servedBy: String?
    }

    private struct Report: Decodable {
        var timeline: [Entry]?
    }

    static func entries(_ output: String) throws -> [Entry] {
        guard let data = output.split(separator: "\n").last.map({ Data($0.utf8) }),
              let report = try? JSONDecoder().decode(Report.self, from: data), let timeline = report.timeline else {
            throw BenchError.unreadableOutput(tool: "meridian tool load --timeline", target: "", output: String(output.suffix(500)))
        }
        return timeline
    }

    /// From the calls after `start` (Unix seconds): seconds to the first answer from a pod named
    /// `fallback`…, the outage (first failure to the first success after the last failure), and
    /// the failed calls.
    static func failover(after start: Double, _ entries: [Entry], fallback: String) throws -> (failover: Double, outage: Double, failedCalls: Int) {
        let after = entries.filter { $0.at >= start }
        guard let first = after.first(where: { $0.servedBy?.hasPrefix(fallback) == true }) else {
            throw BenchError.missing("an answer from \(fallback)* after the scale-down (calls after it: \(after.count))")
        }
        let failures = after.filter { $0.servedBy == nil }
        var outage = 0.0
        if let firstFailure = failures.first, let lastFailure = failures.last,
           let recovered = after.first(where: { $0.at > lastFailure.at && $0.servedBy != nil }) {
            outage = recovered.at - firstFailure.at
        }
        return (first.at - start, outage, failures.count)
    }
}
