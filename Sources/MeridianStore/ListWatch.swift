import Foundation
import MeridianEtcd

/// The list → watch → back off → list again → sweep loop, written once for every component
/// that follows part of a store: the agents' and controllers' mirrors, the import manager's
/// peer records, the control plane's mesh settings, and the importer's view of each remote
/// prefix. It lists a prefix (or reads one key) and hands the consumer the complete state,
/// then watches from that revision and hands over every batch of changes. When the watch
/// breaks (the store was unreachable, the revision was compacted away) it lists again, after a
/// backoff if it restarts by itself, and hands over the new complete state: whatever the
/// consumer still holds that the new state lacks was deleted meanwhile, and the consumer sweeps it.
public struct ListWatch: Sendable {
    /// What is followed.
    public enum Scope: Sendable, Hashable, CustomStringConvertible {
        case prefix(String)
        /// Exactly one key (a peer may be allowed to read that key but not the range after it).
        case key(String)

        public var description: String {
            switch self {
            case let .prefix(prefix): "\(prefix)*"
            case let .key(key): key
            }
        }
    }

    /// What the consumer is handed.
    public enum Update: Sendable {
        /// Everything in scope at `revision`; anything else the consumer holds is stale.
        case snapshot([EtcdKeyValue], revision: Int64)
        /// Changes up to `revision`, in order.
        case changes([EtcdWatchEvent], revision: Int64)
    }

    /// What happens when the store fails the listing or the watch.
    public enum Restart: Sendable {
        /// The failure ends `run` (its caller decides what a failure means).
        case never
        /// List again after the backoff's next delay; the backoff resets once a watch has lasted
        /// its maximum delay (a watch that breaks right after each listing keeps backing off).
        case after(ReconnectBackoff)
    }

    /// How the watch's changes reach the consumer.
    public enum Delivery: Sendable, Hashable {
        /// Each watch response in its own call; the watch waits while the consumer works.
        case eachResponse
        /// Responses that arrive while the consumer works are merged, in order, into its next
        /// call (at most `maxEvents` wait; past that the watch waits). A consumer that pays a
        /// round trip per call, such as a commit into another store, then keeps up with any
        /// rate by doing more per call instead of falling behind one response at a time.
        case coalescing(maxEvents: Int)
    }

    public let store: any KeyValueStore
    public let scope: Scope
    public let restart: Restart
    public let delivery: Delivery

    public init(_ store: any KeyValueStore, _ scope: Scope, restart: Restart, delivery: Delivery = .eachResponse) {
        self.store = store
        self.scope = scope
        self.restart = restart
        self.delivery = delivery
    }

    /// Follows the scope until the task is cancelled, the consumer throws (rethrown as it is),
    /// or, with `.never`, the store fails. `onStoreFailure` hears of every store failure that
    /// leads to a new listing.
    public func run(onStoreFailure: @Sendable (EtcdError) -> Void = { _ in },
                    _ consume: @escaping @Sendable (Update) async throws -> Void) async throws {
        var backoff: ReconnectBackoff? = if case let .after(backoff) = restart { backoff } else { nil }
        while true {
            do {
                return try await followOnce(consume)
            } catch let failure as StoreFailure {
                guard var delays = backoff, !Task.isCancelled else { throw failure.error }
                if let watched = failure.watchedFor, watched >= delays.maximum { delays.reset() }
                onStoreFailure(failure.error)
                try await Task.sleep(for: delays.next())
                backoff = delays
            } catch let failure as ConsumerFailure {
                throw failure.error
            }
        }
    }

