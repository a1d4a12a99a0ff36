import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianLab
import MeridianStore

/// One backend change of a global service as the service grows: with S backends in cluster2,
/// the time from a new backend's pod status written in cluster2's store until cluster1's node
/// balances to it (exporter, slices, mesh import, agent merge, map write), against the same
/// change to a local service of S backends in cluster1 (its own agent only; a Service of its
/// own, since one frontend programs at most 16,384 backends). Backends are pod
/// records and Running statuses on a node that does not exist, so nothing but the control
/// planes and agents reacts; the time is read off the frontend's backend count in the node's
/// service map, one lookup per poll.
public struct LargeServiceBenchmark: Sendable {
    public var sizes = [1, 1_000, 10_000]
    /// Changes measured at each size and side.
    public var changes = 20
    public var quick = false
    public var keep = false

    public init() {}

    public struct Row: Codable, Sendable {
        public var backends: Int
        /// Slices cluster2 exports the service in (1: one record, as Cilium's).
        public var slices: Int
        /// The largest record cluster2 wrote for the service (the record or a slice), in bytes.
        public var largestRecordBytes: Int
        public var remoteMs: SampleSummary
        public var localMs: SampleSummary
    }

    public struct Report: Codable, Sendable {
        public var changes: Int
        public var rows: [Row]
        /// Remote p50 at the largest size over remote p50 at the smallest (1 is flat).
        public var ratios: [String: Double]
    }

    /// Addresses: cluster2's backends from 10.2.64.0, cluster1's from 10.1.64.0 (node pod CIDRs
    /// are the first /24s), 250 per /24.
    public static let maximumBackends = 48_000

    public func validate() throws(BenchError) {
        guard !sizes.isEmpty, sizes.allSatisfy({ (1...Self.maximumBackends).contains($0) }), sizes == sizes.sorted() else {
            throw .invalidOption("--sizes must be ascending, each between 1 and \(Self.maximumBackends)")
        }
        guard (1...200).contains(changes) else { throw .invalidOption("--changes must be between 1 and 200") }
    }

    public func run() async throws -> Report {
        try validate()
        return try await BenchLab.with(clusters: 2, nodes: 1, keep: keep) { try await measure($0) }
    }

