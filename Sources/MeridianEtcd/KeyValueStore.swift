import Foundation

/// One key and its metadata as etcd stores it.
public struct EtcdKeyValue: Sendable, Hashable {
    public var key: String
    public var value: Data
    public var createRevision: Int64
    public var modRevision: Int64
    public var lease: Int64

    public var stringValue: String { String(decoding: value, as: UTF8.self) }

    public init(key: String, value: Data, createRevision: Int64 = 0, modRevision: Int64 = 0, lease: Int64 = 0) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.lease = lease
    }
}

/// A change observed by a watch.
public enum EtcdWatchEvent: Sendable, Hashable {
    case put(EtcdKeyValue)
    case delete(key: String, revision: Int64)

    public var key: String {
        switch self {
        case let .put(kv): kv.key
        case let .delete(key, _): key
        }
    }
}

/// A list result: the keys and the store revision they were read at (the revision a watch
/// resumes from, plus one).
public struct EtcdListing: Sendable {
    public var items: [EtcdKeyValue]
    public var revision: Int64

    public init(items: [EtcdKeyValue], revision: Int64) {
        self.items = items
        self.revision = revision
    }
}

/// The key-value operations Meridian's components need from a cluster's store, with etcd v3's
/// semantics: one revision counter for the whole store, moved by every write; listings read at
/// one revision; watches that replay every change after a start revision, in order, or fail
/// with `.compacted` when that revision is gone; transactions guarded by mod revisions; keys
/// bound to leases. `EtcdClient` is the implementation every process uses; unit tests use an
/// in-memory one (`MeridianTestSupport`) so that controllers can be tested without etcd.
public protocol KeyValueStore: Sendable {
    /// One key (nil when absent) and the store revision it was read at.
    func read(_ key: String) async throws(EtcdError) -> (value: EtcdKeyValue?, revision: Int64)
    /// Every key under `prefix`, read at one revision (in pages of `pageSize` keys).
    func list(prefix: String, pageSize: Int64) async throws(EtcdError) -> EtcdListing
    /// Number of keys under `prefix`.
    func count(prefix: String) async throws(EtcdError) -> Int
    /// Returns the revision the write made.
    @discardableResult
    func put(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Int64
    /// Writes `value` only if the key does not exist. Returns whether it wrote.
    func create(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Bool
    /// Rewrites `key` with its own value if that value is `expected`, which moves its mod
    /// revision. Returns whether the key held `expected`.
    func touch(_ key: String, ifValue expected: Data) async throws(EtcdError) -> Bool
    /// Deletes `keys` in one transaction if every key in `unchanged` still has the mod revision
    /// given (0: the key does not exist). Returns whether it deleted.
    func delete(_ keys: [String], ifModRevisions unchanged: [(key: String, modRevision: Int64)]) async throws(EtcdError) -> Bool
    /// Applies puts and deletes atomically (each key at most once).
    func commit(puts: [(key: String, value: Data)], deletes: [String], lease: Int64) async throws(EtcdError)
    @discardableResult
    func delete(_ key: String) async throws(EtcdError) -> Bool
    @discardableResult
    func delete(prefix: String) async throws(EtcdError) -> Int
    /// The store's current revision.
    func currentRevision() async throws(EtcdError) -> Int64

    func grantLease(ttl: Duration) async throws(EtcdError) -> Int64
    func revokeLease(_ id: Int64) async throws(EtcdError)
    /// Keeps `lease` alive until the task is cancelled, refreshing every `interval`. Throws
    /// `.leaseExpired` when the lease is gone.
    func keepAlive(lease: Int64, interval: Duration) async throws(EtcdError)

    /// Hands every batch of changes under `prefix` after `startRevision` (0: from now) to
    /// `handle`, with the revision it brings the watcher to; a batch is never empty. Runs until `handle` throws (its
    /// error is rethrown unchanged), the task is cancelled, or the store fails the watch
    /// (an `EtcdError`; `.compacted` means the start revision is gone, so list again).
    func watch(prefix: String, startRevision: Int64,
               handle: @escaping @Sendable (_ events: [EtcdWatchEvent], _ revision: Int64) async throws -> Void) async throws
    /// Watches exactly one key (a role may be allowed that key but not the range after it).
    func watch(key: String, startRevision: Int64,
               handle: @escaping @Sendable (_ events: [EtcdWatchEvent], _ revision: Int64) async throws -> Void) async throws
}

extension KeyValueStore {
    public func get(_ key: String) async throws(EtcdError) -> EtcdKeyValue? {
        try await read(key).value
    }

    public func list(prefix: String) async throws(EtcdError) -> EtcdListing {
        try await list(prefix: prefix, pageSize: 1000)
    }

    @discardableResult
    public func put(_ key: String, _ value: Data) async throws(EtcdError) -> Int64 {
        try await put(key, value, lease: 0)
    }

    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws(EtcdError) -> Int64 {
        try await put(key, Data(value.utf8), lease: lease)
    }

    public func create(_ key: String, _ value: Data) async throws(EtcdError) -> Bool {
        try await create(key, value, lease: 0)
    }

    public func commit(puts: [(key: String, value: Data)], deletes: [String] = []) async throws(EtcdError) {
        try await commit(puts: puts, deletes: deletes, lease: 0)
    }

    /// Deletes `key` if its mod revision is still `revision`. Returns whether it deleted.
    public func delete(_ key: String, ifModRevision revision: Int64) async throws(EtcdError) -> Bool {
        try await delete([key], ifModRevisions: [(key, revision)])
    }
}

/// An etcd alarm: a member that ran out of backend space (NOSPACE, after which etcd refuses
/// every write) or found its data corrupt.
public struct EtcdAlarm: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable { case none, noSpace = "NOSPACE", corrupt = "CORRUPT" }
    public enum Action: String, Sendable, Hashable { case get, activate, deactivate }

    public var member: UInt64
    public var kind: Kind

    public init(member: UInt64, kind: Kind) {
        self.member = member
        self.kind = kind
    }
}
