import Foundation
import MeridianEtcd
import MeridianTestSupport
import Testing

/// A store of three real etcd members: the client knows every member, moves on when the one it
/// uses dies, loses no acknowledged write when the leader dies, and the health check says when
/// the store has no quorum.
@Suite("A store of three etcd members", .serialized)
struct EtcdMembersTests {
    /// Writes `key` until the store acknowledges it; the failed attempts.
    static func writeUntilAcknowledged(_ client: EtcdClient, _ key: String, within timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        var failures = 0
        while true {
            do {
                try await client.put(key, Data(key.utf8))
                return failures
            } catch {
                failures += 1
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    @Test("the client moves on from a killed member by itself, and no acknowledged write is lost when the leader is killed")
    func failoverLosesNothing() async throws {
        try await ScratchEtcdCluster.with { cluster in
            try await EtcdClient.withClient(cluster.configuration) { client in
                var acknowledged: [String] = []
                func write(_ count: Int) async throws {
                    for _ in 0..<count {
                        let key = "failover/" + String(format: "%05d", acknowledged.count)
                        _ = try await Self.writeUntilAcknowledged(client, key)
                        acknowledged.append(key)
                    }
                }
                try await write(20)
                // The first member is the one the client is connected to.
                cluster.kill(0)
                try await write(30)
                cluster.start(0)
                let deadline = ContinuousClock.now + .seconds(30)
                while await EtcdStoreHealth.check(cluster.configuration).members.contains(where: { $0.status == nil }) {
                    guard ContinuousClock.now < deadline else { Issue.record("member 0 did not rejoin"); return }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let health = await EtcdStoreHealth.check(cluster.configuration)
                let leader = try #require(health.members.firstIndex { $0.status?.isLeader == true }, "\(health)")
                cluster.kill(leader)
                try await write(30)
                let stored = Set(try await client.list(prefix: "failover/").items.map(\.key))
                #expect(acknowledged.count == 80)
                #expect(acknowledged.filter { !stored.contains($0) }.isEmpty, "acknowledged writes missing after the kills")
                let after = await EtcdStoreHealth.check(cluster.configuration)
                #expect(after.hasQuorum, "two of three members keep the store writable: \(after.summary)")
                #expect(after.members[leader].state == "unreachable")
            }
        }
    }

    @Test("with two members down the store has no quorum and says so; writes fail; it recovers when they return")
    func noQuorum() async throws {
        try await ScratchEtcdCluster.with { cluster in
            try await EtcdClient.withClient(cluster.configuration) { client in
                try await client.put("quorum/before", Data("1".utf8))
                cluster.kill(1)
                cluster.kill(2)
                var health = await EtcdStoreHealth.check(cluster.configuration)
                let deadline = ContinuousClock.now + .seconds(30)
                while health.hasQuorum, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                    health = await EtcdStoreHealth.check(cluster.configuration)
                }
                #expect(!health.hasQuorum)
                #expect(health.summary.contains("no quorum"), "\(health.summary)")
                #expect(health.members.filter { $0.status == nil }.count == 2)
                await #expect(throws: EtcdError.self) { try await client.put("quorum/during", Data("1".utf8)) }

                cluster.start(1)
                cluster.start(2)
                _ = try await Self.writeUntilAcknowledged(client, "quorum/after", within: .seconds(60))
                #expect(try await client.get("quorum/before") != nil)
                // A write can be acknowledged by two members while the third is still starting;
                // the health check asks each member, so it is given the same time to see quorum.
                var recovered = await EtcdStoreHealth.check(cluster.configuration)
                let recovery = ContinuousClock.now + .seconds(30)
                while !recovered.hasQuorum, ContinuousClock.now < recovery {
                    try await Task.sleep(for: .milliseconds(200))
                    recovered = await EtcdStoreHealth.check(cluster.configuration)
                }
                #expect(recovered.hasQuorum, "\(recovered.summary)")
            }
        }
    }
}
