import Foundation
import MeridianCore
import MeridianStore

/// Timing knobs of the import state machine; tests shrink them, production keeps Cilium's.
public struct ImportTiming: Sendable, Hashable {
    /// A remote that sent no heartbeat for this long is reconnected (Cilium: 2 × 60 s).
    public var heartbeatTimeout: Duration
    /// How long to wait for `cilium/cluster-config/<remote>` before counting a failure.
    public var configTimeout: Duration
    /// Withdraw an unreachable remote's data after this long; nil keeps it (Cilium's default).
    public var cacheTTL: Duration?
    /// Delays between connection attempts.
    public var backoff: ReconnectBackoff
    /// Delays between attempts to drain a disconnected remote's data.
    public var drainBackoff: ReconnectBackoff

    public init(heartbeatTimeout: Duration = .seconds(120), configTimeout: Duration = .seconds(180), cacheTTL: Duration? = nil,
                backoff: ReconnectBackoff = ReconnectBackoff(),
                drainBackoff: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(500), maximum: .seconds(30))) {
        self.heartbeatTimeout = heartbeatTimeout
        self.configTimeout = configTimeout
        self.cacheTTL = cacheTTL
        self.backoff = backoff
        self.drainBackoff = drainBackoff
    }
}

/// Why a connection to a remote cluster failed, as `clustermesh status` shows it.
public enum ImportFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// The peer record cannot be used to connect (no endpoint, unreadable credentials).
    case unusablePeer(remote: String, reason: String)
    /// `cilium/cluster-config/<remote>` did not appear within the config timeout.
    case configNotFound(remote: String, waited: Duration)
    case configMalformed(remote: String, detail: String)
    case maxConnectedClustersDiffers(remote: String, remoteValue: UInt32, localValue: UInt32)
    case clusterIDOutOfRange(remote: String, id: UInt32, maximum: UInt32)
    case clusterIDChanged(remote: String, reported: UInt32, connectedAs: UInt32)
    case clusterIDIsLocal(remote: String, id: UInt32)
    case heartbeatLost(remote: String, silence: Duration)
    /// The remote's store failed a call (unreachable, refused, a broken watch).
    case remoteStore(remote: String, detail: String)
    /// Writing into the local store failed with an error a retry cannot mend.
    case localStore(remote: String, detail: String)

    public var description: String {
        switch self {
        case let .unusablePeer(remote, reason):
            "peer \(remote) cannot be connected: \(reason)"
        case let .configNotFound(remote, waited):
            "remote cluster configuration required but not found (cilium/cluster-config/\(remote)) after \(waited); is clustermesh enabled on \(remote)?"
        case let .configMalformed(remote, detail):
            "cluster configuration of \(remote) is malformed: \(detail)"
        case let .maxConnectedClustersDiffers(remote, remoteValue, localValue):
            "remote \(remote) has maxConnectedClusters \(remoteValue), this cluster \(localValue); they must be equal"
        case let .clusterIDOutOfRange(remote, id, maximum):
            "remote \(remote) has cluster ID \(id), outside 1...\(maximum)"
        case let .clusterIDChanged(remote, reported, connectedAs):
            "remote \(remote) reports cluster ID \(reported) but was connected as ID \(connectedAs)"
        case let .clusterIDIsLocal(remote, id):
            "remote \(remote) has the local cluster's ID \(id)"
        case let .heartbeatLost(remote, silence):
            "no heartbeat from \(remote) for \(silence); reconnecting"
        case let .remoteStore(_, detail):
            detail
        case let .localStore(remote, detail):
            "writing \(remote)'s data into this cluster's store failed: \(detail)"
        }
    }
}

