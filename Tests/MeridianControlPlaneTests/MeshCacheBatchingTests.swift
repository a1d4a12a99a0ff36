import Foundation
@testable import MeridianControlPlane
import MeridianEtcd
import MeridianTestSupport
import Testing

/// Cache writes are batched by count and by bytes, so any legal listing fits etcd's requests.
struct MeshCacheBatchingTests {
    @Test func batchesCloseAtTheCountOrTheByteBudget() {
        let small = MeshCache.batches(Array(repeating: 10, count: 250)) { $0 }
        #expect(small.map(\.count) == [100, 100, 50])
        let large = MeshCache.batches(Array(repeating: 400 * 1024, count: 5)) { $0 }
        #expect(large.map(\.count) == [2, 2, 1])
        let oversized = MeshCache.batches([10, 2 * 1024 * 1024, 10]) { $0 }
        #expect(oversized.map(\.count) == [1, 1, 1], "a record over the budget goes alone")
    }

    @Test func thirtyLargeNodeRecordsSyncIntoARealStore() async throws {
        try await ScratchEtcd.with { client, _ in
            let value = Data(repeating: UInt8(ascii: "x"), count: 60 * 1024)
            let puts = Dictionary(uniqueKeysWithValues: (0..<30).map { ("cilium/cache/nodes/v1/cluster2/cluster2/node\($0)", value) })
            try await MeshCache.apply(CacheDiff(puts: puts, deletes: []), to: client)
            #expect(try await client.count(prefix: "cilium/cache/nodes/v1/cluster2/") == 30)
        }
    }
}

/// What the cache holds must also read back: a listing whose pages exceed the transport's 4 MiB
/// message limit is read in smaller pages.
struct LargeListingTests {
    @Test func sixHundredIdentitiesOfEightKiBListCompletely() async throws {
        try await ScratchEtcd.with { client, _ in
            let value = Data(repeating: UInt8(ascii: "l"), count: 8 * 1024)
            let puts = Dictionary(uniqueKeysWithValues: (0..<600).map { ("cilium/cache/identities/v1/cluster2/id/\(131_072 + $0)", value) })
            try await MeshCache.apply(CacheDiff(puts: puts, deletes: []), to: client)
            let listing = try await client.list(prefix: "cilium/cache/identities/v1/cluster2/")
            #expect(listing.items.count == 600)
            #expect(Set(listing.items.map(\.key)) == Set(puts.keys))
        }
    }
}
