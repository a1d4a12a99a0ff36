import ArgumentParser
import Foundation
import Logging
import MeridianControlPlane
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianPKI
import MeridianStore
import Synchronization

// `meridian bench controlplane --scale`: one real importing cluster (cluster1, its control plane,
// its etcd and one node's agent) connected to many mocked remote clusters. A mock is a plain
// etcd holding what an exporting cluster's etcd holds (cluster config, sync canaries, heartbeat,
// nodes, endpoints, identities), written directly by the bench; no control plane runs for it.
// Measured: time until every remote is ready and fully cached, the rate at which a steady churn
// of endpoint updates across the mocks reaches cluster1's cache, and what the measured processes
// spend doing it.

// MARK: - Sizes

/// The sizes of one scale run: mocked remote clusters; per cluster its nodes, endpoints and
/// identities; and the churn written across all of them.
struct ScaleSizes: Codable, Sendable, Hashable {
    var clusters: Int
    var nodesPerCluster: Int
    var endpointsPerCluster: Int
    var identitiesPerCluster: Int
    var churnPerSecond: Int
    var churnSeconds: Int

    /// The shape of issue 6 (the ClusterMesh CI scale test).
    static let issue = ScaleSizes(clusters: 250, nodesPerCluster: 100, endpointsPerCluster: 1000, identitiesPerCluster: 100,
                                  churnPerSecond: 325, churnSeconds: 30)
    /// `--quick`: finishes in well under two minutes.
    static let quick = ScaleSizes(clusters: 5, nodesPerCluster: 10, endpointsPerCluster: 100, identitiesPerCluster: 10,
                                  churnPerSecond: 50, churnSeconds: 10)

    /// Cluster IDs have 8 bits when maxConnectedClusters is 255 (IDs 1...255), and cluster1
    /// holds ID 1, so at most 254 other clusters exist. (511 mode would allow more, but the lab
    /// runs in 255 mode and every cluster of a mesh must use the same mode.)
    static let maxClusters = 254
    /// A node's pod CIDR is a /24 of its cluster's 10.<id>.0.0/16, numbered 1...255.
    static let maxNodes = 255
    /// Addresses .2 to .254 of a node's /24 (.1 is the node's gateway).
    static let endpointsPerNode = 253
    /// Local indices of one cluster's identity range in 255 mode (its first value is never used).
    static let maxIdentities = 65_535

    var totalNodes: Int { clusters * nodesPerCluster }
    var totalEndpoints: Int { clusters * endpointsPerCluster }
    var totalIdentities: Int { clusters * identitiesPerCluster }
    var totalChurn: Int { churnPerSecond * churnSeconds }

    /// Rejects sizes the mocks cannot represent, naming the option and the reason.
    func validate() throws(ValidationError) {
        guard clusters >= 1 else { throw ValidationError("--clusters must be at least 1") }
        guard clusters <= Self.maxClusters else {
            throw ValidationError(
                "--clusters \(clusters): at most \(Self.maxClusters) mocked clusters can join cluster1; cluster IDs have 8 bits with maxConnectedClusters 255 (IDs 1...255) and cluster1 holds ID 1")
        }
        guard (1...Self.maxNodes).contains(nodesPerCluster) else {
            throw ValidationError("--nodes must be between 1 and \(Self.maxNodes): each node gets one /24 of its cluster's /16 pod CIDR")
        }
        guard endpointsPerCluster >= 0 else { throw ValidationError("--endpoints must not be negative") }
        guard endpointsPerCluster <= nodesPerCluster * Self.endpointsPerNode else {
            throw ValidationError(
                "--endpoints \(endpointsPerCluster) does not fit on \(nodesPerCluster) node(s): at most \(Self.endpointsPerNode) per node's /24, \(nodesPerCluster * Self.endpointsPerNode) in all")
        }
        guard (1...Self.maxIdentities).contains(identitiesPerCluster) else {
            throw ValidationError("--identities must be between 1 and \(Self.maxIdentities), the size of one cluster's identity range")
        }
        guard churnPerSecond >= 0 else { throw ValidationError("--churn must not be negative (0 skips the churn phase)") }
        guard churnPerSecond == 0 || endpointsPerCluster > 0 else {
            throw ValidationError("--churn updates endpoints; it needs --endpoints of at least 1")
        }
        guard (1...3600).contains(churnSeconds) else { throw ValidationError("--churn-seconds must be between 1 and 3600") }
    }
}

// MARK: - Mocked clusters and their records

/// One mocked remote cluster: its name, ID and address plan, derived from its position.
struct MockCluster: Sendable, Hashable {
    /// 0-based position among the mocks; the cluster ID is `index + 2` (cluster1 holds 1).
    let index: Int

    var id: UInt32 { UInt32(index + 2) }
    var name: String { "mock\(id)" }
    /// The second octet of the mock's pod addresses: its ID, except for mock101, whose
    /// `10.101.0.0/16` is cluster1's service CIDR (connect refuses that overlap); it takes the
    /// `10.0.0.0/16` no cluster uses.
    var podOctet: UInt32 { id == 101 ? 0 : id }
    var podCIDR: String { "10.\(podOctet).0.0/16" }
    /// Never used for anything; the settings record needs one that overlaps no pod CIDR.
    var serviceCIDR: String { "100.96.\(id).0/24" }
    var serverName: String { "etcd.\(name).meridian" }

    func nodeName(_ node: Int) -> String { "node\(node + 1)" }
    /// The node's underlay address (its tunnel endpoint), 100.64.<id>.<node + 1>.
    func nodeIP(_ node: Int) -> String { "100.64.\(id).\(node + 1)" }
    func nodePodCIDR(_ node: Int) -> String { "10.\(podOctet).\(node + 1).0/24" }
    /// Endpoint `j` lives on node `j % nodes`, at address `.(j / nodes + 2)` of that node's /24.
    func endpointIP(_ endpoint: Int, nodes: Int) -> String { "10.\(podOctet).\(endpoint % nodes + 1).\(endpoint / nodes + 2)" }
    /// The `i`-th (0-based) identity of the cluster: local index `i + 1` of its range.
    func identity(_ i: Int) -> UInt32 {
        (id << UInt32(IdentityLayout(maxConnectedClusters: .c255).shift)) + UInt32(i + 1)
    }
}

