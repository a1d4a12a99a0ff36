import Foundation
import GRPCCore
import MeridianEtcdAPI
import Synchronization

/// What a relay knows of one client's watch stream: the watches the client holds, how far each
/// has been delivered, and the create requests still waiting for their answer. It decides which
/// upstream responses the client sees and what a new upstream stream must be sent for the
/// client's watches to carry on where they were. It does no I/O; `EtcdClient.relayWatch` drives it.
///
/// When the upstream stream fails (the store member it used went away), every live watch is
/// created again on a new stream with the id the client knows it by (etcd takes a client-chosen
/// `watch_id`) from the revision after the last one delivered, and its `created` answer is kept
/// from the client: to the client, the stream never broke. A watch whose cancellation was asked
/// for but not answered is created again and cancelled again, so the client gets its answer.
/// A response split into fragments advances a watch only with its last fragment, so a stream
/// that breaks between fragments may deliver that revision's first fragments twice, never lose one.
public struct WatchRelayLedger: Sendable {
    struct Watch: Sendable {
        var create: Etcdserverpb_WatchCreateRequest
        /// The first revision the client has not been given.
        var nextRevision: Int64
        var cancelRequested = false
    }

    private(set) var watches: [Int64: Watch] = [:]
    /// The client's create requests sent upstream and not yet answered, in order (etcd answers
    /// them in order, and a client matches answers to its requests the same way).
    private var awaitingCreated: [Etcdserverpb_WatchCreateRequest] = []
    /// Watches created again on the current stream, whose `created` answer the client must not see.
    private var resuming: Set<Int64> = []

    public init() {}

    /// Notes a request of the client on its way upstream.
    public mutating func record(_ request: Etcdserverpb_WatchRequest) {
        switch request.requestUnion {
        case let .createRequest(create): awaitingCreated.append(create)
        case let .cancelRequest(cancel): watches[cancel.watchID]?.cancelRequested = true
        default: break
        }
    }

    /// What a new upstream stream must be sent first: every live watch created again from where
    /// it was (and cancelled again if the client asked), then the client's unanswered creates.
    public mutating func resumeRequests() -> [Etcdserverpb_WatchRequest] {
        resuming = []
        var requests: [Etcdserverpb_WatchRequest] = []
        for (id, watch) in watches.sorted(by: { $0.key < $1.key }) {
            var create = watch.create
            create.watchID = id
            create.startRevision = watch.nextRevision
            requests.append(Self.request(create))
            resuming.insert(id)
            if watch.cancelRequested {
                var cancel = Etcdserverpb_WatchCancelRequest()
                cancel.watchID = id
                var request = Etcdserverpb_WatchRequest()
                request.cancelRequest = cancel
                requests.append(request)
            }
        }
        requests += awaitingCreated.map(Self.request)
        return requests
    }

    private static func request(_ create: Etcdserverpb_WatchCreateRequest) -> Etcdserverpb_WatchRequest {
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }

    /// Takes in one upstream response; returns what the client is to be given, if anything.
    public mutating func relay(_ response: Etcdserverpb_WatchResponse) -> Etcdserverpb_WatchResponse? {
        let id = response.watchID
        if response.created {
            if resuming.remove(id) != nil {
                // The client knows this watch; it hears only if the watch could not be resumed
                // (its revision was compacted away, or it was cancelled meanwhile).
                guard response.canceled else { return nil }
                watches[id] = nil
                var cancelled = response
                cancelled.created = false
                return cancelled
            }
            guard !awaitingCreated.isEmpty else { return response }
            let create = awaitingCreated.removeFirst()
            if !response.canceled {
                let next = create.startRevision > 0 ? create.startRevision : response.header.revision + 1
                watches[id] = Watch(create: create, nextRevision: next)
            }
            return response
        }
        if response.canceled {
            watches[id] = nil
            return response
        }
        if response.events.isEmpty {
            // A progress notice: everything up to its revision was delivered, for one watch or
            // (id -1, an answer to a progress request) for all.
            let reached = response.header.revision + 1
            for watchID in id == -1 ? Array(watches.keys) : [id] {
                if let next = watches[watchID]?.nextRevision, next < reached { watches[watchID]?.nextRevision = reached }
            }
        } else if !response.fragment, let last = response.events.last, let next = watches[id]?.nextRevision {
            watches[id]?.nextRevision = max(next, last.kv.modRevision + 1)
        }
        return response
    }
}

