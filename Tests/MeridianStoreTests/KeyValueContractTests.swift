import Foundation
import MeridianEtcd
import MeridianHost
import MeridianTestSupport
import Testing

/// The store semantics Meridian's controllers depend on, checked on the in-memory store and on
/// a real etcd with the same steps, so the unit tests' stand-in behaves as etcd does.
@Suite("Key-value store contract", .serialized)
struct KeyValueContractTests {
    enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case memory, etcd
        var testDescription: String { rawValue }
    }

    /// A store under test and how to compact it.
    struct Subject: Sendable {
        var store: any KeyValueStore
        var compact: @Sendable (Int64) async throws -> Void
    }

    static func with(_ backend: Backend, _ body: (Subject) async throws -> Void) async throws {
        switch backend {
        case .memory:
            let store = InMemoryKeyValueStore()
            try await body(Subject(store: store, compact: { store.compact(upTo: $0) }))
        case .etcd:
            try await ScratchEtcd.with { client, url in
                try await body(Subject(store: client, compact: { revision in
                    try await HostCommand.run(["etcdctl", "--endpoints", url, "compact", "\(revision)"])
                }))
            }
        }
    }

    /// What `body` returns, or a message when it has not returned within `timeout`.
    static func within(_ timeout: Duration, _ body: @escaping @Sendable () async -> String?) async -> String? {
        await withTaskGroup(of: String??.self) { group in
            group.addTask { .some(await body()) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .none
            }
            defer { group.cancelAll() }
            return (await group.next() ?? nil) ?? "still running after \(timeout)"
        }
    }

    /// Collects what a watch delivers, in order.
    final class Collected: Sendable {
        private let (stream, continuation) = AsyncStream.makeStream(of: (events: [EtcdWatchEvent], revision: Int64).self)
        func add(_ events: [EtcdWatchEvent], _ revision: Int64) { continuation.yield((events, revision)) }

        /// The next `count` events, failing after `timeout`.
        func next(_ count: Int, timeout: Duration = .seconds(5)) async throws -> [EtcdWatchEvent] {
            try await withThrowingTaskGroup(of: [EtcdWatchEvent]?.self) { group in
                group.addTask {
                    var collected: [EtcdWatchEvent] = []
                    for await batch in self.stream {
                        collected += batch.events
                        if collected.count >= count { return collected }
                    }
                    return collected
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                return try #require(try await group.next() ?? nil, "no \(count) events within \(timeout)")
            }
        }
    }

    /// Runs `body` while a watch of `prefix` (or exactly `key`) from `start` feeds `collected`.
    static func watching(_ store: any KeyValueStore, prefix: String? = nil, key: String? = nil, from start: Int64,
                         _ body: (Collected) async throws -> Void) async throws {
        let collected = Collected()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                if let key {
                    try await store.watch(key: key, startRevision: start) { events, revision in collected.add(events, revision) }
                } else {
                    try await store.watch(prefix: prefix ?? "", startRevision: start) { events, revision in collected.add(events, revision) }
                }
            }
            defer { group.cancelAll() }
            try await body(collected)
        }
    }

    static func data(_ text: String) -> Data { Data(text.utf8) }

    @Test("every write moves the revision by one, a transaction as a whole; listings are sorted and read at the current revision",
          arguments: Backend.allCases)
    func revisions(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let start = try await store.currentRevision()
            let first = try await store.put("a/2", Self.data("x"))
            #expect(first == start + 1)
            try await store.put("a/2", Self.data("x"))
            try await store.commit(puts: [("a/1", Self.data("1")), ("a/3", Self.data("3"))], deletes: ["a/2"])
            #expect(try await store.currentRevision() == start + 3)
            #expect(try await store.delete("a/none") == false)
            #expect(try await store.currentRevision() == start + 3, "a delete that deletes nothing writes nothing")
            let listing = try await store.list(prefix: "a/")
            #expect(listing.items.map(\.key) == ["a/1", "a/3"])
            #expect(listing.revision == start + 3)
            #expect(listing.items.allSatisfy { $0.createRevision == start + 3 && $0.modRevision == start + 3 })
            #expect(try await store.count(prefix: "a/") == 2)
        }
    }

    @Test("create writes only an absent key; touch moves the mod revision only while the value is the expected one; a guarded delete needs unmoved revisions",
          arguments: Backend.allCases)
    func conditionalWrites(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            #expect(try await store.create("k", Self.data("v1")))
            #expect(try await store.create("k", Self.data("v2")) == false)
            let created = try #require(try await store.get("k"))
            #expect(created.stringValue == "v1")
            #expect(try await store.touch("k", ifValue: Self.data("other")) == false)
            #expect(try await store.get("k")?.modRevision == created.modRevision)
            #expect(try await store.touch("k", ifValue: Self.data("v1")))
            let touched = try #require(try await store.get("k"))
            #expect(touched.modRevision > created.modRevision)
            #expect(touched.createRevision == created.createRevision)
            #expect(try await store.delete("k", ifModRevision: created.modRevision) == false)
            #expect(try await store.delete(["k", "absent"], ifModRevisions: [("k", touched.modRevision), ("absent", 0)]))
            #expect(try await store.get("k") == nil)
        }
    }

    @Test("a watch from a past revision replays every change in order and then follows live; deletes carry their revision",
          arguments: Backend.allCases)
    func watchReplaysThenFollows(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let from = try await store.put("w/a", Self.data("1"))
            try await store.put("other", Self.data("-"))
            try await store.put("w/b", Self.data("2"))
            try await Self.watching(store, prefix: "w/", from: from) { collected in
                let replayed = try await collected.next(2)
                #expect(replayed.map(\.key) == ["w/a", "w/b"])
                let deleted = try await store.put("w/c", Self.data("3")) + 1
                try await store.delete("w/a")
                let live = try await collected.next(2)
                #expect(live.map(\.key) == ["w/c", "w/a"])
                #expect(live.last == .delete(key: "w/a", revision: deleted))
            }
        }
    }

    @Test("a key watch sees only its key, from the revision it starts at", arguments: Backend.allCases)
    func watchScopes(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let old = try await store.put("hb", Self.data("old"))
            try await Self.watching(store, key: "hb", from: old + 1) { collected in
                try await store.put("hb2", Self.data("not mine"))
                try await store.put("hb", Self.data("new"))
                let seen = try await collected.next(1)
                #expect(seen.map(\.key) == ["hb"])
                guard case let .put(kv)? = seen.first else { Issue.record("expected a put"); return }
                #expect(kv.stringValue == "new")
            }
        }
    }

    @Test("a watch that starts before the compacted revision fails with compacted; from it on, it replays",
          arguments: Backend.allCases)
    func compaction(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let early = try await store.put("c/1", Self.data("1"))
            let later = try await store.put("c/2", Self.data("2"))
            try await subject.compact(later)
            // Bounded: a store that accepted the watch would otherwise wait here for ever.
            let outcome = await Self.within(.seconds(10)) {
                do {
                    try await store.watch(prefix: "c/", startRevision: early) { _, _ in }
                    return "the watch ended without an error"
                } catch let error as EtcdError {
                    return error.code == .compacted ? nil : "failed with \(error)"
                } catch {
                    return "failed with \(error)"
                }
            }
            #expect(outcome == nil, "\(outcome ?? "")")
            try await Self.watching(store, prefix: "c/", from: later) { collected in
                let replayed = try await collected.next(1)
                #expect(replayed.map(\.key) == ["c/2"])
            }
        }
    }

    @Test("a revoked lease takes its keys with it, seen as deletes; writing on an unknown lease fails", arguments: Backend.allCases)
    func leases(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let lease = try await store.grantLease(ttl: .seconds(30))
            try await store.put("l/node", Self.data("n"), lease: lease)
            try await store.put("l/kept", Self.data("k"))
            #expect(try await store.get("l/node")?.lease == lease)
            let now = try await store.currentRevision()
            try await Self.watching(store, prefix: "l/", from: now + 1) { collected in
                try await store.revokeLease(lease)
                let deleted = try await collected.next(1)
                #expect(deleted.map(\.key) == ["l/node"])
            }
            #expect(try await store.list(prefix: "l/").items.map(\.key) == ["l/kept"])
            await #expect(throws: EtcdError.self) { try await store.put("l/late", Self.data("x"), lease: lease) }
        }
    }

    @Test("a transaction naming one key twice is refused and changes nothing", arguments: Backend.allCases)
    func duplicateKeys(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let before = try await store.currentRevision()
            await #expect(throws: EtcdError.self) {
                try await store.commit(puts: [("d", Self.data("1"))], deletes: ["d"])
            }
            #expect(try await store.currentRevision() == before)
            #expect(try await store.get("d") == nil)
        }
    }

    @Test("a transaction past EtcdTransactionLimits (operations or bytes, as Meridian counts them) is refused and changes nothing; one at them is taken",
          arguments: Backend.allCases)
    func transactionLimits(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            let before = try await store.currentRevision()
            let operations = (0..<EtcdTransactionLimits.maximumOperations).map { (key: "t/\($0)", value: Self.data("x")) }
            await #expect(throws: EtcdError.self) { try await store.commit(puts: operations + [("t/one-more", Self.data("x"))]) }
            let oversized = Data(count: EtcdTransactionLimits.maximumRequestBytes)
            await #expect(throws: EtcdError.self) { try await store.commit(puts: [("t/oversized", oversized)]) }
            #expect(try await store.currentRevision() == before)

            try await store.commit(puts: operations)
            let room = EtcdTransactionLimits.maximumRequestBytes - EtcdTransactionLimits.requestBytes(puts: [("t/largest", Data())], deletes: [])
            try await store.commit(puts: [("t/largest", Data(count: room))])
            #expect(try await store.currentRevision() == before + 2)
            #expect(try await store.get("t/largest")?.value.count == room)
        }
    }

    @Test("deleting a prefix removes exactly the keys under it, in one revision", arguments: Backend.allCases)
    func prefixDelete(_ backend: Backend) async throws {
        try await Self.with(backend) { subject in
            let store = subject.store
            try await store.commit(puts: [("p/1", Self.data("1")), ("p/2", Self.data("2")), ("q/1", Self.data("3"))])
            let before = try await store.currentRevision()
            #expect(try await store.delete(prefix: "p/") == 2)
            #expect(try await store.currentRevision() == before + 1)
            #expect(try await store.count(prefix: "p/") == 0)
            #expect(try await store.list(prefix: "q/").items.map(\.key) == ["q/1"])
            await #expect(throws: EtcdError.self, "an empty key names nothing") { try await store.list(prefix: "") }
        }
    }
}