/// What a mocked cluster's etcd holds, in the key layout and JSON shapes of `MeridianCore/Mesh`.
enum ScaleRecords {
    typealias Record = (key: String, value: Data)

    static func nodes(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        let encoder = CiliumJSON.encoder()
        return (0..<sizes.nodesPerCluster).map { node in
            let record = NodeRecord(
                name: mock.nodeName(node), cluster: mock.name,
                ipAddresses: [NodeAddress(type: .internalIP, ip: mock.nodeIP(node))],
                ipv4AllocCIDR: IPCIDR(mock.nodePodCIDR(node)), clusterID: mock.id, mtu: 1500)
            return (MeshKind.nodes.stateKey(cluster: mock.name, name: record.name), (try? encoder.encode(record)) ?? Data())
        }
    }

    /// The endpoints as first written (round 0).
    static func endpoints(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        let encoder = CiliumJSON.encoder()
        return (0..<sizes.endpointsPerCluster).map { endpoint(of: mock, index: $0, round: 0, sizes: sizes, metadata: "", encoder: encoder) }
    }

    static func identities(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        (0..<sizes.identitiesPerCluster).map { i in
            let labels = LabelSet.podIdentityLabels(
                podLabels: ["app": "scale-\(i)"], namespace: "default",
                namespaceLabels: [LabelKeys.namespaceMetadataName: "default"], serviceAccount: nil, cluster: mock.name)
            return (MeshKind.identities.stateKey(cluster: mock.name, name: "\(mock.identity(i))"), Data(labels.ciliumString.utf8))
        }
    }

    /// Nodes, endpoints and identities.
    static func state(of mock: MockCluster, sizes: ScaleSizes) -> [Record] {
        nodes(of: mock, sizes: sizes) + endpoints(of: mock, sizes: sizes) + identities(of: mock, sizes: sizes)
    }

    /// Endpoint `index` after `round` updates: each round moves it to the next identity and the
    /// next node (host IP) of its cluster.
    static func endpoint(of mock: MockCluster, index: Int, round: Int, sizes: ScaleSizes, metadata: String,
                         encoder: JSONEncoder = CiliumJSON.encoder()) -> Record {
        let ip = mock.endpointIP(index, nodes: sizes.nodesPerCluster)
        let pair = IPIdentityPair(
            ip: ip, hostIP: mock.nodeIP((index + round) % sizes.nodesPerCluster),
            id: mock.identity((index + round) % sizes.identitiesPerCluster), metadata: metadata,
            k8sNamespace: "default", k8sPodName: "scale-\(index)")
        return (MeshKind.endpoints.stateKey(cluster: mock.name, name: ip), (try? encoder.encode(pair)) ?? Data())
    }

    /// The `sequence`-th update written to this mock: endpoints in turn, each pass one round further.
    static func churnUpdate(of mock: MockCluster, sequence: Int, sizes: ScaleSizes, metadata: String) -> Record {
        endpoint(of: mock, index: sequence % sizes.endpointsPerCluster, round: sequence / sizes.endpointsPerCluster + 1,
                 sizes: sizes, metadata: metadata)
    }

    /// What an enabled exporter and a bootstrapped control plane write besides the state: the
    /// cluster config, the four sync canaries and the heartbeat, which importers read; and the
    /// settings, CA and clustermesh records, which `ClusterAccessInfo.load` and the connect
    /// checks read. Written after the state, as a real exporter writes its canaries last.
    static func control(of mock: MockCluster, endpoint: String, ca: CertificateAuthorityRecord, now: String) -> [Record] {
        let config = CiliumClusterConfig(id: mock.id, capabilities: .init(syncedCanaries: true, maxConnectedClusters: 255))
        let settings = ClusterSettings(name: mock.name, id: mock.id, podCIDR: mock.podCIDR, serviceCIDR: mock.serviceCIDR,
                                       maxConnectedClusters: 255, clientEndpoints: [endpoint], serverName: mock.serverName)
        var records: [Record] = [
            (KeyLayout.clusterSettings, StoreCoding.encode(settings)),
            (KeyLayout.certificateAuthority, StoreCoding.encode(ca)),
            (KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true))),
            (KeyLayout.clusterConfig(mock.name), (try? CiliumJSON.encoder().encode(config)) ?? Data()),
            (KeyLayout.heartbeat, Data(now.utf8)),
        ]
        for kind in MeshKind.allCases {
            records.append((KeyLayout.syncCanary(cluster: mock.name, prefix: kind.stateCanaryPrefix), Data(now.utf8)))
        }
        return records
    }
}

/// The mark a churn update carries in its `Metadata`: its sequence number and when it was sent
/// (this process's monotonic clock), so the watcher in cluster1 can time it.
struct ChurnStamp: Sendable, Hashable {
    static let prefix = "meridian-scale-churn"
    var sequence: Int
    var sentNanoseconds: UInt64

    init(sequence: Int, sentNanoseconds: UInt64) {
        self.sequence = sequence
        self.sentNanoseconds = sentNanoseconds
    }

    var metadata: String { "\(Self.prefix) seq=\(sequence) t=\(sentNanoseconds)" }

    init?(metadata: String) {
        let parts = metadata.split(separator: " ")
        guard parts.count == 3, parts[0] == Self.prefix, parts[1].hasPrefix("seq="), parts[2].hasPrefix("t="),
              let sequence = Int(parts[1].dropFirst(4)), let sent = UInt64(parts[2].dropFirst(2)) else { return nil }
        self.init(sequence: sequence, sentNanoseconds: sent)
    }
}

/// Nanoseconds on a monotonic clock since this process first asked; stamps are compared only
/// within the process that wrote them.
func monotonicNanoseconds() -> UInt64 {
    let origin = monotonicOrigin // initialized at first use, so read it before the clock
    let elapsed = ContinuousClock.now - origin
    return UInt64(max(0, elapsed.components.seconds)) * 1_000_000_000 + UInt64(max(0, elapsed.components.attoseconds / 1_000_000_000))
}

private let monotonicOrigin = ContinuousClock.now

// MARK: - /proc and arithmetic (pure)

