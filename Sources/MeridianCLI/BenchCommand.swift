import ArgumentParser
import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianLab
import MeridianStore

/// `meridian bench ...`: measurements that print numbers, each against a baseline measured in the
/// same run. Not run by the test suite beyond a tiny size.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Meridian against baselines measured in the same run.",
        subcommands: [DatapathBench.self, ServicesBench.self, PolicyBench.self, ControlPlaneBench.self])
}

/// Mesh propagation: a change written in cluster2's etcd until it is in cluster1's cache, against
/// the same write observed by a watch on the same etcd (the store's own floor).
struct ControlPlaneBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controlplane", abstract: "Propagation latency and throughput of mesh import.")

    @Option(help: "Changes per measurement.") var changes: Int = 1000
    @Flag(help: "A small size (100 changes; with --scale 5 clusters × 10 nodes × 100 endpoints × 10 identities, churn 50/s for 10 s).")
    var quick = false
    @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text
    @Flag(help: "Scale run instead: cluster1 importing from many mocked remote clusters (time to ready, churn, CPU and memory).")
    var scale = false
    @Option(help: "With --scale: mocked remote clusters, 1...254 (default 250).") var clusters: Int?
    @Option(help: "With --scale: nodes per mocked cluster (default 100).") var nodes: Int?
    @Option(help: "With --scale: endpoints per mocked cluster (default 1000).") var endpoints: Int?
    @Option(help: "With --scale: identities per mocked cluster (default 100).") var identities: Int?
    @Option(help: "With --scale: endpoint updates per second across all mocks; 0 skips the churn (default 325).") var churn: Int?
    @Option(help: "With --scale: seconds of churn (default 30).") var churnSeconds: Int?
    @Option(help: "With --scale: seconds to wait for every remote to be ready (default 600, 120 with --quick).") var syncTimeout: Int?

    /// `--quick` or issue 6's sizes, each overridden by its option when given.
    var scaleSizes: ScaleSizes {
        var sizes = quick ? ScaleSizes.quick : ScaleSizes.issue
        if let clusters { sizes.clusters = clusters }
        if let nodes { sizes.nodesPerCluster = nodes }
        if let endpoints { sizes.endpointsPerCluster = endpoints }
        if let identities { sizes.identitiesPerCluster = identities }
        if let churn { sizes.churnPerSecond = churn }
        if let churnSeconds { sizes.churnSeconds = churnSeconds }
        return sizes
    }

    func validate() throws {
        if scale {
            try scaleSizes.validate()
            if let syncTimeout, syncTimeout < 10 { throw ValidationError("--sync-timeout must be at least 10 seconds") }
            return
        }
        let scaleOnly = [("--clusters", clusters), ("--nodes", nodes), ("--endpoints", endpoints), ("--identities", identities),
                         ("--churn", churn), ("--churn-seconds", churnSeconds), ("--sync-timeout", syncTimeout)]
            .filter { $0.1 != nil }.map(\.0)
        guard scaleOnly.isEmpty else {
            throw ValidationError("\(scaleOnly.joined(separator: ", ")) only \(scaleOnly.count == 1 ? "applies" : "apply") with --scale")
        }
        guard changes >= 10 else { throw ValidationError("--changes must be at least 10") }
    }

    struct Report: Codable {
        var changes: Int
        var directWatchLatencyMs: SampleSummary
        var meshPropagationLatencyMs: SampleSummary
        var meshThroughputChangesPerSecond: Double
        var directThroughputChangesPerSecond: Double
        var ratios: [String: Double]
    }

    func run() async throws {
        if scale {
            try await reportingErrors {
                let bench = ScaleBench(sizes: scaleSizes, syncTimeout: .seconds(syncTimeout ?? (quick ? 120 : 600)))
                let report = try await bench.run()
                print(output == .json ? MeshRows.encode(report) : ScaleBench.text(report))
            }
            return
        }
        try await reportingErrors {
            let count = quick ? 100 : changes
            let directory = "/tmp/meridian-bench-\(getpid())"
            let lab = Lab(directory: directory, executable: currentExecutable())
            do {
                let report = try await measure(lab: lab, count: count)
                await lab.down()
                print(output == .json ? Self.json(report) : Self.text(report))
            } catch {
                await lab.down()
                throw error
            }
        }
    }

    private func measure(lab: Lab, count: Int) async throws -> Report {
        let state = try await lab.up(clusters: 2)
        let configs = state.clusters.map { MeridianContext(labCluster: $0, lab: nil) }
        return try await withClients(configs) { clients in
            let (c1, c2) = (clients[0], clients[1])
            let infos = try await [ClusterAccessInfo.load(configs[0], client: c1), ClusterAccessInfo.load(configs[1], client: c2)]
            for client in clients {
                try await client.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true, heartbeatIntervalSeconds: 5)))
            }
            for (index, client) in clients.enumerated() {
                try await ClusterAccess.createRemoteRole(client, cluster: infos[index].settings.name)
            }
            try await ClusterMeshOperations.grantImport(importer: infos[0], importerClient: c1, exporter: infos[1], exporterClient: c2)
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                let status = try await c1.get(KeyLayout.remoteStatus("cluster2"))
                    .map { try StoreCoding.decode(RemoteClusterStatus.self, from: $0.value, key: $0.key) }
                if status?.ready == true { break }
                guard ContinuousClock.now < deadline else { throw CLIError("cluster1 did not become ready for cluster2 in 30 s") }
                try await Task.sleep(for: .milliseconds(100))
            }
            let direct = try await latencies(writer: c2, reader: c2, observedPrefix: "cilium/state/ip/v1/default/", count: count, tag: "d")
            let mesh = try await latencies(writer: c2, reader: c1, observedPrefix: "cilium/cache/ip/v1/cluster2/", count: count, tag: "m")
            let directRate = try await throughput(writer: c2, reader: c2, observedPrefix: "cilium/state/ip/v1/default/", count: count, tag: "D")
            let meshRate = try await throughput(writer: c2, reader: c1, observedPrefix: "cilium/cache/ip/v1/cluster2/", count: count, tag: "M")
            guard let directSummary = SampleSummary(direct), let meshSummary = SampleSummary(mesh) else { throw CLIError("no samples") }
            return Report(
                changes: count, directWatchLatencyMs: directSummary, meshPropagationLatencyMs: meshSummary,
                meshThroughputChangesPerSecond: meshRate, directThroughputChangesPerSecond: directRate,
                ratios: [
                    "mesh_vs_direct_watch_latency_p50": meshSummary.p50 / directSummary.p50,
                    "mesh_vs_direct_watch_latency_p99": meshSummary.p99 / directSummary.p99,
                    "mesh_vs_direct_throughput": meshRate / directRate,
                ])
        }
    }

    /// One change at a time: the time from issuing the put until the watcher on `reader` sees it.
    private func latencies(writer: EtcdClient, reader: EtcdClient, observedPrefix: String, count: Int, tag: String) async throws -> [Double] {
        let (arrivals, arrived) = AsyncStream<String>.makeStream()
        return try await withThrowingTaskGroup(of: Void.self, returning: [Double].self) { group in
            let start = try await reader.status().revision + 1
            group.addTask {
                try await reader.watch(prefix: observedPrefix, startRevision: start) { events, _ in
                    for case let .put(kv) in events { arrived.yield(kv.key) }
                }
            }
            var samples: [Double] = []
            var iterator = arrivals.makeAsyncIterator()
            for index in 0..<count {
                let ip = Self.address(tag: tag, index: index)
                let began = ContinuousClock.now
                try await writer.put("cilium/state/ip/v1/default/\(ip)", Self.endpoint(ip: ip, index: index))
                while let key = await iterator.next(), !key.hasSuffix("/\(ip)") {}
                let elapsed = ContinuousClock.now - began
                samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            }
            group.cancelAll()
            return samples
        }
    }

    /// All changes written back to back (16 in flight); changes per second until the last is seen.
    private func throughput(writer: EtcdClient, reader: EtcdClient, observedPrefix: String, count: Int, tag: String) async throws -> Double {
        let (arrivals, arrived) = AsyncStream<String>.makeStream()
        return try await withThrowingTaskGroup(of: Void.self, returning: Double.self) { group in
            let start = try await reader.status().revision + 1
            group.addTask {
                try await reader.watch(prefix: observedPrefix, startRevision: start) { events, _ in
                    for case let .put(kv) in events { arrived.yield(kv.key) }
                }
            }
            let began = ContinuousClock.now
            group.addTask {
                try await withThrowingTaskGroup { writers in
                    for lane in 0..<16 {
                        writers.addTask {
                            for index in stride(from: lane, to: count, by: 16) {
                                let ip = Self.address(tag: tag, index: index)
                                try await writer.put("cilium/state/ip/v1/default/\(ip)", Self.endpoint(ip: ip, index: index))
                            }
                        }
                    }
                    try await writers.waitForAll()
                }
            }
            var seen = Set<String>()
            for await key in arrivals {
                seen.insert(key)
                if seen.count == count { break }
            }
            let elapsed = ContinuousClock.now - began
            group.cancelAll()
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            return Double(count) / seconds
        }
    }

    /// A distinct address per measurement (tag) and change, inside cluster2's identity range.
    static func address(tag: String, index: Int) -> String {
        let block = ["d": 10, "m": 11, "D": 12, "M": 13][tag] ?? 14
        return "10.2.\(block * 4 + index / 256 % 4).\(index % 256)"
    }

    static func endpoint(ip: String, index: Int) -> String {
        "{\"IP\":\"\(ip)\",\"HostIP\":\"192.168.2.10\",\"ID\":\(131_073 + index % 1000),\"Key\":0,\"Metadata\":\"\",\"K8sNamespace\":\"default\",\"K8sPodName\":\"bench-\(index)\"}"
    }

    static func json(_ report: Report) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! encoder.encode(report), as: UTF8.self)
    }

    static func text(_ report: Report) -> String {
        func label(_ name: String) -> String { name.padding(toLength: 46, withPad: " ", startingAt: 0) }
        func row(_ name: String, _ s: SampleSummary) -> String {
            label(name) + String(format: "p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms", s.p50, s.p90, s.p99, s.max)
        }
        return [
            "Control-plane propagation, \(report.changes) changes each (2 clusters, real etcd over mTLS)",
            row("baseline: put -> watch on the same etcd", report.directWatchLatencyMs),
            row("mesh: put in cluster2 -> cluster1's cache", report.meshPropagationLatencyMs),
            label("baseline throughput (16 writers)") + String(format: "%.0f changes/s", report.directThroughputChangesPerSecond),
            label("mesh throughput (16 writers)") + String(format: "%.0f changes/s", report.meshThroughputChangesPerSecond),
            String(format: "ratios: latency p50 %.2fx, p99 %.2fx, throughput %.2fx of baseline",
                   report.ratios["mesh_vs_direct_watch_latency_p50"] ?? 0, report.ratios["mesh_vs_direct_watch_latency_p99"] ?? 0,
                   report.ratios["mesh_vs_direct_throughput"] ?? 0),
        ].joined(separator: "\n")
    }
}
