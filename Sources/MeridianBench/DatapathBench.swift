import CMeridianBPF
import Foundation
import MeridianAgent
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianStore
import MeridianAdmin

/// `meridian bench datapath`: TCP throughput (iperf3) and request/response rate (sockperf
/// ping-pong) through Meridian's datapath, side by side with a bare veth pair and a plain kernel
/// VXLAN tunnel measured in the same run on the same lab underlay; and the propagation latency
/// of a backend change from one cluster's store into the other cluster's load-balancer map.
/// Connection rate is wrk against the built-in echo server, one connection per request.
/// Last, unless `encryption` is off, the same lab's agents are restarted with WireGuard and the
/// cross-node and cross-cluster paths are measured again from new pods, against a bare
/// `wireguard-go` tunnel between two namespaces across the lab router, with the CPU time of the
/// `wireguard-go` processes and of the machine during the throughput runs.
public struct DatapathBenchmark: Sendable {
    /// Runs per row (median and spread are reported).
    public var runs = 3
    public var seconds = 5
    /// Backend changes for the propagation measurement.
    public var changes = 200
    /// A small size: 1 run of 2 s per row, 50 changes.
    public var quick = false
    /// Leave the lab up afterwards.
    public var keep = false
    /// Only the backend propagation measurement.
    public var propagationOnly = false
    /// The WireGuard rows and their bare `wireguard-go` baseline (`--no-encryption` turns them off).
    public var encryption = true

    public init() {}

    public struct Row: Codable, Sendable {
        public var name: String
        public var what: String
        public var throughputGbps: SampleSummary
        public var requestsPerSecond: SampleSummary
        /// New TCP connections per second (one HTTP request each, `Connection: close`), from wrk.
        public var connectionsPerSecond: SampleSummary
        /// CPU time during the throughput runs (WireGuard rows only).
        public var cpu: ThroughputCPU?

        /// What a ratio compares, named as in its key (`A_vs_B_throughput`).
        enum Metric: String, CaseIterable {
            case throughput, request_rate, connection_rate

            var path: KeyPath<Row, SampleSummary> {
                switch self {
                case .throughput: \.throughputGbps
                case .request_rate: \.requestsPerSecond
                case .connection_rate: \.connectionsPerSecond
                }
            }
        }

        /// `A_vs_B_metric`: the median of row A over the median of row B, for each pair and metric.
        static func ratios(_ rows: [Row], _ pairs: [(String, String)], _ metrics: [Metric] = Metric.allCases) -> [String: Double] {
            let byName = Dictionary(rows.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            var ratios: [String: Double] = [:]
            for (a, b) in pairs {
                for metric in metrics {
                    ratios["\(a)_vs_\(b)_\(metric.rawValue)"] =
                        (byName[a]?[keyPath: metric.path].p50 ?? 0) / max(byName[b]?[keyPath: metric.path].p50 ?? 1, 1e-9)
                }
            }
            return ratios
        }
    }

    /// CPU use while iperf3 ran, one sample per throughput run: the `wireguard-go` processes at
    /// the path's two ends and the whole machine, in percent of one core (200 is both cores of a
    /// 2-core machine), and that divided by the run's throughput (cores busy per Gbit/s).
    public struct ThroughputCPU: Codable, Sendable {
        public var wireguardGoProcesses: Int
        public var wireguardGoPercentOfOneCore: SampleSummary
        public var machinePercentOfOneCore: SampleSummary
        public var wireguardGoCoresPerGbps: SampleSummary
        public var machineCoresPerGbps: SampleSummary

        /// `A_vs_B_wireguard_go_cores_per_gbps` and `A_vs_B_machine_cores_per_gbps`: medians of
        /// row A over row B, for pairs where both rows have CPU samples.
        static func ratios(_ rows: [Row], _ pairs: [(String, String)]) -> [String: Double] {
            let byName = Dictionary(rows.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            var ratios: [String: Double] = [:]
            for (a, b) in pairs {
                guard let cpuA = byName[a]?.cpu, let cpuB = byName[b]?.cpu else { continue }
                ratios["\(a)_vs_\(b)_wireguard_go_cores_per_gbps"] = cpuA.wireguardGoCoresPerGbps.p50 / max(cpuB.wireguardGoCoresPerGbps.p50, 1e-9)
                ratios["\(a)_vs_\(b)_machine_cores_per_gbps"] = cpuA.machineCoresPerGbps.p50 / max(cpuB.machineCoresPerGbps.p50, 1e-9)
            }
            return ratios
        }
    }

