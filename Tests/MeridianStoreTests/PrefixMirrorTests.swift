import Foundation
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// A live copy of store prefixes, and reconciling against it, on the in-memory store.
@Suite("Prefix mirror")
struct PrefixMirrorTests {
    static func data(_ text: String) -> Data { Data(text.utf8) }

    static func running(_ mirror: PrefixMirror, _ store: any KeyValueStore, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await mirror.run(store: store, backoff: ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(20))) }
            defer { group.cancelAll() }
            try await body()
        }
    }

    @Test("synced once every prefix is listed; snapshots of a prefix and of a narrower one; the revision follows")
    func snapshots() async throws {
        let store = InMemoryKeyValueStore()
        try await store.commit(puts: [("a/x/1", Self.data("1")), ("a/y/1", Self.data("2")), ("b/1", Self.data("3"))])
        let mirror = PrefixMirror(prefixes: ["a/", "b/"])
        #expect(await !mirror.isSynced)
        try await Self.running(mirror, store) {
            try await eventuallyTrue { await mirror.isSynced }
            #expect(await mirror.snapshot("a/").count == 2)
            #expect(await mirror.snapshot("a/x/") == ["a/x/1": Self.data("1")])
            #expect(await mirror.snapshot("c/").isEmpty)
            let written = try await store.put("b/2", Self.data("4"))
            try await eventuallyTrue { await mirror.revision(of: "b/") == written }
            #expect(await mirror.snapshot("b/").count == 2)
        }
    }

    @Test("a broken watch is listed again, and what was deleted meanwhile leaves the copy")
    func relistSweeps() async throws {
        let store = InMemoryKeyValueStore()
        try await store.commit(puts: [("a/1", Self.data("1")), ("a/2", Self.data("2"))])
        let mirror = PrefixMirror(prefixes: ["a/"])
        try await Self.running(mirror, store) {
            try await eventuallyTrue { await mirror.snapshot("a/").count == 2 }
            store.failNext(2, of: [.read])
            store.breakWatches()
            try await store.delete("a/1")
            try await eventuallyTrue { await mirror.snapshot("a/") == ["a/2": Self.data("2")] }
        }
    }

    @Test("a change tracker gets everything first, then only the keys changed since its last read (a deletion as nil), and everything again after a listing")
    func changeTracking() async throws {
        let store = InMemoryKeyValueStore()
        try await store.commit(puts: [("a/1", Self.data("1")), ("a/2", Self.data("2")), ("b/1", Self.data("3"))])
        let mirror = PrefixMirror(prefixes: ["a/", "b/"])
        let tracker = await mirror.trackChanges()
        try await Self.running(mirror, store) {
            try await eventuallyTrue { await mirror.isSynced }
            guard case let .everything(first) = await mirror.takeChanges(tracker, prefix: "a/") else {
                Issue.record("the first read is not everything")
                return
            }
            #expect(first == ["a/1": Self.data("1"), "a/2": Self.data("2")])
            #expect(await mirror.takeChanges(tracker, prefix: "a/").isEmpty)
            try await store.put("a/3", Self.data("4"))
            try await store.put("a/1", Self.data("5"))
            try await store.delete("a/2")
            try await eventuallyTrue { await mirror.snapshot("a/") == ["a/1": Self.data("5"), "a/3": Self.data("4")] }
            guard case let .changed(changed) = await mirror.takeChanges(tracker, prefix: "a/") else {
                Issue.record("changes by key were not listed by key")
                return
            }
            let expected: [String: Data?] = ["a/3": Self.data("4"), "a/1": Self.data("5"), "a/2": Optional<Data>.none]
            #expect(changed == expected)
            #expect(await mirror.takeChanges(tracker, prefix: "a/").isEmpty)
            // Another tracker's reads do not take this one's changes.
            let other = await mirror.trackChanges()
            _ = await mirror.takeChanges(other, prefix: "b/")
            try await store.put("b/2", Self.data("6"))
            try await eventuallyTrue { await mirror.snapshot("b/").count == 2 }
            guard case .everything = await mirror.takeChanges(tracker, prefix: "b/") else {
                Issue.record("the tracker's first read of b/ is not everything")
                return
            }
            guard case let .changed(other2) = await mirror.takeChanges(other, prefix: "b/") else {
                Issue.record("the other tracker's change is not listed by key")
                return
            }
            #expect(other2 == ["b/2": Self.data("6")])
            store.failNext(2, of: [.read])
            store.breakWatches()
            try await store.delete("a/3")
            try await eventuallyTrue { await mirror.snapshot("a/").count == 1 }
            guard case let .everything(relisted) = await mirror.takeChanges(tracker, prefix: "a/") else {
                Issue.record("a listing again is not everything")
                return
            }
            #expect(relisted == ["a/1": Self.data("5")])
        }
    }

    @Test("reconcile runs once synced and after changes, and retries a failed run without waiting for a change")
    func reconcileRetries() async throws {
        let store = InMemoryKeyValueStore()
        let mirror = PrefixMirror(prefixes: ["a/"])
        let runs = Shared(0)
        let failures = Shared(0)
        let failing = Shared(0)
        let succeededAfterFailing = Shared(false)
        try await Self.running(mirror, store) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    await mirror.reconcile(retry: ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(10)),
                                           onFailure: { _ in failures.withLock { $0 += 1 } }) {
                        runs.withLock { $0 += 1 }
                        let fail = failing.withLock { remaining -> Bool in
                            guard remaining > 0 else { return false }
                            remaining -= 1
                            return true
                        }
                        if fail { throw CancellationError() }
                        if failures.value > 0 { succeededAfterFailing.withLock { $0 = true } }
                    }
                }
                defer { group.cancelAll() }
                try await eventuallyTrue { runs.value >= 1 }
                // The next two runs fail; the change wakes the first, the retries the others.
                failing.withLock { $0 = 2 }
                try await store.put("a/1", Self.data("1"))
                try await eventuallyTrue { succeededAfterFailing.value }
                #expect(failures.value == 2)
                let settled = runs.value
                try await Task.sleep(for: .milliseconds(100))
                #expect(runs.value == settled, "a run that succeeded is not repeated without a change")
            }
        }
    }
}

/// Polls `condition` for up to 10 s.
func eventuallyTrue(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("condition not met within 10 s")
    throw CancellationError()
}
