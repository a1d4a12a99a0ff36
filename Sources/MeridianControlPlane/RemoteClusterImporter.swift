import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore
import Synchronization

/// Timing knobs of the import state machine; tests shrink them, production keeps Cilium's.
public struct ImportTiming: Sendable, Hashable {
    /// A remote that sent no heartbeat for this long is reconnected (Cilium: 2 × 60 s).
    public var heartbeatTimeout: Duration
    /// How long to wait for `cilium/cluster-config/<remote>` before counting a failure.
    public var configTimeout: Duration
    /// Withdraw an unreachable remote's data after this long; nil keeps it (Cilium's default).
    public var cacheTTL: Duration?
    public var backoff: ReconnectBackoff

    public init(heartbeatTimeout: Duration = .seconds(120), configTimeout: Duration = .seconds(180),
                cacheTTL: Duration? = nil, backoff: ReconnectBackoff = ReconnectBackoff()) {
        self.heartbeatTimeout = heartbeatTimeout
        self.configTimeout = configTimeout
        self.cacheTTL = cacheTTL
        self.backoff = backoff
    }
}

/// Imports one remote cluster into the local etcd's `cilium/cache/...`, KVStoreMesh style.
///
/// Per connection: connect → retrieve the remote's cluster config (required) → validate it →
/// for each kind list, sweep entries the cache holds but the remote no longer has, then watch →
/// each kind becomes synced when its listing is applied and (if the remote advertises sync
/// canaries) its canary exists → ready. A heartbeat watchdog forces a reconnect when the remote
/// goes quiet; reconnects back off with jitter. Disconnecting drains; the importer itself never
/// drains except when the cache TTL of an unreachable remote runs out.
struct RemoteClusterImporter: Sendable {
    let peer: PeerRecord
    let local: any KeyValueStore
    let localCluster: ClusterSettings
    let board: StatusBoard
    /// Read afresh at every use, so `clustermesh enable` changes apply to running importers.
    let timingSource: @Sendable () -> ImportTiming
    let logger: Logger

    private var name: String { peer.name }
    private var timing: ImportTiming { timingSource() }

    func run() async {
        var backoff = timing.backoff
        var unreachableSince: ContinuousClock.Instant?
        var withdrawn = false
        board.update(name) { $0.phase = .connecting }
        while !Task.isCancelled {
            let started = ContinuousClock.now
            do {
                try await connectAndMirror(onReady: { unreachableSince = nil; withdrawn = false })
            } catch {
                if Task.isCancelled { return }
                let message = "\(error)"
                logger.warning("remote cluster connection failed", metadata: ["remote": "\(name)", "error": "\(message)"])
                board.update(name) { status in
                    status.connected = false
                    status.ready = false
                    status.phase = .backoff
                    status.numFailures += 1
                    status.lastFailure = Date()
                    status.lastError = message
                    status.synced = .init(nodes: false, endpoints: false, identities: false, services: false)
                }
            }
            if ContinuousClock.now - started > .seconds(30) { backoff.reset() }
            let since = unreachableSince ?? started
            unreachableSince = since
            let ttl = timing.cacheTTL
            if let ttl, !withdrawn, ContinuousClock.now - since >= ttl {
                logger.warning("cache TTL expired, withdrawing remote cluster data", metadata: ["remote": "\(name)"])
                try? await MeshCache.drain(local, remote: name, keepStatus: true)
                board.update(name) { status in
                    status.phase = .withdrawn
                    status.counts = .init(nodes: 0, endpoints: 0, identities: 0, services: 0)
                }
                withdrawn = true
            }
            var delay = backoff.next()
            if let ttl, !withdrawn {
                delay = min(delay, max(.milliseconds(10), ttl - (ContinuousClock.now - since)))
            }
            try? await Task.sleep(for: delay)
        }
    }

