import Foundation
import Glibc
import MeridianAdmin
import MeridianControlPlane
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianStore
import MeridianTools
import Synchronization

/// `meridian bench faults`: each fault of `meridian lab fault` injected in one run on a lab of two
/// connected clusters, while a client pod in cluster2 opens a new connection to a server pod in
/// cluster1 every 20 ms. Per fault: the time until the fault is seen (a restarted process, or the
/// peer marked not ready), the time until all is well again (the process serving, the peer
/// ready), and what was lost: requests that failed, store writes acknowledged and then missing,
/// entries deleted while a peer was away and still imported after it came back.
public struct FaultsBenchmark: Sendable {
    /// Seconds an agent stays stopped (longer than the 15 s lease nodes once had).
    public var agentAway = 25
    /// Endpoints deleted in cluster1 while it is partitioned from cluster2.
    public var deletedWhileAway = 1000
    /// Members of each cluster's store (1: the control plane's own etcd; 3 or 5: members of their own).
    public var etcdMembers = 1
    public var quick = false
    public var keep = false

    public init() {}

    /// One fault's figures: one line of the table, one object of `-o json`.
    public struct Row: Codable, Sendable {
        public var fault: String
        /// Milliseconds from the fault to its detection (nil: nothing to detect).
        public var detectMilliseconds: Double?
        /// Milliseconds from the fault (or its undoing) to recovery.
        public var recoverMilliseconds: Double
        public var requests: Int
        public var failedRequests: Int
        /// Store writes acknowledged during the fault that are missing afterwards.
        public var lostWrites: Int?
        /// Entries deleted during a partition still imported after it healed.
        public var staleEntries: Int?
        /// Times cluster2's connection to cluster1 failed and was made again, from a second
        /// before the fault to a second after it (nil: its status could not be read).
        public var reconnects: Int?
        /// Whether the losses are ones the fault forces (a partition cuts the traffic it carries).
        public var lossExpected: Bool
    }

    /// Every fault of one run, in the order injected.
    public struct Report: Codable, Sendable {
        public var rows: [Row]
    }

    public func validate() throws(BenchError) {
        guard (1...600).contains(agentAway) else { throw .invalidOption("--agent-away must be 1...600 seconds, got \(agentAway)") }
        guard (0...20_000).contains(deletedWhileAway) else { throw .invalidOption("--deleted-while-away must be 0...20000, got \(deletedWhileAway)") }
        guard [1, 3, 5].contains(etcdMembers) else { throw .invalidOption("--etcd-members must be 1, 3 or 5, got \(etcdMembers)") }
    }

    public func run() async throws -> Report {
        try validate()
        return try await BenchLab.with(clusters: 2, nodes: 1, keep: keep, up: ["--etcd-members", "\(etcdMembers)"]) { try await measure($0) }
    }