    public struct Report: Codable, Sendable {
        public var runs: Int
        public var secondsPerRun: Int
        public var rows: [Row]
        public var backendPropagationMs: SampleSummary?
        public var ratios: [String: Double]
    }

    public func validate() throws(BenchError) {
        guard runs >= 1, seconds >= 1, changes >= 1 else { throw .invalidOption("--runs, --seconds and --changes must be at least 1") }
        guard changes <= BackendPropagation.maximumChanges else {
            throw .invalidOption("--changes must be at most \(BackendPropagation.maximumChanges)")
        }
    }

    public func run() async throws -> Report {
        try validate()
        try BenchLab.require(["iperf3", "sockperf", "wrk"] + (encryption && !propagationOnly ? ["wireguard-go", "wg"] : []))
        return try await BenchLab.with(clusters: 2, nodes: 2, keep: keep) { lab in try await measure(lab) }
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        let runCount = quick ? 1 : runs
        let duration = quick ? 2 : seconds
        let changeCount = quick ? 50 : changes
        let prefix = bench.prefix
        func meridian(_ arguments: [String], stdin: String? = nil) async throws { try await bench.mustRun(arguments, stdin: stdin) }
        for cluster in ["cluster1", "cluster2"] { try await meridian(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "2"]) }
        try await meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"])
        try await meridian(["clustermesh", "status", "--context", "cluster1", "--wait", "--wait-duration", "60s"])

        let service = """
            apiVersion: v1
            kind: Service
            metadata:
              name: bench
              annotations: {service.cilium.io/global: "true"}
            spec:
              selector: {bench: remote}
              ports:
              - {name: iperf, port: 5201}
              - {name: sockperf, port: 11111}
              - {name: http, port: 8080}
            ---

            """
        let client = """
            apiVersion: v1
            kind: Pod
            metadata: {name: client, labels: {bench: client}}
            spec:
              nodeName: node1
              containers:
              - {name: main, command: ["sleep", "infinity"]}
            ---

            """
        try await meridian(["apply", "--context", "cluster1", "-f", "-"],
                     stdin: client + BenchLab.serverPod("local", node: "node1", labels: ["bench": "none"])
                         + BenchLab.serverPod("peer", node: "node2", labels: ["bench": "none"]) + service)
        try await meridian(["apply", "--context", "cluster2", "-f", "-"], stdin: BenchLab.serverPod("remote", node: "node1", labels: ["bench": "remote"]) + service)
        let ipsC1 = try await bench.waitForPods(["client", "local", "peer"], context: "cluster1")
        let ipsC2 = try await bench.waitForPods(["remote"], context: "cluster2")
        let clientPlace = try bench.podPlace(clusterID: 1, node: "node1", pod: "client")
        let clusterIP = try await bench.serviceIP("bench", context: "cluster1")
        try await LabDriver.waitUntil("cluster1 balances the bench service to cluster2") {
            try await bench.mustRun(["service", "list", "--context", "cluster1"]).contains(ipsC2["remote"] ?? "?")
        }