/// The import of one remote cluster as a value: events in (a connection is up, the config was
/// read, a kind was listed and swept, a canary was seen, a heartbeat, a failure of either store,
/// the connection ended, a timer, disconnect), actions out (connect, mirror a kind, watch the
/// canaries and the heartbeat, write a sync canary, close the connection, back off, drain,
/// publish the status, finish). It decides everything about the import and does no I/O, so every
/// transition can be walked in a unit test; `RemoteClusterImporter` carries out its actions.
///
/// Connections are numbered; events of a connection that is no longer the current one are
/// ignored. The status is derived from the state, never kept beside it. Disconnecting drains only
/// once the connection has ended, so no write of the importer lands after the drain; a failed
/// drain is reported and retried, never given up.
public struct ImportStateMachine: Sendable {
    public enum Event: Sendable {
        case start(now: ContinuousClock.Instant)
        /// The connection's transport is up; its cluster config is being read.
        case connected(connection: Int)
        case configRead(connection: Int, CiliumClusterConfig, at: Date, now: ContinuousClock.Instant)
        /// The kind's listing is in the local cache and what the remote no longer has is swept.
        case listed(connection: Int, MeshKind, count: Int, rejected: [RemoteRecordRejection], at: Date)
        /// Watched changes of the kind were applied to the cache.
        case changed(connection: Int, MeshKind, count: Int, newlyRejected: [RemoteRecordRejection], at: Date)
        case canarySeen(connection: Int, MeshKind)
        case syncCanaryWritten(connection: Int, MeshKind)
        case heartbeat(connection: Int, at: Date, now: ContinuousClock.Instant)
        /// A write into the local store failed transiently and is being retried.
        case localWriteRetried
        /// Something of the connection failed (either store, a watch, a validation); it closes.
        case connectionFailed(connection: Int, ImportFailure, at: Date, now: ContinuousClock.Instant)
        /// The connection's work has stopped and its store is closed.
        case connectionEnded(connection: Int, now: ContinuousClock.Instant)
        /// Periodic: the heartbeat watchdog.
        case tick(now: ContinuousClock.Instant)
        case retryDue(token: Int, now: ContinuousClock.Instant)
        case drained
        case drainFailed(String, at: Date)
        case drainRetryDue(token: Int)
        /// The peer was removed (drain) or its record replaced (a new importer takes over).
        case disconnect(drain: Bool)
    }

    public enum Action: Sendable, Equatable {
        /// Open a connection to the remote and read its cluster config.
        case connect(connection: Int)
        /// Cache the remote's config (marked cached) for the local agents.
        case writeCachedConfig(connection: Int, CiliumClusterConfig)
        /// List the kind, put what passes validation into the cache, sweep what the remote no
        /// longer has, then watch it.
        /// Mirror one kind; its records are checked against the remote's validated config (its
        /// name, the id it was connected as, this cluster's mesh size).
        case mirror(connection: Int, MeshKind)
        case watchCanaries(connection: Int)
        case watchHeartbeat(connection: Int)
        case writeSyncCanary(connection: Int, MeshKind)
        case closeConnection(connection: Int)
        case scheduleRetry(token: Int, after: Duration)
        /// Remove the remote's data from the cache (keeping its status record, or not).
        case drain(keepStatus: Bool)
        case scheduleDrainRetry(token: Int, after: Duration)
        case publish(RemoteClusterStatus)
        case finish(removeStatus: Bool)
    }

    enum Stage: Sendable, Equatable {
        case idle
        /// A connection is open; its config is not read yet.
        case connecting
        case syncing
        case ready
        /// No usable connection; a retry is scheduled once the failed one has ended.
        case backoff
        /// The cache TTL ran out: the data is being withdrawn.
        case withdrawing
        /// Disconnected: waiting for the connection to end before draining (or handing over).
        case stopping(drain: Bool)
        case draining
        case drainBackoff
        case finished
    }

    public let remote: String
    /// The cluster ID the peer was connected as.
    public let expectedID: UInt32
    public let localCluster: ClusterSettings
    /// Read at every use; the driver refreshes it from the cluster's mesh settings.
    public var timing: ImportTiming