    private func measure(_ bench: LabDriver) async throws -> Report {
        for cluster in ["cluster1", "cluster2"] {
            try await bench.mustRun(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "1"])
        }
        try await bench.mustRun(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"])
        try await bench.mustRun(["clustermesh", "status", "--context", "cluster2", "--wait", "--wait-duration", "60s"])
        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"], stdin: BenchLab.serverPod("server", node: "node1", labels: ["bench": "server"]))
        try await bench.mustRun(["apply", "--context", "cluster2", "-f", "-"], stdin: BenchLab.clientPod("client", node: "node1"))
        guard let server = try await bench.waitForPods(["server"], context: "cluster1")["server"] else { throw BenchError.missing("server pod") }
        _ = try await bench.waitForPods(["client"], context: "cluster2")
        let client = Load(bench: bench, server: server)
        try await LabDriver.waitUntil("cluster2 reaches the server pod", timeout: .seconds(60)) {
            try await client.run(for: .milliseconds(300)).failures == 0
        }
        let lab = bench.lab
        var rows: [Row] = []

        let etcd: LabProcess = etcdMembers > 1 ? .etcd(cluster: "cluster1", member: "leader") : .etcd(cluster: "cluster1")
        BenchLab.progress("fault: kill -9 \(etcd)")
        rows.append(try await client.during("kill -9 \(etcdMembers > 1 ? "etcd leader" : "etcd") (cluster1)") {
            // Writes acknowledged just before the crash must all be there after it.
            let writes = StoreWriter(bench: bench, cluster: "cluster1")
            for _ in 0..<50 { _ = await writes.write() }
            guard let old = try await lab.pid(of: etcd) else { throw BenchError.missing("\(etcd)") }
            // A member's pid is its supervisor's to report; the leader's name may change.
            let member = try bench.cluster("cluster1").etcdMembers.first { ServiceRecord.load($0.service)?.pid == old }
            let began = ContinuousClock.now
            kill(old, SIGKILL)
            let restarted = try await Self.until {
                let now = if let member { ServiceRecord.load(member.service)?.pid } else { try await lab.pid(of: etcd) }
                return now.map { $0 != old && HostProcess.isAlive($0) } ?? false
            }
            let serving = try await Self.until { await writes.write() }
            let lost = try await writes.missing()
            return (restarted - began, serving - began, lost, nil)
        })

        if etcdMembers > 1 {
            BenchLab.progress("fault: etcd member m0 of cluster1 (the one clients try first) stopped for 10 s")
            rows.append(try await client.during("stop etcd m0 10 s (cluster1)") {
                let writes = StoreWriter(bench: bench, cluster: "cluster1")
                let began = ContinuousClock.now
                _ = try await lab.stop(.etcd(cluster: "cluster1", member: "m0"))
                let serving = try await Self.until { await writes.write() }
                let stopped = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < stopped { _ = await writes.write() }
                _ = try await lab.start(.etcd(cluster: "cluster1", member: "m0"))
                return (nil, serving - began, try await writes.missing(), nil)
            })
        }

        BenchLab.progress("fault: kill -9 control plane of cluster1")
        rows.append(try await client.during("kill -9 control plane (cluster1)") {
            let cluster = try bench.cluster("cluster1")
            let old = try await lab.pid(of: .controlPlane(cluster: "cluster1"))
            let began = ContinuousClock.now
            _ = try await lab.signal(.controlPlane(cluster: "cluster1"), SIGKILL)
            let restarted = try await Self.until {
                try await lab.pid(of: .controlPlane(cluster: "cluster1")).map { $0 != old } ?? false
                    && FileManager.default.fileExists(atPath: cluster.paths.readyMarker)
            }
            let ready = try await Self.until { try await Self.peerReady(bench, in: "cluster2") }
            return (restarted - began, ready - began, nil, nil)
        })

        BenchLab.progress("fault: kill -9 agent of cluster1/node1")
        rows.append(try await client.during("kill -9 agent (cluster1/node1)") {
            let node = try Self.node(bench)
            let registered = lab.registrations(of: node)
            let began = ContinuousClock.now
            _ = try await lab.signal(.agent(cluster: "cluster1", node: "node1"), SIGKILL)
            let restarted = try await Self.until { lab.registrations(of: node) > registered }
            return (nil, restarted - began, nil, nil)
        })

        let away = quick ? 5 : agentAway
        BenchLab.progress("fault: agent of cluster1/node1 stopped for \(away) s")
        rows.append(try await client.during("agent stopped \(away) s (cluster1/node1)") {
            _ = try await lab.stop(.agent(cluster: "cluster1", node: "node1"))
            try await Task.sleep(for: .seconds(away))
            let began = ContinuousClock.now
            _ = try await lab.start(.agent(cluster: "cluster1", node: "node1"))
            return (nil, ContinuousClock.now - began, nil, nil)
        })

        BenchLab.progress("fault: stall (SIGSTOP) control plane of cluster1 for 5 s")
        rows.append(try await client.during("stall control plane 5 s (cluster1)") {
            let began = ContinuousClock.now
            async let stalled = lab.stall(.controlPlane(cluster: "cluster1"), for: .seconds(5))
            let detected = try await Self.until(timeout: .seconds(20)) { !(try await Self.peerReady(bench, in: "cluster2")) }
            _ = try await stalled
            let ready = try await Self.until { try await Self.peerReady(bench, in: "cluster2") }
            return (detected - began, ready - began, nil, nil)
        })

        let deletions = quick ? min(deletedWhileAway, 200) : deletedWhileAway
        BenchLab.progress("fault: partition cluster1 <-> cluster2, \(deletions) endpoints deleted meanwhile")
        rows.append(try await client.during("partition, \(deletions) deletions while away", lossExpected: true) {
            let keys = (0..<deletions).map { MeshKind.endpoints.stateKey(cluster: "cluster1", name: "10.1.\(200 + $0 / 250).\($0 % 250 + 1)") }
            try await bench.withClient("cluster1") { store in
                for batch in stride(from: 0, to: keys.count, by: 500) {
                    let slice = keys[batch..<min(keys.count, batch + 500)]
                    try await store.commit(puts: slice.enumerated().map { ($1, Self.endpoint(ip: String($1.split(separator: "/").last!), index: batch + $0)) },
                                           deletes: [])
                }
            }
            try await Self.until(timeout: .seconds(60)) { try await Self.imported(bench, prefix: "10.1.2") == deletions }
            let began = ContinuousClock.now
            _ = try await lab.partition("cluster1", "cluster2")
            let detected = try await Self.until(timeout: .seconds(30)) { !(try await Self.peerReady(bench, in: "cluster2")) }
            try await bench.withClient("cluster1") { store in
                for batch in stride(from: 0, to: keys.count, by: 500) {
                    try await store.commit(puts: [], deletes: Array(keys[batch..<min(keys.count, batch + 500)]))
                }
            }
            let healed = ContinuousClock.now
            _ = try await lab.heal("cluster1", "cluster2")
            let ready = try await Self.until(timeout: .seconds(60)) { try await Self.peerReady(bench, in: "cluster2") }
            return (detected - began, ready - healed, nil, try await Self.imported(bench, prefix: "10.1.2"))
        })
        return Report(rows: rows)
    }

