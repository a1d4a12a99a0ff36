import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianHost
import MeridianLab
import MeridianAdmin

/// `meridian bench services`: one client and one service, while 1, 1,000, 10,000 and 100,000
/// other services are programmed, for Meridian's LB maps and for a kube-proxy-style iptables
/// DNAT ruleset of the same size loaded with iptables-restore in the lab's own namespaces.
/// Reported per size: connection rate (wrk, a new connection per request), first-packet latency
/// (TCP connect time, where the service lookup happens), and the time to add one more service.
///
/// Meridian's other services are written straight into the node's pinned maps while its agent
/// is stopped (programs keep forwarding without it), so the figures are the datapath's and the
/// map writes'; the agent is started again at the end and removes them. Reverse-NAT indices are
/// 16-bit (as in Cilium), so the extra services carry none: they never see traffic.
public struct ServicesBenchmark: Sendable {
    /// Numbers of other services, in order.
    public var sizes = [1, 1000, 10_000, 100_000]
    public var runs = 3
    /// Seconds per connection-rate run.
    public var seconds = 3
    /// TCP connects per first-packet latency sample.
    public var connects = 300
    /// A small size: 1 and 1,000 services, 1 run of 2 s.
    public var quick = false
    public var keep = false

    public init() {}

    public struct Side: Codable, Sendable {
        public var connectionsPerSecond: SampleSummary
        public var connectMicroseconds: SampleSummary
        /// Meridian: the map writes of one service with one backend. iptables: a full
        /// iptables-restore of the ruleset with one more service (what kube-proxy does per sync).
        public var addServiceMilliseconds: SampleSummary
    }

    public struct Point: Codable, Sendable {
        public var services: Int
        public var meridian: Side
        public var iptables: Side
    }

    public struct Report: Codable, Sendable {
        public var runs: Int
        public var secondsPerRun: Int
        public var points: [Point]
        public var ratios: [String: Double]
    }

    /// The test service of the iptables side and its server, behind a router namespace.
    static let iptablesVIP = "10.200.0.1"
    static let iptablesServer = "192.168.81.2"