    private(set) var stage: Stage = .idle
    private(set) var connection = 0
    private var connectionOpen = false
    private var transportUp = false
    private var usesCanaries = false
    private var listed: Set<MeshKind> = []
    private var canaries: Set<MeshKind> = []
    private var canaryRequested: Set<MeshKind> = []
    private var synced: Set<MeshKind> = []
    private var attemptStarted: ContinuousClock.Instant?
    private var lastHeartbeatSeen: ContinuousClock.Instant?
    private var unreachableSince: ContinuousClock.Instant?
    private var withdrawn = false
    private var backoff: ReconnectBackoff
    private var drainBackoff: ReconnectBackoff
    private var retryToken = 0
    private var drainRetryToken = 0
    private var remoteClusterID: UInt32?
    private var counts = RemoteClusterStatus.PerKind(all: 0)
    private var rejected = RemoteClusterStatus.PerKind(all: 0)
    private var rejectedReasons = RemoteClusterStatus.PerKind<[String: Int]>(all: [:])
    private var recentRejections: [RemoteClusterStatus.RejectedRecord] = []
    private var numFailures = 0
    private var lastFailure: Date?
    private var lastError: String?
    private var lastHeartbeat: Date?
    private var localStoreRetries: Int?
    private var published: RemoteClusterStatus?

    public init(remote: String, expectedID: UInt32, localCluster: ClusterSettings, timing: ImportTiming) {
        self.remote = remote
        self.expectedID = expectedID
        self.localCluster = localCluster
        self.timing = timing
        backoff = timing.backoff
        drainBackoff = timing.drainBackoff
    }

    public var isFinished: Bool { stage == .finished }

    private mutating func remember(_ rejections: [RemoteRecordRejection], of kind: MeshKind, at: Date) {
        for rejection in rejections {
            rejectedReasons[kind][rejection.reason.rawValue, default: 0] += 1
        }
        recentRejections += rejections.suffix(RemoteClusterStatus.RejectedRecord.kept).map {
            RemoteClusterStatus.RejectedRecord(kind: kind.rawValue, key: TerminalSafe.escape($0.key, maxScalars: 256), reason: $0.reason.rawValue,
                                               message: TerminalSafe.escape($0.message, maxScalars: 512), at: at)
        }
        recentRejections = Array(recentRejections.suffix(RemoteClusterStatus.RejectedRecord.kept))
    }

    /// The status `clustermesh status` shows, derived from the state (`updated` and
    /// `reportedAt` are stamped by whoever publishes it).
    public var status: RemoteClusterStatus {
        var status = RemoteClusterStatus(name: remote)
        status.updated = .distantPast
        status.phase = switch stage {
        case .idle: .connecting
        case .connecting: transportUp ? .waitingForConfig : .connecting
        case .syncing: .syncing
        case .ready: .ready
        case .backoff, .withdrawing: withdrawn ? .withdrawn : .backoff
        case .stopping, .draining, .drainBackoff, .finished: .draining
        }
        status.connected = stage == .syncing || stage == .ready
        status.ready = stage == .ready
        // Syncing and ready begin with a validated config.
        status.configRetrieved = status.connected
        status.remoteClusterID = remoteClusterID
        status.syncCanaries = status.connected && usesCanaries
        for kind in MeshKind.allCases { status.synced[kind] = status.connected && synced.contains(kind) }
        status.counts = counts
        status.rejected = rejected
        let reasons = MeshKind.allCases.reduce(into: [String: Int]()) { total, kind in
            total.merge(rejectedReasons[kind], uniquingKeysWith: +)
        }
        status.rejectedByReason = reasons.isEmpty ? nil : reasons
        status.recentRejections = recentRejections.isEmpty ? nil : recentRejections
        status.numFailures = numFailures
        status.lastFailure = lastFailure
        status.lastError = lastError
        status.lastHeartbeat = lastHeartbeat
        status.localStoreRetries = localStoreRetries
        return status
    }

    /// Applies `event` and returns what to do, in order; ends with `.publish` when the status
    /// changed.
    public mutating func handle(_ event: Event) -> [Action] {
        var actions = transition(event)
        let current = status
        if current != published {
            published = current
            actions.append(.publish(current))
        }
        return actions
    }

