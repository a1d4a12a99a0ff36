import Foundation
import MeridianEtcd
import MeridianEtcdAPI
import MeridianTestSupport
import Synchronization
import Testing

/// The watch relay behind the mesh endpoint: what its ledger hands the client and sends a new
/// upstream stream, and, on real etcd, a relayed watch outliving the member it used, and a
/// client flooding it with requests refused instead of held.
@Suite("Watch relay", .serialized)
struct WatchRelayTests {
    static func create(_ prefix: String, startRevision: Int64 = 0) -> Etcdserverpb_WatchRequest {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(prefix.utf8)
        create.rangeEnd = EtcdClient.prefixEnd(prefix)
        create.startRevision = startRevision
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }

    static func cancel(_ id: Int64) -> Etcdserverpb_WatchRequest {
        var cancel = Etcdserverpb_WatchCancelRequest()
        cancel.watchID = id
        var request = Etcdserverpb_WatchRequest()
        request.cancelRequest = cancel
        return request
    }

    static func response(_ id: Int64, revision: Int64, created: Bool = false, canceled: Bool = false,
                         events: [Int64] = [], fragment: Bool = false, compactRevision: Int64 = 0) -> Etcdserverpb_WatchResponse {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = id
        response.header.revision = revision
        response.created = created
        response.canceled = canceled
        response.fragment = fragment
        response.compactRevision = compactRevision
        response.events = events.map { modRevision in
            var event = Mvccpb_Event()
            event.kv.key = Data("k\(modRevision)".utf8)
            event.kv.modRevision = modRevision
            return event
        }
        return response
    }

    /// The create requests a new stream is sent: (watch id, start revision).
    static func resumed(_ requests: [Etcdserverpb_WatchRequest]) -> [(id: Int64, from: Int64)] {
        requests.compactMap { request in
            guard case let .createRequest(create) = request.requestUnion else { return nil }
            return (create.watchID, create.startRevision)
        }
    }

    @Test("the ledger resumes each live watch under its own id from the revision after the last delivered, and keeps the new created answers from the client")
    func ledgerResumesWhereTheClientWas() {
        var ledger = WatchRelayLedger()
        ledger.record(Self.create("a/"))
        ledger.record(Self.create("b/", startRevision: 5))
        #expect(ledger.relay(Self.response(0, revision: 10, created: true)) != nil)
        #expect(ledger.relay(Self.response(1, revision: 10, created: true)) != nil)
        // Watch 0: events up to 12; watch 1 caught up to 8 only; then a progress notice for 0.
        _ = ledger.relay(Self.response(0, revision: 12, events: [11, 12]))
        _ = ledger.relay(Self.response(1, revision: 12, events: [7, 8]))
        _ = ledger.relay(Self.response(0, revision: 15))
        // A create still unanswered when the stream breaks goes again, as it was.
        ledger.record(Self.create("c/"))

        let again = ledger.resumeRequests()
        let resumed = Self.resumed(again)
        #expect(resumed.count == 3)
        #expect(resumed[0] == (0, 16), "watch 0 resumes after its progress notice")
        #expect(resumed[1] == (1, 9), "watch 1 resumes after its last event")
        #expect(resumed[2] == (0, 0), "the unanswered create goes again unchanged (etcd picks its id)")

        // The new stream's created answers for 0 and 1 are not the client's business; the one for
        // the unanswered create is.
        #expect(ledger.relay(Self.response(0, revision: 20, created: true)) == nil)
        #expect(ledger.relay(Self.response(1, revision: 20, created: true)) == nil)
        #expect(ledger.relay(Self.response(2, revision: 20, created: true))?.created == true)
        let events = ledger.relay(Self.response(1, revision: 20, events: [9, 14]))
        #expect(events?.events.count == 2)
        #expect(Self.resumed(ledger.resumeRequests()).map(\.id) == [0, 1, 2])
    }

    @Test("a watch that cannot be resumed (its revision compacted) reaches the client as cancelled, not as created again")
    func compactedResumeIsACancellation() throws {
        var ledger = WatchRelayLedger()
        ledger.record(Self.create("a/"))
        _ = ledger.relay(Self.response(0, revision: 3, created: true))
        _ = ledger.resumeRequests()
        let relayed = ledger.relay(Self.response(0, revision: 50, created: true, canceled: true, compactRevision: 40))
        let answer = try #require(relayed)
        #expect(!answer.created)
        #expect(answer.canceled)
        #expect(answer.compactRevision == 40)
        #expect(ledger.resumeRequests().isEmpty, "a cancelled watch is not resumed")
    }

