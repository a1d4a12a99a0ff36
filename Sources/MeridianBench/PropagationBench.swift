import Foundation
import MeridianAdmin
import MeridianCore
import MeridianEtcd
import MeridianLab
import MeridianStore

/// Mesh propagation: a change written in cluster2's etcd until it is in cluster1's cache, against
/// the same write observed by a watch on the same etcd (the store's own floor). The lab is made
/// and meshed through the same library calls `clustermesh enable` and `connect` make; the
/// changes stand for what agents write into `cilium/state`.
public struct PropagationBenchmark: Sendable {
    /// Changes per measurement.
    public var changes = 1000
    public var quick = false

    public init() {}

    public struct Report: Codable, Sendable {
        public var changes: Int
        public var directWatchLatencyMs: SampleSummary
        public var meshPropagationLatencyMs: SampleSummary
        public var meshThroughputChangesPerSecond: Double
        public var directThroughputChangesPerSecond: Double
        public var ratios: [String: Double]
    }

    /// Each measurement's changes take distinct addresses from a block of 1,024.
    public static let maximumChanges = 1024

    public func validate() throws(BenchError) {
        guard (10...Self.maximumChanges).contains(changes) else {
            throw BenchError.invalidOption("--changes must be between 10 and \(Self.maximumChanges)")
        }
    }

    public func run() async throws -> Report {
        try validate()
        let count = quick ? 100 : changes
        return try await BenchLab.with(clusters: 2, nodes: 0) { try await measure($0, count: count) }
    }

    private func measure(_ bench: LabDriver, count: Int) async throws -> Report {
        // What `clustermesh enable` and `clustermesh connect --connection-mode unicast` do.
        let (cluster1, cluster2) = (try bench.context("cluster1"), try bench.context("cluster2"))
        for context in [cluster1, cluster2] { _ = try await ClusterMesh.enable(context, heartbeatInterval: 5, cacheTTL: 0) }
        _ = try await ClusterMesh.connect(cluster1, to: [cluster2], mode: .unicast, allowMismatchingCA: false)
        let ready = try await ClusterMesh.status(cluster1, wait: .seconds(30))
        guard ready.allReady else { throw BenchError.timedOut("cluster1 did not become ready for cluster2 in 30 s") }
        return try await withClients([cluster1, cluster2]) { clients in
            let (c1, c2) = (clients[0], clients[1])
            let state = MeshKind.endpoints.statePrefix(cluster: "cluster2")
            let cache = MeshKind.endpoints.cachePrefix(cluster: "cluster2")
            let direct = try await latencies(writer: c2, reader: c2, observedPrefix: state, count: count, tag: "d")
            let mesh = try await latencies(writer: c2, reader: c1, observedPrefix: cache, count: count, tag: "m")
            let directRate = try await throughput(writer: c2, reader: c2, observedPrefix: state, count: count, tag: "D")
            let meshRate = try await throughput(writer: c2, reader: c1, observedPrefix: cache, count: count, tag: "M")
            guard let directSummary = SampleSummary(direct), let meshSummary = SampleSummary(mesh) else { throw BenchError.miswired("no samples") }
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
            let start = try await reader.currentRevision() + 1
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
                try await writer.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: ip), Self.endpoint(ip: ip, index: index))
                while let key = await iterator.next(), !key.hasSuffix("/\(ip)") {}
                let elapsed = ContinuousClock.now - began
                samples.append(elapsed.inMilliseconds)
            }
            group.cancelAll()
            return samples
        }
    }

    /// All changes written back to back (16 in flight); changes per second until the last is seen.
    private func throughput(writer: EtcdClient, reader: EtcdClient, observedPrefix: String, count: Int, tag: String) async throws -> Double {
        let (arrivals, arrived) = AsyncStream<String>.makeStream()
        return try await withThrowingTaskGroup(of: Void.self, returning: Double.self) { group in
            let start = try await reader.currentRevision() + 1
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
                                try await writer.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: ip), Self.endpoint(ip: ip, index: index))
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
            let seconds = elapsed.inSeconds
            return Double(count) / seconds
        }
    }

    /// A distinct address per measurement (tag) and change (up to `maximumChanges`), inside
    /// cluster2's pod range.
    static func address(tag: String, index: Int) -> String {
        let block = ["d": 10, "m": 11, "D": 12, "M": 13][tag] ?? 14
        return "10.2.\(block * 4 + index / 256 % 4).\(index % 256)"
    }

    static func endpoint(ip: String, index: Int) -> String {
        "{\"IP\":\"\(ip)\",\"HostIP\":\"192.168.2.10\",\"ID\":\(131_073 + index % 1000),\"Key\":0,\"Metadata\":\"\",\"K8sNamespace\":\"default\",\"K8sPodName\":\"bench-\(index)\"}"
    }

    public static func text(_ report: Report) -> String {
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
