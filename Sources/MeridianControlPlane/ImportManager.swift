import Foundation
import Logging
import MeridianEtcd
import MeridianStore

/// Keeps one importer running per peer recorded under `meridian/clustermesh/peers/`: starts
/// importers for new peers; when a peer's record changes, stops its importer and starts a new
/// one once the old one has exited; when a peer is removed, its importer drains what it
/// imported and exits. Data of clusters that stopped being peers while this control plane was
/// down is drained at start. A drain that fails is retried by its importer and never stops the
/// others.
struct ImportManager: Sendable {
    let local: any KeyValueStore
    let localCluster: ClusterSettings
    let board: StatusBoard
    let timing: @Sendable () -> ImportTiming
    let connector: RemoteStoreConnector
    let logger: Logger

    /// An importer of one remote, how to stop it, and its end.
    private struct Running {
        var record: PeerRecord?
        var stop: AsyncStream<Bool>.Continuation
        /// Finishes when the importer has exited; its successor waits for it.
        var exited: AsyncStream<Void>
    }

    func run() async {
        let (changes, publish) = AsyncStream<[String: PeerRecord]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask {
                defer { publish.finish() }
                try? await ListWatch(local, .prefix(KeyLayout.peersPrefix), restart: .after(ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))))
                    .follow(onStoreFailure: { error in logger.warning("peer watch failed", metadata: ["error": "\(error)"]) }) { state, _ in
                        var peers: [String: PeerRecord] = [:]
                        for kv in state.values {
                            if let record = decode(kv) { peers[record.name] = record }
                        }
                        publish.yield(peers)
                    }
            }
            var running: [String: Running] = [:]
            var first = true
            for await wanted in changes {
                if first {
                    first = false
                    for name in await orphans(keeping: Set(wanted.keys)) {
                        logger.info("draining data of a cluster that is no longer a peer", metadata: ["remote": "\(name)"])
                        running[name] = start(name, record: nil, after: nil, in: &group)
                    }
                }
                for (name, entry) in running where entry.record != nil && wanted[name] != entry.record {
                    let drain = wanted[name] == nil
                    logger.info(drain ? "peer removed, draining" : "peer record changed, restarting its import", metadata: ["remote": "\(name)"])
                    entry.stop.yield(drain)
                    entry.stop.finish()
                    running[name]?.record = nil
                }
                for record in wanted.values where running[record.name]?.record == nil {
                    logger.info("peer configured, importing", metadata: ["remote": "\(record.name)"])
                    running[record.name] = start(record.name, record: record, after: running[record.name]?.exited, in: &group)
                }
            }
            group.cancelAll()
        }
    }

    /// Starts an importer for `name` once `predecessor` (the importer it replaces) has exited;
    /// without a record it only drains.
    private func start(_ name: String, record: PeerRecord?, after predecessor: AsyncStream<Void>?,
                       in group: inout DiscardingTaskGroup) -> Running {
        let (stops, stop) = AsyncStream.makeStream(of: Bool.self)
        let (exited, exit) = AsyncStream.makeStream(of: Void.self)
        let importer = RemoteClusterImporter(remote: name, peer: record, local: local, localCluster: localCluster, board: board,
                                             timingSource: timing, connector: connector, logger: logger)
        group.addTask {
            defer { exit.finish() }
            if let predecessor { for await _ in predecessor {} }
            await importer.run(stops: stops)
        }
        return Running(record: record, stop: stop, exited: exited)
    }

    /// Clusters whose data is cached but which are no longer peers (disconnected while this
    /// control plane was down), looked for once, before any importer starts; the local store
    /// is asked again after a backoff while it cannot be read.
    private func orphans(keeping peers: Set<String>) async -> [String] {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while !Task.isCancelled {
            do {
                let configs = try await local.list(prefix: KeyLayout.clusterConfigPrefix)
                return configs.items.map { String($0.key.dropFirst(KeyLayout.clusterConfigPrefix.count)) }
                    .filter { $0 != localCluster.name && !peers.contains($0) }
            } catch {
                logger.warning("could not look for data of former peers; will look again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
        return []
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