    @Test("a cancellation asked for and not answered is asked again on the new stream; a fragment advances a watch only when it is the last")
    func cancellationAndFragments() {
        var ledger = WatchRelayLedger()
        ledger.record(Self.create("a/"))
        ledger.record(Self.create("b/"))
        _ = ledger.relay(Self.response(0, revision: 3, created: true))
        _ = ledger.relay(Self.response(1, revision: 3, created: true))
        ledger.record(Self.cancel(0))
        _ = ledger.relay(Self.response(1, revision: 9, events: [5, 6], fragment: true))
        let again = ledger.resumeRequests()
        #expect(Self.resumed(again).map(\.id) == [0, 1])
        #expect(Self.resumed(again).map(\.from) == [4, 4], "the fragment did not move watch 1")
        #expect(again.contains { if case let .cancelRequest(cancel) = $0.requestUnion { cancel.watchID == 0 } else { false } })
        _ = ledger.relay(Self.response(0, revision: 9, created: true))
        #expect(ledger.relay(Self.response(0, revision: 9, canceled: true))?.canceled == true)
        #expect(Self.resumed(ledger.resumeRequests()).map(\.id) == [1])
    }

    final class Counter: Sendable {
        private let count = Mutex(0)
        /// The count before this call.
        func next() -> Int {
            count.withLock { count in
                defer { count += 1 }
                return count
            }
        }
    }

    /// What a relayed stream delivered to its client.
    final class Delivered: Sendable {
        let responses = Mutex<[Etcdserverpb_WatchResponse]>([])
        func append(_ response: Etcdserverpb_WatchResponse) { responses.withLock { $0.append(response) } }
        var all: [Etcdserverpb_WatchResponse] { responses.withLock { $0 } }
        func keys(of id: Int64) -> [String] {
            all.filter { $0.watchID == id }.flatMap(\.events).map { String(decoding: $0.kv.key, as: UTF8.self) }
        }
    }

    static func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test("a watch relayed to a store of three members carries on when the member it uses is killed: no event lost or repeated, no second created, a cancelled watch stays cancelled")
    func relayedWatchOutlivesItsMember() async throws {
        try await ScratchEtcdCluster.with { cluster in
            try await EtcdClient.withClient(cluster.configuration) { relay in
                try await EtcdClient.withClient(cluster.configuration) { writer in
                    let (requests, send) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self)
                    let delivered = Delivered()
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                try await relay.relayWatch(requests: requests) { delivered.append($0) }
                                Issue.record("the relay ended")
                            } catch where !Task.isCancelled {
                                Issue.record("the relay failed: \(error)")
                            }
                        }
                        send.yield(Self.create("relay/"))
                        send.yield(Self.create("cancelled/"))
                        try await Self.waitFor("both watches created") { delivered.all.filter(\.created).count == 2 }
                        let watched = delivered.all[0].watchID, cancelled = delivered.all[1].watchID
                        func write(_ range: Range<Int>) async throws {
                            for index in range {
                                _ = try await EtcdMembersTests.writeUntilAcknowledged(writer, "relay/" + String(format: "%03d", index))
                            }
                        }
                        try await write(0..<20)
                        send.yield(Self.cancel(cancelled))
                        try await Self.waitFor("the cancellation answered") { delivered.all.contains { $0.canceled } }
                        // The relay, like every client, uses the first member.
                        cluster.kill(0)
                        try await write(20..<60)
                        _ = try await EtcdMembersTests.writeUntilAcknowledged(writer, "cancelled/after")
                        try await Self.waitFor("every event delivered") { delivered.keys(of: watched).count >= 60 }
                        try await Task.sleep(for: .milliseconds(500))
                        #expect(delivered.keys(of: watched) == (0..<60).map { "relay/" + String(format: "%03d", $0) })
                        #expect(delivered.all.filter(\.created).count == 2, "the client saw a watch created twice")
                        #expect(delivered.keys(of: cancelled).isEmpty)
                        #expect(delivered.all.filter(\.canceled).count == 1)
                        group.cancelAll()
                    }
                }
            }
        }
    }

    @Test("a client that sends watch requests without reading the answers is refused once the queue is full, not held in memory")
    func floodIsRefused() async throws {
        try await ScratchEtcd.with { client, _ in
            let requests = AsyncStream<Etcdserverpb_WatchRequest> { [sent = Counter()] in
                if sent.next() == 0 { return Self.create("flood/") }
                var request = Etcdserverpb_WatchRequest()
                request.progressRequest = Etcdserverpb_WatchProgressRequest()
                return request
            }
            let outcome = try await withThrowingTaskGroup(of: String.self) { group in
                group.addTask {
                    do {
                        // The client reads nothing: its first answer never returns.
                        try await client.relayWatch(requests: requests, maximumQueuedRequests: 64) { _ in
                            try await Task.sleep(for: .seconds(3600))
                        }
                        return "ended"
                    } catch let overflow as WatchRelayOverflow {
                        return "refused: \(overflow)"
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(90))
                    return "still relaying after 90 s"
                }
                defer { group.cancelAll() }
                let first = try await group.next()
                return try #require(first)
            }
            #expect(outcome == "refused: more than 64 watch requests queued for the store")
        }
    }
}