        // Baselines on the same underlay: a bare veth pair, and a plain VXLAN tunnel (no programs
        // of ours) between two namespaces on cluster1's and cluster2's segments, through the router.
        try await Baselines.create(prefix: prefix, executable: bench.executable)
        let targets: [(String, String, ToolPlace, String)] = [
            ("veth", "bare veth pair between two namespaces (physical baseline)", ToolPlace(namespace: "\(prefix)-bv-a"), Baselines.vethPeer),
            ("plain_vxlan", "kernel VXLAN between two underlay namespaces across the lab router, no BPF (kernel baseline)", ToolPlace(namespace: "\(prefix)-bx-a"), Baselines.vxlanPeer),
            ("kernel_pods", "kernel pod networking without BPF: pod veth, node routing, VXLAN across the router, node routing, pod veth (flannel-like)",
             ToolPlace(namespace: "\(prefix)-bk-pa"), Baselines.kernelPodPeer),
            ("same_node", "Meridian pod to pod on one node", clientPlace, ipsC1["local"]!),
            ("cross_node", "Meridian pod to pod across nodes, VXLAN", clientPlace, ipsC1["peer"]!),
            ("cross_cluster", "Meridian pod to pod across clusters, VXLAN through the router", clientPlace, ipsC2["remote"]!),
            ("global_service", "Meridian pod to a global service's ClusterIP, backend in the other cluster", clientPlace, clusterIP),
        ]
        var rows: [Row] = []
        for (name, what, place, address) in targets where !propagationOnly {
            rows.append(try await Self.measureRow(name: name, what: what, place: place, address: address, runs: runCount, seconds: duration))
            guard name == "cross_cluster" else { continue }
            // The same path with flow observation off on every node (the programs report nothing),
            // against the row above, where every node reports flows and its agent reads them.
            try FlowEvents.set(enabled: false, bench: bench)
            rows.append(try await Self.measureRow(name: "cross_cluster_flows_off", what: "Meridian pod to pod across clusters, flow observation off on every node",
                                                  place: clientPlace, address: ipsC2["remote"]!, runs: runCount, seconds: duration))
            try FlowEvents.set(enabled: true, bench: bench)
            // The same path again with policy enforcing at both ends (the client's cluster allows
            // its egress, the server's its ingress), right after the row without it and before
            // the service row: connections through the ClusterIP leave the server with TIME_WAIT
            // tuples that later direct connections from the same ports would run into.
            let policies = [
                ("cluster1", PolicyBenchmark.allowPolicy(name: "bench-client-egress", subject: ["bench": "client"], direction: .egress,
                                                     peer: ["bench": "remote"], cluster: "cluster2")),
                ("cluster2", PolicyBenchmark.allowPolicy(name: "bench-remote-ingress", subject: ["bench": "remote"], direction: .ingress,
                                                     peer: ["bench": "client"], cluster: "cluster1")),
            ]
            let enforcedOn: [(String, String, TrafficDirection, Int)] = [("cluster1", "client", .egress, 1), ("cluster2", "remote", .ingress, 1)]
            for (cluster, yaml) in policies { try await meridian(["apply", "--context", cluster, "-f", "-"], stdin: yaml) }
            try await PolicyBenchmark.waitEnforced(enforcedOn, bench: bench)
            rows.append(try await Self.measureRow(name: "cross_cluster_policy", what: "Meridian pod to pod across clusters, allow rules enforced at egress and ingress",
                                                  place: clientPlace, address: ipsC2["remote"]!, runs: runCount, seconds: duration))
            for (cluster, yaml) in policies { try await meridian(["delete", "--context", cluster, "-f", "-"], stdin: yaml) }
            try await PolicyBenchmark.waitEnforced(enforcedOn, bench: bench, enforced: false)
        }

        BenchLab.progress("backend propagation (\(changeCount) changes)…")
        let propagation = try await BackendPropagation.measure(bench, changes: changeCount)

        if encryption && !propagationOnly {
            rows += try await WireGuardRows.measure(bench, runs: runCount, seconds: duration)
        }

        let meshRows = ["cross_cluster", "global_service", "cross_node", "cross_cluster_policy"]
        var ratios = Row.ratios(rows, meshRows.flatMap { [($0, "plain_vxlan"), ($0, "kernel_pods")] } + [("same_node", "veth")])
        ratios.merge(Row.ratios(rows, [("cross_cluster_policy", "cross_cluster")], [.throughput, .connection_rate])) { $1 }
        ratios.merge(Row.ratios(rows, [("cross_cluster", "cross_cluster_flows_off")])) { $1 }
        if rows.contains(where: { $0.name == "bare_wireguard_go" }) {
            let encrypted = [("cross_cluster_wireguard", "bare_wireguard_go"), ("cross_node_wireguard", "bare_wireguard_go")]
            ratios.merge(Row.ratios(rows, encrypted + [("cross_cluster_wireguard", "cross_cluster"), ("bare_wireguard_go", "plain_vxlan")])) { $1 }
            ratios.merge(ThroughputCPU.ratios(rows, encrypted)) { $1 }
        }
        return Report(runs: runCount, secondsPerRun: duration, rows: rows, backendPropagationMs: SampleSummary(propagation), ratios: ratios)
    }