    /// Like `run`, but hands the consumer the whole state in scope (key → record) and its
    /// revision after every listing and every batch of changes.
    public func follow(onStoreFailure: @Sendable (EtcdError) -> Void = { _ in },
                       _ consume: @escaping @Sendable (_ state: [String: EtcdKeyValue], _ revision: Int64) async throws -> Void) async throws {
        let state = Shared([String: EtcdKeyValue]())
        try await run(onStoreFailure: onStoreFailure) { update in
            let (current, revision) = state.withLock { current in
                switch update {
                case let .snapshot(items, revision):
                    current = Dictionary(items.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
                    return (current, revision)
                case let .changes(events, revision):
                    for event in events {
                        switch event {
                        case let .put(kv): current[kv.key] = kv
                        case let .delete(key, _): current[key] = nil
                        }
                    }
                    return (current, revision)
                }
            }
            try await consume(current, revision)
        }
    }

    /// One listing and the watch after it. Store errors come out as `StoreFailure`, the
    /// consumer's as `ConsumerFailure`, so that only the first restart the loop.
    private func followOnce(_ consume: @escaping @Sendable (Update) async throws -> Void) async throws {
        let items: [EtcdKeyValue]
        let revision: Int64
        do {
            switch scope {
            case let .prefix(prefix):
                let listing = try await store.list(prefix: prefix)
                (items, revision) = (listing.items, listing.revision)
            case let .key(key):
                let read = try await store.read(key)
                (items, revision) = (read.value.map { [$0] } ?? [], read.revision)
            }
        } catch {
            throw StoreFailure(error: error, watchedFor: nil)
        }
        do {
            try await consume(.snapshot(items, revision: revision))
        } catch {
            throw ConsumerFailure(error: error)
        }
        let watchStarted = ContinuousClock.now
        let watch: @Sendable (@escaping @Sendable ([EtcdWatchEvent], Int64) async throws -> Void) async throws -> Void = { handle in
            do {
                switch scope {
                case let .prefix(prefix): try await store.watch(prefix: prefix, startRevision: revision + 1, handle: handle)
                case let .key(key): try await store.watch(key: key, startRevision: revision + 1, handle: handle)
                }
            } catch let error as EtcdError {
                throw StoreFailure(error: error, watchedFor: ContinuousClock.now - watchStarted)
            }
        }
        switch delivery {
        case .eachResponse:
            try await watch { events, revision in
                do {
                    try await consume(.changes(events, revision: revision))
                } catch {
                    throw ConsumerFailure(error: error)
                }
            }
        case let .coalescing(maxEvents):
            try await Self.coalesce(maxEvents: maxEvents, after: revision, watch: watch, consume: consume)
        }
    }

    /// Runs the watch and the consumer side by side: the watch appends to a pending batch, the
    /// consumer takes all of it whenever it is free. Whichever ends first ends both.
    private static func coalesce(maxEvents: Int, after revision: Int64,
                                 watch: @escaping @Sendable (@escaping @Sendable ([EtcdWatchEvent], Int64) async throws -> Void) async throws -> Void,
                                 consume: @escaping @Sendable (Update) async throws -> Void) async throws {
        let pending = Shared<(events: [EtcdWatchEvent], revision: Int64)>(([], revision))
        let (ready, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in ready {
                    let batch = pending.withLock { state in
                        defer { state.events = [] }
                        return state
                    }
                    guard !batch.events.isEmpty else { continue }
                    do {
                        try await consume(.changes(batch.events, revision: batch.revision))
                    } catch {
                        throw ConsumerFailure(error: error)
                    }
                }
            }
            group.addTask {
                try await watch { events, revision in
                    // A consumer far behind holds the watch back (the store then buffers, and
                    // HTTP/2 flow control stops the sender) rather than letting the batch grow.
                    while pending.withLock({ $0.events.count >= maxEvents }) {
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    pending.withLock { state in
                        state.events += events
                        state.revision = revision
                    }
                    signal.yield()
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private struct StoreFailure: Error {
        var error: EtcdError
        /// How long the watch after a successful listing lasted; nil when the listing failed.
        var watchedFor: Duration?
    }

    private struct ConsumerFailure: Error {
        var error: any Error
    }
}