    // MARK: Measuring

    /// The client pod's load against the server pod: `meridian tool load` run inside the pod.
    struct Load: Sendable {
        let bench: LabDriver
        let server: String

        func run(for duration: Duration, stopFile: String? = nil) async throws -> LoadProbe.Report {
            let seconds = max(1, Int((Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18).rounded(.up)))
            let output = try await bench.mustRun(["exec", "--context", "cluster2", "client", "--", "meridian", "tool", "load", "\(server):8080",
                                                  "--interval-ms", "20", "--timeout", "1", "--duration", "\(seconds)"]
                                                 + (stopFile.map { ["--stop-file", $0] } ?? []))
            return try JSONDecoder().decode(LoadProbe.Report.self, from: Data(output.utf8))
        }

        /// Runs `fault` while the load runs (from a second before it to a second after it ends).
        func during(_ name: String, lossExpected: Bool = false,
                    _ fault: @Sendable () async throws -> (detect: Duration?, recover: Duration, lostWrites: Int?, stale: Int?)) async throws -> Row {
            let stopFile = "/tmp/meridian-bench-\(getpid())-stop"
            try? FileManager.default.removeItem(atPath: stopFile)
            defer { try? FileManager.default.removeItem(atPath: stopFile) }
            return try await withThrowingTaskGroup(of: LoadProbe.Report.self) { group in
                group.addTask { try await run(for: .seconds(600), stopFile: stopFile) }
                let failuresBefore = try? await FaultsBenchmark.peerFailures(bench, in: "cluster2")
                try await Task.sleep(for: .seconds(1))
                let outcome = try await fault()
                try await Task.sleep(for: .seconds(1))
                _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
                guard let load = try await group.next() else { throw BenchError.missing("load report") }
                let failuresAfter = try? await FaultsBenchmark.peerFailures(bench, in: "cluster2")
                let reconnects = failuresBefore.flatMap { before in failuresAfter.map { $0 - before } }
                return Row(fault: name, detectMilliseconds: outcome.detect.map(FaultsBenchmark.milliseconds),
                           recoverMilliseconds: FaultsBenchmark.milliseconds(outcome.recover), requests: load.requests,
                           failedRequests: load.failures, lostWrites: outcome.lostWrites, staleEntries: outcome.stale,
                           reconnects: reconnects, lossExpected: lossExpected)
            }
        }
    }

    /// Writes numbered keys into a cluster's store while it is failing, remembering which were
    /// acknowledged, and afterwards counts the acknowledged ones that are missing.
    final class StoreWriter: Sendable {
        let bench: LabDriver
        let cluster: String
        private let acknowledged = Mutex<[String]>([])
        private let prefix = "meridian/bench/faults/\(UUID().uuidString.prefix(8))/"