/// The client's stream queued more requests for the store than the relay holds: it sends
/// without reading the answers, which the store then stops taking.
public struct WatchRelayOverflow: Error, Sendable, CustomStringConvertible {
    public var limit: Int
    public var description: String { "more than \(limit) watch requests queued for the store" }
}

extension EtcdClient {
    /// Relays one client's watch stream to the store: every request `requests` yields goes
    /// upstream, every response goes to `onResponse`, until `onResponse` or `requests` throws
    /// (rethrown as it is) or the task is cancelled. The client's requests ending does not end
    /// the stream, as with etcd.
    ///
    /// When the upstream stream fails, the relay opens a new one and carries the client's watches
    /// over (`WatchRelayLedger`): a member of a store going away is not seen by the client. It
    /// gives up, throwing the upstream failure, once no new stream has answered for `resumeWithin`,
    /// or at once for a failure no new stream mends (a refused permission, a malformed request).
    /// At most `maximumQueuedRequests` requests wait for the store; more throws `WatchRelayOverflow`.
    public func relayWatch<Requests: AsyncSequence & Sendable>(
        requests: Requests,
        resumeWithin: Duration = .seconds(10),
        maximumQueuedRequests: Int = 1024,
        onResponse: @escaping @Sendable (Etcdserverpb_WatchResponse) async throws -> Void
    ) async throws where Requests.Element == Etcdserverpb_WatchRequest {
        let relay = RelayStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await request in requests {
                    let queued = relay.state.withLock { stream in
                        stream.ledger.record(request)
                        guard let upstream = stream.upstream else { return true }
                        if case .dropped = upstream.yield(request) { return false }
                        return true
                    }
                    guard queued else { throw WatchRelayOverflow(limit: maximumQueuedRequests) }
                }
            }
            group.addTask {
                try await relayUpstream(relay, resumeWithin: resumeWithin, maximumQueuedRequests: maximumQueuedRequests, onResponse: onResponse)
            }
            // The client's requests may end; the relay goes on until the upstream side ends it.
            while try await group.next() != nil {}
        }
    }

    /// The relay's state shared by the task reading the client's requests and the one running
    /// upstream streams: the ledger, and where requests go now (nil between streams).
    private final class RelayStream: Sendable {
        struct State {
            var ledger = WatchRelayLedger()
            var upstream: AsyncStream<Etcdserverpb_WatchRequest>.Continuation?
        }
        let state = Mutex(State())
    }

    /// An error of the client's side (its response writer), which ends the relay unchanged.
    private struct ClientFailure: Error {
        var error: any Error
    }

    private func relayUpstream(_ relay: RelayStream, resumeWithin: Duration, maximumQueuedRequests: Int,
                               onResponse: @escaping @Sendable (Etcdserverpb_WatchResponse) async throws -> Void) async throws {
        var failingSince: ContinuousClock.Instant?
        var delay = Duration.milliseconds(50)
        while true {
            let (outbound, upstream) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self,
                                                              bufferingPolicy: .bufferingOldest(maximumQueuedRequests))
            relay.state.withLock { stream in
                stream.upstream = upstream
                for request in stream.ledger.resumeRequests() { upstream.yield(request) }
            }
            let answered = Atomic<Bool>(false)
            var failure: any Error
            do {
                try await watchAPI.watch { writer in
                    for await request in outbound { try await writer.write(request) }
                } onResponse: { response in
                    for try await message in response.messages {
                        answered.store(true, ordering: .relaxed)
                        guard let forwarded = relay.state.withLock({ $0.ledger.relay(message) }) else { continue }
                        do {
                            try await onResponse(forwarded)
                        } catch {
                            throw ClientFailure(error: error)
                        }
                    }
                }
                failure = EtcdError(.unavailable, "watch stream ended by the store")
            } catch let error as ClientFailure {
                throw error.error
            } catch {
                failure = error
            }
            relay.state.withLock { stream in
                stream.upstream?.finish()
                stream.upstream = nil
            }
            try Task.checkCancellation()
            if let rpc = failure as? RPCError, Self.unmendable.contains(rpc.code) { throw failure }
            let now = ContinuousClock.now
            if answered.load(ordering: .relaxed) {
                failingSince = now
                delay = .milliseconds(50)
            }
            let since = failingSince ?? now
            failingSince = since
            guard now - since < resumeWithin else { throw failure }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(1))
        }
    }

    /// Upstream failures a new stream would meet again.
    private static let unmendable: Set<RPCError.Code> = [.invalidArgument, .failedPrecondition, .outOfRange, .permissionDenied, .unauthenticated]
}