    /// Gbit/s received, from iperf3's JSON report.
    static func iperf(place: ToolPlace, address: String, seconds: Int) async throws -> Double {
        let output = try await HostCommand.run(place.command(["iperf3", "-c", address, "-t", "\(seconds)", "-J"]))
        guard let gbps = BenchParsing.iperfGbps(output) else { throw BenchError.unreadableOutput(tool: "iperf3", target: address, output: output) }
        return gbps
    }

    /// Round trips per second of sockperf's TCP ping-pong (one request in flight).
    static func sockperf(place: ToolPlace, address: String, seconds: Int) async throws -> Double {
        // sockperf reports on stderr.
        let output = try await HostCommand.run(place.command(["sh", "-c", "exec sockperf pp --tcp -i \(address) -p 11111 -t \(seconds) 2>&1"]))
        guard let rate = BenchParsing.sockperfRate(output) else { throw BenchError.unreadableOutput(tool: "sockperf", target: address, output: output) }
        return rate
    }

    /// Connections per second: wrk with one connection, closing it after every request.
    static func connectionRate(place: ToolPlace, address: String, seconds: Int) async throws -> Double {
        let output = try await HostCommand.run(place.command(["wrk", "-t1", "-c1", "-d\(seconds)s",
                                                "-H", "Connection: close", "http://\(address):8080/"]))
        guard let rate = BenchParsing.wrkRate(output) else { throw BenchError.unreadableOutput(tool: "wrk", target: address, output: output) }
        return rate
    }

    /// Throughput, request rate and connection rate, `runs` times each; with `wireguardGo` (the
    /// processes of the path's tunnel ends), the CPU time of those and of the machine during
    /// each throughput run.
    static func measureRow(name: String, what: String, place: ToolPlace, address: String, runs: Int, seconds: Int,
                           wireguardGo: [Int32]? = nil) async throws -> Row {
        BenchLab.progress("\(name)…")
        try await place.prepareForConnectionLoad()
        var throughput: [Double] = []
        var rates: [Double] = []
        var connections: [Double] = []
        var usages: [PhaseUsage] = []
        for _ in 0..<runs {
            let meter = wireguardGo.map { PhaseMeter.start([ProcessGroup(role: "wireguard-go", pids: $0)]) }
            throughput.append(try await iperf(place: place, address: address, seconds: seconds))
            if let meter { usages.append(meter.finish("throughput")) }
            rates.append(try await sockperf(place: place, address: address, seconds: seconds))
            connections.append(try await connectionRate(place: place, address: address, seconds: seconds))
        }
        var cpu: ThroughputCPU?
        if let wireguardGo {
            let tunnel = usages.map { $0.processes.first?.cpuPercentOfOneCore ?? 0 }
            let machine = usages.map { $0.machineCPUPercentOfOneCore ?? 0 }
            cpu = ThroughputCPU(wireguardGoProcesses: wireguardGo.count, wireguardGoPercentOfOneCore: SampleSummary(tunnel)!,
                                machinePercentOfOneCore: SampleSummary(machine)!,
                                wireguardGoCoresPerGbps: SampleSummary(zip(tunnel, throughput).map { $0 / 100 / max($1, 1e-9) })!,
                                machineCoresPerGbps: SampleSummary(zip(machine, throughput).map { $0 / 100 / max($1, 1e-9) })!)
        }
        return Row(name: name, what: what, throughputGbps: SampleSummary(throughput)!, requestsPerSecond: SampleSummary(rates)!,
                   connectionsPerSecond: SampleSummary(connections)!, cpu: cpu)
    }

