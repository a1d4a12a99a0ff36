import Foundation
import Logging
import MeridianEtcd
import MeridianHost
import MeridianStore

/// Keeps the cluster's store writable, and its data safe when it cannot be.
///
/// Once a backend reaches its quota etcd raises NOSPACE and refuses every write (the control
/// plane's, the agents', `apply`) until someone disarms it; the guard looks for the alarm every
/// `interval`, and when it finds one it compacts the history up to the current revision,
/// defragments, disarms, and publishes what it did (`meridian/status/store`, shown by
/// `clustermesh status`). Defragmenting is per member, so with a store of several members each is
/// defragmented in turn. When the live data alone exceeds the quota the alarm comes back at the
/// next writes; the guard then does not recover again for five minutes and says the quota must grow.
///
/// A full disk is worse: etcd acknowledges a write once it is in its write-ahead log (whose
/// segments are preallocated), then exits when its backend cannot commit ("no space left on
/// device"); restarted, it replays the log, takes a write or two and exits again, and writers see
/// only timeouts. So for a data directory it can see, the guard refuses writes itself while that
/// filesystem has less than `minimumFreeBytes` free: it publishes the shortage and raises a
/// NOSPACE alarm of its own (member 0, which no etcd member has), and lifts it once space is freed.
/// It runs for a managed etcd, and for an external store only when asked (`--maintain-store`):
/// otherwise that is its operator's job (the disk check needs a data directory it can see).
struct StoreSpaceGuard: Sendable {
    let client: EtcdClient
    let quotaBytes: Int64?
    let interval: Duration
    let logger: Logger
    /// The managed etcd's data directory, whose filesystem is watched.
    var dataDirectory: String?
    var minimumFreeBytes: Int64 = Self.defaultMinimumFreeBytes

    /// Room for the next write-ahead log segment (64 MB, preallocated: etcd exits when it cannot
    /// create one) and for the backend to grow meanwhile.
    static let defaultMinimumFreeBytes: Int64 = 128 * 1024 * 1024

    /// The member of the NOSPACE alarm the guard raises for a full disk, telling it apart from the
    /// ones etcd raises (with its member id) for a full quota.
    static let diskAlarmMember: UInt64 = 0

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
        let filesystem = measureFilesystem()
        let alarms: [EtcdAlarm]
        do {
            alarms = try await client.alarms().filter { $0.kind == .noSpace }
        } catch {
            if let filesystem, filesystem.isShort { logDiskShortage(filesystem, etcdError: error) }
            throw error
        }
        let diskAlarmed = alarms.contains { $0.member == Self.diskAlarmMember }
        if let filesystem, filesystem.isShort {
            if !diskAlarmed {
                logDiskShortage(filesystem, etcdError: nil)
                // Published first: once the alarm is up, not even this record can be written.
                try await publish(recovery: recovery, filesystem: filesystem)
                try await client.alarm(.activate, .noSpace, member: Self.diskAlarmMember)
            }
            // No compaction nor defragmentation now: defragmenting copies the backend, on this disk.
            return recovery
        }
        if diskAlarmed {
            try await client.alarm(.deactivate, .noSpace, member: Self.diskAlarmMember)
            logger.notice("store has disk space again; writes resumed", metadata: [
                "store": "\(client.configuration.endpoint)", "available-bytes": "\(filesystem?.availableBytes ?? -1)",
            ])
        }
        let quotaAlarms = alarms.filter { $0.member != Self.diskAlarmMember }
        if !quotaAlarms.isEmpty, let last = lastRecovery, Date().timeIntervalSince(last.at) < Self.recoveryInterval {
            // Compacting again frees nothing new and breaks every watch: the live data itself is
            // over the quota, and only a larger quota helps.
            logger.error("store is out of space again right after a recovery; its live data exceeds the quota: raise --etcd-quota-bytes",
                         metadata: ["quota-bytes": "\(quotaBytes.map(String.init) ?? "-")"])
            return recovery
        }
        if !quotaAlarms.isEmpty {
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
            for alarm in quotaAlarms { try await client.alarm(.deactivate, .noSpace, member: alarm.member) }
            let after = try await client.backendSize()
            recovery = StoreSpaceRecord.Recovery(at: Date(), revision: revision, backendBytesBefore: before, backendBytesAfter: after)
            logger.notice("store recovered from NOSPACE", metadata: ["backend-bytes": "\(after)"])
        }
        try await publish(recovery: recovery, filesystem: filesystem)
        return recovery
    }

    /// Says which store, why and what to do; with `etcdError` when etcd did not even answer,
    /// as happens once the disk is full: it exits at every write it cannot commit.
    private func logDiskShortage(_ filesystem: StoreSpaceRecord.Filesystem, etcdError: EtcdError?) {
        var metadata: Logger.Metadata = [
            "store": "\(client.configuration.endpoint)", "data-directory": "\(filesystem.path)",
            "available-bytes": "\(filesystem.availableBytes)", "needed-bytes": "\(filesystem.minimumFreeBytes)",
        ]
        if let etcdError { metadata["etcd-error"] = "\(etcdError)" }
        logger.error("""
            store is out of disk space: no space left on device on the filesystem of its data directory; \
            writes are refused until space is freed there, then resume on their own
            """, metadata: metadata)
    }

    private func publish(recovery: StoreSpaceRecord.Recovery?, filesystem: StoreSpaceRecord.Filesystem?) async throws(EtcdError) {
        let record = StoreSpaceRecord(checkedAt: Date(), backendBytes: try await client.backendSize(), quotaBytes: quotaBytes,
                                      lastRecovery: recovery, filesystem: filesystem)
        try await client.put(KeyLayout.storeSpace, StoreCoding.encode(record))
    }

    /// The space left under `dataDirectory`; nil without one, or when it cannot be read (logged).
    private func measureFilesystem() -> StoreSpaceRecord.Filesystem? {
        guard let dataDirectory else { return nil }
        do {
            let space = try FilesystemSpace.of(dataDirectory)
            // A filesystem of a few hundred MiB (a store's own volume) would be short from the start
            // at 128 MiB: there a quarter of it is kept free.
            return StoreSpaceRecord.Filesystem(path: dataDirectory, availableBytes: space.availableBytes, totalBytes: space.totalBytes,
                                               minimumFreeBytes: min(minimumFreeBytes, space.totalBytes / 4))
        } catch {
            logger.warning("cannot read the free space of the store's filesystem", metadata: ["data-directory": "\(dataDirectory)", "error": "\(error)"])
            return nil
        }
    }
}
