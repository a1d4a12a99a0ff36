import Foundation
import MeridianCore
import MeridianStore
import Testing
@testable import MeridianControlPlane

/// The per-remote import walked through its transitions, without a store.
@Suite("Import state machine")
struct ImportStateMachineTests {
    typealias Machine = ImportStateMachine
    static let local = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                       maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1")
    static let t0 = ContinuousClock.now

    static func config(id: UInt32 = 2, canaries: Bool = true, max: UInt32? = 255) -> CiliumClusterConfig {
        CiliumClusterConfig(id: id, capabilities: .init(syncedCanaries: canaries, maxConnectedClusters: max))
    }

    static func machine(timing: ImportTiming = ImportTiming(heartbeatTimeout: .seconds(10), backoff: ReconnectBackoff(initial: .seconds(1), maximum: .seconds(8)))) -> Machine {
        Machine(remote: "cluster2", expectedID: 2, localCluster: local, timing: timing)
    }

    static func at(_ seconds: Double) -> ContinuousClock.Instant { t0 + .milliseconds(Int64(seconds * 1000)) }

    /// The actions without the status publications.
    static func work(_ actions: [Machine.Action]) -> [Machine.Action] {
        actions.filter { if case .publish = $0 { false } else { true } }
    }

    /// A machine brought to ready on connection 1.
    static func ready(_ timing: ImportTiming? = nil) -> Machine {
        var machine = timing.map { Self.machine(timing: $0) } ?? Self.machine()
        _ = machine.handle(.start(now: at(0)))
        _ = machine.handle(.connected(connection: 1))
        _ = machine.handle(.configRead(connection: 1, config(), at: Date(), now: at(0)))
        for kind in MeshKind.allCases {
            _ = machine.handle(.listed(connection: 1, kind, count: 3, rejected: [], at: Date()))
            _ = machine.handle(.canarySeen(connection: 1, kind))
            _ = machine.handle(.syncCanaryWritten(connection: 1, kind))
        }
        return machine
    }

    static func rejection(_ key: String, kind: RemoteRecordRejection.Kind = .node,
                          reason: RemoteRecordRejection.Reason = .malformed) -> RemoteRecordRejection {
        RemoteRecordRejection(kind: kind, key: key, reason: reason, message: "test")
    }

    static func retryToken(_ actions: [Machine.Action]) -> (token: Int, delay: Duration)? {
        for case let .scheduleRetry(token, delay) in actions { return (token, delay) }
        return nil
    }

    @Test("start opens connection 1; the transport coming up means waiting for the config")
    func startAndConnect() {
        var machine = Self.machine()
        let started = machine.handle(.start(now: Self.at(0)))
        #expect(Self.work(started) == [.connect(connection: 1)])
        #expect(machine.status.phase == .connecting)
        _ = machine.handle(.connected(connection: 1))
        #expect(machine.status.phase == .waitingForConfig)
        #expect(!machine.status.connected)
    }