    /// Parses `--sizes` (comma-separated numbers of services, 1...150,000).
    public static func parseSizes(_ text: String) throws(BenchError) -> [Int] {
        let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? -1) >= 1 && ($0 ?? 0) <= 150_000 }) else {
            throw .invalidOption("--sizes must be comma-separated numbers in 1...150000, got \(text)")
        }
        return values.compactMap { $0 }.sorted()
    }

    public func validate() throws(BenchError) {
        guard runs >= 1, seconds >= 1, connects >= 10 else { throw .invalidOption("--runs, --seconds must be at least 1, --connects at least 10") }
    }

    public func run() async throws -> Report {
        try validate()
        try BenchLab.require(["wrk", "iptables-restore"])
        return try await BenchLab.with(clusters: 1, nodes: 1, keep: keep) { try await measure($0) }
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        let runCount = quick ? 1 : runs
        let duration = quick ? 2 : seconds
        let steps = quick ? [1, 1000] : sizes.sorted()
        let service = """
            apiVersion: v1
            kind: Service
            metadata: {name: bench}
            spec:
              selector: {bench: server}
              ports: [{name: http, port: 8080}]
            ---

            """
        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"],
                                 stdin: BenchLab.clientPod("client", node: "node1") + BenchLab.serverPod("server", node: "node1", labels: ["bench": "server"]) + service)
        _ = try await bench.waitForPods(["client", "server"], context: "cluster1")
        let vip = try await bench.serviceIP("bench", context: "cluster1")
        let client = try bench.podPlace(clusterID: 1, node: "node1", pod: "client")
        try await LabDriver.waitUntil("the bench service answers") {
            try await Self.connectLatencies(place: client, address: vip, count: 1, executable: bench.executable).count == 1
        }
        let cluster = try bench.cluster("cluster1")
        guard let node = cluster.nodes.first else { throw BenchError.missing("node") }
        let iptables = IPTablesPath(prefix: bench.prefix)
        try await iptables.create(executable: bench.executable)

        BenchLab.progress("stopping the node's agent; the datapath keeps forwarding")
        await bench.lab.stopAgent(node)
        var points: [Point] = []
        do {
            let maps = try ServiceMaps(pinDirectory: node.pinDirectory)
            var programmed = 0
            for size in steps {
                BenchLab.progress("\(size) services: Meridian…")
                try maps.addDummies(from: programmed, to: size)
                programmed = size
                let meridian = try await side(place: client, address: vip, runs: runCount, seconds: duration, executable: bench.executable) {
                    try maps.timeOneMoreService(index: 200_000)
                }
                BenchLab.progress("\(size) services: iptables (restore of \(3 * size) rules)…")
                _ = try await iptables.load(services: size)
                let kernel = try await side(place: ToolPlace(namespace: iptables.client), address: Self.iptablesVIP, runs: runCount, seconds: duration,
                                            executable: bench.executable) {
                    try await iptables.load(services: size + 1)
                }
                points.append(Point(services: size, meridian: meridian, iptables: kernel))
            }
        } catch {
            _ = try? await bench.lab.startAgent(node, cluster: cluster, prefix: bench.prefix)
            throw error
        }
        BenchLab.progress("starting the agent again (it removes the extra services)")
        try await bench.lab.startAgent(node, cluster: cluster, prefix: bench.prefix)

        var ratios: [String: Double] = [:]
        if let first = points.first, let last = points.last, first.services != last.services {
            let (small, large) = (first.services, last.services)
            func add(_ name: String, _ a: Double, _ b: Double) { ratios[name] = a / max(b, 1e-9) }
            add("meridian_connection_rate_\(large)_vs_\(small)", last.meridian.connectionsPerSecond.p50, first.meridian.connectionsPerSecond.p50)
            add("iptables_connection_rate_\(large)_vs_\(small)", last.iptables.connectionsPerSecond.p50, first.iptables.connectionsPerSecond.p50)
            add("meridian_connect_latency_\(large)_vs_\(small)", last.meridian.connectMicroseconds.p50, first.meridian.connectMicroseconds.p50)
            add("iptables_connect_latency_\(large)_vs_\(small)", last.iptables.connectMicroseconds.p50, first.iptables.connectMicroseconds.p50)
            add("meridian_vs_iptables_connection_rate_at_\(large)", last.meridian.connectionsPerSecond.p50, last.iptables.connectionsPerSecond.p50)
            add("meridian_vs_iptables_connection_rate_at_\(small)", first.meridian.connectionsPerSecond.p50, first.iptables.connectionsPerSecond.p50)
            add("meridian_add_service_\(large)_vs_\(small)", last.meridian.addServiceMilliseconds.p50, first.meridian.addServiceMilliseconds.p50)
            add("iptables_add_service_\(large)_vs_\(small)", last.iptables.addServiceMilliseconds.p50, first.iptables.addServiceMilliseconds.p50)
        }
        return Report(runs: runCount, secondsPerRun: duration, points: points, ratios: ratios)
    }

    private func side(place: ToolPlace, address: String, runs: Int, seconds: Int, executable: String,
                      addOne: () async throws -> Double) async throws -> Side {
        try await place.prepareForConnectionLoad()
        var rates: [Double] = []
        var latencies: [Double] = []
        var adds: [Double] = []
        for _ in 0..<runs {
            rates.append(try await DatapathBenchmark.connectionRate(place: place, address: address, seconds: seconds))
            latencies += try await Self.connectLatencies(place: place, address: address, count: connects, executable: executable)
            adds.append(try await addOne())
        }
        return Side(connectionsPerSecond: SampleSummary(rates)!, connectMicroseconds: SampleSummary(latencies)!,
                    addServiceMilliseconds: SampleSummary(adds)!)
    }

    /// TCP connect times to ADDRESS:8080 in µs, measured from `place`.
    static func connectLatencies(place: ToolPlace, address: String, count: Int, executable: String) async throws -> [Double] {
        let output = try await HostCommand.run(place.command([executable, "tool", "connect-latency",
                                                              "\(address):8080", "--count", "\(count)"]))
        let samples = BenchParsing.connectLatencies(output)
        guard samples.count == count else { throw BenchError.unreadableOutput(tool: "connect-latency", target: address, output: output) }
        return samples
    }

    public static func text(_ report: Report) -> String {
        var rows: [[String]] = []
        for point in report.points {
            for (name, side) in [("meridian", point.meridian), ("iptables", point.iptables)] {
                rows.append([String(point.services), name,
                             String(format: "%.0f", side.connectionsPerSecond.p50),
                             String(format: "%.0f–%.0f", side.connectionsPerSecond.min, side.connectionsPerSecond.max),
                             String(format: "%.0f", side.connectMicroseconds.p50), String(format: "%.0f", side.connectMicroseconds.p99),
                             String(format: "%.3f", side.addServiceMilliseconds.p50)])
            }
        }
        var lines = ["Services, \(report.runs) run(s) of \(report.secondsPerRun) s per measurement (median; spread min–max; connect p50 and p99):",
                     Table(headers: ["SERVICES", "PATH", "CONN/S", "SPREAD", "CONNECT-US", "P99-US", "ADD-ONE-MS"], rows: rows).render(),
                     "Ratios (p50 / p50):"]
        for (name, value) in report.ratios.sorted(by: { $0.key < $1.key }) { lines.append(String(format: "  %@ = %.3f", name, value)) }
        return lines.joined(separator: "\n")
    }
}

