import Foundation
import Logging
import MeridianEtcd
import MeridianStore
import Synchronization

/// Keeps one importer running per peer recorded under `meridian/clustermesh/peers/`: starts
/// importers for new peers, restarts them when a peer's record changes, and on removal stops the
/// importer and drains everything imported from that peer.
struct ImportManager: Sendable {
    let local: any KeyValueStore
    let localCluster: ClusterSettings
    let board: StatusBoard
    let timing: @Sendable () -> ImportTiming
    let logger: Logger

    /// A running importer and the signal that stops it.
    private struct Running {
        var record: PeerRecord
        var stop: AsyncStream<Void>.Continuation
    }

    func run() async throws {
        let (changes, publish) = AsyncStream<[PeerRecord]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                defer { publish.finish() }
                try await watchPeers { publish.yield($0) }
            }
            var running: [String: Running] = [:]
            var firstListing = true
            for await desired in changes {
                let wanted = Dictionary(desired.map { ($0.name, $0) }, uniquingKeysWith: { _, b in b })
                if firstListing {
                    firstListing = false
                    try await drainOrphans(keeping: Set(wanted.keys))
                }
                for (name, entry) in running where wanted[name] != entry.record {
                    entry.stop.finish()
                    running[name] = nil
                    if wanted[name] == nil {
                        logger.info("peer removed, draining", metadata: ["remote": "\(name)"])
                        // Let the stopped importer leave before its data is removed.
                        try await Task.sleep(for: .milliseconds(100))
                        try await MeshCache.drain(local, remote: name)
                        board.remove(name)
                    }
                }
                for record in wanted.values where running[record.name] == nil {
                    let (stopped, stop) = AsyncStream<Void>.makeStream()
                    running[record.name] = Running(record: record, stop: stop)
                    let importer = RemoteClusterImporter(peer: record, local: local, localCluster: localCluster,
                                                         board: board, timingSource: timing, logger: logger)
                    logger.info("peer configured, importing", metadata: ["remote": "\(record.name)"])
                    group.addTask {
                        await withTaskGroup { inner in
                            inner.addTask { await importer.run() }
                            inner.addTask { for await _ in stopped {} }
                            await inner.next()
                            inner.cancelAll()
                        }
                    }
                }
            }
        }
    }

    /// Drains clusters whose data is cached but which are no longer peers: they were
    /// disconnected while this control plane was down.
    private func drainOrphans(keeping peers: Set<String>) async throws {
        let configs = try await local.list(prefix: KeyLayout.clusterConfigPrefix)
        for item in configs.items {
            let name = String(item.key.dropFirst(KeyLayout.clusterConfigPrefix.count))
            guard name != localCluster.name, !peers.contains(name) else { continue }
            logger.info("draining data of a cluster that is no longer a peer", metadata: ["remote": "\(name)"])
            try await MeshCache.drain(local, remote: name)
        }
    }

    /// Lists and watches the peer records, re-listing on any watch failure.
    private func watchPeers(_ reconcile: @escaping @Sendable ([PeerRecord]) -> Void) async throws {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while !Task.isCancelled {
            do {
                let listing = try await local.list(prefix: KeyLayout.peersPrefix)
                let records = Shared(Dictionary(listing.items.compactMap { decode($0) }.map { ($0.name, $0) }, uniquingKeysWith: { _, b in b }))
                reconcile(Array(records.withLock { $0.values }))
                backoff.reset()
                try await local.watch(prefix: KeyLayout.peersPrefix, startRevision: listing.revision + 1) { events, _ in
                    for event in events {
                        let name = String(event.key.dropFirst(KeyLayout.peersPrefix.count))
                        switch event {
                        case let .put(kv): records.withLock { $0[name] = decode(kv) }
                        case .delete: records.withLock { $0[name] = nil }
                        }
                    }
                    reconcile(Array(records.withLock { $0.values }))
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("peer watch failed", metadata: ["error": "\(error)"])
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    private func decode(_ kv: EtcdKeyValue) -> PeerRecord? {
        do {
            return try StoreCoding.decode(PeerRecord.self, from: kv.value, key: kv.key)
        } catch {
            logger.error("ignoring malformed peer record", metadata: ["key": "\(kv.key)", "error": "\(error)"])
            return nil
        }
    }
}
