import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore

/// Opens a store of a remote cluster for the length of a body: with the peer's read-only
/// certificate over mTLS in production, an in-memory store in unit tests.
public struct RemoteStoreConnector: Sendable {
    public typealias Body = @Sendable (any KeyValueStore) async throws -> Void
    private let open: @Sendable (PeerRecord, Body) async throws -> Void

    public init(_ open: @escaping @Sendable (PeerRecord, Body) async throws -> Void) {
        self.open = open
    }

    public func withStore(of peer: PeerRecord, _ body: Body) async throws {
        try await open(peer, body)
    }

    /// The remote's etcd, reached with the credentials `clustermesh connect` recorded.
    public static let etcd = RemoteStoreConnector { peer, body in
        guard let url = peer.endpoints.first else {
            throw ImportFailure.unusablePeer(remote: peer.name, reason: "its record names no endpoint")
        }
        let configuration: EtcdClientConfiguration
        do {
            configuration = EtcdClientConfiguration(
                endpoint: try EtcdEndpoint(url: url),
                tls: EtcdTLS(caPEM: peer.caPEM, certificatePEM: peer.certificatePEM, privateKeyPEM: peer.privateKeyPEM, serverName: peer.serverName),
                requestTimeout: .seconds(5))
        } catch {
            throw ImportFailure.unusablePeer(remote: peer.name, reason: "\(error)")
        }
        try await EtcdClient.withClient(configuration) { try await body($0) }
    }
}

/// Imports one remote cluster into the local store's `cilium/cache/...`, KVStoreMesh style, by
/// carrying out what its `ImportStateMachine` decides: it runs each connection (config, one
/// mirror per kind, canaries, heartbeat) in a task that reports back as events, fires the
/// machine's timers, drains, and publishes the machine's status. It returns when the machine
/// has finished: after a disconnect, once the remote's data is drained (or handed to the
/// importer that replaces it).
struct RemoteClusterImporter: Sendable {
    /// Changes of one kind waiting for the commit in progress, at most.
    static let coalescedEventsLimit = 1_000
    /// The remote's name and, unless the importer only drains what an earlier run left behind,
    /// its peer record.
    let remote: String
    let peer: PeerRecord?
    let local: any KeyValueStore
    let localCluster: ClusterSettings
    let board: StatusBoard
    /// Read afresh at every event, so `clustermesh enable` changes apply to running importers.
    let timingSource: @Sendable () -> ImportTiming
    let connector: RemoteStoreConnector
    let logger: Logger

    private typealias Event = ImportStateMachine.Event

    /// What a connection's task is told to do by the machine.
    private enum ConnectionCommand: Sendable {
        case writeCachedConfig(CiliumClusterConfig)
        case mirror(MeshKind)
        case watchCanaries
        case watchHeartbeat
        case writeSyncCanary(MeshKind)
    }

