import Foundation
import MeridianEtcd
import Synchronization

/// A `KeyValueStore` held in memory, for unit tests of the components that sit on the store
/// (importer, exporter, mirrors, allocators, controllers) without an etcd process. It keeps
/// etcd's semantics where those components depend on them: one revision for the whole store,
/// moved once per write (a transaction is one revision); keys with create and mod revisions;
/// listings sorted by key at one revision; watches that replay every change after their start
/// revision in order and then follow live, failing with `.compacted` for a revision compacted
/// away; conditional transactions, within `EtcdTransactionLimits`; leases whose keys go when they
/// are revoked or expire.
///
/// Tests also steer it: `failNext` makes calls fail as an unreachable store would,
/// `breakWatches` ends every open watch, `holdWrites` keeps writes in flight until released,
/// `compact` drops history. Integration tests use real etcd; this is for unit tests only.
public final class InMemoryKeyValueStore: KeyValueStore {
    /// Which calls an injected failure applies to.
    public enum Operation: Sendable, Hashable, CaseIterable {
        case read, write, watch, lease
    }

    private struct Entry {
        var value: Data
        var createRevision: Int64
        var modRevision: Int64
        var lease: Int64
    }

    private struct Watcher {
        var key: String
        var isPrefix: Bool
        var continuation: AsyncStream<Delivery>.Continuation

        func covers(_ candidate: String) -> Bool { isPrefix ? candidate.utf8.starts(with: key.utf8) : candidate.utf8.elementsEqual(key.utf8) }
    }

    private enum Delivery {
        case events([EtcdWatchEvent], Int64)
        case failure(EtcdError)
    }

    private struct Lease {
        var ttl: Duration
    }

    private struct State {
        var revision: Int64 = 1
        var compactedRevision: Int64 = 0
        var entries: [String: Entry] = [:]
        /// Every write's events, oldest first, from the compacted revision on.
        var history: [(revision: Int64, events: [EtcdWatchEvent])] = []
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcher: UInt64 = 0
        var leases: [Int64: Lease] = [:]
        var nextLease: Int64 = 0x1000
        var failures: [Operation: (code: EtcdError.Code, remaining: Int, keyPrefix: String?)] = [:]
        var writesHeld = false
        var heldWrites: [CheckedContinuation<Void, Never>] = []
        var heldWriteArrivals: [CheckedContinuation<Void, Never>] = []
        var operations: [Operation: Int] = [:]
        var writeLog: [String] = []
    }

    private let state = Mutex(State())
    private let location: String

    public init(name: String = "memory") {
        location = "in-memory store \(name)"
    }

    // MARK: Steering

    /// The next `count` calls of the given kinds fail with `code` (`.unavailable`: as if the
    /// store could not be reached); with `keyPrefix`, only calls on keys under it (the first key
    /// of a transaction) count.
    public func failNext(_ count: Int, of operations: Set<Operation> = Set(Operation.allCases), with code: EtcdError.Code = .unavailable,
                         keyPrefix: String? = nil) {
        state.withLock { state in
            for operation in operations { state.failures[operation] = (code, count, keyPrefix) }
        }
    }

    /// Ends every open watch with `code`, as a lost connection does.
    public func breakWatches(with code: EtcdError.Code = .unavailable) {
        let broken = state.withLock { state in
            let all = Array(state.watchers.values)
            state.watchers = [:]
            return all
        }
        for watcher in broken {
            watcher.continuation.yield(.failure(EtcdError(code, "watch \(watcher.key) at \(location): broken by the test")))
            watcher.continuation.finish()
        }
    }

    /// From now on writes wait (in flight, not applied) until `releaseWrites`.
    public func holdWrites() {
        state.withLock { $0.writesHeld = true }
    }

    /// Applies the held writes, in the order they arrived, and lets later writes through.
    public func releaseWrites() {
        let held = state.withLock { state in
            state.writesHeld = false
            defer { state.heldWrites = [] }
            return state.heldWrites
        }
        for continuation in held { continuation.resume() }
    }

