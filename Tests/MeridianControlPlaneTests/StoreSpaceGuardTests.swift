import Foundation
import Logging
@testable import MeridianControlPlane
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// A store that filled its quota with history is made writable again, and says so.
struct StoreSpaceGuardTests {
    @Test func aNoSpaceAlarmIsRecoveredByCompactingDefragmentingAndDisarming() async throws {
        let quota: Int64 = 16 * 1024 * 1024
        try await ScratchEtcd.with(extraArguments: ["--quota-backend-bytes", "\(quota)"]) { client, _ in
            let value = Data(repeating: UInt8(ascii: "v"), count: 1024 * 1024)
            var refused: EtcdError?
            for _ in 0..<64 where refused == nil {
                do {
                    try await client.put("meridian/test/churn", value)
                } catch let error as EtcdError {
                    refused = error
                }
            }
            let full = try #require(refused, "the store never filled")
            #expect("\(full)".contains("space"), "\(full)")
            #expect(try await client.alarms().contains { $0.kind == .noSpace })

            let spaceGuard = StoreSpaceGuard(client: client, quotaBytes: quota, interval: .seconds(10), logger: Logger(label: "test"))
            let recovery = try #require(try await spaceGuard.check(lastRecovery: nil))
            #expect(recovery.backendBytesAfter < recovery.backendBytesBefore)
            #expect(try await client.alarms().isEmpty)
            try await client.put("meridian/test/after", "writable again")
            let record = try #require(try await client.get(KeyLayout.storeSpace))
            let published = try StoreCoding.decode(StoreSpaceRecord.self, from: record.value, key: record.key)
            #expect(published.lastRecovery?.revision == recovery.revision && published.quotaBytes == quota)
            #expect(published.lastRecovery?.backendBytesBefore == recovery.backendBytesBefore)
        }
    }

    @Test("a store of three members out of space is recovered: every member defragmented, every alarm disarmed")
    func aStoreOfMembersIsRecoveredMemberByMember() async throws {
        let quota: Int64 = 16 * 1024 * 1024
        try await ScratchEtcdCluster.with(extraArguments: ["--quota-backend-bytes", "\(quota)"]) { cluster in
            try await EtcdClient.withClient(cluster.configuration) { client in
                let value = Data(repeating: UInt8(ascii: "v"), count: 1024 * 1024)
                var refused: EtcdError?
                for _ in 0..<64 where refused == nil {
                    do { try await client.put("meridian/test/churn", value) } catch let error as EtcdError { refused = error }
                }
                try #require(refused != nil, "the store never filled")
                let before = await EtcdStoreHealth.check(cluster.configuration).members.compactMap { $0.status?.backendBytes }
                #expect(before.count == 3)

                let spaceGuard = StoreSpaceGuard(client: client, quotaBytes: quota, interval: .seconds(10), logger: Logger(label: "test"))
                _ = try #require(try await spaceGuard.check(lastRecovery: nil))
                #expect(try await client.alarms().isEmpty)
                let after = await EtcdStoreHealth.check(cluster.configuration).members.compactMap { $0.status?.backendBytes }
                #expect(after.count == 3)
                for (old, new) in zip(before, after) { #expect(new < old / 2, "every member defragmented: \(before) → \(after)") }
                try await client.put("meridian/test/after", "writable again")
            }
        }
    }

    @Test func aHealthyStoreIsLeftAlone() async throws {
        try await ScratchEtcd.with { client, _ in
            try await client.put("meridian/test/a", "1")
            let spaceGuard = StoreSpaceGuard(client: client, quotaBytes: nil, interval: .seconds(10), logger: Logger(label: "test"))
            #expect(try await spaceGuard.check(lastRecovery: nil) == nil)
            #expect(try await client.alarms().isEmpty)
        }
    }
}
