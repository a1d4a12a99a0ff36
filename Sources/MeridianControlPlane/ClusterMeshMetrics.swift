import CoreMetrics
import Foundation
import MeridianStore
import Synchronization

/// The per-remote-cluster metrics of a control plane, copied at scrape time from the statuses
/// the importers already publish on the `StatusBoard`; nothing on the import path counts twice.
/// Counters that the status keeps as running totals are advanced by their growth since the
/// last scrape, so they stay monotonic for Prometheus across importer restarts.
public final class ClusterMeshMetrics: Sendable {
    public static let prefix = "meridian_clustermesh_remote_cluster_"

    private struct Seen {
        var failures: [String: Int] = [:]
        var rejected: [RejectionKey: Int] = [:]
        var remotes: Set<String> = []
    }

    private struct RejectionKey: Hashable {
        var remote: String
        var reason: String
    }

    private let board: StatusBoard
    private let seen = Mutex(Seen())

    public init(board: StatusBoard) {
        self.board = board
    }

    /// Copies the board into the metrics; `now` dates the heartbeat age.
    public func refresh(now: Date = Date()) {
        let statuses = board.snapshot().statuses
        let departed: Set<String> = seen.withLock { seen in
            let departed = seen.remotes.subtracting(statuses.keys)
            seen.remotes = Set(statuses.keys)
            return departed
        }
        for remote in departed { Self.clear(remote) }
        statuses.values.forEach { refresh($0, now: now) }
        Gauge(label: "meridian_clustermesh_remote_clusters").record(statuses.count)
    }

    private func refresh(_ status: RemoteClusterStatus, now: Date) {
        let target = [("target_cluster", status.name)]
        Gauge(label: Self.prefix + "readiness_status", dimensions: target).record(status.ready ? 1 : 0)
        Gauge(label: Self.prefix + "connected", dimensions: target).record(status.connected ? 1 : 0)
        Gauge(label: Self.prefix + "last_failure_timestamp_seconds", dimensions: target)
            .record(status.lastFailure?.timeIntervalSince1970 ?? 0)
        if let heartbeat = status.lastHeartbeat {
            Gauge(label: Self.prefix + "heartbeat_age_seconds", dimensions: target).record(max(0, now.timeIntervalSince(heartbeat)))
        }
        for kind in MeshKind.allCases {
            let labels = target + [("kind", kind.rawValue)]
            Gauge(label: Self.prefix + "records", dimensions: labels).record(status.counts[kind])
        }
        let failureGrowth = seen.withLock { seen in
            let growth = Self.growth(from: seen.failures[status.name], to: status.numFailures)
            seen.failures[status.name] = status.numFailures
            return growth
        }
        Counter(label: Self.prefix + "failures_total", dimensions: target).increment(by: failureGrowth)
        for (reason, count) in status.rejectedByReason ?? [:] {
            let key = RejectionKey(remote: status.name, reason: reason)
            let growth = seen.withLock { seen in
                let growth = Self.growth(from: seen.rejected[key], to: count)
                seen.rejected[key] = count
                return growth
            }
            Counter(label: Self.prefix + "rejected_records_total", dimensions: target + [("reason", reason)]).increment(by: growth)
        }
    }

    /// How far a running total grew; a total that went down was restarted from zero.
    static func growth(from before: Int?, to now: Int) -> Int {
        guard let before, now >= before else { return now }
        return now - before
    }

    /// A disconnected remote's gauges go to zero (the registry keeps every series it has made).
    private static func clear(_ remote: String) {
        let target = [("target_cluster", remote)]
        Gauge(label: prefix + "readiness_status", dimensions: target).record(0)
        Gauge(label: prefix + "connected", dimensions: target).record(0)
        for kind in MeshKind.allCases {
            Gauge(label: prefix + "records", dimensions: target + [("kind", kind.rawValue)]).record(0)
        }
    }

    /// Times one batch of a remote's changes from its arrival to its write into the local cache.
    static func recordImport(remote: String, kind: MeshKind, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let (seconds, attoseconds) = elapsed.components
        CoreMetrics.Timer(label: prefix + "import_duration_seconds", dimensions: [("target_cluster", remote), ("kind", kind.rawValue)])
            .recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
