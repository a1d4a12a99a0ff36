import Foundation
import Logging
import MeridianEtcd
import MeridianStore

/// Keeps the cluster's store writable. Once a backend reaches its quota etcd raises NOSPACE and
/// refuses every write (the control plane's, the agents', `apply`) until someone disarms it; the
/// guard looks for the alarm every `interval`, and when it finds one it compacts the history up
/// to the current revision, defragments, disarms, and publishes what it did
/// (`meridian/status/store`, shown by `clustermesh status`). Defragmenting is per member, so with
/// a store of several members each is defragmented in turn. It runs for a managed etcd, and for
/// an external store only when asked (`--maintain-store`): otherwise that is its operator's job. When the live data alone exceeds the quota the
/// alarm comes back at the next writes; the guard then does not recover again for five minutes
/// and says the quota must grow.
struct StoreSpaceGuard: Sendable {
    let client: EtcdClient
    let quotaBytes: Int64?
    let interval: Duration
    let logger: Logger

    func run() async throws {
        var lastRecovery: StoreSpaceRecord.Recovery?
        while true {
            do {
                lastRecovery = try await check(lastRecovery: lastRecovery)
            } catch {
                logger.warning("store space check failed", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: interval)
        }
    }

    /// Defragments each member on a connection of its own (the call acts on the member that
    /// answers it), one after another so the store keeps a quorum serving meanwhile.
    private func defragmentEveryMember() async throws(EtcdError) {
        let endpoints = client.configuration.endpoints
        guard endpoints.count > 1 else { return try await client.defragment() }
        for endpoint in endpoints {
            do {
                try await EtcdClient.withClient(client.configuration.member(endpoint)) { try await $0.defragment() }
            } catch let error as EtcdError {
                throw error
            } catch {
                throw EtcdError(.other, "defragment \(endpoint): \(error)", cause: error)
            }
        }
    }

    /// The shortest time between two recoveries.
    static let recoveryInterval: TimeInterval = 300

    /// One look; returns the latest recovery (this one, or the one before).
    func check(lastRecovery: StoreSpaceRecord.Recovery?) async throws(EtcdError) -> StoreSpaceRecord.Recovery? {
        var recovery = lastRecovery
        let alarms = try await client.alarms().filter { $0.kind == .noSpace }
        if !alarms.isEmpty, let last = lastRecovery, Date().timeIntervalSince(last.at) < Self.recoveryInterval {
            // Compacting again frees nothing new and breaks every watch: the live data itself is
            // over the quota, and only a larger quota helps.
            logger.error("store is out of space again right after a recovery; its live data exceeds the quota: raise --etcd-quota-bytes",
                         metadata: ["quota-bytes": "\(quotaBytes.map(String.init) ?? "-")"])
            return recovery
        }
        if !alarms.isEmpty {
            let before = try await client.backendSize()
            let revision = try await client.currentRevision()
            logger.error("store is out of space (NOSPACE alarm); compacting, defragmenting and disarming",
                         metadata: ["backend-bytes": "\(before)", "revision": "\(revision)"])
            do {
                try await client.compact(revision: revision)
            } catch where error.code == .invalidArgument || error.code == .compacted {
                // Already compacted at this revision: nothing more to drop.
            }
            try await defragmentEveryMember()
            for alarm in alarms { try await client.alarm(.deactivate, .noSpace, member: alarm.member) }
            let after = try await client.backendSize()
            recovery = StoreSpaceRecord.Recovery(at: Date(), revision: revision, backendBytesBefore: before, backendBytesAfter: after)
            logger.notice("store recovered from NOSPACE", metadata: ["backend-bytes": "\(after)"])
        }
        let record = StoreSpaceRecord(checkedAt: Date(), backendBytes: try await client.backendSize(), quotaBytes: quotaBytes, lastRecovery: recovery)
        try await client.put(KeyLayout.storeSpace, StoreCoding.encode(record))
        return recovery
    }
}
