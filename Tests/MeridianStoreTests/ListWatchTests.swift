import Foundation
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// `ListWatch` over the in-memory store: complete state first, then changes, and a new complete
/// state after every broken watch, so deletions made meanwhile are swept.
@Suite("List, watch and sweep")
struct ListWatchTests {
    static func data(_ text: String) -> Data { Data(text.utf8) }

    /// What a consumer was handed, in order.
    final class Updates: Sendable {
        private let (stream, continuation) = AsyncStream.makeStream(of: ListWatch.Update.self)
        func add(_ update: ListWatch.Update) { continuation.yield(update) }

        func next(timeout: Duration = .seconds(5)) async throws -> ListWatch.Update {
            try await withThrowingTaskGroup(of: ListWatch.Update?.self) { group in
                group.addTask {
                    for await update in self.stream { return update }
                    return nil
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                return try #require(try await group.next() ?? nil, "no update within \(timeout)")
            }
        }
    }

    static func keys(_ update: ListWatch.Update) -> [String] {
        switch update {
        case let .snapshot(items, _): items.map(\.key)
        case let .changes(events, _): events.map(\.key)
        }
    }

    static func isSnapshot(_ update: ListWatch.Update) -> Bool {
        if case .snapshot = update { return true }
        return false
    }

    static func running(_ listWatch: ListWatch, _ body: (Updates) async throws -> Void) async throws {
        let updates = Updates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await listWatch.run { updates.add($0) } }
            defer { group.cancelAll() }
            try await body(updates)
        }
    }

    @Test("the complete state comes first, then every change after it")
    func snapshotThenChanges() async throws {
        let store = InMemoryKeyValueStore()
        try await store.put("p/a", Self.data("1"))
        try await store.put("q/x", Self.data("-"))
        try await Self.running(ListWatch(store, .prefix("p/"), restart: .never)) { updates in
            let first = try await updates.next()
            #expect(Self.isSnapshot(first))
            #expect(Self.keys(first) == ["p/a"])
            try await store.put("p/b", Self.data("2"))
            try await store.delete("p/a")
            #expect(Self.keys(try await updates.next()) == ["p/b"])
            #expect(Self.keys(try await updates.next()) == ["p/a"])
        }
    }

    @Test("one key: its value (or nothing) first, then its changes only")
    func oneKey() async throws {
        let store = InMemoryKeyValueStore()
        try await Self.running(ListWatch(store, .key("settings"), restart: .never)) { updates in
            let first = try await updates.next()
            #expect(Self.isSnapshot(first) && Self.keys(first).isEmpty)
            try await store.put("settings-other", Self.data("x"))
            try await store.put("settings", Self.data("on"))
            #expect(Self.keys(try await updates.next()) == ["settings"])
        }
    }

    @Test("after a broken watch it lists again, and the new snapshot lacks what was deleted meanwhile")
    func relistSweeps() async throws {
        let store = InMemoryKeyValueStore()
        try await store.commit(puts: [("p/a", Self.data("1")), ("p/b", Self.data("2"))])
        let backoff = ReconnectBackoff(initial: .milliseconds(200), maximum: .milliseconds(200))
        try await Self.running(ListWatch(store, .prefix("p/"), restart: .after(backoff))) { updates in
            #expect(Self.keys(try await updates.next()) == ["p/a", "p/b"])
            store.failNext(1, of: [.read])
            store.breakWatches()
            try await store.delete("p/a")
            try await store.put("p/c", Self.data("3"))
            let again = try await updates.next()
            #expect(Self.isSnapshot(again))
            #expect(Self.keys(again) == ["p/b", "p/c"])
            #expect(store.calls(.read) >= 3, "the first listing, the failed one and the one that succeeded")
        }
    }

    @Test("a compacted start revision is a broken watch: listed again")
    func compactedRelists() async throws {
        let store = InMemoryKeyValueStore()
        try await store.put("p/a", Self.data("1"))
        store.failNext(1, of: [.watch], with: .compacted)
        let backoff = ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(10))
        let failures = Shared<[EtcdError.Code]>([])
        let updates = Updates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await ListWatch(store, .prefix("p/"), restart: .after(backoff))
                    .run(onStoreFailure: { error in failures.withLock { $0.append(error.code) } }) { updates.add($0) }
            }
            defer { group.cancelAll() }
            #expect(Self.isSnapshot(try await updates.next()))
            let again = try await updates.next()
            #expect(Self.isSnapshot(again) && Self.keys(again) == ["p/a"])
            #expect(store.calls(.read) == 2)
            #expect(failures.value == [.compacted])
        }
    }

    @Test("a watch that breaks right after every listing backs off further each time")
    func brokenWatchesBackOff() async throws {
        let store = InMemoryKeyValueStore()
        store.failNext(20, of: [.watch])
        let backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(10))
        let failures = Shared([ContinuousClock.Instant]())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await ListWatch(store, .prefix("p/"), restart: .after(backoff))
                    .run(onStoreFailure: { _ in failures.withLock { $0.append(.now) } }) { _ in }
            }
            defer { group.cancelAll() }
            let deadline = ContinuousClock.now + .seconds(60)
            while failures.value.count < 5, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        }
        // The fourth delay is at least half of 800 ms; restarting at the initial delay every
        // time would keep every gap near 100 ms. (Sleeps never end early, so a slow machine
        // can only make the gaps longer, never fail this.)
        let instants = failures.value
        try #require(instants.count >= 5, "\(instants.count) failures")
        #expect(instants[4] - instants[3] >= .milliseconds(400), "gaps: \(zip(instants, instants.dropFirst()).map { $1 - $0 })")
    }

    @Test("without restarts a store failure ends the run with that error")
    func neverRestarts() async throws {
        let store = InMemoryKeyValueStore()
        store.failNext(1, of: [.read], with: .permissionDenied)
        await #expect(throws: EtcdError.self) {
            try await ListWatch(store, .prefix("p/"), restart: .never).run { _ in }
        }
        try await Self.running(ListWatch(store, .prefix("p/"), restart: .never)) { updates in
            _ = try await updates.next()
        }
    }

    struct ConsumerGaveUp: Error {}

    @Test("the consumer's own error ends the run even when store failures restart it")
    func consumerErrorsEndTheRun() async throws {
        let store = InMemoryKeyValueStore()
        try await store.put("p/a", Self.data("1"))
        await #expect(throws: ConsumerGaveUp.self) {
            try await ListWatch(store, .prefix("p/"), restart: .after(ReconnectBackoff())).run { _ in throw ConsumerGaveUp() }
        }
    }

    @Test("follow hands over the whole state after every update")
    func followKeepsTheState() async throws {
        let store = InMemoryKeyValueStore()
        try await store.put("p/a", Self.data("1"))
        let (states, publish) = AsyncStream.makeStream(of: [String: String].self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await ListWatch(store, .prefix("p/"), restart: .never).follow { state, _ in
                    publish.yield(state.mapValues(\.stringValue))
                }
            }
            var iterator = states.makeAsyncIterator()
            #expect(await iterator.next() == ["p/a": "1"])
            try await store.put("p/b", Self.data("2"))
            #expect(await iterator.next() == ["p/a": "1", "p/b": "2"])
            try await store.delete("p/a")
            #expect(await iterator.next() == ["p/b": "2"])
            group.cancelAll()
        }
    }

    @Test("coalescing: changes made while the consumer works reach it in one call, in order, with the last revision; one response at a time otherwise")
    func coalescingMergesWhatArrivesDuringAConsumersWork() async throws {
        for delivery in [ListWatch.Delivery.coalescing(maxEvents: 1_000), .eachResponse] {
            let store = InMemoryKeyValueStore()
            let calls = Shared([[String]]())
            let revisions = Shared([Int64]())
            let listed = Shared(false)
            let entered = Shared(false)
            let released = Shared(false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await ListWatch(store, .prefix("p/"), restart: .never, delivery: delivery).run { update in
                        guard case let .changes(events, revision) = update else {
                            listed.withLock { $0 = true }
                            return
                        }
                        calls.withLock { $0.append(events.map(\.key)) }
                        revisions.withLock { $0.append(revision) }
                        // The first call keeps the consumer busy until the test has written more.
                        if calls.withLock({ $0.count }) == 1 {
                            entered.withLock { $0 = true }
                            while !released.value { try await Task.sleep(for: .milliseconds(5)) }
                        }
                    }
                }
                try await eventuallyTrue { listed.value }
                try await store.put("p/0", Self.data("0"))
                try await eventuallyTrue { entered.value }
                var last: Int64 = 0
                for index in 1...20 { last = try await store.put("p/\(index)", Self.data("\(index)")) }
                try await store.delete("p/3")
                released.withLock { $0 = true }
                let expected = ["p/0"] + (1...20).map { "p/\($0)" } + ["p/3"]
                try await eventuallyTrue { calls.withLock { $0.flatMap { $0 } } == expected }
                switch delivery {
                case .coalescing:
                    #expect(calls.withLock { $0 }.count == 2, "the first change alone, then everything that came meanwhile")
                    #expect(revisions.withLock { $0 }.last ?? 0 > last)
                case .eachResponse:
                    #expect(calls.withLock { $0 }.count == 22)
                }
                group.cancelAll()
            }
        }
    }

    @Test("coalescing: the consumer's error ends the run")
    func coalescingConsumerErrorsEndTheRun() async throws {
        let store = InMemoryKeyValueStore()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await #expect(throws: ConsumerGaveUp.self) {
                    try await ListWatch(store, .prefix("p/"), restart: .after(ReconnectBackoff()), delivery: .coalescing(maxEvents: 10)).run { update in
                        if case .changes = update { throw ConsumerGaveUp() }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(50))
            try await store.put("p/a", Self.data("1"))
            try await group.waitForAll()
        }
    }
}