enum ProcFS {
    /// utime + stime in clock ticks, from the text of `/proc/<pid>/stat`. The command name (field
    /// 2) may hold spaces and parentheses, so fields are counted after the last `)`: state is
    /// field 3, utime 14, stime 15.
    static func cpuTicks(stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in kB.
    static func kilobytes(_ field: String, status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            let value = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard value.count == 2, value[1] == "kB" else { return nil }
            return Int(value[0])
        }
        return nil
    }

    static var clockTicksPerSecond: Double { Double(sysconf(Int32(_SC_CLK_TCK))) }

    static func cpuTicks(pid: Int32) -> UInt64? {
        (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).flatMap { cpuTicks(stat: $0) }
    }

    static func peakKilobytes(pid: Int32) -> Int? {
        (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)).flatMap { kilobytes("VmHWM", status: $0) }
    }

    /// Resets the process's peak resident set (VmHWM) to its current size (`clear_refs` value 5,
    /// Linux 4.0+), so a phase's peak is its own. False when the kernel refused.
    @discardableResult
    static func resetPeak(pid: Int32) -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/\(pid)/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`
    /// (`cpu user nice system idle iowait irq softirq steal ...`); idle and iowait are not busy.
    static func machineTicks(procStat: String) -> (busy: UInt64, total: UInt64)? {
        guard let line = procStat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard values.count >= 5 else { return nil }
        let total = values.reduce(0, +)
        return (total - values[3] - values[4], total)
    }

    static func machineTicks() -> (busy: UInt64, total: UInt64)? {
        (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)).flatMap { machineTicks(procStat: $0) }
    }

    static func readPID(_ path: String) -> Int32? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// What a churn phase delivered, from the writers' count and the watcher's arrivals.
struct ChurnOutcome: Codable, Sendable, Hashable {
    var targetPerSecond: Int
    var seconds: Int
    var written: Int
    var writeFailures: Int
    /// Written updates per second over the churn window (or longer, if the writers overran it).
    var writtenPerSecond: Double
    var arrived: Int
    var missing: Int
    /// Arrivals per second from the first write to the last arrival (at least the window):
    /// the rate the mesh actually delivered.
    var sustainedPerSecond: Double
    /// Arrivals in each whole second of the window.
    var arrivalsPerSecond: SampleSummary?
    /// Write (in a mock) to arrival in cluster1's cache, seen by a watch on cluster1's etcd.
    var latencyMs: SampleSummary?
    /// From the first write to the last arrival.
    var lastArrivalSeconds: Double
    /// Baseline of the same run: write to arrival at a watch on the written mock's own etcd
    /// (the first mock's updates only).
    var directLatencyMs: SampleSummary? = nil
    /// Revisions of cluster1's etcd per second over the phase: every write there (cache
    /// updates, status records, anything else), to compare with the updates delivered.
    var cluster1EtcdRevisionsPerSecond: Double? = nil
}

enum ScaleArithmetic {
    /// CPU time as a percentage of one core over `seconds` of wall time.
    static func cpuPercent(ticks: UInt64, ticksPerSecond: Double, seconds: Double) -> Double {
        guard seconds > 0, ticksPerSecond > 0 else { return 0 }
        return Double(ticks) / ticksPerSecond / seconds * 100
    }

    /// `arrivals` are (sent, arrived) monotonic nanoseconds of distinct updates; `start` is when
    /// the writers began; `writeSpan` from then until the last write returned.
    static func churnOutcome(target: Int, seconds: Int, written: Int, writeFailures: Int, writeSpan: Double,
                             arrivals: [(sent: UInt64, arrived: UInt64)], start: UInt64) -> ChurnOutcome {
        let window = Double(seconds)
        let relative = arrivals.map { Double($0.arrived &- start) / 1e9 }
        let lastArrival = relative.max() ?? 0
        var buckets = [Double](repeating: 0, count: seconds)
        for time in relative where time >= 0 && time < window { buckets[Int(time)] += 1 }
        let latencies = arrivals.map { Double($0.arrived &- $0.sent) / 1e6 }
        return ChurnOutcome(
            targetPerSecond: target, seconds: seconds, written: written, writeFailures: writeFailures,
            writtenPerSecond: Double(written) / max(window, writeSpan),
            arrived: arrivals.count, missing: max(0, written - arrivals.count),
            sustainedPerSecond: Double(arrivals.count) / max(window, lastArrival),
            arrivalsPerSecond: SampleSummary(buckets), latencyMs: SampleSummary(latencies), lastArrivalSeconds: lastArrival)
    }
}

// MARK: - Resource use of the measured processes

/// Processes measured together under one name (the mocks are summed).
struct ProcessGroup: Sendable {
    var role: String
    var pids: [Int32]
}

struct ProcessUsage: Codable, Sendable, Hashable {
    var role: String
    var processes: Int
    /// utime + stime over the phase, as a percentage of one core (200 = both cores of this machine).
    var cpuPercentOfOneCore: Double
    /// VmHWM at the end of the phase, reset at its start; summed over the group's processes.
    var peakMemoryMB: Double
}

struct PhaseUsage: Codable, Sendable, Hashable {
    var phase: String
    var seconds: Double
    var processes: [ProcessUsage]
    /// Every process of the machine, as a percentage of one core (the machine's limit is cores × 100).
    var machineCPUPercentOfOneCore: Double?
}

/// CPU ticks of each process at a phase's start (whose peak memory is reset there).
struct PhaseMeter {
    let groups: [ProcessGroup]
    let startTicks: [Int32: UInt64]
    let machineStart: (busy: UInt64, total: UInt64)?
    let started: ContinuousClock.Instant

    static func start(_ groups: [ProcessGroup]) -> PhaseMeter {
        var ticks: [Int32: UInt64] = [:]
        for pid in groups.flatMap(\.pids) {
            ProcFS.resetPeak(pid: pid)
            ticks[pid] = ProcFS.cpuTicks(pid: pid)
        }
        return PhaseMeter(groups: groups, startTicks: ticks, machineStart: ProcFS.machineTicks(), started: .now)
    }

    func finish(_ phase: String) -> PhaseUsage {
        let seconds = (ContinuousClock.now - started).inSeconds
        let usage = groups.map { group in
            var ticks: UInt64 = 0
            var peak = 0
            var alive = 0
            for pid in group.pids {
                guard let end = ProcFS.cpuTicks(pid: pid), let begin = startTicks[pid] else { continue }
                alive += 1
                ticks += end >= begin ? end - begin : 0
                peak += ProcFS.peakKilobytes(pid: pid) ?? 0
            }
            return ProcessUsage(role: group.role, processes: alive,
                                cpuPercentOfOneCore: ScaleArithmetic.cpuPercent(ticks: ticks, ticksPerSecond: ProcFS.clockTicksPerSecond, seconds: seconds),
                                peakMemoryMB: Double(peak) / 1024)
        }
        var machine: Double?
        if let begin = machineStart, let end = ProcFS.machineTicks(), end.total > begin.total {
            let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
            machine = Double(end.busy - begin.busy) / Double(end.total - begin.total) * cores * 100
        }
        return PhaseUsage(phase: phase, seconds: seconds, processes: usage, machineCPUPercentOfOneCore: machine)
    }
}

extension Duration {
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

// MARK: - The mocks' etcd processes

/// The mocked clusters' etcds: one plain etcd 3.4 each (TLS with client-certificate auth, no
/// RBAC), on 127.0.0.1 ports chosen free, with files under `<bench dir>/mocks/<name>/`.
/// Mocks cannot share one etcd: importers read non-namespaced prefixes such as
/// `cilium/state/ip/v1/default/`.
final class MockFleet: @unchecked Sendable {
    let directory: String
    let mocks: [MockCluster]
    private let ports: [(client: Int, peer: Int)]
    private let lock = NSLock()
    private var processes: [Int: Int32] = [:]
    private var exited: Set<Int> = []

    init(directory: String, count: Int) throws {
        self.directory = directory
        mocks = (0..<count).map(MockCluster.init(index:))
        let reserved = try FreePorts.reserve(count * 2)
        ports = (0..<count).map { (reserved[2 * $0], reserved[2 * $0 + 1]) }
    }

    func endpoint(_ mock: MockCluster) -> String { "https://127.0.0.1:\(ports[mock.index].client)" }
    private func home(_ mock: MockCluster) -> String { "\(directory)/\(mock.name)" }
    private var caPath: String { directory + "/ca.crt" }

    /// The administrator's context for a mock (one client certificate serves them all: auth is off).
    func context(_ mock: MockCluster) -> MeridianContext {
        MeridianContext(name: mock.name, cluster: mock.name, endpoint: endpoint(mock), serverName: mock.serverName,
                        certificateAuthority: caPath, clientCertificate: directory + "/admin.crt", clientKey: directory + "/admin.key")
    }

    /// The CA bundle, the shared client certificate and each mock's server certificate.
    func prepare(ca: CertificateAuthority) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try PEMFiles.writeCertificate(ca.certificatePEM, to: caPath)
        let admin = try ca.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(2)))
        try PEMFiles.write(certificatePEM: admin.certificatePEM, to: directory + "/admin.crt", privateKeyPEM: admin.privateKeyPEM, to: directory + "/admin.key")
        for mock in mocks {
            let server = try ca.issue(CertificateRequest(commonName: mock.serverName, usage: .serverAndClient,
                                                         dnsNames: [mock.serverName, "localhost"], ipAddresses: ["127.0.0.1"], validity: .days(2)))
            try PEMFiles.write(certificatePEM: server.certificatePEM, to: home(mock) + "/server.crt",
                               privateKeyPEM: server.privateKeyPEM, to: home(mock) + "/server.key")
        }
    }

    /// Like a control plane's managed etcd, but without the unix socket and with a slower raft
    /// tick (500 ms, election 5 s; one member needs no faster) and one Go thread, so hundreds of
    /// idle mocks leave the machine to the processes under test.
    func arguments(_ mock: MockCluster) -> [String] {
        let client = endpoint(mock)
        let peer = "http://127.0.0.1:\(ports[mock.index].peer)"
        return [
            "--name", mock.name, "--data-dir", home(mock) + "/etcd",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "\(mock.name)=\(peer)", "--initial-cluster-state", "new",
            "--cert-file", home(mock) + "/server.crt", "--key-file", home(mock) + "/server.key",
            "--trusted-ca-file", caPath, "--client-cert-auth",
            "--heartbeat-interval", "500", "--election-timeout", "5000",
            "--max-txn-ops", "4096", "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
    }

    /// Runs every mock's etcd under a supervisor while `body` runs, and stops them all (SIGTERM,
    /// SIGKILL after 10 s) when it returns or throws; then the files go.
    func running<R: Sendable>(executable: String = "/usr/bin/etcd", _ body: () async throws -> R) async throws -> R {
        let logger = Logger(label: "meridian.bench.mocks")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            for mock in mocks {
                let command = SupervisedCommand(
                    executable: executable, arguments: arguments(mock), environment: ["GOMAXPROCS": "1"],
                    workingDirectory: home(mock), logPath: home(mock) + "/etcd.log", dieWithSupervisor: true)
                let supervisor = ProcessSupervisor(command, restart: .never, stopGrace: .seconds(10), logger: logger)
                group.addTask {
                    try await supervisor.run { pid in self.lock.withLock { self.processes[mock.index] = pid } }
                    self.lock.withLock { _ = self.exited.insert(mock.index) }
                }
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    var pids: [Int32] { lock.withLock { Array(processes.values) } }

    /// Waits until every mock answers.
    func waitReachable(_ clients: [EtcdClient], timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        for (index, client) in clients.enumerated() {
            while true {
                if (try? await client.status()) != nil { break }
                if lock.withLock({ exited.contains(index) }) {
                    throw CLIError("mock etcd \(mocks[index].name) exited; see \(home(mocks[index]))/etcd.log")
                }
                guard ContinuousClock.now < deadline else {
                    throw CLIError("mock etcd \(mocks[index].name) not reachable after \(timeout); see \(home(mocks[index]))/etcd.log")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

/// Runs `body` for every item with at most `lanes` running at once.
func forEachConcurrently<T: Sendable>(_ items: [T], lanes: Int, _ body: @escaping @Sendable (T) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<max(1, lanes) {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() { group.addTask { try await body(item) } }
        }
    }
}

// MARK: - Report

struct ScaleReport: Codable, Sendable {
    struct Machine: Codable, Sendable {
        var cores: Int
        var memoryGiB: Double
    }

    struct Counts: Codable, Sendable, Hashable {
        var nodes: Int
        var endpoints: Int
        var identities: Int
        var total: Int { nodes + endpoints + identities }
    }

    struct Setup: Codable, Sendable {
        var mockStartSeconds: Double
        var mockWriteSeconds: Double
        var recordsWritten: Int
        var connectPreparationSeconds: Double
    }

    struct Sync: Codable, Sendable {
        var completed: Bool
        var timeoutSeconds: Double
        /// Writing every peer record into cluster1 (the clock starts at the first).
        var peerRecordsWrittenSeconds: Double
        /// Until every remote's `meridian/clustermesh/status/<remote>` says ready.
        var allRemotesReadySeconds: Double?
        /// Until cluster1's cache holds every record the mocks hold.
        var cacheCompleteSeconds: Double?
        var remotesReady: Int
        var expected: Counts
        var imported: Counts
        var rejected: Int
        var failures: Int
        /// The remotes' last connection errors (first 160 characters), with how many remotes
        /// reported each.
        var lastErrors: [String: Int] = [:]
    }

    /// `clustermesh status` (the same report function) run once after the sync.
    struct StatusCheck: Codable, Sendable {
        var seconds: Double
        var allReady: Bool?
        var error: String?
    }

    var date: String
    var build: String
    var machine: Machine
    var sizes: ScaleSizes
    var totals: Counts
    var setup: Setup
    var sync: Sync
    var clustermeshStatus: StatusCheck?
    var churn: ChurnOutcome?
    var resources: [PhaseUsage]
    var ratios: [String: Double]
    var notes: [String]
}

// MARK: - The run

struct ScaleBench {
    let sizes: ScaleSizes
    let syncTimeout: Duration

    static var buildKind: String {
        #if DEBUG
        "debug"
        #else
        "release"
        #endif
    }

    func run() async throws -> ScaleReport {
        try sizes.validate()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else { throw CLIError("etcd is not installed; run ./scripts/setup.sh") }
        return try await BenchLab.with(clusters: 1, nodes: 1) { bench in
            let fleet = try MockFleet(directory: bench.lab.directory + "/mocks", count: sizes.clusters)
            let ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: bench.lab.caCertificatePath, encoding: .utf8),
                                              privateKeyPEM: String(contentsOfFile: bench.lab.caKeyPath, encoding: .utf8))
            try fleet.prepare(ca: ca)
            BenchLab.progress("starting \(sizes.clusters) mock etcd(s)…")
            let setupStarted = ContinuousClock.now
            let report = try await fleet.running { try await measure(bench, fleet: fleet, ca: ca, setupStarted: setupStarted) }
            BenchLab.progress("stopped \(sizes.clusters) mock etcd(s)")
            return report
        }
    }

    private func measure(_ bench: BenchLab, fleet: MockFleet, ca: CertificateAuthority,
                         setupStarted: ContinuousClock.Instant) async throws -> ScaleReport {
        guard let cluster1 = bench.state.cluster("cluster1") else { throw CLIError("the bench lab has no cluster1") }
        let localContext = MeridianContext(labCluster: cluster1, lab: nil)
        return try await EtcdClient.withClient(try localContext.clientConfiguration()) { local in
            try await withClients(fleet.mocks.map(fleet.context)) { remotes in
                try await fleet.waitReachable(remotes, timeout: .seconds(Int64(60 + sizes.clusters)))
                let mockStart = (ContinuousClock.now - setupStarted).inSeconds
                return try await withThrowingTaskGroup(of: Void.self, returning: ScaleReport.self) { group in
                    let report = try await measure(cluster1: cluster1, localContext: localContext, local: local, remotes: remotes,
                                                   fleet: fleet, ca: ca, mockStart: mockStart) { remotesWritten in
                        // Mocks beat every 30 s, well inside the importer's 2 × 60 s watchdog.
                        group.addTask {
                            while true {
                                try await Task.sleep(for: .seconds(30))
                                let now = iso8601()
                                for remote in remotesWritten { _ = try? await remote.put(KeyLayout.heartbeat, now) }
                            }
                        }
                    }
                    group.cancelAll()
                    return report
                }
            }
        }
    }

    private func measure(cluster1: LabCluster, localContext: MeridianContext, local: EtcdClient, remotes: [EtcdClient],
                         fleet: MockFleet, ca: CertificateAuthority, mockStart: Double,
                         startHeartbeats: ([EtcdClient]) -> Void) async throws -> ScaleReport {
        let mocks = fleet.mocks
        let sizes = sizes

        // The mocks' data, each mock in transactions of up to 1,000 operations.
        BenchLab.progress("writing \(sizes.totalNodes) nodes, \(sizes.totalEndpoints) endpoints, \(sizes.totalIdentities) identities into the mocks…")
        let writeStarted = ContinuousClock.now
        let caRecord = CertificateAuthorityRecord(certificatePEM: ca.certificatePEM, privateKeyPEM: ca.privateKeyPEM)
        let recordsWritten = Shared(0)
        try await forEachConcurrently(mocks, lanes: 4) { mock in
            let records = ScaleRecords.state(of: mock, sizes: sizes)
                + ScaleRecords.control(of: mock, endpoint: fleet.endpoint(mock), ca: caRecord, now: iso8601())
            for start in stride(from: 0, to: records.count, by: 1000) {
                try await remotes[mock.index].commit(puts: Array(records[start..<min(start + 1000, records.count)]))
            }
            recordsWritten.withLock { $0 += records.count }
        }
        let mockWrite = (ContinuousClock.now - writeStarted).inSeconds
        startHeartbeats(remotes)

        // clustermesh enable on cluster1, then what `connect` does for each mock, short of
        // writing the peer record (the sync clock starts at the first of those).
        BenchLab.progress("preparing the connections…")
        let prepareStarted = ContinuousClock.now
        try await local.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: true)))
        try await ClusterAccess.createRemoteRole(local, cluster: cluster1.name)
        let localInfo = try await ClusterAccessInfo.load(localContext, client: local)
        let peers = Shared([Int: PeerRecord]())
        try await forEachConcurrently(mocks, lanes: 4) { mock in
            let remote = remotes[mock.index]
            let info = try await ClusterAccessInfo.load(fleet.context(mock), client: remote)
            try ConnectValidation.validate(localInfo, info, allowMismatchingCA: false)
            try await ClusterAccess.createRemoteRole(remote, cluster: mock.name)
            try await ClusterAccess.addRemoteUser(remote, peer: cluster1.name)
            let certificate = try ca.issue(CertificateRequest(commonName: ClusterAccess.remoteUser(peer: cluster1.name), usage: .client, validity: .days(2)))
            let record = PeerRecord(name: info.settings.name, id: info.settings.id, endpoints: info.settings.clientEndpoints,
                                    serverName: info.settings.serverName, caPEM: info.ca.certificatePEM,
                                    certificatePEM: certificate.certificatePEM, privateKeyPEM: certificate.privateKeyPEM)
            peers.withLock { $0[mock.index] = record }
        }
        let prepare = (ContinuousClock.now - prepareStarted).inSeconds

        let groups = processGroups(cluster1: cluster1, fleet: fleet)
        var phases: [PhaseUsage] = []
        var notes: [String] = []
        if groups.contains(where: { $0.pids.isEmpty && $0.role != "mock etcds" }) {
            notes.append("some measured processes were not found: \(groups.filter(\.pids.isEmpty).map(\.role))")
        }

        // Sync: from the first peer record until every remote is ready and fully cached.
        BenchLab.progress("connecting cluster1 to \(mocks.count) mock(s)…")
        var meter = PhaseMeter.start(groups)
        let syncStarted = ContinuousClock.now
        let records = peers.withLock { peers in mocks.compactMap { peers[$0.index] } }
        for start in stride(from: 0, to: records.count, by: 25) {
            try await local.commit(puts: records[start..<min(start + 25, records.count)].map { (KeyLayout.peer($0.name), StoreCoding.encode($0)) })
        }
        let peersWritten = (ContinuousClock.now - syncStarted).inSeconds
        let sync = try await waitForSync(local: local, mocks: mocks, started: syncStarted, peersWritten: peersWritten)
        phases.append(meter.finish("sync"))
        BenchLab.progress(sync.completed
            ? String(format: "sync complete: all ready after %.1f s, cache complete after %.1f s", sync.allRemotesReadySeconds ?? 0, sync.cacheCompleteSeconds ?? 0)
            : "sync did not complete within \(Int(sync.timeoutSeconds)) s: \(sync.remotesReady)/\(mocks.count) ready")

        // `clustermesh status`, exactly as the command builds it.
        BenchLab.progress("running the clustermesh status report…")
        let statusStarted = ContinuousClock.now
        var status = ScaleReport.StatusCheck(seconds: 0)
        do {
            status.allReady = try await ClusterMeshCommand.Status.report(local, context: localContext).allReady
        } catch {
            status.error = "\(error)"
        }
        status.seconds = (ContinuousClock.now - statusStarted).inSeconds

        // Churn: endpoint updates across the mocks at the target rate.
        var churn: ChurnOutcome?
        if sizes.churnPerSecond > 0 && sync.completed {
            BenchLab.progress("churn: \(sizes.churnPerSecond) updates/s across \(mocks.count) mock(s) for \(sizes.churnSeconds) s…")
            meter = PhaseMeter.start(groups)
            let revisionBefore = try await local.status().revision
            churn = try await runChurn(local: local, remotes: remotes, mocks: mocks)
            let churnPhase = meter.finish("churn")
            phases.append(churnPhase)
            churn?.cluster1EtcdRevisionsPerSecond = Double(try await local.status().revision - revisionBefore) / churnPhase.seconds
        } else if sizes.churnPerSecond > 0 {
            notes.append("churn skipped: the sync did not complete")
        }

        return report(sizes: sizes, setup: .init(mockStartSeconds: mockStart, mockWriteSeconds: mockWrite,
                                                 recordsWritten: recordsWritten.withLock { $0 }, connectPreparationSeconds: prepare),
                      sync: sync, status: status, churn: churn, phases: phases, notes: notes)
    }

    private func processGroups(cluster1: LabCluster, fleet: MockFleet) -> [ProcessGroup] {
        let controlPlane = ProcFS.readPID(cluster1.paths.pidFile)
        let etcd = ProcFS.readPID(cluster1.paths.etcdData + ".pid")
        let agent = cluster1.nodes.first.flatMap { ProcFS.readPID($0.pidFile) }
        return [
            ProcessGroup(role: "control plane (cluster1)", pids: [controlPlane].compactMap { $0 }),
            ProcessGroup(role: "etcd (cluster1)", pids: [etcd].compactMap { $0 }),
            ProcessGroup(role: "agent (cluster1/node1)", pids: [agent].compactMap { $0 }),
            ProcessGroup(role: "mock etcds", pids: fleet.pids),
            ProcessGroup(role: "bench (writers, watch)", pids: [getpid()]),
        ]
    }

    private func waitForSync(local: EtcdClient, mocks: [MockCluster], started: ContinuousClock.Instant,
                             peersWritten: Double) async throws -> ScaleReport.Sync {
        let names = Set(mocks.map(\.name))
        let expected = ScaleReport.Counts(nodes: sizes.totalNodes, endpoints: sizes.totalEndpoints, identities: sizes.totalIdentities)
        var sync = ScaleReport.Sync(completed: false, timeoutSeconds: syncTimeout.inSeconds, peerRecordsWrittenSeconds: peersWritten,
                                    remotesReady: 0, expected: expected, imported: .init(nodes: 0, endpoints: 0, identities: 0),
                                    rejected: 0, failures: 0)
        var lastProgress = ContinuousClock.now
        var lastCount = ContinuousClock.now - .seconds(10)
        while true {
            let elapsed = (ContinuousClock.now - started).inSeconds
            let statuses = try await local.list(prefix: KeyLayout.remoteStatusPrefix).items
                .filter { $0.key != KeyLayout.statusReporter }
                .compactMap { try? StoreCoding.decode(RemoteClusterStatus.self, from: $0.value, key: $0.key) }
                .filter { names.contains($0.name) }
            sync.remotesReady = statuses.filter(\.ready).count
            sync.rejected = statuses.reduce(0) { total, status in total + MeshKind.allCases.reduce(0) { $0 + status.rejected[$1] } }
            sync.failures = statuses.reduce(0) { $0 + $1.numFailures }
            sync.lastErrors = Dictionary(statuses.compactMap { $0.lastError.map { (String($0.prefix(160)), 1) } }, uniquingKeysWith: +)
            let reported = statuses.reduce(0) { $0 + $1.counts.nodes + $1.counts.endpoints + $1.counts.identities }
            if sync.allRemotesReadySeconds == nil && sync.remotesReady == mocks.count { sync.allRemotesReadySeconds = elapsed }
            // Counting the cache walks etcd's index; do it only when the statuses say it may be
            // complete, or every 10 s for the progress line.
            if sync.cacheCompleteSeconds == nil && (reported >= expected.total || ContinuousClock.now - lastCount >= .seconds(10)) {
                sync.imported = ScaleReport.Counts(nodes: try await local.count(prefix: "cilium/cache/nodes/v1/"),
                                                   endpoints: try await local.count(prefix: "cilium/cache/ip/v1/"),
                                                   identities: try await local.count(prefix: "cilium/cache/identities/v1/"))
                lastCount = .now
                if sync.imported == expected { sync.cacheCompleteSeconds = (ContinuousClock.now - started).inSeconds }
            }
            if sync.allRemotesReadySeconds != nil && sync.cacheCompleteSeconds != nil {
                sync.completed = true
                return sync
            }
            if ContinuousClock.now - started >= syncTimeout { return sync }
            if ContinuousClock.now - lastProgress >= .seconds(10) {
                lastProgress = .now
                BenchLab.progress(String(format: "  %.0f s: %ld/%ld ready, cached %ld/%ld nodes, %ld/%ld endpoints, %ld/%ld identities, %ld failures",
                                         elapsed, sync.remotesReady, mocks.count, sync.imported.nodes, expected.nodes,
                                         sync.imported.endpoints, expected.endpoints, sync.imported.identities, expected.identities, sync.failures))
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Writers in 16 lanes put the updates on a fixed schedule (update `g` is due `g / rate`
    /// seconds in, to mock `g % clusters`); a watch on cluster1's cache records arrivals.
    private func runChurn(local: EtcdClient, remotes: [EtcdClient], mocks: [MockCluster]) async throws -> ChurnOutcome {
        let sizes = sizes
        let arrivals = Shared([Int: (sent: UInt64, arrived: UInt64)]())
        let direct = Shared([Int: (sent: UInt64, arrived: UInt64)]())
        let startRevision = try await local.status().revision + 1
        let directRevision = try await remotes[0].status().revision + 1
        /// Records the stamped puts of a watch batch, first sighting only.
        @Sendable func record(_ events: [EtcdWatchEvent], into box: Shared<[Int: (sent: UInt64, arrived: UInt64)]>) {
            let now = monotonicNanoseconds()
            let decoder = JSONDecoder()
            var seen: [(Int, UInt64)] = []
            for case let .put(kv) in events {
                if let pair = try? decoder.decode(IPIdentityPair.self, from: kv.value), let stamp = ChurnStamp(metadata: pair.metadata) {
                    seen.append((stamp.sequence, stamp.sentNanoseconds))
                }
            }
            box.withLock { arrivals in
                for (sequence, sent) in seen where arrivals[sequence] == nil { arrivals[sequence] = (sent, now) }
            }
        }
        return try await withThrowingTaskGroup(of: Void.self, returning: ChurnOutcome.self) { group in
            group.addTask {
                try await local.watch(prefix: "cilium/cache/ip/v1/", startRevision: startRevision) { events, _ in record(events, into: arrivals) }
            }
            // The same run's floor: the first mock's updates seen by a watch on that mock's etcd.
            group.addTask {
                try await remotes[0].watch(prefix: MeshKind.endpoints.statePrefix(cluster: mocks[0].name), startRevision: directRevision) { events, _ in
                    record(events, into: direct)
                }
            }
            let total = sizes.totalChurn
            let lanes = min(16, total)
            let start = monotonicNanoseconds()
            let results = Shared((written: 0, failures: 0, last: start))
            try await withThrowingTaskGroup(of: Void.self) { writers in
                for lane in 0..<lanes {
                    writers.addTask {
                        for g in stride(from: lane, to: total, by: lanes) {
                            let due = start + UInt64(Double(g) / Double(sizes.churnPerSecond) * 1e9)
                            let now = monotonicNanoseconds()
                            if due > now { try await Task.sleep(for: .nanoseconds(Int64(due - now))) }
                            let mock = mocks[g % mocks.count]
                            let stamp = ChurnStamp(sequence: g, sentNanoseconds: monotonicNanoseconds())
                            let record = ScaleRecords.churnUpdate(of: mock, sequence: g / mocks.count, sizes: sizes, metadata: stamp.metadata)
                            do {
                                try await remotes[mock.index].put(record.key, record.value)
                                let done = monotonicNanoseconds()
                                results.withLock { $0.written += 1; $0.last = max($0.last, done) }
                            } catch {
                                results.withLock { $0.failures += 1 }
                            }
                        }
                    }
                }
                try await writers.waitForAll()
            }
            let (written, failures, lastWrite) = results.withLock { ($0.written, $0.failures, $0.last) }
            // Drain: until everything arrived, nothing new for 15 s, or 120 s after the writers.
            let writersDone = ContinuousClock.now
            var lastSeen = arrivals.withLock { $0.count }
            var lastChange = ContinuousClock.now
            while true {
                let count = arrivals.withLock { $0.count }
                if count >= written { break }
                if count != lastSeen { lastSeen = count; lastChange = .now }
                if ContinuousClock.now - lastChange > .seconds(15) || ContinuousClock.now - writersDone > .seconds(120) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            group.cancelAll()
            let observed = arrivals.withLock { Array($0.values) }
            var outcome = ScaleArithmetic.churnOutcome(target: sizes.churnPerSecond, seconds: sizes.churnSeconds, written: written, writeFailures: failures,
                                                       writeSpan: Double(lastWrite - start) / 1e9, arrivals: observed, start: start)
            outcome.directLatencyMs = SampleSummary(direct.withLock { $0.values.map { Double($0.arrived &- $0.sent) / 1e6 } })
            return outcome
        }
    }

    private func report(sizes: ScaleSizes, setup: ScaleReport.Setup, sync: ScaleReport.Sync, status: ScaleReport.StatusCheck,
                        churn: ChurnOutcome?, phases: [PhaseUsage], notes: [String]) -> ScaleReport {
        var ratios: [String: Double] = [
            "ready_remotes_vs_clusters": Double(sync.remotesReady) / Double(sizes.clusters),
            "imported_vs_expected_records": sync.expected.total > 0 ? Double(sync.imported.total) / Double(sync.expected.total) : 1,
        ]
        if let churn {
            if let mesh = churn.latencyMs, let direct = churn.directLatencyMs, direct.p50 > 0, direct.p99 > 0 {
                ratios["mesh_vs_direct_watch_latency_p50"] = mesh.p50 / direct.p50
                ratios["mesh_vs_direct_watch_latency_p99"] = mesh.p99 / direct.p99
            }
            ratios["sustained_vs_target_churn"] = churn.sustainedPerSecond / Double(churn.targetPerSecond)
            ratios["written_vs_target_churn"] = churn.writtenPerSecond / Double(churn.targetPerSecond)
            ratios["delivered_vs_written_churn"] = churn.written > 0 ? Double(churn.arrived) / Double(churn.written) : 0
            if let latency = churn.latencyMs, latency.p50 > 0 { ratios["churn_latency_p99_vs_p50"] = latency.p99 / latency.p50 }
        }
        return ScaleReport(
            date: iso8601(), build: Self.buildKind,
            machine: .init(cores: ProcessInfo.processInfo.activeProcessorCount,
                           memoryGiB: (Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824 * 10).rounded() / 10),
            sizes: sizes, totals: .init(nodes: sizes.totalNodes, endpoints: sizes.totalEndpoints, identities: sizes.totalIdentities),
            setup: setup, sync: sync, clustermeshStatus: status, churn: churn, resources: phases, ratios: ratios, notes: notes)
    }

    // MARK: Output

    static func text(_ report: ScaleReport) -> String {
        let s = report.sizes
        var lines = [
            "Control plane at scale: \(s.clusters) mocked cluster(s) × \(s.nodesPerCluster) nodes × \(s.endpointsPerCluster) endpoints × \(s.identitiesPerCluster) identities "
                + "(\(report.totals.nodes) nodes, \(report.totals.endpoints) endpoints, \(report.totals.identities) identities), \(report.build) build, \(report.machine.cores) cores",
            String(format: "setup: %ld mock etcds reachable after %.1f s; %ld records written in %.1f s; connections prepared in %.1f s",
                   s.clusters, report.setup.mockStartSeconds, report.setup.recordsWritten, report.setup.mockWriteSeconds, report.setup.connectPreparationSeconds),
        ]
        let sync = report.sync
        func seconds(_ value: Double?) -> String { value.map { String(format: "%.1f s", $0) } ?? "not reached" }
        lines.append("sync: \(s.clusters) peer records written in " + String(format: "%.2f s", sync.peerRecordsWrittenSeconds)
            + "; all remotes ready: \(seconds(sync.allRemotesReadySeconds)); cache complete: \(seconds(sync.cacheCompleteSeconds))")
        lines.append("      \(sync.remotesReady)/\(s.clusters) ready; cached \(sync.imported.nodes)/\(sync.expected.nodes) nodes, \(sync.imported.endpoints)/\(sync.expected.endpoints) endpoints, "
            + "\(sync.imported.identities)/\(sync.expected.identities) identities; \(sync.rejected) rejected; \(sync.failures) connection failures")
        for (error, count) in sync.lastErrors.sorted(by: { $0.value > $1.value }).prefix(3) {
            lines.append("      last error of \(count) remote(s): \(error)")
        }
        if let status = report.clustermeshStatus {
            let outcome = status.error.map { "failed: \($0.prefix(200))" } ?? (status.allReady == true ? "all ready" : "not all ready")
            lines.append("clustermesh status report: \(outcome) (" + String(format: "%.1f s", status.seconds) + ")")
        }
        if let churn = report.churn {
            lines.append(String(format: "churn: target %ld/s for %ld s; written %ld (%.1f/s, %ld failed); arrived %ld, missing %ld; sustained %.1f/s; last arrival at %.1f s",
                                churn.targetPerSecond, churn.seconds, churn.written, churn.writtenPerSecond, churn.writeFailures,
                                churn.arrived, churn.missing, churn.sustainedPerSecond, churn.lastArrivalSeconds))
            if let perSecond = churn.arrivalsPerSecond {
                lines.append(String(format: "       arrivals per second in the window: p50 %.0f, min %.0f, max %.0f", perSecond.p50, perSecond.min, perSecond.max))
            }
            if let latency = churn.latencyMs {
                lines.append(String(format: "       mock write -> cluster1 cache: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
                                    latency.p50, latency.p90, latency.p99, latency.max))
            }
            if let revisions = churn.cluster1EtcdRevisionsPerSecond {
                lines.append(String(format: "       cluster1's etcd took %.0f revisions/s (every write there, including status records)", revisions))
            }
            if let latency = churn.directLatencyMs {
                lines.append(String(format: "       baseline, mock write -> watch on that mock: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
                                    latency.p50, latency.p90, latency.p99, latency.max))
            }
        }
        lines.append("process".padding(toLength: 28, withPad: " ", startingAt: 0) + "phase   seconds   CPU % of one core   peak MB")
        for phase in report.resources {
            for usage in phase.processes {
                let role = usage.processes > 1 ? "\(usage.role) (\(usage.processes))" : usage.role
                lines.append(role.padding(toLength: 28, withPad: " ", startingAt: 0)
                    + phase.phase.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + String(format: " %8.1f   %17.0f   %7.0f", phase.seconds, usage.cpuPercentOfOneCore, usage.peakMemoryMB))
            }
            if let machine = phase.machineCPUPercentOfOneCore {
                lines.append("whole machine".padding(toLength: 28, withPad: " ", startingAt: 0) + phase.phase.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + String(format: " %8.1f   %17.0f   (of %ld)", phase.seconds, machine, report.machine.cores * 100))
            }
        }
        lines.append("ratios: " + report.ratios.sorted { $0.key < $1.key }.map { "\($0.key) " + String(format: "%.3f", $0.value) }.joined(separator: ", "))
        lines += report.notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}

private func iso8601() -> String { ISO8601DateFormatter().string(from: Date()) }