    public static func text(_ report: Report) -> String {
        var rows: [[String]] = []
        for row in report.rows {
            rows.append([row.name, String(format: "%.2f", row.throughputGbps.p50), String(format: "%.2f–%.2f", row.throughputGbps.min, row.throughputGbps.max),
                         String(format: "%.0f", row.requestsPerSecond.p50), String(format: "%.0f–%.0f", row.requestsPerSecond.min, row.requestsPerSecond.max),
                         String(format: "%.0f", row.connectionsPerSecond.p50),
                         String(format: "%.0f–%.0f", row.connectionsPerSecond.min, row.connectionsPerSecond.max), row.what])
        }
        var lines = ["Datapath, \(report.runs) run(s) of \(report.secondsPerRun) s per row (median, then min–max):",
                     Table(headers: ["ROW", "GBIT/S", "SPREAD", "RR/S", "SPREAD", "CONN/S", "SPREAD", "WHAT"], rows: rows).render()]
        if let propagation = report.backendPropagationMs {
            lines.append(String(format: "Backend propagation, store of cluster2 → LB map of a cluster1 node, %d changes: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
                                propagation.count, propagation.p50, propagation.p90, propagation.p99, propagation.max))
        }
        let measuredCPU = report.rows.compactMap { row in row.cpu.map { (row.name, $0) } }
        if !measuredCPU.isEmpty {
            lines.append("CPU during the throughput runs (median; % of one core, and cores busy per Gbit/s):")
            lines.append(Table(headers: ["ROW", "WIREGUARD-GO %", "PER GBIT/S", "MACHINE %", "PER GBIT/S"], rows: measuredCPU.map { name, cpu in
                [name, String(format: "%.0f (%d processes)", cpu.wireguardGoPercentOfOneCore.p50, cpu.wireguardGoProcesses),
                 String(format: "%.2f", cpu.wireguardGoCoresPerGbps.p50), String(format: "%.0f", cpu.machinePercentOfOneCore.p50),
                 String(format: "%.2f", cpu.machineCoresPerGbps.p50)]
            }).render())
        }
        lines.append("Ratios (p50 / p50):")
        for (name, value) in report.ratios.sorted(by: { $0.key < $1.key }) { lines.append(String(format: "  %@ = %.3f", name, value)) }
        return lines.joined(separator: "\n")
    }
}

/// The same-run baselines, built in namespaces named with the lab's prefix (so `lab down`
/// removes them): `-bv-a`/`-bv-b`, a bare veth pair; `-bx-a`/`-bx-b`, plain VXLAN (VNI 100,
/// UDP 4789) between cluster1's and cluster2's underlay segments, no BPF anywhere; and
/// `-bk-pa` → `-bk-na` → `-bk-nb` → `-bk-pb`, the same tunnel with what a kernel-only CNI adds
/// around it (a pod veth and routing in each node namespace, pod MTU 1450 as Meridian's).
enum Baselines {
    static let vethPeer = "192.168.78.2"
    static let vxlanPeer = "192.168.77.2"
    static let kernelPodPeer = "192.168.91.2"