    static func service(_ name: String, global: Bool) -> String {
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: \(name)
          annotations: {service.cilium.io/global: "\(global)"}
        spec:
          selector: {bench: \(name)}
          ports:
          - {name: http, port: 8080}
        ---

        """
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        let sizes = quick ? [1, 1_500] : self.sizes
        let changeCount = quick ? 5 : changes
        for cluster in ["cluster1", "cluster2"] {
            _ = try await bench.mustRun(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "2"])
        }
        _ = try await bench.mustRun(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"])
        _ = try await bench.mustRun(["clustermesh", "status", "--context", "cluster1", "--wait", "--wait-duration", "60s"])
        for cluster in ["cluster1", "cluster2"] {
            _ = try await bench.mustRun(["apply", "--context", cluster, "-f", "-"], stdin: Self.service("large", global: true))
        }
        _ = try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"], stdin: Self.service("large-local", global: false))
        guard let node = try bench.cluster("cluster1").nodes.first,
              let remoteFrontend = IPAddress(try await bench.serviceIP("large", context: "cluster1"))?.datapathValue,
              let localFrontend = IPAddress(try await bench.serviceIP("large-local", context: "cluster1"))?.datapathValue else {
            throw BenchError.missing("cluster1's node or the services' ClusterIPs")
        }
        let services = try BPFMap<mer_lb4_key, mer_lb4_service>(pinnedAt: node.pinDirectory + "/" + MER_MAP_SERVICES)
        func count(_ frontend: UInt32) -> Int {
            let key = mer_lb4_key(address: frontend, dport: UInt16(8080).bigEndian, backend_slot: 0, proto: 6, pad: (0, 0, 0))
            return Int((try? services.lookup(key))?.count ?? 0)
        }

        var rows: [Row] = []
        var placed = (remote: 0, local: 0)
        for size in sizes {
            BenchLab.progress("\(size) backend(s) on each side…")
            // Grow both sides to `size - 1`; each change then adds the size-th backend.
            try await Self.addBackends(bench, cluster: "cluster2", from: placed.remote, to: size - 1)
            try await Self.addBackends(bench, cluster: "cluster1", from: placed.local, to: size - 1)
            placed = (size - 1, size - 1)
            try await LabDriver.waitUntil("cluster1's node balances over \(size - 1) backends of each service", timeout: .seconds(300)) {
                count(remoteFrontend) == size - 1 && count(localFrontend) == size - 1
            }
            var remote: [Double] = []
            var local: [Double] = []
            for _ in 0..<changeCount {
                for (cluster, side) in [("cluster2", 0), ("cluster1", 1)] {
                    let frontend = side == 0 ? remoteFrontend : localFrontend
                    let before = count(frontend)
                    let index = side == 0 ? placed.remote : placed.local
                    let started = ContinuousClock.now
                    try await Self.addBackends(bench, cluster: cluster, from: index, to: index + 1)
                    let deadline = started + .seconds(60)
                    while count(frontend) <= before {
                        guard ContinuousClock.now < deadline else { throw BenchError.timedOut("a backend in \(cluster) did not reach cluster1's node in 60 s") }
                        try await Task.sleep(for: .microseconds(500))
                    }
                    let elapsed = (ContinuousClock.now - started).inMilliseconds
                    if side == 0 {
                        remote.append(elapsed)
                        placed.remote += 1
                    } else {
                        local.append(elapsed)
                        placed.local += 1
                    }
                }
            }
            let (slices, largest) = try await bench.withClient("cluster2") { client in
                let record = try await client.get(MeshKind.services.stateKey(cluster: "cluster2", name: "default/large"))
                let parts = try await client.list(prefix: MeshKind.serviceSlices.statePrefix(cluster: "cluster2") + "default/large/").items
                return (max(1, parts.count), ([record?.value.count ?? 0] + parts.map(\.value.count)).max() ?? 0)
            }
            guard let remoteSummary = SampleSummary(remote), let localSummary = SampleSummary(local) else { throw BenchError.miswired("no samples") }
            rows.append(Row(backends: size, slices: slices, largestRecordBytes: largest, remoteMs: remoteSummary, localMs: localSummary))
        }
        var ratios: [String: Double] = [:]
        if let first = rows.first, let last = rows.last {
            ratios["remote_p50_largest_vs_smallest"] = last.remoteMs.p50 / first.remoteMs.p50
            ratios["remote_vs_local_p50_largest"] = last.remoteMs.p50 / last.localMs.p50
        }
        return Report(changes: changeCount, rows: rows, ratios: ratios)
    }

    /// Pods `from..<to` of `cluster` selected by the service, Running on a node that does not
    /// exist, written in transactions of at most 1,000 pods.
    static func addBackends(_ bench: LabDriver, cluster: String, from: Int, to: Int) async throws {
        guard to > from else { return }
        let octet = cluster == "cluster1" ? 1 : 2
        let service = cluster == "cluster1" ? "large-local" : "large"
        try await bench.withClient(cluster) { client in
            for batch in stride(from: from, to: to, by: 1_000) {
                var puts: [(key: String, value: Data)] = []
                for index in batch..<min(to, batch + 1_000) {
                    let name = "\(service)-\(index)"
                    let pod = KubernetesObject.pod(Pod(
                        metadata: ObjectMeta(name: name, namespace: "default", labels: ["bench": service]),
                        spec: PodSpec(containers: [Container(name: "main", command: ["true"], ports: [])], nodeName: "bench-phantom")))
                    let ip = "10.\(octet).\(64 + index / 250).\(1 + index % 250)"
                    puts.append((ResourceStore.key(for: pod), StoreCoding.encode(pod)))
                    puts.append((KeyLayout.podStatus(namespace: "default", name: name),
                                 StoreCoding.encode(PodStatus(phase: .running, podIP: ip, nodeName: "bench-phantom"))))
                }
                try await client.commit(puts: puts)
            }
        }
    }

    public static func text(_ report: Report) -> String {
        var lines = ["One backend added to a global service of S backends per cluster, until cluster1's node balances to it (\(report.changes) changes per size):",
                     "  backends  slices  largest record  remote (cluster2 → cluster1) p50 / p90 / max  local (cluster1) p50 / p90 / max"]
        for row in report.rows {
            lines.append(String(format: "  %8d  %6d  %11d B  %8.1f / %6.1f / %6.1f ms  %8.1f / %6.1f / %6.1f ms", row.backends, row.slices, row.largestRecordBytes,
                                row.remoteMs.p50, row.remoteMs.p90, row.remoteMs.max, row.localMs.p50, row.localMs.p90, row.localMs.max))
        }
        for (name, value) in report.ratios.sorted(by: { $0.key < $1.key }) { lines.append(String(format: "  %@: %.2f", name, value)) }
        return lines.joined(separator: "\n")
    }
}
