import Foundation
import Logging
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// The board's statuses copied into the store for `clustermesh status`.
@Suite("Status publisher")
struct StatusPublisherTests {
    @Test("statuses are written when they change, removed ones deleted, and the reporter stamped")
    func publishes() async throws {
        let store = InMemoryKeyValueStore()
        let board = StatusBoard()
        var status = RemoteClusterStatus(name: "cluster2")
        status.phase = .ready
        board.set(status)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await StatusPublisher(client: store, board: board, logger: Logger(label: "test.status")).run() }
            defer { group.cancelAll() }
            try await eventually("published") { try await store.get(KeyLayout.remoteStatus("cluster2")) != nil }
            #expect(try await store.get(KeyLayout.statusReporter) != nil)
            let written = try #require(try await store.get(KeyLayout.remoteStatus("cluster2"))).modRevision
            board.set(status)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await store.get(KeyLayout.remoteStatus("cluster2"))?.modRevision == written, "the same status is not written again")
            status.counts.nodes = 4
            board.set(status)
            try await eventually("the change is written") {
                let kv = try await store.get(KeyLayout.remoteStatus("cluster2"))
                return try kv.map { try StoreCoding.decode(RemoteClusterStatus.self, from: $0.value, key: $0.key).counts.nodes } == 4
            }
            board.remove("cluster2")
            try await eventually("deleted") { try await store.get(KeyLayout.remoteStatus("cluster2")) == nil }
        }
    }

    @Test("a restarted publisher removes what an earlier one published before it stamps its liveness")
    func earlierStatusesGoFirst() async throws {
        let store = InMemoryKeyValueStore()
        var stale = RemoteClusterStatus(name: "cluster2")
        stale.phase = .ready
        stale.ready = true
        try await store.put(KeyLayout.remoteStatus("cluster2"), StoreCoding.encode(stale))
        let board = StatusBoard()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await StatusPublisher(client: store, board: board, logger: Logger(label: "test.status")).run() }
            defer { group.cancelAll() }
            try await eventually("stamped") { try await store.get(KeyLayout.statusReporter) != nil }
            #expect(try await store.get(KeyLayout.remoteStatus("cluster2")) == nil, "no fresh stamp vouches for the earlier ready status")
            let log = store.writeLog
            let deleted = try #require(log.firstIndex { $0.contains(KeyLayout.remoteStatus("cluster2")) && $0.hasPrefix("delete") })
            let stamped = try #require(log.firstIndex { $0.contains(KeyLayout.statusReporter) })
            #expect(deleted < stamped)
        }
    }
}