/// The node's LB maps opened from their pins, for writing services the agent does not know:
/// the other services are written here, past the agent's own writer, while the agent is
/// stopped, so the figures are the datapath's and the map writes' alone (the agent would add
/// its store reads and diff of 100,000 services to "add one"); the agent removes them when it
/// starts again.
struct ServiceMaps {
    let services: BPFMap<mer_lb4_key, mer_lb4_service>
    let backends: BPFMap<UInt32, mer_lb4_backend>

    /// Backend IDs of the extra services start here, far above the agent's.
    static let firstBackendID: UInt32 = 1_000_000

    init(pinDirectory: String) throws {
        services = try BPFMap(pinnedAt: pinDirectory + "/" + MER_MAP_SERVICES)
        backends = try BPFMap(pinnedAt: pinDirectory + "/" + MER_MAP_BACKENDS)
    }

    /// Frontend `index`: 10.250.0.0 + index, port 80; its backend 10.99.0.0 + index, port 8080.
    static func addresses(_ index: Int) -> (frontend: UInt32, backend: UInt32) {
        (UInt32(10 << 24 | 250 << 16) + UInt32(index), UInt32(10 << 24 | 99 << 16) + UInt32(index))
    }

    func write(index: Int) throws {
        let (frontend, backend) = Self.addresses(index)
        let id = Self.firstBackendID + UInt32(index)
        try backends.update(id, mer_lb4_backend(address: backend.bigEndian, port: UInt16(8080).bigEndian, proto: 6,
                                                flags: UInt8(MER_BACKEND_ACTIVE), cluster_id: 1, pad: 0))
        var slot = mer_lb4_service()
        slot.backend_id = id
        try services.update(key(frontend, slot: 1), slot)
        var master = mer_lb4_service()
        master.count = 1
        try services.update(key(frontend, slot: 0), master)
    }

    func remove(index: Int) throws {
        let (frontend, _) = Self.addresses(index)
        _ = try services.delete(key(frontend, slot: 0))
        _ = try services.delete(key(frontend, slot: 1))
        _ = try backends.delete(Self.firstBackendID + UInt32(index))
    }

    func addDummies(from start: Int, to end: Int) throws {
        for index in start..<end { try write(index: index) }
    }

    /// Milliseconds to program one more service (then removed again).
    func timeOneMoreService(index: Int) throws -> Double {
        let started = ContinuousClock.now
        try write(index: index)
        let elapsed = ContinuousClock.now - started
        try remove(index: index)
        return elapsed.inMilliseconds
    }

