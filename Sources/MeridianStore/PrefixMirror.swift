import Foundation
import MeridianEtcd

/// A live copy of every key under some store prefixes, each followed by a `ListWatch`: listed,
/// then kept current by a watch, listed again whenever the watch breaks or its revision is
/// compacted. Consumers read
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
    /// Per change tracker and mirrored prefix: the keys changed since its last `takeChanges`.
    private var trackers: [UInt64: [String: PendingChanges]] = [:]
    private var nextTracker: UInt64 = 0

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

    /// The value of one key under a mirrored prefix, if the copy holds it.
    public func value(_ key: String) -> Data? {
        guard let prefix = prefixes.first(where: { key.hasPrefix($0) }) else { return nil }
        return values[prefix]?[key]
    }

    /// Registers a consumer that reads the changes since its last read instead of whole
    /// snapshots, so its work follows the change, not the size of the prefix. Its first
    /// `takeChanges` of each prefix gives everything.
    public func trackChanges() -> MirrorChangeTracker {
        let id = nextTracker
        nextTracker += 1
        trackers[id] = [:]
        return MirrorChangeTracker(id: id)
    }

    /// What changed under `prefix` (a mirrored prefix) since the tracker last took it: every key
    /// and value when the prefix was listed again, or more changed than is worth listing by key;
    /// otherwise the changed keys with their values now (nil: deleted). A key that changed and
    /// changed back is listed with its value.
    public func takeChanges(_ tracker: MirrorChangeTracker, prefix: String) -> PrefixChanges {
        let pending = trackers[tracker.id]?[prefix] ?? .everything
        trackers[tracker.id]?[prefix] = .keys([])
        let current = values[prefix] ?? [:]
        switch pending {
        case .everything:
            return .everything(current)
        case let .keys(keys):
            var changed: [String: Data?] = [:]
            changed.reserveCapacity(keys.count)
            for key in keys { changed[key] = .some(current[key]) }
            return .changed(changed)
        }
    }

    /// Tracked keys per prefix past which a tracker is told everything instead: a relist of a
    /// large prefix arrives as one snapshot anyway, and a consumer far behind rebuilds.
    public static let trackedKeysLimit = 65_536

    /// The store revision the copy of `prefix` (a mirrored prefix) reflects: every change to it
    /// up to this revision has been applied. A quiet prefix stays at the revision it was listed at.
    public func revision(of prefix: String) -> Int64 { revisions[prefix] ?? 0 }

    public var isSynced: Bool { synced.count == prefixes.count }

    /// Follows every prefix until cancelled, listing again after a short backoff whenever a
    /// watch breaks.
    public func run(store: any KeyValueStore, backoff: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(2))) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for prefix in prefixes {
                group.addTask {
                    try await ListWatch(store, .prefix(prefix), restart: .after(backoff)).run { update in
                        switch update {
                        case let .snapshot(items, revision): await self.replace(prefix, with: items, revision: revision)
                        case let .changes(events, revision): await self.apply(prefix, events, revision: revision)
                        }
                    }
                }
            }
        }
    }

    private func replace(_ prefix: String, with items: [EtcdKeyValue], revision: Int64) {
        values[prefix] = Dictionary(items.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        revisions[prefix] = revision
        synced.insert(prefix)
        for id in trackers.keys { trackers[id]?[prefix] = .everything }
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
        if !trackers.isEmpty {
            for id in trackers.keys {
                guard case var .keys(keys) = trackers[id]?[prefix] ?? .everything else { continue }
                // Released from the dictionary first, so the set grows in place rather than copied.
                trackers[id]?[prefix] = .everything
                for event in events {
                    switch event {
                    case let .put(kv): keys.insert(kv.key)
                    case let .delete(key, _): keys.insert(key)
                    }
                }
                trackers[id]?[prefix] = keys.count > Self.trackedKeysLimit ? .everything : .keys(keys)
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

/// A consumer of a mirror's changes (`PrefixMirror.trackChanges()`).
public struct MirrorChangeTracker: Sendable, Hashable {
    let id: UInt64
}

/// What changed under one mirrored prefix since a tracker's last read.
public enum PrefixChanges: Sendable {
    /// Every key and value under the prefix: the consumer rebuilds what it derives from it.
    case everything([String: Data])
    /// The keys that changed, with their values now (nil: deleted).
    case changed([String: Data?])

    /// Whether nothing changed.
    public var isEmpty: Bool {
        if case let .changed(keys) = self { return keys.isEmpty }
        return false
    }
}

private enum PendingChanges {
    case everything
    case keys(Set<String>)
}

extension PrefixMirror {
    /// Runs `body` whenever the copy of one of `prefixes` (mirrored prefixes) moves to a new
    /// revision, and when the mirror becomes synced, until cancelled: a consumer of a few
    /// prefixes is not woken by changes to the others (imported endpoints, hundreds a second at
    /// scale).
    public func onChanges(under prefixes: [String], _ body: () async -> Void) async {
        var seen: (revisions: [Int64], synced: Bool)?
        for await _ in subscribe() {
            var revisions: [Int64] = []
            for prefix in prefixes { revisions.append(revision(of: prefix)) }
            let now = (revisions: revisions, synced: isSynced)
            if let seen, seen.revisions == now.revisions, seen.synced == now.synced { continue }
            seen = now
            await body()
        }
    }

    /// Runs `body` once the mirror is synced and again after every change, until cancelled. A
    /// failed run is repeated after the backoff's next delay even when nothing changes (and the
    /// backoff resets after a run that succeeds); with `every`, it also runs that often.
    public func reconcile(retry: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5)),
                          every period: Duration? = nil,
                          onFailure: @escaping @Sendable (any Error) -> Void,
                          _ body: @escaping @Sendable () async throws -> Void) async {
        let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await _ in await self.subscribe() { wake.yield() }
                wake.finish()
            }
            if let period {
                group.addTask {
                    while (try? await Task.sleep(for: period)) != nil { wake.yield() }
                }
            }
            var backoff = retry
            for await _ in wakes {
                guard isSynced else { continue }
                do {
                    try await body()
                    backoff.reset()
                } catch {
                    if Task.isCancelled { break }
                    onFailure(error)
                    let delay = backoff.next()
                    group.addTask {
                        if (try? await Task.sleep(for: delay)) != nil { wake.yield() }
                    }
                }
            }
            group.cancelAll()
        }
    }
}
