import Foundation

// MARK: - Report

/// What a scale run measured, as `-o json` prints it.
public struct ScaleReport: Codable, Sendable {
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
        /// The nice value the mocks' etcds ran at (0: the same priority as cluster1's processes).
        var mockNiceness: Int = 0
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