    private mutating func transition(_ event: Event) -> [Action] {
        switch event {
        case let .start(now):
            guard stage == .idle else { return [] }
            return connect(now: now)

        case let .connected(id):
            guard id == connection, stage == .connecting else { return [] }
            transportUp = true
            return []

        case let .configRead(id, config, at, now):
            guard id == connection, stage == .connecting else { return [] }
            if let failure = validate(config) { return fail(failure, at: at, now: now) }
            remoteClusterID = config.id
            usesCanaries = config.capabilities.syncedCanaries ?? false
            lastHeartbeatSeen = now
            lastHeartbeat = at
            stage = .syncing
            var cached = config
            cached.capabilities.cached = true
            cached.capabilities.syncedCanaries = true
            var actions: [Action] = [.writeCachedConfig(connection: id, cached)]
            actions += MeshKind.allCases.map { .mirror(connection: id, $0) }
            if usesCanaries { actions.append(.watchCanaries(connection: id)) }
            actions.append(.watchHeartbeat(connection: id))
            return actions

        case let .listed(id, kind, count, rejections, at):
            guard id == connection, stage == .syncing || stage == .ready else { return [] }
            counts[kind] = count
            rejected[kind] = rejections.count
            rejectedReasons[kind] = [:]
            remember(rejections, of: kind, at: at)
            listed.insert(kind)
            return requestCanaryIfDue(kind)

        case let .changed(id, kind, count, rejections, at):
            guard id == connection, stage == .syncing || stage == .ready else { return [] }
            counts[kind] = count
            rejected[kind] += rejections.count
            remember(rejections, of: kind, at: at)
            return []

        case let .canarySeen(id, kind):
            guard id == connection, stage == .syncing || stage == .ready else { return [] }
            canaries.insert(kind)
            return requestCanaryIfDue(kind)

        case let .syncCanaryWritten(id, kind):
            guard id == connection, stage == .syncing || stage == .ready else { return [] }
            synced.insert(kind)
            if synced.count == MeshKind.allCases.count, stage == .syncing {
                stage = .ready
                unreachableSince = nil
                withdrawn = false
                backoff.reset()
            }
            return []

        case let .heartbeat(id, at, now):
            guard id == connection, stage == .syncing || stage == .ready else { return [] }
            lastHeartbeatSeen = now
            lastHeartbeat = at
            return []

        case .localWriteRetried:
            localStoreRetries = (localStoreRetries ?? 0) + 1
            return []

        case let .connectionFailed(id, failure, at, now):
            guard id == connection, connectionOpen, [.connecting, .syncing, .ready].contains(stage) else { return [] }
            return fail(failure, at: at, now: now)

        case let .connectionEnded(id, now):
            guard id == connection, connectionOpen else { return [] }
            connectionOpen = false
            transportUp = false
            switch stage {
            case .connecting, .syncing, .ready:
                // Ended without a reported failure: count it as one, then back off.
                return fail(.remoteStore(remote: remote, detail: "the connection to \(remote) ended"), at: Date(), now: now)
            case .backoff:
                return scheduleRetry(now: now)
            case let .stopping(drain):
                return drain ? startDrain() : finish(removeStatus: false)
            default:
                return []
            }

        case let .tick(now):
            guard stage == .syncing || stage == .ready, let seen = lastHeartbeatSeen else { return [] }
            let silence = now - seen
            guard silence > timing.heartbeatTimeout else { return [] }
            return fail(.heartbeatLost(remote: remote, silence: silence), at: Date(), now: now)

        case let .retryDue(token, now):
            guard token == retryToken, stage == .backoff, !connectionOpen else { return [] }
            if let ttl = timing.cacheTTL, !withdrawn, let since = unreachableSince, now - since >= ttl {
                stage = .withdrawing
                return [.drain(keepStatus: true)]
            }
            return connect(now: now)

        case .drained:
            switch stage {
            case .withdrawing:
                withdrawn = true
                counts = .init(all: 0)
                stage = .backoff
                retryToken += 1
                return [.scheduleRetry(token: retryToken, after: backoff.next())]
            case .draining:
                return finish(removeStatus: true)
            case let .stopping(drain) where !connectionOpen:
                // Disconnected while the data was being withdrawn.
                return drain ? startDrain() : finish(removeStatus: false)
            default:
                return []
            }

        case let .drainFailed(message, at):
            switch stage {
            case .withdrawing:
                lastError = "withdrawing the data of \(remote) after its cache TTL failed: \(message)"
                lastFailure = at
                stage = .backoff
                retryToken += 1
                return [.scheduleRetry(token: retryToken, after: backoff.next())]
            case .draining:
                lastError = "draining the data of \(remote) failed (will retry): \(message)"
                lastFailure = at
                stage = .drainBackoff
                drainRetryToken += 1
                return [.scheduleDrainRetry(token: drainRetryToken, after: drainBackoff.next())]
            case let .stopping(drain) where !connectionOpen:
                return drain ? startDrain() : finish(removeStatus: false)
            default:
                return []
            }

        case let .drainRetryDue(token):
            guard token == drainRetryToken, stage == .drainBackoff else { return [] }
            return startDrain()

        case let .disconnect(drain):
            switch stage {
            case .idle:
                return drain ? startDrain() : finish(removeStatus: false)
            case .connecting, .syncing, .ready, .backoff:
                guard connectionOpen else { return drain ? startDrain() : finish(removeStatus: false) }
                stage = .stopping(drain: drain)
                return [.closeConnection(connection: connection)]
            case .withdrawing:
                stage = .stopping(drain: drain)
                return []
            case let .stopping(draining):
                stage = .stopping(drain: draining || drain)
                return []
            case .draining, .drainBackoff, .finished:
                return []
            }
        }
    }