    /// Runs until the machine finishes. Each value of `stops` is a disconnect: `true` drains the
    /// remote's data, `false` hands over to a replacement importer.
    func run(stops: AsyncStream<Bool>) async {
        var machine = ImportStateMachine(remote: remote, expectedID: peer?.id ?? 0, localCluster: localCluster, timing: timingSource())
        let (events, send) = AsyncStream.makeStream(of: Event.self)
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await drain in stops { send.yield(.disconnect(drain: drain)) }
            }
            group.addTask {
                while !Task.isCancelled {
                    let period = min(max(timingSource().heartbeatTimeout / 4, .milliseconds(50)), .seconds(5))
                    guard (try? await Task.sleep(for: period)) != nil else { return }
                    send.yield(.tick(now: .now))
                }
            }
            var connections: [Int: AsyncStream<ConnectionCommand>.Continuation] = [:]
            var iterator = events.makeAsyncIterator()
            var pending = machine.handle(peer == nil ? .disconnect(drain: true) : .start(now: .now))
            while !machine.isFinished {
                while !pending.isEmpty {
                    let action = pending.removeFirst()
                    if let result = await perform(action, group: &group, connections: &connections, send: send) {
                        machine.timing = timingSource()
                        pending += machine.handle(result)
                    }
                }
                guard !machine.isFinished, let event = await iterator.next() else { break }
                if case let .connectionFailed(_, failure, _, _) = event {
                    logger.warning("remote cluster connection failed", metadata: ["remote": "\(remote)", "error": "\(failure)"])
                }
                machine.timing = timingSource()
                pending = machine.handle(event)
            }
            for continuation in connections.values { continuation.finish() }
            group.cancelAll()
        }
    }

    /// Carries out one action; returns the event it produced at once, if any (drains are
    /// awaited here, so nothing else happens to the cache while one runs).
    private func perform(_ action: ImportStateMachine.Action, group: inout DiscardingTaskGroup,
                         connections: inout [Int: AsyncStream<ConnectionCommand>.Continuation],
                         send: AsyncStream<Event>.Continuation) async -> Event? {
        switch action {
        case let .connect(id):
            guard let peer else { return nil }
            let (commands, commander) = AsyncStream.makeStream(of: ConnectionCommand.self)
            connections[id] = commander
            group.addTask { await runConnection(id, peer: peer, commands: commands, send: send) }
        case let .writeCachedConfig(id, config):
            connections[id]?.yield(.writeCachedConfig(config))
        case let .mirror(id, kind):
            connections[id]?.yield(.mirror(kind))
        case let .watchCanaries(id):
            connections[id]?.yield(.watchCanaries)
        case let .watchHeartbeat(id):
            connections[id]?.yield(.watchHeartbeat)
        case let .writeSyncCanary(id, kind):
            connections[id]?.yield(.writeSyncCanary(kind))
        case let .closeConnection(id):
            connections.removeValue(forKey: id)?.finish()
        case let .scheduleRetry(token, delay):
            group.addTask {
                guard (try? await Task.sleep(for: delay)) != nil else { return }
                send.yield(.retryDue(token: token, now: .now))
            }
        case let .scheduleDrainRetry(token, delay):
            group.addTask {
                guard (try? await Task.sleep(for: delay)) != nil else { return }
                send.yield(.drainRetryDue(token: token))
            }
        case let .drain(keepStatus):
            do {
                try await MeshCache.drain(local, remote: remote, keepStatus: keepStatus)
                logger.info(keepStatus ? "cache TTL expired; remote cluster data withdrawn" : "remote cluster data drained",
                            metadata: ["remote": "\(remote)"])
                return .drained
            } catch {
                logger.warning("draining remote cluster data failed; will retry", metadata: ["remote": "\(remote)", "error": "\(error)"])
                return .drainFailed("\(error)", at: Date())
            }
        case let .publish(status):
            board.set(status)
        case let .finish(removeStatus):
            if removeStatus { board.remove(remote) }
        }
        return nil
    }

    // MARK: A connection

    /// One connection: opens the remote store, reads its config, then does what the machine
    /// commands until the command stream ends (the machine closed the connection). Failures are
    /// reported as events; the last event is always `connectionEnded`.
    private func runConnection(_ id: Int, peer: PeerRecord, commands: AsyncStream<ConnectionCommand>,
                               send: AsyncStream<Event>.Continuation) async {
        @Sendable func failed(_ error: any Error) {
            guard !Task.isCancelled else { return }
            send.yield(.connectionFailed(connection: id, Self.failure(error, remote: remote), at: Date(), now: .now))
        }
        do {
            try await connector.withStore(of: peer) { remote in
                send.yield(.connected(connection: id))
                await withDiscardingTaskGroup { group in
                    group.addTask {
                        do {
                            let config = try await retrieveConfig(remote)
                            send.yield(.configRead(connection: id, config, at: Date(), now: .now))
                        } catch {
                            failed(error)
                        }
                    }
                    for await command in commands {
                        do {
                            switch command {
                            case let .writeCachedConfig(config):
                                _ = try await retryingLocalWrite("cluster configuration", send: send) { () async throws(EtcdError) in
                                    try await local.put(KeyLayout.clusterConfig(self.remote), StoreCoding.encode(config))
                                }
                            case let .mirror(kind):
                                group.addTask {
                                    do { try await mirror(kind, of: peer, from: remote, connection: id, send: send) } catch { failed(error) }
                                }
                            case .watchCanaries:
                                group.addTask {
                                    do { try await watchCanaries(remote, connection: id, send: send) } catch { failed(error) }
                                }
                            case .watchHeartbeat:
                                group.addTask {
                                    do { try await watchHeartbeat(remote, connection: id, send: send) } catch { failed(error) }
                                }
                            case let .writeSyncCanary(kind):
                                _ = try await retryingLocalWrite("\(kind) sync canary", send: send) { () async throws(EtcdError) in
                                    try await local.put(KeyLayout.syncCanary(cluster: self.remote, prefix: kind.cacheCanaryPrefix), iso8601Now())
                                }
                                logger.info("remote kind synced", metadata: ["remote": "\(self.remote)", "kind": "\(kind)"])
                                send.yield(.syncCanaryWritten(connection: id, kind))
                            }
                        } catch {
                            failed(error)
                        }
                    }
                    group.cancelAll()
                }
            }
        } catch {
            failed(error)
        }
        send.yield(.connectionEnded(connection: id, now: .now))
    }

    private static func failure(_ error: any Error, remote: String) -> ImportFailure {
        switch error {
        case let failure as ImportFailure: failure
        case let failure as LocalStoreFailure: .localStore(remote: remote, detail: "\(failure.error)")
        default: .remoteStore(remote: remote, detail: "\(error)")
        }
    }

    /// A write into the local store that failed beyond retrying.
    private struct LocalStoreFailure: Error {
        var error: any Error
    }

    /// Runs an operation on the local store, retrying while the store is slow or unreachable.
    /// That is not a failure of the remote connection: treating it as one would reconnect,
    /// re-list and re-diff the whole remote, adding load just when the local store is
    /// overloaded. The remote's watch waits meanwhile (its stream is flow-controlled). Errors a
    /// retry cannot mend (a refused permission, a malformed request) fail the connection.
    private func retryingLocalWrite<T: Sendable>(_ what: String, send: AsyncStream<Event>.Continuation,
                                                 _ operation: () async throws(EtcdError) -> T) async throws -> T {
        var delay = Duration.milliseconds(100)
        while true {
            do {
                return try await operation()
            } catch where error.code == .timeout || error.code == .unavailable {
                try Task.checkCancellation()
                logger.warning("writing into the local store failed; retrying", metadata: [
                    "remote": "\(remote)", "what": "\(what)", "error": "\(error)", "retryIn": "\(delay)",
                ])
                send.yield(.localWriteRetried)
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            } catch {
                throw LocalStoreFailure(error: error)
            }
        }
    }

    private func retrieveConfig(_ store: any KeyValueStore) async throws -> CiliumClusterConfig {
        let waited = timingSource().configTimeout
        let deadline = ContinuousClock.now + waited
        var delay = Duration.milliseconds(100)
        while true {
            if let kv = try await store.get(KeyLayout.clusterConfig(remote)) {
                do {
                    return try JSONDecoder().decode(CiliumClusterConfig.self, from: kv.value)
                } catch {
                    throw ImportFailure.configMalformed(remote: remote, detail: "\(error)")
                }
            }
            guard ContinuousClock.now < deadline else { throw ImportFailure.configNotFound(remote: remote, waited: waited) }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(30))
        }
    }

    /// Lists, sweeps and watches one kind: the listing's valid records replace what the cache
    /// holds of the kind (what the remote no longer has is deleted), then every watched change
    /// is checked and applied.
    /// (Mirrors start only after the machine has validated the remote's config: its id is the
    /// peer's and its mesh size this cluster's.)
    private func mirror(_ kind: MeshKind, of peer: PeerRecord, from remote: any KeyValueStore,
                        connection id: Int, send: AsyncStream<Event>.Continuation) async throws {
        let statePrefix = kind.statePrefix(cluster: self.remote)
        let cachePrefix = kind.cachePrefix(cluster: self.remote)
        let validating = Shared(try RemoteRecordValidator(
            peer: peer, layout: IdentityLayout(maxConnectedClusters: MaxConnectedClusters(rawValue: localCluster.maxConnectedClusters) ?? .c255),
            local: localCluster))
        let quota = Shared(PeerQuota(kind))
        let rejectionLog = RejectionLog(remote: self.remote, logger: logger)
        // Changes that arrive during a commit into the local store go into the next one together:
        // one commit per watch response fell behind a remote writing faster than a commit's round trip.
        try await ListWatch(remote, .prefix(statePrefix), restart: .never, delivery: .coalescing(maxEvents: Self.coalescedEventsLimit)).run { update in
            switch update {
            case let .snapshot(items, _):
                if kind == .nodes {
                    let localNodes = try await retryingLocalWrite("local nodes", send: send) { () async throws(EtcdError) in
                        try await local.list(prefix: MeshKind.nodes.statePrefix(cluster: localCluster.name))
                    }
                    let addresses = localNodes.items.compactMap { try? CiliumJSON.decoder().decode(NodeRecord.self, from: $0.value) }
                        .flatMap { $0.ipAddresses.compactMap { IPAddress($0.ip) } }
                    validating.withLock { $0.localNodeAddresses = Set(addresses) }
                }
                let validator = validating.value
                var desired: [String: Data] = [:]
                var rejected: [RemoteRecordRejection] = []
                var admitted = PeerQuota(kind)
                for item in items.sorted(by: { $0.key < $1.key }) {
                    let relative = String(item.key.dropFirst(statePrefix.count))
                    if let rejection = validator.accept(kind, name: relative, value: item.value) {
                        rejected.append(rejection)
                    } else if admitted.admit(cachePrefix + relative, size: item.key.utf8.count + item.value.count) {
                        desired[cachePrefix + relative] = item.value
                    } else {
                        rejected.append(admitted.refusal(kind, key: relative))
                    }
                }
                rejectionLog.record(rejected)
                let existing = try await retryingLocalWrite("\(kind) cache listing", send: send) { () async throws(EtcdError) in
                    try await local.list(prefix: cachePrefix)
                }
                let current = Dictionary(existing.items.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
                try await retryingLocalWrite("\(kind) cache", send: send) { () async throws(EtcdError) in
                    try await MeshCache.apply(CacheDiff(desired: desired, current: current), to: local)
                }
                quota.withLock { $0 = admitted }
                send.yield(.listed(connection: id, kind, count: desired.count, rejected: rejected, at: Date()))
            case let .changes(events, _):
                let arrived = ContinuousClock.now
                let validator = validating.value
                var puts: [String: Data] = [:]
                var deletes: Set<String> = []
                var newlyRejected: [RemoteRecordRejection] = []
                for event in events {
                    let relative = String(event.key.dropFirst(statePrefix.count))
                    let cacheKey = cachePrefix + relative
                    if case let .put(kv) = event {
                        if let rejection = validator.accept(kind, name: relative, value: kv.value) {
                            newlyRejected.append(rejection)
                        } else if quota.withLock({ $0.admit(cacheKey, size: kv.key.utf8.count + kv.value.count) }) {
                            puts[cacheKey] = kv.value
                            deletes.remove(cacheKey)
                            continue
                        } else {
                            newlyRejected.append(quota.withLock { $0.refusal(kind, key: relative) })
                        }
                    }
                    quota.withLock { $0.remove(cacheKey) }
                    puts[cacheKey] = nil
                    deletes.insert(cacheKey)
                }
                rejectionLog.record(newlyRejected)
                let diff = CacheDiff(puts: puts, deletes: deletes)
                try await retryingLocalWrite("\(kind) cache", send: send) { () async throws(EtcdError) in
                    try await MeshCache.apply(diff, to: local)
                }
                ClusterMeshMetrics.recordImport(remote: self.remote, kind: kind, since: arrived)
                send.yield(.changed(connection: id, kind, count: quota.withLock { $0.held.count }, newlyRejected: newlyRejected, at: Date()))
            }
        }
    }

    private func watchCanaries(_ remote: any KeyValueStore, connection id: Int, send: AsyncStream<Event>.Continuation) async throws {
        let prefix = KeyLayout.syncCanaries(of: self.remote)
        @Sendable func seen(_ key: String) {
            let watched = String(key.dropFirst(prefix.count))
            guard let kind = MeshKind.allCases.first(where: { $0.stateCanaryPrefix == watched }) else { return }
            send.yield(.canarySeen(connection: id, kind))
        }
        try await ListWatch(remote, .prefix(prefix), restart: .never).run { update in
            switch update {
            case let .snapshot(items, _): items.forEach { seen($0.key) }
            case let .changes(events, _): for case let .put(kv) in events { seen(kv.key) }
            }
        }
    }

    /// Reports every update of the remote's heartbeat; the machine's watchdog notices silence.
    private func watchHeartbeat(_ remote: any KeyValueStore, connection id: Int, send: AsyncStream<Event>.Continuation) async throws {
        try await ListWatch(remote, .key(KeyLayout.heartbeat), restart: .never).run { update in
            guard case .changes = update else { return }
            send.yield(.heartbeat(connection: id, at: Date(), now: .now))
        }
    }
}

func iso8601Now() -> String {
    ISO8601DateFormatter().string(from: Date())
}

func jsonData(_ value: some Encodable) -> Data {
    StoreCoding.encode(value)
}