    /// Returns once some write is being held (see `holdWrites`).
    public func waitForHeldWrite() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if !state.heldWrites.isEmpty { return true }
                state.heldWriteArrivals.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Forgets the history before `revision` (default: now): watches that start before it fail
    /// with `.compacted`, as after etcd's compaction.
    public func compact(upTo revision: Int64? = nil) {
        state.withLock { state in
            let target = min(revision ?? state.revision, state.revision)
            state.compactedRevision = max(state.compactedRevision, target)
            state.history.removeAll { $0.revision < state.compactedRevision }
        }
    }

    /// Expires a lease now: its keys are deleted and its keep-alive fails.
    public func expireLease(_ id: Int64) {
        state.withLock { state in
            guard state.leases.removeValue(forKey: id) != nil else { return }
            let doomed = state.entries.filter { $0.value.lease == id }.map(\.key).sorted()
            Self.apply(&state, puts: [], deletes: doomed, lease: 0)
        }
    }

    /// How many calls of a kind were made, injected failures included.
    public func calls(_ operation: Operation) -> Int {
        state.withLock { $0.operations[operation] ?? 0 }
    }

    /// Writes waiting while writes are held.
    public var heldWriteCount: Int { state.withLock { $0.heldWrites.count } }

    /// What every write that changed something did, in order: `put KEY` and `delete KEY`.
    public var writeLog: [String] { state.withLock { $0.writeLog } }

    // MARK: KeyValueStore

    public func read(_ key: String) async throws(EtcdError) -> (value: EtcdKeyValue?, revision: Int64) {
        try admit(.read, "get \(key)", key: key)
        return state.withLock { state in (state.entries[key].map { Self.keyValue(key, $0) }, state.revision) }
    }

