import Foundation
import MeridianEtcd

/// A live copy of every key under some etcd prefixes: listed once, then kept current by a
/// watch, re-listed whenever the watch breaks or its revision is compacted. Consumers read
/// `snapshot()` and wait on their own `subscribe()` stream to learn that something moved, so
/// a reconciler can rebuild its desired state from one consistent view.
public actor PrefixMirror {
    public let prefixes: [String]
    private var values: [String: [String: Data]] = [:]
    private var generation: UInt64 = 0
    private var synced: Set<String> = []
    private var revisions: [String: Int64] = [:]
    private var subscribers: [UInt64: AsyncStream<UInt64>.Continuation] = [:]
    private var nextSubscriber: UInt64 = 0

    public init(prefixes: [String]) {
        self.prefixes = prefixes
    }

    /// A stream of its own for one consumer (an AsyncStream has a single consumer): yields the
    /// new generation after each batch of changes, buffering only the newest, starting with
    /// the current one.
    public func subscribe() -> AsyncStream<UInt64> {
        let (stream, continuation) = AsyncStream.makeStream(of: UInt64.self, bufferingPolicy: .bufferingNewest(1))
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        continuation.yield(generation)
        return stream
    }

    /// Every key and value under `prefix`: a mirrored prefix, or a narrower prefix inside one.
    public func snapshot(_ prefix: String) -> [String: Data] {
        if let exact = values[prefix] { return exact }
        guard let outer = prefixes.first(where: { prefix.hasPrefix($0) }) else { return [:] }
        return (values[outer] ?? [:]).filter { $0.key.hasPrefix(prefix) }
    }

    /// The store revision the copy of `prefix` (a mirrored prefix) reflects: every change to it
    /// up to this revision has been applied. A quiet prefix stays at the revision it was listed at.
    public func revision(of prefix: String) -> Int64 { revisions[prefix] ?? 0 }

    public var isSynced: Bool { synced.count == prefixes.count }

    /// Runs the list-watch loops until cancelled.
    public func run(client: any KeyValueStore, retryDelay: Duration = .milliseconds(500)) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for prefix in prefixes {
                group.addTask { try await self.follow(prefix, client: client, retryDelay: retryDelay) }
            }
        }
    }

    private func follow(_ prefix: String, client: any KeyValueStore, retryDelay: Duration) async throws {
        while !Task.isCancelled {
            do {
                let listing = try await client.list(prefix: prefix)
                replace(prefix, with: listing.items, revision: listing.revision)
                try await client.watch(prefix: prefix, startRevision: listing.revision + 1) { events, revision in
                    await self.apply(prefix, events, revision: revision)
                }
            } catch {
                if Task.isCancelled { return }
                try await Task.sleep(for: retryDelay)
            }
        }
    }

    private func replace(_ prefix: String, with items: [EtcdKeyValue], revision: Int64) {
        values[prefix] = Dictionary(items.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        revisions[prefix] = revision
        synced.insert(prefix)
        bump()
    }

    private func apply(_ prefix: String, _ events: [EtcdWatchEvent], revision: Int64) {
        revisions[prefix] = max(revisions[prefix] ?? 0, revision)
        // In place: copying the prefix's dictionary out and back cost a copy of every record per
        // watch batch (hundreds of thousands of imported ones at scale). A consumer still holding
        // a snapshot of it makes the first write copy, as it must.
        for event in events {
            switch event {
            case let .put(kv): values[prefix, default: [:]][kv.key] = kv.value
            case let .delete(key, _): values[prefix]?[key] = nil
            }
        }
        bump()
    }

    private func bump() {
        generation += 1
        for (id, continuation) in subscribers {
            // A consumer that stopped listening is forgotten at the next change.
            if case .terminated = continuation.yield(generation) { subscribers[id] = nil }
        }
    }
}
