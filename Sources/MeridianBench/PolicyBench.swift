import Foundation
import CMeridianBPF
import MeridianCore
import MeridianDatapath
import MeridianTestSupport
import MeridianEtcd
import MeridianStore
import MeridianLab
import MeridianAdmin

/// `meridian bench policy`: throughput, request rate and connection rate between two pods on
/// different nodes with no policy, with one allow rule, and with that rule among thousands of
/// others selecting the same server, plus how long the large set takes to reach the maps.
/// Policy is decided by hash and trie lookups on a connection's first packet, so the
/// connection rate is where a per-rule cost would show.
public struct PolicyBenchmark: Sendable {
    public var runs = 3
    public var seconds = 5
    /// Rules in the large set.
    public var rules = 10_000
    /// A small size: 1 run of 2 s per row, 1,000 rules.
    public var quick = false
    public var keep = false
    /// Only the kernel's policy decision cost (no lab).
    public var lookupOnly = false

    public init() {}

    public struct Report: Codable, Sendable {
        public var runs: Int
        public var secondsPerRun: Int
        public var rules: Int
        public var rows: [DatapathBenchmark.Row]
        /// From applying the large set until the server's node reports it programmed.
        public var programSeconds: Double
        public var serverIngressEntries: Int
        /// Kernel time per first packet of a connection at `to_pod` as the policy map grows.
        public var lookup: [PolicyLookupBench.Point]
        public var ratios: [String: Double]
    }

    public func validate() throws(BenchError) {
        guard runs >= 1, seconds >= 1, (1...20_000).contains(rules) else {
            throw .invalidOption("--runs and --seconds must be at least 1, --rules 1...20000")
        }
    }