    static func create(prefix: String, executable: String) async throws {
        let (va, vb) = ("\(prefix)-bv-a", "\(prefix)-bv-b")
        try await HostCommand.ip("netns", "add", va)
        try await HostCommand.ip("netns", "add", vb)
        try await HostCommand.run(["ip", "-n", va, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", vb])
        for (namespace, address) in [(va, "192.168.78.1"), (vb, vethPeer)] {
            try await HostCommand.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            try await HostCommand.run(["ip", "-n", namespace, "addr", "add", "\(address)/24", "dev", "eth0"])
            try await HostCommand.run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
        }
        let underlay = "\(prefix)-underlay"
        let ends = [("\(prefix)-bx-a", 1, "172.30.1.201", "172.30.2.201", "192.168.77.1"),
                    ("\(prefix)-bx-b", 2, "172.30.2.201", "172.30.1.201", vxlanPeer)]
        for (namespace, cluster, local, remote, inner) in ends {
            try await tunnelEndpoint(namespace: namespace, underlay: underlay, port: "bx\(cluster)", cluster: cluster,
                                     local: local, remote: remote, device: "vx0", vni: 100, address: inner)
        }
        try await createKernelPods(prefix: prefix)
        for namespace in ["\(prefix)-bv-b", "\(prefix)-bx-b", "\(prefix)-bk-pb"] {
            try await HostProcess.launchDetached(["ip", "netns", "exec", namespace, "iperf3", "-s"], logPath: nil)
            try await HostProcess.launchDetached(["ip", "netns", "exec", namespace, "sockperf", "sr", "--tcp", "-p", "11111"], logPath: nil)
            try await HostProcess.launchDetached(["ip", "netns", "exec", namespace, executable, "tool", "echo-server", "--port", "8080"], logPath: nil)
        }
        try await Task.sleep(for: .milliseconds(500))
    }

    /// A new namespace on cluster `cluster`'s underlay segment (`ul0` at `local`, through the
    /// bridge port `port`, routed to the other segments by the lab router) with a plain VXLAN
    /// device to `remote` holding `address`/24, MTU 1450.
    static func tunnelEndpoint(namespace: String, underlay: String, port: String, cluster: Int, local: String, remote: String,
                               device: String, vni: Int, address: String) async throws {
        try await underlayEndpoint(namespace: namespace, underlay: underlay, port: port, cluster: cluster, local: local)
        let n = ["ip", "-n", namespace]
        try await HostCommand.run(n + ["link", "add", device, "type", "vxlan", "id", "\(vni)", "local", local, "remote", remote, "dstport", "4789", "dev", "ul0"])
        try await HostCommand.run(n + ["link", "set", device, "mtu", "1450", "up"])
        try await HostCommand.run(n + ["addr", "add", "\(address)/24", "dev", device])
    }

    /// A new namespace on cluster `cluster`'s underlay segment: `ul0` at `local`, through the
    /// bridge port `port`, routed to the other segments by the lab router.
    static func underlayEndpoint(namespace: String, underlay: String, port: String, cluster: Int, local: String) async throws {
        try await HostCommand.ip("netns", "add", namespace)
        try await HostCommand.run(["ip", "-n", underlay, "link", "add", port, "type", "veth", "peer", "name", "ul0", "netns", namespace])
        try await HostCommand.run(["ip", "-n", underlay, "link", "set", port, "master", "br-c\(cluster)", "up"])
        let n = ["ip", "-n", namespace]
        try await HostCommand.run(n + ["link", "set", "lo", "up"])
        try await HostCommand.run(n + ["addr", "add", "\(local)/24", "dev", "ul0"])
        try await HostCommand.run(n + ["link", "set", "ul0", "up"])
        try await HostCommand.run(n + ["route", "add", "172.30.0.0/16", "via", "172.30.\(cluster).254"])
    }

    /// Two node namespaces on cluster1's and cluster2's segments joined by VXLAN (VNI 101), each
    /// with a pod namespace behind a veth and a route to the other pod subnet through the tunnel.
    static func createKernelPods(prefix: String) async throws {
        let underlay = "\(prefix)-underlay"
        let sides = [(1, "a", "172.30.1.202", "172.30.2.202", "192.168.99.1", "192.168.90", "192.168.91", "192.168.99.2"),
                     (2, "b", "172.30.2.202", "172.30.1.202", "192.168.99.2", "192.168.91", "192.168.90", "192.168.99.1")]
        for (cluster, side, local, remote, tunnelAddress, podNet, remotePodNet, remoteTunnel) in sides {
            let (node, pod) = ("\(prefix)-bk-n\(side)", "\(prefix)-bk-p\(side)")
            try await tunnelEndpoint(namespace: node, underlay: underlay, port: "bk\(cluster)", cluster: cluster,
                                     local: local, remote: remote, device: "vk0", vni: 101, address: tunnelAddress)
            try await HostCommand.ip("netns", "add", pod)
            let n = ["ip", "-n", node]
            try await HostCommand.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try await HostCommand.run(n + ["link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", pod])
            try await HostCommand.run(n + ["addr", "add", "\(podNet).1/24", "dev", "pod0"])
            try await HostCommand.run(n + ["link", "set", "pod0", "mtu", "1450", "up"])
            try await HostCommand.run(n + ["route", "add", "\(remotePodNet).0/24", "via", remoteTunnel, "dev", "vk0"])
            let p = ["ip", "-n", pod]
            try await HostCommand.run(p + ["link", "set", "lo", "up"])
            try await HostCommand.run(p + ["addr", "add", "\(podNet).2/24", "dev", "eth0"])
            try await HostCommand.run(p + ["link", "set", "eth0", "mtu", "1450", "up"])
            try await HostCommand.run(p + ["route", "add", "default", "via", "\(podNet).1"])
        }
    }
}

/// Flow observation switched on every node of the lab: the programs report (or not) as the node
/// configuration's `MER_CONFIG_F_NO_EVENTS` says; the agents keep reading whatever comes.
enum FlowEvents {
    static func set(enabled: Bool, bench: LabDriver) throws {
        for cluster in ["cluster1", "cluster2"] {
            for node in try bench.cluster(cluster).nodes {
                let config = try BPFMap<UInt32, mer_config>(pinnedAt: node.pinDirectory + "/" + MER_MAP_CONFIG)
                defer { close(config.fd) }
                guard var value = config.lookup(0) else { throw BenchError.missing("\(cluster)/\(node.name) node configuration") }
                if enabled { value.flags &= ~UInt16(MER_CONFIG_F_NO_EVENTS) } else { value.flags |= UInt16(MER_CONFIG_F_NO_EVENTS) }
                try config.update(0, value)
            }
        }
    }
}

/// A backend appearing in cluster2's store (a pod record and a Running status, on a node that
/// does not exist, so nothing but the control planes and agents react) until its address is in
/// the backends map of cluster1's first node: exporter, mesh import, agent reconcile, map write.
enum BackendPropagation {
    /// Each change takes its own address in 10.2.200.1 to 10.2.255.250.
    static let maximumChanges = 56 * 250

    static func measure(_ bench: LabDriver, changes: Int) async throws -> [Double] {
        guard let node = try bench.cluster("cluster1").nodes.first else { throw BenchError.missing("cluster1 node") }
        // Read only: the agent's own writer put the backend there.
        let backends = try BPFMap<UInt32, mer_lb4_backend>(pinnedAt: node.pinDirectory + "/" + MER_MAP_BACKENDS)
        var samples: [Double] = []
        try await bench.withClient("cluster2") { client in
            for index in 0..<changes {
                let name = "phantom-\(index)"
                let ip = "10.2.\(200 + index / 250).\(1 + index % 250)"
                let pod = KubernetesObject.pod(Pod(
                    metadata: ObjectMeta(name: name, namespace: "default", labels: ["bench": "remote"]),
                    spec: PodSpec(containers: [Container(name: "main", command: ["true"], ports: [])], nodeName: "bench-phantom")))
                let status = PodStatus(phase: .running, podIP: ip, nodeName: "bench-phantom")
                guard let wanted = IPAddress(ip)?.datapathValue else { throw BenchError.miswired("phantom address \(ip)") }
                let started = ContinuousClock.now
                try await client.commit(puts: [(ResourceStore.key(for: pod), StoreCoding.encode(pod)),
                                               (KeyLayout.podStatus(namespace: "default", name: name), StoreCoding.encode(status))])
                let deadline = started + .seconds(30)
                while !backends.entries().contains(where: { $0.value.address == wanted }) {
                    guard ContinuousClock.now < deadline else { throw BenchError.timedOut("backend \(ip) did not reach cluster1's map in 30 s") }
                    try await Task.sleep(for: .microseconds(500))
                }
                let elapsed = ContinuousClock.now - started
                samples.append(elapsed.inMilliseconds)
            }
            // The phantoms leave again, so a lab kept with --keep balances to its real backend only.
            for index in 0..<changes {
                try await client.commit(puts: [], deletes: [ResourceStore.key(for: .pod(Pod(
                    metadata: ObjectMeta(name: "phantom-\(index)", namespace: "default"), spec: PodSpec(containers: [])))),
                    KeyLayout.podStatus(namespace: "default", name: "phantom-\(index)")])
            }
        }
        return samples
    }
}