    public func list(prefix: String, pageSize: Int64) async throws(EtcdError) -> EtcdListing {
        try admit(.read, "list \(prefix)", key: prefix)
        return state.withLock { state in
            let items = state.entries.filter { $0.key.utf8.starts(with: prefix.utf8) }
                .sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }.map { Self.keyValue($0.key, $0.value) }
            return EtcdListing(items: items, revision: state.revision)
        }
    }

    public func count(prefix: String) async throws(EtcdError) -> Int {
        try admit(.read, "count \(prefix)", key: prefix)
        return state.withLock { state in state.entries.keys.count { $0.utf8.starts(with: prefix.utf8) } }
    }

    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Int64 {
        try await write("put \(key)", key: key) { state throws(EtcdError) in
            try Self.requireLease(lease, in: state)
            return (true, [(key, value)], [], lease)
        }
    }

    public func create(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Bool {
        var created = false
        try await write("create \(key)", key: key) { state throws(EtcdError) in
            // As in etcd's transaction, the lease matters only to the put that runs.
            created = state.entries[key] == nil
            if created { try Self.requireLease(lease, in: state) }
            return (created, created ? [(key, value)] : [], [], lease)
        }
        return created
    }

    public func touch(_ key: String, ifValue expected: Data) async throws(EtcdError) -> Bool {
        var touched = false
        try await write("touch \(key)", key: key) { state throws(EtcdError) in
            guard let entry = state.entries[key], entry.value == expected else { return (false, [], [], 0) }
            touched = true
            return (true, [(key, expected)], [], entry.lease)
        }
        return touched
    }

    public func delete(_ keys: [String], ifModRevisions unchanged: [(key: String, modRevision: Int64)]) async throws(EtcdError) -> Bool {
        var deleted = false
        try await write("delete of \(keys.count) keys if unchanged", key: keys.first) { state throws(EtcdError) in
            deleted = unchanged.allSatisfy { (state.entries[$0.key]?.modRevision ?? 0) == $0.modRevision }
            return (deleted, [], deleted ? keys : [], 0)
        }
        return deleted
    }

    public func commit(puts: [(key: String, value: Data)], deletes: [String], lease: Int64) async throws(EtcdError) {
        guard !puts.isEmpty || !deletes.isEmpty else { return }
        try await write("commit of \(puts.count + deletes.count) operations", key: puts.first?.key ?? deletes.first) { state throws(EtcdError) in
            let keys = puts.map(\.key) + deletes
            guard Set(keys).count == keys.count else {
                throw EtcdError(.invalidArgument, "duplicate key given in txn request")
            }
            guard keys.count <= EtcdTransactionLimits.maximumOperations else {
                throw EtcdError(.invalidArgument, "too many operations in txn request")
            }
            guard EtcdTransactionLimits.requestBytes(puts: puts, deletes: deletes) <= EtcdTransactionLimits.maximumRequestBytes else {
                throw EtcdError(.invalidArgument, "request is too large")
            }
            try Self.requireLease(lease, in: state)
            return (true, puts, deletes, lease)
        }
    }

    @discardableResult
    public func delete(_ key: String) async throws(EtcdError) -> Bool {
        var deleted = false
        try await write("delete \(key)", key: key) { state throws(EtcdError) in
            deleted = state.entries[key] != nil
            return (deleted, [], [key], 0)
        }
        return deleted
    }

    @discardableResult
    public func delete(prefix: String) async throws(EtcdError) -> Int {
        var count = 0
        try await write("delete prefix \(prefix)", key: prefix) { state throws(EtcdError) in
            let doomed = state.entries.keys.filter { $0.utf8.starts(with: prefix.utf8) }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            count = doomed.count
            return (!doomed.isEmpty, [], doomed, 0)
        }
        return count
    }

    public func currentRevision() async throws(EtcdError) -> Int64 {
        try admit(.read, "status")
        return state.withLock { $0.revision }
    }

    public func grantLease(ttl: Duration) async throws(EtcdError) -> Int64 {
        try admit(.lease, "lease grant")
        return state.withLock { state in
            state.nextLease += 1
            state.leases[state.nextLease] = Lease(ttl: ttl)
            return state.nextLease
        }
    }

    public func revokeLease(_ id: Int64) async throws(EtcdError) {
        try admit(.lease, "lease revoke")
        guard state.withLock({ $0.leases[id] != nil }) else {
            throw EtcdError(.leaseExpired, "lease \(String(id, radix: 16)) not found")
        }
        expireLease(id)
    }

    public func keepAlive(lease: Int64, interval: Duration) async throws(EtcdError) {
        while true {
            try admit(.lease, "lease keep-alive")
            guard state.withLock({ $0.leases[lease] != nil }) else {
                throw EtcdError(.leaseExpired, "lease \(String(lease, radix: 16)) expired")
            }
            do {
                try await Task.sleep(for: min(interval, .milliseconds(50)))
            } catch {
                throw EtcdError(.cancelled, "lease keep-alive at \(location): cancelled", cause: error)
            }
        }
    }

    public func watch(prefix: String, startRevision: Int64,
                      handle: @escaping @Sendable ([EtcdWatchEvent], Int64) async throws -> Void) async throws {
        try await watch(key: prefix, isPrefix: true, startRevision: startRevision, handle: handle)
    }

    public func watch(key: String, startRevision: Int64,
                      handle: @escaping @Sendable ([EtcdWatchEvent], Int64) async throws -> Void) async throws {
        try await watch(key: key, isPrefix: false, startRevision: startRevision, handle: handle)
    }

    // MARK: Internals

    private func watch(key: String, isPrefix: Bool, startRevision: Int64,
                       handle: @escaping @Sendable ([EtcdWatchEvent], Int64) async throws -> Void) async throws {
        try admit(.watch, "watch \(key)", key: key)
        let (stream, continuation) = AsyncStream.makeStream(of: Delivery.self)
        let watcher = Watcher(key: key, isPrefix: isPrefix, continuation: continuation)
        let id = try state.withLock { state throws(EtcdError) -> UInt64 in
            if startRevision > 0, startRevision < state.compactedRevision {
                throw EtcdError(.compacted, "watch \(key): revision \(startRevision) compacted (now \(state.compactedRevision))")
            }
            // The backlog and the registration under one lock: no write falls between them.
            if startRevision > 0 {
                for past in state.history where past.revision >= startRevision {
                    let events = past.events.filter { watcher.covers($0.key) }
                    if !events.isEmpty { continuation.yield(.events(events, past.revision)) }
                }
            }
            let id = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id] = watcher
            return id
        }
        defer {
            state.withLock { _ = $0.watchers.removeValue(forKey: id) }
            continuation.finish()
        }
        for await delivery in stream {
            switch delivery {
            case let .events(events, revision): try await handle(events, revision)
            case let .failure(error): throw error
            }
        }
        throw EtcdError(.cancelled, "watch \(key) at \(location): cancelled")
    }

    /// Counts the call and throws an injected failure, if one is due; an empty key is refused,
    /// as etcd refuses it.
    private func admit(_ operation: Operation, _ what: String, key: String? = nil) throws(EtcdError) {
        if key?.isEmpty == true { throw EtcdError(.invalidArgument, "\(what) at \(location): key is not provided") }
        let failure = state.withLock { state -> EtcdError.Code? in
            state.operations[operation, default: 0] += 1
            guard let pending = state.failures[operation], pending.remaining > 0 else { return nil }
            if let prefix = pending.keyPrefix, key?.hasPrefix(prefix) != true { return nil }
            state.failures[operation] = pending.remaining > 1 ? (pending.code, pending.remaining - 1, pending.keyPrefix) : nil
            return pending.code
        }
        if let failure { throw EtcdError(failure, "\(what) at \(location): injected failure") }
    }

    /// One write transaction: waits while writes are held, then applies what `body` decides
    /// (whether anything happens, puts, deletes, the lease of the puts) under the lock and
    /// notifies the watchers. Returns the store revision after it.
    @discardableResult
    private func write(_ what: String, key: String?,
                       _ body: (inout State) throws(EtcdError) -> (apply: Bool, puts: [(key: String, value: Data)], deletes: [String], lease: Int64))
        async throws(EtcdError) -> Int64 {
        try admit(.write, what, key: key)
        await waitWhileHeld()
        return try state.withLock { state throws(EtcdError) -> Int64 in
            let decision = try body(&state)
            if decision.apply { Self.apply(&state, puts: decision.puts, deletes: decision.deletes, lease: decision.lease) }
            return state.revision
        }
    }

    private func waitWhileHeld() async {
        await withCheckedContinuation { continuation in
            let arrivals = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
                guard state.writesHeld else { return nil }
                state.heldWrites.append(continuation)
                defer { state.heldWriteArrivals = [] }
                return state.heldWriteArrivals
            }
            guard let arrivals else { return continuation.resume() }
            for arrival in arrivals { arrival.resume() }
        }
    }

    /// Applies puts and deletes as one revision and hands the events to the watchers, under the
    /// store's lock, so every watcher sees revisions in order.
    private static func apply(_ state: inout State, puts: [(key: String, value: Data)], deletes: [String], lease: Int64) {
        let revision = state.revision + 1
        var events: [EtcdWatchEvent] = []
        for (key, value) in puts {
            let created = state.entries[key]?.createRevision ?? revision
            let entry = Entry(value: value, createRevision: created, modRevision: revision, lease: lease)
            state.entries[key] = entry
            events.append(.put(keyValue(key, entry)))
            state.writeLog.append("put \(key)")
        }
        for key in deletes where state.entries.removeValue(forKey: key) != nil {
            events.append(.delete(key: key, revision: revision))
            state.writeLog.append("delete \(key)")
        }
        guard !events.isEmpty else { return }
        state.revision = revision
        state.history.append((revision, events))
        for watcher in state.watchers.values {
            let seen = events.filter { watcher.covers($0.key) }
            if !seen.isEmpty { watcher.continuation.yield(.events(seen, revision)) }
        }
    }

    private static func requireLease(_ lease: Int64, in state: State) throws(EtcdError) {
        guard lease == 0 || state.leases[lease] != nil else {
            throw EtcdError(.leaseExpired, "lease \(String(lease, radix: 16)) not found")
        }
    }

    private static func keyValue(_ key: String, _ entry: Entry) -> EtcdKeyValue {
        EtcdKeyValue(key: key, value: entry.value, createRevision: entry.createRevision, modRevision: entry.modRevision, lease: entry.lease)
    }
}