    private func key(_ frontend: UInt32, slot: UInt16) -> mer_lb4_key {
        var key = mer_lb4_key()
        key.address = frontend.bigEndian
        key.dport = UInt16(80).bigEndian
        key.proto = 6
        key.backend_slot = slot
        return key
    }
}

/// The kube-proxy-style baseline: client `-ipt-c` → router `-ipt-n` (nat PREROUTING →
/// KUBE-SERVICES, one KUBE-SVC and KUBE-SEP chain per service, DNAT) → server `-ipt-s`. The test
/// service is the last in KUBE-SERVICES, where a linear walk meets it after every other.
struct IPTablesPath {
    let prefix: String
    var client: String { "\(prefix)-ipt-c" }
    var router: String { "\(prefix)-ipt-n" }
    var server: String { "\(prefix)-ipt-s" }

    func create(executable: String) async throws {
        for namespace in [client, router, server] {
            try await HostCommand.ip("netns", "add", namespace)
            try await HostCommand.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        }
        try await HostCommand.run(["ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "c0", "netns", router])
        try await HostCommand.run(["ip", "-n", server, "link", "add", "eth0", "type", "veth", "peer", "name", "s0", "netns", router])
        for (namespace, device, address) in [(client, "eth0", "192.168.80.2/24"), (router, "c0", "192.168.80.1/24"),
                                             (router, "s0", "192.168.81.1/24"), (server, "eth0", "\(ServicesBenchmark.iptablesServer)/24")] {
            try await HostCommand.run(["ip", "-n", namespace, "addr", "add", address, "dev", device])
            try await HostCommand.run(["ip", "-n", namespace, "link", "set", device, "up"])
        }
        try await HostCommand.run(["ip", "-n", client, "route", "add", "default", "via", "192.168.80.1"])
        try await HostCommand.run(["ip", "-n", server, "route", "add", "default", "via", "192.168.81.1"])
        try await HostCommand.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        try await HostProcess.launchDetached(["ip", "netns", "exec", server, executable, "tool", "echo-server", "--port", "8080"], logPath: nil)
        try await Task.sleep(for: .milliseconds(300))
    }

    /// Loads a ruleset of `services` services plus the test service with iptables-restore (a full
    /// replace, as kube-proxy syncs); returns the milliseconds it took.
    func load(services: Int) async throws -> Double {
        let path = "/tmp/\(prefix)-iptables-\(services).rules"
        try Self.ruleset(services: services).write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let started = ContinuousClock.now
        try await HostCommand.run(["ip", "netns", "exec", router, "iptables-restore", path])
        let elapsed = ContinuousClock.now - started
        return elapsed.inMilliseconds
    }

    static func ruleset(services: Int) -> String {
        var chains = [":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
                      ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-TEST - [0:0]", ":KUBE-SEP-TEST - [0:0]"]
        var rules = ["-A PREROUTING -j KUBE-SERVICES"]
        chains.reserveCapacity(2 * services + 8)
        rules.reserveCapacity(3 * services + 4)
        for index in 0..<services {
            let (frontend, backend) = ServiceMaps.addresses(index)
            chains.append(":KUBE-SVC-\(index) - [0:0]")
            chains.append(":KUBE-SEP-\(index) - [0:0]")
            rules.append("-A KUBE-SERVICES -d \(IPAddress(datapathValue: frontend.bigEndian))/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-\(index)")
            rules.append("-A KUBE-SVC-\(index) -j KUBE-SEP-\(index)")
            rules.append("-A KUBE-SEP-\(index) -p tcp -m tcp -j DNAT --to-destination \(IPAddress(datapathValue: backend.bigEndian)):8080")
        }
        rules.append("-A KUBE-SERVICES -d \(ServicesBenchmark.iptablesVIP)/32 -p tcp -m tcp --dport 8080 -j KUBE-SVC-TEST")
        rules.append("-A KUBE-SVC-TEST -j KUBE-SEP-TEST")
        rules.append("-A KUBE-SEP-TEST -p tcp -m tcp -j DNAT --to-destination \(ServicesBenchmark.iptablesServer):8080")
        return (["*nat"] + chains + rules + ["COMMIT", ""]).joined(separator: "\n")
    }
}