    @Test("a valid config caches it marked cached, then mirrors every kind and watches canaries and heartbeat")
    func configStartsTheSync() {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        let actions = Self.work(machine.handle(.configRead(connection: 1, Self.config(), at: Date(), now: Self.at(1))))
        var cached = Self.config()
        cached.capabilities.cached = true
        #expect(actions == [.writeCachedConfig(connection: 1, cached)] + MeshKind.allCases.map { .mirror(connection: 1, $0) }
            + [.watchCanaries(connection: 1), .watchHeartbeat(connection: 1)])
        let status = machine.status
        #expect(status.phase == .syncing && status.connected && status.configRetrieved && status.syncCanaries)
        #expect(status.remoteClusterID == 2)
        #expect(!status.ready)
    }

    @Test("with canaries a kind is synced only when it is listed and its canary seen, in either order")
    func canariesAndListings() {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        _ = machine.handle(.configRead(connection: 1, Self.config(), at: Date(), now: Self.at(0)))
        #expect(Self.work(machine.handle(.listed(connection: 1, .nodes, count: 2, rejected: [Self.rejection("cluster2/node9")], at: Date()))).isEmpty)
        #expect(Self.work(machine.handle(.canarySeen(connection: 1, .nodes))) == [.writeSyncCanary(connection: 1, .nodes)])
        #expect(Self.work(machine.handle(.canarySeen(connection: 1, .services))).isEmpty)
        #expect(Self.work(machine.handle(.listed(connection: 1, .services, count: 0, rejected: [], at: Date()))) == [.writeSyncCanary(connection: 1, .services)])
        #expect(Self.work(machine.handle(.canarySeen(connection: 1, .nodes))).isEmpty, "the canary is written once")
        #expect(machine.status.counts.nodes == 2 && machine.status.rejected.nodes == 1)
        #expect(machine.status.rejectedByReason == ["malformed": 1])
        #expect(!machine.status.synced.nodes, "synced once the local canary is written")
        _ = machine.handle(.syncCanaryWritten(connection: 1, .nodes))
        #expect(machine.status.synced.nodes)
    }

    @Test("a remote without canaries has a kind synced as soon as it is listed")
    func withoutCanaries() {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        let actions = Self.work(machine.handle(.configRead(connection: 1, Self.config(canaries: false), at: Date(), now: Self.at(0))))
        #expect(!actions.contains(.watchCanaries(connection: 1)))
        #expect(Self.work(machine.handle(.listed(connection: 1, .identities, count: 1, rejected: [], at: Date()))) == [.writeSyncCanary(connection: 1, .identities)])
    }

    @Test("ready only when all four kinds are synced")
    func readyAfterAllKinds() {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        _ = machine.handle(.configRead(connection: 1, Self.config(canaries: false), at: Date(), now: Self.at(0)))
        for kind in MeshKind.allCases {
            #expect(!machine.status.ready)
            _ = machine.handle(.listed(connection: 1, kind, count: 1, rejected: [], at: Date()))
            _ = machine.handle(.syncCanaryWritten(connection: 1, kind))
        }
        #expect(machine.status.ready && machine.status.phase == .ready)
        #expect(machine.status.pendingKinds.isEmpty)
    }

    @Test("a config that does not fit is a failure with its reason, and the connection closes",
          arguments: [
            (config(id: 3), "reports cluster ID 3 but was connected as ID 2"),
            (config(id: 1), "connected as ID 2"),
            (config(max: 511), "maxConnectedClusters 511"),
            (config(id: 300), "outside 1...255"),
          ])
    func invalidConfig(_ config: CiliumClusterConfig, _ reason: String) {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        let actions = Self.work(machine.handle(.configRead(connection: 1, config, at: Date(), now: Self.at(0))))
        #expect(actions == [.closeConnection(connection: 1)])
        let status = machine.status
        #expect(status.phase == .backoff && status.numFailures == 1 && !status.configRetrieved)
        #expect(status.lastError?.contains(reason) == true, "\(status.lastError ?? "-")")
    }

    @Test("a config without maxConnectedClusters, or with 0, announces Cilium's default of 255", arguments: [nil, UInt32(0), 255])
    func defaultMeshSize(_ max: UInt32?) {
        var machine = Self.machine()
        _ = machine.handle(.start(now: Self.at(0)))
        _ = machine.handle(.configRead(connection: 1, Self.config(max: max), at: Date(), now: Self.at(0)))
        #expect(machine.status.lastError == nil)
        #expect(machine.status.phase == .syncing)
    }

    @Test("a remote that claims the local cluster's ID is refused")
    func localIDRefused() {
        var machine = Machine(remote: "cluster2", expectedID: 1, localCluster: Self.local, timing: ImportTiming())
        _ = machine.handle(.start(now: Self.at(0)))
        _ = machine.handle(.configRead(connection: 1, Self.config(id: 1), at: Date(), now: Self.at(0)))
        #expect(machine.status.lastError?.contains("the local cluster's ID 1") == true)
    }

    @Test("the heartbeat watchdog: silence longer than the timeout fails the connection; a heartbeat resets it")
    func heartbeatWatchdog() {
        var machine = Self.ready()
        #expect(Self.work(machine.handle(.tick(now: Self.at(9)))).isEmpty)
        _ = machine.handle(.heartbeat(connection: 1, at: Date(), now: Self.at(9)))
        #expect(Self.work(machine.handle(.tick(now: Self.at(18)))).isEmpty)
        #expect(Self.work(machine.handle(.tick(now: Self.at(19.5)))) == [.closeConnection(connection: 1)])
        #expect(machine.status.lastError?.contains("no heartbeat from cluster2") == true)
        #expect(!machine.status.connected && !machine.status.ready)
    }

    @Test("after a failure the status keeps counts but nothing is connected, configured or synced")
    func statusAfterFailure() {
        var machine = Self.ready()
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "watch broke"), at: Date(), now: Self.at(5)))
        let status = machine.status
        #expect(!status.connected && !status.ready && !status.configRetrieved && status.phase == .backoff)
        #expect(MeshKind.allCases.allSatisfy { !status.synced[$0] })
        #expect(status.counts.endpoints == 3)
        #expect(status.lastError == "watch broke")
    }

    @Test("the retry is scheduled once the failed connection has ended; a stale timer is ignored; the due one reconnects")
    func retryAfterTheConnectionEnds() throws {
        var machine = Self.ready()
        let failed = Self.work(machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "x"), at: Date(), now: Self.at(5))))
        #expect(Self.retryToken(failed) == nil, "no retry while the connection still runs")
        let ended = Self.work(machine.handle(.connectionEnded(connection: 1, now: Self.at(5))))
        let retry = try #require(Self.retryToken(ended))
        #expect(retry.delay >= .milliseconds(500) && retry.delay <= .seconds(1))
        #expect(Self.work(machine.handle(.retryDue(token: retry.token - 1, now: Self.at(7)))).isEmpty)
        #expect(Self.work(machine.handle(.retryDue(token: retry.token, now: Self.at(7)))) == [.connect(connection: 2)])
    }

    @Test("events of an earlier connection are ignored")
    func staleConnectionEvents() throws {
        var machine = Self.ready()
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "x"), at: Date(), now: Self.at(5)))
        let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 1, now: Self.at(5)))))
        _ = machine.handle(.retryDue(token: retry.token, now: Self.at(6)))
        _ = machine.handle(.configRead(connection: 2, Self.config(), at: Date(), now: Self.at(6)))
        #expect(Self.work(machine.handle(.listed(connection: 1, .nodes, count: 99, rejected: [], at: Date()))).isEmpty)
        #expect(Self.work(machine.handle(.canarySeen(connection: 1, .nodes))).isEmpty)
        #expect(Self.work(machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "old"), at: Date(), now: Self.at(7)))).isEmpty)
        #expect(machine.status.counts.nodes == 3)
        #expect(machine.status.phase == .syncing)
    }

    @Test("the reconnect delay doubles with every failure and starts over once the remote was ready again")
    func backoffGrowsAndResets() throws {
        var machine = Self.machine(timing: ImportTiming(backoff: ReconnectBackoff(initial: .seconds(1), maximum: .seconds(60))))
        _ = machine.handle(.start(now: Self.at(0)))
        var delays: [Duration] = []
        for attempt in 1...4 {
            _ = machine.handle(.connectionFailed(connection: attempt, .remoteStore(remote: "cluster2", detail: "down"), at: Date(), now: Self.at(0)))
            let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: attempt, now: Self.at(0)))))
            delays.append(retry.delay)
            _ = machine.handle(.retryDue(token: retry.token, now: Self.at(0)))
        }
        #expect(delays[3] >= .seconds(4) && delays[3] <= .seconds(8), "\(delays)")
        _ = machine.handle(.configRead(connection: 5, Self.config(canaries: false), at: Date(), now: Self.at(0)))
        for kind in MeshKind.allCases {
            _ = machine.handle(.listed(connection: 5, kind, count: 0, rejected: [], at: Date()))
            _ = machine.handle(.syncCanaryWritten(connection: 5, kind))
        }
        #expect(machine.status.ready)
        _ = machine.handle(.connectionFailed(connection: 5, .remoteStore(remote: "cluster2", detail: "down"), at: Date(), now: Self.at(0)))
        let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 5, now: Self.at(0)))))
        #expect(retry.delay <= .seconds(1))
        #expect(machine.status.numFailures == 5)
    }

    @Test("with a cache TTL the retry comes no later than the TTL; then the data is withdrawn, kept so, and the import goes on")
    func cacheTTLWithdraws() throws {
        var machine = Self.ready(ImportTiming(cacheTTL: .seconds(3), backoff: ReconnectBackoff(initial: .seconds(10), maximum: .seconds(10))))
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "down"), at: Date(), now: Self.at(10)))
        let first = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 1, now: Self.at(10)))))
        #expect(first.delay == .seconds(3), "the TTL runs out before the backoff's 5 to 10 s")
        #expect(Self.work(machine.handle(.retryDue(token: first.token, now: Self.at(13)))) == [.drain(keepStatus: true)])
        let afterDrain = Self.work(machine.handle(.drained))
        let second = try #require(Self.retryToken(afterDrain))
        #expect(second.delay >= .seconds(5))
        #expect(machine.status.phase == .withdrawn)
        #expect(machine.status.counts == .init(all: 0))
        #expect(Self.work(machine.handle(.retryDue(token: second.token, now: Self.at(20)))) == [.connect(connection: 2)])
        _ = machine.handle(.connectionFailed(connection: 2, .remoteStore(remote: "cluster2", detail: "still down"), at: Date(), now: Self.at(20)))
        let third = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 2, now: Self.at(20)))))
        #expect(third.delay >= .seconds(5), "withdrawn once: no more TTL clamp")
        #expect(Self.work(machine.handle(.retryDue(token: third.token, now: Self.at(30)))) == [.connect(connection: 3)])
        _ = machine.handle(.configRead(connection: 3, Self.config(canaries: false), at: Date(), now: Self.at(30)))
        for kind in MeshKind.allCases {
            _ = machine.handle(.listed(connection: 3, kind, count: 1, rejected: [], at: Date()))
            _ = machine.handle(.syncCanaryWritten(connection: 3, kind))
        }
        #expect(machine.status.phase == .ready)
    }

    @Test("a connection that lasted longer than the TTL and then failed is not withdrawn at once")
    func ttlCountsFromTheFailure() throws {
        var machine = Self.ready(ImportTiming(cacheTTL: .seconds(3), backoff: ReconnectBackoff(initial: .seconds(1), maximum: .seconds(1))))
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "down"), at: Date(), now: Self.at(3600)))
        let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 1, now: Self.at(3600)))))
        #expect(Self.work(machine.handle(.retryDue(token: retry.token, now: Self.at(3601)))) == [.connect(connection: 2)])
    }

    @Test("disconnect closes the connection and drains only once it has ended: a write still in flight cannot land after the drain")
    func disconnectWaitsForTheConnection() {
        var machine = Self.ready()
        #expect(Self.work(machine.handle(.disconnect(drain: true))) == [.closeConnection(connection: 1)])
        #expect(machine.status.phase == .draining)
        #expect(Self.work(machine.handle(.changed(connection: 1, .endpoints, count: 4, newlyRejected: [], at: Date()))).isEmpty)
        #expect(Self.work(machine.handle(.connectionFailed(connection: 1, .localStore(remote: "cluster2", detail: "late"), at: Date(), now: Self.at(1)))).isEmpty)
        #expect(Self.work(machine.handle(.tick(now: Self.at(100)))).isEmpty)
        #expect(Self.work(machine.handle(.connectionEnded(connection: 1, now: Self.at(2)))) == [.drain(keepStatus: false)])
        #expect(Self.work(machine.handle(.drained)) == [.finish(removeStatus: true)])
        #expect(machine.isFinished)
    }

    @Test("a failed drain is reported and retried until it succeeds; nothing finishes before")
    func failedDrainIsRetried() throws {
        var machine = Self.ready()
        _ = machine.handle(.disconnect(drain: true))
        _ = machine.handle(.connectionEnded(connection: 1, now: Self.at(1)))
        var tokens: [Int] = []
        for attempt in 1...3 {
            let actions = Self.work(machine.handle(.drainFailed("etcd unavailable #\(attempt)", at: Date())))
            guard case let .scheduleDrainRetry(token, delay)? = actions.first, actions.count == 1 else {
                Issue.record("expected one drain retry, got \(actions)")
                return
            }
            #expect(delay > .zero)
            #expect(machine.status.phase == .draining)
            #expect(machine.status.lastError?.contains("etcd unavailable #\(attempt)") == true)
            #expect(!machine.isFinished)
            tokens.append(token)
            #expect(Self.work(machine.handle(.drainRetryDue(token: token - 1))).isEmpty)
            #expect(Self.work(machine.handle(.drainRetryDue(token: token))) == [.drain(keepStatus: false)])
        }
        #expect(Set(tokens).count == 3)
        #expect(Self.work(machine.handle(.drained)) == [.finish(removeStatus: true)])
    }

    @Test("replacing the importer (a changed peer record) closes the connection and finishes without draining")
    func replaceDoesNotDrain() {
        var machine = Self.ready()
        #expect(Self.work(machine.handle(.disconnect(drain: false))) == [.closeConnection(connection: 1)])
        #expect(Self.work(machine.handle(.connectionEnded(connection: 1, now: Self.at(1)))) == [.finish(removeStatus: false)])
    }

    @Test("disconnect during a backoff with no connection open drains at once; the pending retry is then ignored")
    func disconnectDuringBackoff() throws {
        var machine = Self.ready()
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "x"), at: Date(), now: Self.at(1)))
        let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 1, now: Self.at(1)))))
        #expect(Self.work(machine.handle(.disconnect(drain: true))) == [.drain(keepStatus: false)])
        #expect(Self.work(machine.handle(.retryDue(token: retry.token, now: Self.at(3)))).isEmpty)
        #expect(Self.work(machine.handle(.drained)) == [.finish(removeStatus: true)])
    }

    @Test("a removed peer whose importer never started only drains")
    func drainOnly() {
        var machine = Self.machine()
        #expect(Self.work(machine.handle(.disconnect(drain: true))) == [.drain(keepStatus: false)])
        #expect(Self.work(machine.handle(.drained)) == [.finish(removeStatus: true)])
    }

    @Test("a disconnect that arrives while the data is being withdrawn drains once that is done")
    func disconnectWhileWithdrawing() throws {
        var machine = Self.ready(ImportTiming(cacheTTL: .seconds(1), backoff: ReconnectBackoff(initial: .seconds(5), maximum: .seconds(5))))
        _ = machine.handle(.connectionFailed(connection: 1, .remoteStore(remote: "cluster2", detail: "x"), at: Date(), now: Self.at(1)))
        let retry = try #require(Self.retryToken(machine.handle(.connectionEnded(connection: 1, now: Self.at(1)))))
        #expect(Self.work(machine.handle(.retryDue(token: retry.token, now: Self.at(2)))) == [.drain(keepStatus: true)])
        #expect(Self.work(machine.handle(.disconnect(drain: true))).isEmpty)
        #expect(Self.work(machine.handle(.drained)) == [.drain(keepStatus: false)])
        #expect(Self.work(machine.handle(.drained)) == [.finish(removeStatus: true)])
    }

    @Test("a connection that ends without a reported failure counts as one and is retried")
    func silentEnd() throws {
        var machine = Self.ready()
        let actions = machine.handle(.connectionEnded(connection: 1, now: Self.at(1)))
        #expect(Self.retryToken(actions) != nil)
        #expect(!Self.work(actions).contains(.closeConnection(connection: 1)))
        #expect(machine.status.numFailures == 1)
    }

    @Test("watched changes set the count and add up rejections; local store retries are counted")
    func countsAndRetries() {
        var machine = Self.ready()
        _ = machine.handle(.changed(connection: 1, .endpoints, count: 7, newlyRejected: [Self.rejection("10.9.0.1", kind: .ipIdentityPair), Self.rejection("10.9.0.2", kind: .ipIdentityPair)], at: Date()))
        _ = machine.handle(.changed(connection: 1, .endpoints, count: 6, newlyRejected: [Self.rejection("0.0.0.0/0", kind: .ipIdentityPair, reason: .keyMismatch)], at: Date()))
        _ = machine.handle(.localWriteRetried)
        _ = machine.handle(.localWriteRetried)
        let status = machine.status
        #expect(status.counts.endpoints == 6 && status.rejected.endpoints == 3)
        #expect(status.rejectedByReason == ["malformed": 2, "key-mismatch": 1])
        #expect(status.recentRejections?.map(\.key) == ["10.9.0.1", "10.9.0.2", "0.0.0.0/0"])
        #expect(status.recentRejections?.last?.reason == "key-mismatch" && status.recentRejections?.last?.kind == "endpoints")
        #expect(status.localStoreRetries == 2)
        #expect(status.numFailures == 0 && status.ready)
    }

    @Test("only the latest rejected records are kept, each reason counted")
    func recentRejectionsAreBounded() {
        var machine = Self.ready()
        let many = (0..<25).map { Self.rejection("cluster2/node\($0)") }
        _ = machine.handle(.listed(connection: 1, .nodes, count: 0, rejected: many, at: Date()))
        let status = machine.status
        #expect(status.recentRejections?.count == RemoteClusterStatus.RejectedRecord.kept)
        #expect(status.recentRejections?.first?.key == "cluster2/node15" && status.recentRejections?.last?.key == "cluster2/node24")
        #expect(status.rejectedByReason == ["malformed": 25] && status.rejected.nodes == 25)
    }

    @Test("the status is published when it changes, and only then")
    func publishesChangesOnly() {
        var machine = Self.machine()
        let first = machine.handle(.start(now: Self.at(0)))
        #expect(first.contains { if case .publish = $0 { true } else { false } })
        _ = machine.handle(.connected(connection: 1))
        let again = machine.handle(.connected(connection: 1))
        #expect(again.isEmpty)
        let tick = machine.handle(.tick(now: Self.at(1)))
        #expect(tick.isEmpty)
    }
}