    public func run() async throws -> Report {
        try validate()
        try BenchLab.require(["iperf3", "sockperf", "wrk"])
        BenchLab.progress("policy decision cost in the kernel (BPF_PROG_TEST_RUN)…")
        let lookup = try PolicyLookupBench.measure(sizes: quick ? [1, 10_000] : [1, 1000, 10_000, 100_000])
        var report = lookupOnly
            ? Report(runs: 0, secondsPerRun: 0, rules: 0, rows: [], programSeconds: 0, serverIngressEntries: 0, lookup: [], ratios: [:])
            : try await BenchLab.with(clusters: 1, nodes: 2, keep: keep) { try await measure($0) }
        report.lookup = lookup
        if let first = lookup.first, let last = lookup.last, first.entries != last.entries {
            report.ratios["lookup_\(last.entries)_vs_\(first.entries)_entries_ns_per_packet"] =
                last.nanosecondsPerPacket.p50 / max(first.nanosecondsPerPacket.p50, 1e-9)
        }
        return report
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        let runCount = quick ? 1 : runs
        let duration = quick ? 2 : seconds
        let ruleCount = quick ? 1000 : rules
        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"],
                                 stdin: BenchLab.clientPod("client", node: "node1", labels: ["bench": "client"])
                               + BenchLab.serverPod("server", node: "node2", labels: ["bench": "server"]))
        let ips = try await bench.waitForPods(["client", "server"], context: "cluster1")
        let client = try bench.podPlace(clusterID: 1, node: "node1", pod: "client")
        let server = ips["server"]!
        var rows: [DatapathBenchmark.Row] = []
        rows.append(try await DatapathBenchmark.measureRow(name: "no_policy", what: "pod to pod across nodes, no policy selects either pod",
                                                       place: client, address: server, runs: runCount, seconds: duration))
        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"], stdin: Self.allowPolicy(
            name: "bench-allow", subject: ["bench": "server"], direction: .ingress, peer: ["bench": "client"], cluster: "cluster1"))
        try await Self.waitEnforced([("cluster1", "server", .ingress, 1)], bench: bench)
        rows.append(try await DatapathBenchmark.measureRow(name: "rules_1", what: "the same, the server's ingress enforced with one allow rule",
                                                       place: client, address: server, runs: runCount, seconds: duration))

        BenchLab.progress("programming \(ruleCount) more rules…")
        let started = ContinuousClock.now
        for (index, chunk) in stride(from: 0, to: ruleCount, by: 1000).enumerated() {
            try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"],
                                     stdin: Self.extraRules(name: "bench-extra-\(index)", ports: chunk..<min(chunk + 1000, ruleCount)))
        }
        let entries = try await Self.waitEnforced([("cluster1", "server", .ingress, ruleCount)], bench: bench, timeout: .seconds(300))
        let elapsed = ContinuousClock.now - started
        let programSeconds = elapsed.inSeconds
        rows.append(try await DatapathBenchmark.measureRow(
            name: "rules_\(ruleCount)", what: "the same with \(ruleCount) more rules selecting the server (\(entries) ingress entries)",
            place: client, address: server, runs: runCount, seconds: duration))

        let ratios = DatapathBenchmark.Row.ratios(rows, [("rules_\(ruleCount)", "rules_1"), ("rules_1", "no_policy")])
        return Report(runs: runCount, secondsPerRun: duration, rules: ruleCount, rows: rows, programSeconds: programSeconds,
                      serverIngressEntries: entries, lookup: [], ratios: ratios)
    }

    /// A CiliumNetworkPolicy allowing the bench ports (iperf3 5201, sockperf 11111, HTTP 8080)
    /// between `subject` and `peer` (in `cluster`) in one direction.
    static func allowPolicy(name: String, subject: [String: String], direction: TrafficDirection, peer: [String: String], cluster: String) -> String {
        let labels = { (set: [String: String]) in set.sorted { $0.key < $1.key }.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", ") }
        let peerKey = direction == .ingress ? "fromEndpoints" : "toEndpoints"
        return """
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: \(name)}
            spec:
              endpointSelector: {matchLabels: {\(labels(subject))}}
              \(direction.rawValue):
              - \(peerKey): [{matchLabels: {\(labels(peer)), io.cilium.k8s.policy.cluster: \(cluster)}}]
                toPorts: [{ports: [{port: "5201", protocol: TCP}, {port: "11111", protocol: TCP}, {port: "8080", protocol: TCP}]}]
            ---

            """
    }

    /// One policy object with a rule per port (20000 + index), each allowing the client.
    static func extraRules(name: String, ports: Range<Int>) -> String {
        var text = """
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: \(name)}
            spec:
              endpointSelector: {matchLabels: {bench: server}}
              ingress:

            """
        for index in ports {
            text += "  - fromEndpoints: [{matchLabels: {bench: client}}]\n    toPorts: [{ports: [{port: \"\(20000 + index)\", protocol: TCP}]}]\n"
        }
        return text
    }

    /// Waits until each (cluster, pod, direction, minimum entries) is enforced as its node
    /// reports (or, with `enforced` false, no longer enforced); returns the largest entry count seen.
    @discardableResult
    static func waitEnforced(_ pods: [(String, String, TrafficDirection, Int)], bench: LabDriver, enforced wanted: Bool = true,
                             timeout: Duration = .seconds(60)) async throws -> Int {
        var largest = 0
        try await LabDriver.waitUntil("policy programmed for \(pods.map { "\($0.0)/\($0.1)" })", timeout: timeout) {
            for (cluster, pod, direction, minimum) in pods {
                let statuses = try await bench.withClient(cluster) { client in
                    try await client.list(prefix: KeyLayout.nodeStatusPrefix).items.map {
                        try StoreCoding.decode(NodePolicyStatus.self, from: $0.value, key: $0.key)
                    }
                }
                guard let endpoint = statuses.flatMap(\.endpoints).first(where: { $0.pod == pod }) else { return false }
                let (enforced, entries) = direction == .ingress
                    ? (endpoint.ingressEnforced, endpoint.ingressEntries) : (endpoint.egressEnforced, endpoint.egressEntries)
                guard wanted ? enforced && entries >= minimum : !enforced else { return false }
                largest = max(largest, entries)
            }
            return true
        }
        return largest
    }

    public static func text(_ report: Report) -> String {
        var lines = report.rows.isEmpty ? [] : [DatapathBenchmark.text(DatapathBenchmark.Report(runs: report.runs, secondsPerRun: report.secondsPerRun, rows: report.rows,
                                                             backendPropagationMs: nil, ratios: [:]))
                        .split(separator: "\n").dropLast().joined(separator: "\n")]
        if !report.rows.isEmpty {
            lines.append(String(format: "%d rules applied and programmed in %.1f s (%d ingress entries on the server).",
                                report.rules, report.programSeconds, report.serverIngressEntries))
        }
        lines.append("Policy decision in to_pod (kernel time per connection's first packet, 5 × 200,000 runs):")
        lines.append(Table(headers: ["ENTRIES", "NS/PACKET", "SPREAD"], rows: report.lookup.map {
            ["\($0.entries)", String(format: "%.0f", $0.nanosecondsPerPacket.p50),
             String(format: "%.0f–%.0f", $0.nanosecondsPerPacket.min, $0.nanosecondsPerPacket.max)]
        }).render())
        lines.append("Ratios (p50 / p50):")
        for (name, value) in report.ratios.sorted(by: { $0.key < $1.key }) { lines.append(String(format: "  %@ = %.3f", name, value)) }
        return lines.joined(separator: "\n")
    }
}