    private mutating func connect(now: ContinuousClock.Instant) -> [Action] {
        connection += 1
        connectionOpen = true
        transportUp = false
        listed = []
        canaries = []
        canaryRequested = []
        synced = []
        attemptStarted = now
        stage = .connecting
        return [.connect(connection: connection)]
    }

    private mutating func fail(_ failure: ImportFailure, at: Date, now: ContinuousClock.Instant) -> [Action] {
        numFailures += 1
        lastFailure = at
        lastError = failure.description
        // Unreachable since now if the connection got through to the remote, else since the
        // attempt began; the first failure of a run of them counts.
        let wasConnected = stage == .syncing || stage == .ready
        unreachableSince = unreachableSince ?? (wasConnected ? now : attemptStarted ?? now)
        stage = .backoff
        return connectionOpen ? [.closeConnection(connection: connection)] : scheduleRetry(now: now)
    }

    /// The next attempt, no later than the moment the cache TTL runs out.
    private mutating func scheduleRetry(now: ContinuousClock.Instant) -> [Action] {
        var delay = backoff.next()
        if let ttl = timing.cacheTTL, !withdrawn, let since = unreachableSince {
            delay = min(delay, max(.milliseconds(10), ttl - (now - since)))
        }
        retryToken += 1
        return [.scheduleRetry(token: retryToken, after: delay)]
    }

    /// A kind is synced once it is listed and, when the remote writes sync canaries, its canary
    /// was seen; the importer then writes the local canary, which marks it synced.
    private mutating func requestCanaryIfDue(_ kind: MeshKind) -> [Action] {
        guard listed.contains(kind), !usesCanaries || canaries.contains(kind), !canaryRequested.contains(kind) else { return [] }
        canaryRequested.insert(kind)
        return [.writeSyncCanary(connection: connection, kind)]
    }

    private mutating func startDrain() -> [Action] {
        stage = .draining
        return [.drain(keepStatus: false)]
    }

    private mutating func finish(removeStatus: Bool) -> [Action] {
        stage = .finished
        return [.finish(removeStatus: removeStatus)]
    }

    /// The remote's config must match what it was connected as and this cluster's mode.
    func validate(_ config: CiliumClusterConfig) -> ImportFailure? {
        let localMax = localCluster.maxConnectedClusters
        guard config.effectiveMaxConnectedClusters?.rawValue == localMax else {
            return .maxConnectedClustersDiffers(remote: remote, remoteValue: config.capabilities.maxConnectedClusters ?? 255, localValue: localMax)
        }
        guard config.id >= 1, config.id <= localMax else { return .clusterIDOutOfRange(remote: remote, id: config.id, maximum: localMax) }
        guard config.id == expectedID else { return .clusterIDChanged(remote: remote, reported: config.id, connectedAs: expectedID) }
        guard config.id != localCluster.id else { return .clusterIDIsLocal(remote: remote, id: config.id) }
        return nil
    }
}