    /// Runs an operation on the local store, retrying while the store is slow or unreachable.
    /// That is not a failure of the remote connection: treating it as one would reconnect,
    /// re-list and re-diff the whole remote, adding load just when the local store is
    /// overloaded. The remote's watch waits meanwhile (its stream is flow-controlled). Errors a
    /// retry cannot mend (a refused permission, a malformed request) fail the connection as before.
    private func retryingLocalWrite<T: Sendable>(_ what: String, _ operation: () async throws -> T) async throws -> T {
        var delay = Duration.milliseconds(100)
        while true {
            do {
                return try await operation()
            } catch let error as EtcdError where error.code == .timeout || error.code == .unavailable {
                try Task.checkCancellation()
                logger.warning("writing into the local store failed; retrying", metadata: [
                    "remote": "\(name)", "what": "\(what)", "error": "\(error)", "retryIn": "\(delay)",
                ])
                board.update(name) { $0.localStoreRetries = ($0.localStoreRetries ?? 0) + 1 }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    private func remoteConfiguration() throws -> EtcdClientConfiguration {
        guard let url = peer.endpoints.first else {
            throw EtcdError(.invalidArgument, "peer \(name) has no endpoints")
        }
        return EtcdClientConfiguration(
            endpoint: try EtcdEndpoint(url: url),
            tls: EtcdTLS(caPEM: peer.caPEM, certificatePEM: peer.certificatePEM, privateKeyPEM: peer.privateKeyPEM, serverName: peer.serverName),
            requestTimeout: .seconds(5))
    }

    private func connectAndMirror(onReady: () -> Void) async throws {
        let configuration = try remoteConfiguration()
        try await EtcdClient.withClient(configuration) { remote in
            board.update(name) { $0.phase = .waitingForConfig }
            let config = try await retrieveConfig(remote)
            try validate(config)
            board.update(name) { status in
                status.connected = true
                status.configRetrieved = true
                status.remoteClusterID = config.id
                status.syncCanaries = config.capabilities.syncedCanaries ?? false
                status.phase = .syncing
                status.lastHeartbeat = Date()
            }
            var cachedConfig = config
            cachedConfig.capabilities.cached = true
            cachedConfig.capabilities.syncedCanaries = true
            try await retryingLocalWrite("cluster configuration") { try await local.put(KeyLayout.clusterConfig(name), jsonData(cachedConfig)) }
            onReady()
            let progress = SyncProgress(usesCanaries: config.capabilities.syncedCanaries ?? false)
            let validator = RemoteRecordValidator(remoteName: name, remoteID: ClusterID(config.id),
                                                  layout: IdentityLayout(maxConnectedClusters: MaxConnectedClusters(rawValue: config.capabilities.maxConnectedClusters ?? 255) ?? .c255))
            try await withThrowingDiscardingTaskGroup { group in
                for kind in MeshKind.allCases {
                    group.addTask { try await mirror(kind, from: remote, validator: validator, progress: progress) }
                }
                group.addTask { try await watchCanaries(remote, progress: progress) }
                group.addTask { try await watchHeartbeat(remote) }
                group.addTask { try await awaitForever() }
            }
        }
    }

    private func awaitForever() async throws {
        while true { try await Task.sleep(for: .seconds(3600)) }
    }

    private func retrieveConfig(_ remote: any KeyValueStore) async throws -> CiliumClusterConfig {
        let deadline = ContinuousClock.now + timing.configTimeout
        var delay = Duration.milliseconds(100)
        while true {
            if let kv = try await remote.get(KeyLayout.clusterConfig(name)) {
                do {
                    return try JSONDecoder().decode(CiliumClusterConfig.self, from: kv.value)
                } catch {
                    throw ImportError("cluster configuration of \(name) is malformed: \(error)")
                }
            }
            guard ContinuousClock.now < deadline else {
                throw ImportError("remote cluster configuration required but not found (cilium/cluster-config/\(name)); is clustermesh enabled on \(name)?")
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(30))
        }
    }

    private func validate(_ config: CiliumClusterConfig) throws {
        let localMax = localCluster.maxConnectedClusters
        let remoteMax = config.capabilities.maxConnectedClusters ?? 255
        guard remoteMax == localMax else {
            throw ImportError("remote \(name) has maxConnectedClusters \(remoteMax), this cluster \(localMax); they must be equal")
        }
        guard config.id >= 1, config.id <= localMax else {
            throw ImportError("remote \(name) has cluster ID \(config.id), outside 1...\(localMax)")
        }
        guard config.id == peer.id else {
            throw ImportError("remote \(name) reports cluster ID \(config.id) but was connected as ID \(peer.id)")
        }
        guard config.id != localCluster.id else {
            throw ImportError("remote \(name) has the local cluster's ID \(config.id)")
        }
    }

    /// List, sweep and watch one kind.
    private func mirror(_ kind: MeshKind, from remote: any KeyValueStore, validator: RemoteRecordValidator, progress: SyncProgress) async throws {
        let statePrefix = kind.statePrefix(cluster: name)
        let cachePrefix = kind.cachePrefix(cluster: name)
        let listing = try await remote.list(prefix: statePrefix)
        var desired: [String: Data] = [:]
        var rejected = 0
        for item in listing.items {
            let relative = String(item.key.dropFirst(statePrefix.count))
            if validator.accept(kind, name: relative, value: item.value) == nil {
                desired[cachePrefix + relative] = item.value
            } else {
                rejected += 1
            }
        }
        let existing = try await retryingLocalWrite("\(kind) cache listing") { try await local.list(prefix: cachePrefix) }
        let current = Dictionary(existing.items.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let diff = CacheDiff(desired: desired, current: current)
        try await retryingLocalWrite("\(kind) cache") { try await MeshCache.apply(diff, to: local) }
        let keys = Shared(Set(desired.keys))
        let rejectedTotal = rejected
        board.update(name) { status in
            status.counts[kind] = desired.count
            status.rejected[kind] = rejectedTotal
        }
        if progress.markListed(kind) { try await markSynced(kind) }
        try await remote.watch(prefix: statePrefix, startRevision: listing.revision + 1) { events, _ in
            var puts: [String: Data] = [:]
            var deletes: Set<String> = []
            var newlyRejected = 0
            for event in events {
                let relative = String(event.key.dropFirst(statePrefix.count))
                let cacheKey = cachePrefix + relative
                switch event {
                case let .put(kv):
                    if validator.accept(kind, name: relative, value: kv.value) == nil {
                        puts[cacheKey] = kv.value
                        deletes.remove(cacheKey)
                    } else {
                        newlyRejected += 1
                        puts[cacheKey] = nil
                        deletes.insert(cacheKey)
                    }
                case .delete:
                    puts[cacheKey] = nil
                    deletes.insert(cacheKey)
                }
            }
            try await retryingLocalWrite("\(kind) cache") { try await MeshCache.apply(CacheDiff(puts: puts, deletes: deletes), to: local) }
            let count = keys.withLock { keys in
                keys.formUnion(puts.keys)
                keys.subtract(deletes)
                return keys.count
            }
            board.update(name) { status in
                status.counts[kind] = count
                status.rejected[kind] += newlyRejected
            }
        }
    }

    private func watchCanaries(_ remote: any KeyValueStore, progress: SyncProgress) async throws {
        guard progress.usesCanaries else { return }
        let prefix = "\(KeyLayout.syncedPrefix)\(name)/"
        let listing = try await remote.list(prefix: prefix)
        for item in listing.items { try await canarySeen(item.key, prefix: prefix, progress: progress) }
        try await remote.watch(prefix: prefix, startRevision: listing.revision + 1) { events, _ in
            for case let .put(kv) in events { try await canarySeen(kv.key, prefix: prefix, progress: progress) }
        }
    }

    private func canarySeen(_ key: String, prefix: String, progress: SyncProgress) async throws {
        let watched = String(key.dropFirst(prefix.count))
        guard let kind = MeshKind.allCases.first(where: { $0.stateCanaryPrefix == watched }) else { return }
        if progress.markCanary(kind) { try await markSynced(kind) }
    }

    private func markSynced(_ kind: MeshKind) async throws {
        try await retryingLocalWrite("\(kind) sync canary") { try await local.put(KeyLayout.syncCanary(cluster: name, prefix: kind.cacheCanaryPrefix), iso8601Now()) }
        board.update(name) { status in
            status.synced[kind] = true
            if status.pendingKinds.isEmpty {
                status.ready = true
                status.phase = .ready
            }
        }
        logger.info("remote kind synced", metadata: ["remote": "\(name)", "kind": "\(kind)"])
    }

    /// Fails (forcing a reconnect) when no heartbeat update arrives within the timeout.
    private func watchHeartbeat(_ remote: any KeyValueStore) async throws {
        let last = Shared(ContinuousClock.now)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await remote.watch(key: KeyLayout.heartbeat, startRevision: 0) { events, _ in
                    guard !events.isEmpty else { return }
                    last.withLock { $0 = .now }
                    board.update(name) { $0.lastHeartbeat = Date() }
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: timing.heartbeatTimeout / 4)
                    let quiet = ContinuousClock.now - last.withLock { $0 }
                    if quiet > timing.heartbeatTimeout {
                        throw ImportError("no heartbeat from \(name) for \(quiet); reconnecting")
                    }
                }
            }
        }
    }
}

/// Which kinds have been listed and which canaries seen, for one connection.
final class SyncProgress: Sendable {
    private struct State {
        var listed: Set<MeshKind> = []
        var canaries: Set<MeshKind> = []
        var synced: Set<MeshKind> = []
    }

    let usesCanaries: Bool
    private let state = Mutex(State())

    init(usesCanaries: Bool) { self.usesCanaries = usesCanaries }

    /// Each returns true when it makes the kind synced for the first time.
    func markListed(_ kind: MeshKind) -> Bool { mark(kind, canary: false) }
    func markCanary(_ kind: MeshKind) -> Bool { mark(kind, canary: true) }

    private func mark(_ kind: MeshKind, canary: Bool) -> Bool {
        state.withLock { state in
            if canary { state.canaries.insert(kind) } else { state.listed.insert(kind) }
            let ready = state.listed.contains(kind) && (!usesCanaries || state.canaries.contains(kind))
            guard ready, !state.synced.contains(kind) else { return false }
            state.synced.insert(kind)
            return true
        }
    }
}

/// A failure of the import state machine, with the reason shown in `clustermesh status`.
struct ImportError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func iso8601Now() -> String {
    ISO8601DateFormatter().string(from: Date())
}

func jsonData(_ value: some Encodable) -> Data {
    StoreCoding.encode(value)
}