/// The per-packet cost of an ingress policy decision in the kernel, as the endpoint's policy map
/// grows: the `to_pod` program run with BPF_PROG_TEST_RUN (the kernel times `repeat` runs) over
/// a connection's first packet that no entry allows, so every run does the full decision
/// (endpoint, conntrack miss, ipcache, the exact and the any-identity policy lookups, the drop and
/// its event) and none leaves state behind. Uses a private bpffs; nothing is attached. It writes
/// the scratch datapath's maps itself, as the program tests do: the agent's writer is not what
/// it measures, and no agent runs there.
public enum PolicyLookupBench {
    public struct Point: Codable, Sendable {
        public var entries: Int
        public var nanosecondsPerPacket: SampleSummary
    }

    static let server = "10.1.1.5"
    static let serverIdentity: UInt32 = (1 << 16) | 300
    static let client = "10.1.2.50"
    static let clientIdentity: UInt32 = (1 << 16) | 400

    static func measure(sizes: [Int], repeats: UInt32 = 200_000, samples: Int = 5) throws -> [Point] {
        let scratch = try ScratchDatapath(prefix: "mbench\(getpid() % 100000)")
        let datapath = scratch.datapath
        try datapath.config.update(0, mer_config(vxlan_ifindex: 1, node_ip: IPAddress("172.30.1.1")!.datapathValue!,
                                                 gateway_ip: IPAddress("10.1.1.1")!.datapathValue!, cluster_id: 1, flags: 0,
                                                 identity_cluster_shift: 16))
        var info = mer_endpoint_info()
        info.ifindex = 1
        info.identity = serverIdentity
        info.endpoint_id = 1
        info.flags = UInt16(MER_ENDPOINT_F_INGRESS_ENFORCED)
        try datapath.endpoints.update(mer_endpoint_key(ip4: IPAddress(server)!.datapathValue!), info)
        var route = mer_ipcache_value()
        route.identity = clientIdentity
        try datapath.ipcache.update(mer_ipcache_key(prefixlen: 32, ip4: IPAddress(client)!.datapathValue!), route)
        let probe = CraftedFrames.tcp(src: client, dst: server, sport: 40000, dport: 7, flags: .syn)
        var points: [Point] = []
        var programmed = 0
        for size in sizes.sorted() {
            while programmed < size {
                var key = mer_policy_key()
                key.prefixlen = UInt32(MER_POLICY_STATIC_PREFIX) + 24
                key.endpoint_id = UInt16(1).bigEndian
                key.direction = UInt8(MER_POLICY_INGRESS)
                key.identity = clientIdentity.bigEndian
                key.proto = 6
                key.dport = UInt16(20000 + programmed % 40000).bigEndian
                if programmed >= 40000 { key.identity = (clientIdentity + UInt32(programmed / 40000)).bigEndian }
                try datapath.policy.update(key, mer_policy_entry())
                programmed += 1
            }
            var times: [Double] = []
            for _ in 0..<samples {
                let run = try datapath.toPod.timedRun(program: BPFNodeDatapath.toPodProgram, packet: probe, repeat: repeats)
                guard run.verdict == 2 else { throw BenchError.miswired("the probe was not dropped (verdict \(run.verdict)); the lookup bench is miswired") }
                times.append(Double(run.nanoseconds))
            }
            points.append(Point(entries: size, nanosecondsPerPacket: SampleSummary(times)!))
        }
        return points
    }
}