        init(bench: LabDriver, cluster: String) {
            self.bench = bench
            self.cluster = cluster
        }

        /// One write with a short timeout; true if the store acknowledged it.
        func write() async -> Bool {
            let key = prefix + String(format: "%06d", acknowledged.withLock { $0.count })
            do {
                var configuration = try bench.context(cluster).clientConfiguration()
                configuration.maxReconnectBackoff = .milliseconds(200)
                configuration.requestTimeout = .milliseconds(500)
                _ = try await EtcdClient.withClient(configuration) { try await $0.put(key, Data("1".utf8)) }
                acknowledged.withLock { $0.append(key) }
                return true
            } catch {
                return false
            }
        }

        func missing() async throws -> Int {
            let present = try await bench.withClient(cluster) { Set(try await $0.list(prefix: prefix).items.map(\.key)) }
            try await bench.withClient(cluster) { _ = try await $0.delete(prefix: prefix) }
            return acknowledged.withLock { $0 }.filter { !present.contains($0) }.count
        }
    }

    /// Polls `condition` every 50 ms until it holds; the instant it first held.
    @discardableResult
    static func until(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return .now }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError.timedOut("a recovery within \(timeout)")
    }

    static func peerReady(_ bench: LabDriver, in cluster: String) async throws -> Bool {
        let remotes = try await bench.meshStatus(cluster)["remoteClusters"] as? [[String: Any]]
        return remotes?.first?["ready"] as? Bool == true
    }

    /// How often a cluster's connection to its one remote has failed so far.
    static func peerFailures(_ bench: LabDriver, in cluster: String) async throws -> Int {
        let remotes = try await bench.meshStatus(cluster)["remoteClusters"] as? [[String: Any]]
        guard let failures = remotes?.first?["numFailures"] as? Int else { throw BenchError.missing("the failure count of \(cluster)'s remote") }
        return failures
    }

    /// How many of cluster1's endpoints whose address starts with `prefix` cluster2 imports.
    static func imported(_ bench: LabDriver, prefix: String) async throws -> Int {
        let cache = MeshKind.endpoints.cachePrefix(cluster: "cluster1")
        return try await bench.withClient("cluster2") { try await $0.list(prefix: cache + prefix).items.count }
    }

    static func node(_ bench: LabDriver) throws -> LabNode {
        guard let node = try bench.cluster("cluster1").nodes.first else { throw BenchError.missing("node1 of cluster1") }
        return node
    }

    static func endpoint(ip: String, index: Int) -> Data {
        Data(#"{"IP":"\#(ip)","HostIP":"172.30.1.1","ID":\#(65_537 + index % 1000),"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"away-\#(index)"}"#.utf8)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    public static func text(_ report: Report) -> String {
        func cell(_ value: Double?) -> String { value.map { String(format: "%.0f ms", $0) } ?? "-" }
        var lines = ["Faults on a lab of two connected clusters; load: cluster2 pod → cluster1 pod, a new connection every 20 ms",
                     "fault".padding(toLength: 40, withPad: " ", startingAt: 0) + "detect      recover     requests  failed  lost writes  stale  reconnects"]
        for row in report.rows {
            lines.append(row.fault.padding(toLength: 40, withPad: " ", startingAt: 0)
                         + cell(row.detectMilliseconds).padding(toLength: 12, withPad: " ", startingAt: 0)
                         + cell(row.recoverMilliseconds).padding(toLength: 12, withPad: " ", startingAt: 0)
                         + "\(row.requests)".padding(toLength: 10, withPad: " ", startingAt: 0)
                         + ("\(row.failedRequests)" + (row.lossExpected ? "*" : "")).padding(toLength: 8, withPad: " ", startingAt: 0)
                         + (row.lostWrites.map(String.init) ?? "-").padding(toLength: 13, withPad: " ", startingAt: 0)
                         + (row.staleEntries.map(String.init) ?? "-").padding(toLength: 7, withPad: " ", startingAt: 0)
                         + (row.reconnects.map(String.init) ?? "-"))
        }
        lines.append("* the partition cuts the path the load takes: those failures are the fault's, not lost by recovery")
        lines.append("reconnects: times cluster2's connection to cluster1 failed, from a second before the fault to a second after")
        return lines.joined(separator: "\n")
    }
}
