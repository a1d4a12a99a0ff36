import Foundation
import MeridianAdmin
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

// MARK: - The run

/// The ClusterMesh scale test's shape on this machine (see above).
public struct ScaleBenchmark: Sendable {
    public let sizes: ScaleSizes
    public let syncTimeout: Duration
    /// The nice value of the mocks' etcds. The mocks stand in for remote clusters, which run on
    /// machines of their own; here 250 of them share two cores with cluster1, and at the same
    /// priority the scheduler's per-thread fairness gives cluster1's control plane a fifth of a
    /// core. Lower priority lets cluster1's processes use the CPU the mocks leave.
    public let mockNiceness: Int

    public init(sizes: ScaleSizes, syncTimeout: Duration, mockNiceness: Int = Self.defaultMockNiceness) {
        self.sizes = sizes
        self.syncTimeout = syncTimeout
        self.mockNiceness = mockNiceness
    }

    public static let defaultMockNiceness = 10

    static var buildKind: String {
        #if DEBUG
        "debug"
        #else
        "release"
        #endif
    }

    public func run() async throws -> ScaleReport {
        try sizes.validate()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else { throw BenchError.toolMissing("etcd") }
        return try await BenchLab.with(clusters: 1, nodes: 1) { bench in
            let fleet = try MockFleet(directory: bench.lab.directory + "/mocks", count: sizes.clusters, niceness: mockNiceness)
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

    private func measure(_ bench: LabDriver, fleet: MockFleet, ca: CertificateAuthority,
                         setupStarted: ContinuousClock.Instant) async throws -> ScaleReport {
        let cluster1 = try bench.cluster("cluster1")
        let localContext = try bench.context("cluster1")
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
        let caRecord = MeshCertificateAuthorityRecord(certificatePEM: ca.certificatePEM)
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
        // writing the peer record (a mock has no control plane to issue the credential, so the
        // bench, which holds the mocks' CA, issues it): the records are written together below, so that the sync
        // clock starts at the first of them rather than after hundreds of certificates.
        BenchLab.progress("preparing the connections…")
        let prepareStarted = ContinuousClock.now
        _ = try await ClusterMesh.enable(localContext, heartbeatInterval: 60, cacheTTL: 0)
        let localInfo = try await ClusterAccessInfo.load(localContext, client: local)
        let peers = Shared([Int: PeerRecord]())
        try await forEachConcurrently(mocks, lanes: 4) { mock in
            let remote = remotes[mock.index]
            let info = try await ClusterAccessInfo.load(fleet.context(mock), client: remote)
            try ConnectValidation.validate(localInfo, info, allowMismatchingCA: false)
            let record = try MockFleet.peerRecord(for: localInfo, exporter: info, ca: ca)
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
            status.allReady = try await ClusterMeshStatusReport.load(local, context: localContext).allReady
        } catch {
            status.error = "\(error)"
        }
        status.seconds = (ContinuousClock.now - statusStarted).inSeconds

        // Churn: endpoint updates across the mocks at the target rate.
        var churn: ChurnOutcome?
        if sizes.churnPerSecond > 0 && sync.completed {
            BenchLab.progress("churn: \(sizes.churnPerSecond) updates/s across \(mocks.count) mock(s) for \(sizes.churnSeconds) s…")
            meter = PhaseMeter.start(groups)
            let revisionBefore = try await local.currentRevision()
            churn = try await runChurn(local: local, remotes: remotes, mocks: mocks)
            let churnPhase = meter.finish("churn")
            phases.append(churnPhase)
            churn?.cluster1EtcdRevisionsPerSecond = Double(try await local.currentRevision() - revisionBefore) / churnPhase.seconds
        } else if sizes.churnPerSecond > 0 {
            notes.append("churn skipped: the sync did not complete")
        }

        return report(sizes: sizes, setup: .init(mockStartSeconds: mockStart, mockWriteSeconds: mockWrite,
                                                 recordsWritten: recordsWritten.withLock { $0 }, connectPreparationSeconds: prepare,
                                                 mockNiceness: mockNiceness),
                      sync: sync, status: status, churn: churn, phases: phases, notes: notes)
    }

    private func processGroups(cluster1: LabCluster, fleet: MockFleet) -> [ProcessGroup] {
        let controlPlane = HostProcess.pid(inFile: cluster1.paths.pidFile)
        let etcd = HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster1.paths.etcdData))
        let agent = cluster1.nodes.first.flatMap { HostProcess.pid(inFile: $0.pidFile) }
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
            do {
                if let done = try await pollSync(&sync, local: local, names: names, mocks: mocks, expected: expected, started: started,
                                                 lastCount: &lastCount, lastProgress: &lastProgress) {
                    return done
                }
            } catch where Self.isTransient(error) {
                // cluster1's etcd is what the sync loads; a read of it timing out is retried, not the end of the run.
                BenchLab.progress("  a read of cluster1's etcd timed out while it synced; reading again")
                if ContinuousClock.now - started >= syncTimeout { return sync }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// A store error worth another read: a timeout, or the store briefly unreachable.
    static func isTransient(_ error: any Error) -> Bool {
        guard let etcd = error as? EtcdError else { return false }
        return etcd.code == .timeout || etcd.code == .unavailable
    }

    /// One look at the sync: the finished report once every remote is ready and the cache
    /// complete (or the timeout passed), nil to look again.
    private func pollSync(_ sync: inout ScaleReport.Sync, local: EtcdClient, names: Set<String>, mocks: [MockCluster],
                          expected: ScaleReport.Counts, started: ContinuousClock.Instant,
                          lastCount: inout ContinuousClock.Instant, lastProgress: inout ContinuousClock.Instant) async throws -> ScaleReport.Sync? {
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
            sync.imported = ScaleReport.Counts(nodes: try await local.count(prefix: MeshKind.nodes.cacheRoot),
                                               endpoints: try await local.count(prefix: MeshKind.endpoints.cacheRoot),
                                               identities: try await local.count(prefix: MeshKind.identities.cacheRoot))
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
        return nil
    }

    /// Writers in 16 lanes put the updates on a fixed schedule (update `g` is due `g / rate`
    /// seconds in, to mock `g % clusters`); a watch on cluster1's cache records arrivals.
    private func runChurn(local: EtcdClient, remotes: [EtcdClient], mocks: [MockCluster]) async throws -> ChurnOutcome {
        let sizes = sizes
        let arrivals = Shared([Int: (sent: UInt64, arrived: UInt64)]())
        let direct = Shared([Int: (sent: UInt64, arrived: UInt64)]())
        let startRevision = try await local.currentRevision() + 1
        let directRevision = try await remotes[0].currentRevision() + 1
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
                try await local.watch(prefix: MeshKind.endpoints.cacheRoot, startRevision: startRevision) { events, _ in record(events, into: arrivals) }
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

    public static func text(_ report: ScaleReport) -> String {
        let s = report.sizes
        var lines = [
            "Control plane at scale: \(s.clusters) mocked cluster(s) × \(s.nodesPerCluster) nodes × \(s.endpointsPerCluster) endpoints × \(s.identitiesPerCluster) identities "
                + "(\(report.totals.nodes) nodes, \(report.totals.endpoints) endpoints, \(report.totals.identities) identities), \(report.build) build, \(report.machine.cores) cores",
            String(format: "setup: %ld mock etcds (nice %ld) reachable after %.1f s; %ld records written in %.1f s; connections prepared in %.1f s",
                   s.clusters, report.setup.mockNiceness, report.setup.mockStartSeconds, report.setup.recordsWritten, report.setup.mockWriteSeconds,
                   report.setup.connectPreparationSeconds),
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
