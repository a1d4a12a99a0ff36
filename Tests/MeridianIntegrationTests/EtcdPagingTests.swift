import Foundation
import MeridianLab
import Glibc
import MeridianEtcd
import Testing

/// Listing a prefix larger than one gRPC message (4 MiB) against a real etcd: the client pages
/// through it at one revision, as `clustermesh status` and agents must when a mesh of hundreds of
/// clusters is imported.
@Suite("etcd listing in pages", .serialized, .enabled(if: getuid() == 0, "the lab needs root; CI runs as root"))
struct EtcdPagingTests {
    @Test("a prefix of 7.5 MB lists completely, in key order, at the revision of its first page")
    func largePrefix() async throws {
        try await LabFixture.with(clusters: 1, enable: false) { lab in
            try await lab.withAdmin("cluster1") { client in
                let value = Data(repeating: UInt8(ascii: "x"), count: 3000)
                let keys = (0..<2500).map { String(format: "test/paging/%05d", $0) }
                for chunk in stride(from: 0, to: keys.count, by: 200) {
                    try await client.commit(puts: keys[chunk..<min(chunk + 200, keys.count)].map { ($0, value) })
                }
                let before = try await client.list(prefix: "test/paging/")
                #expect(before.items.map(\.key) == keys, "every key, in order")
                #expect(before.items.allSatisfy { $0.value.count == 3000 })
                // Pages of 3 give the same listing as one page (other writers may move the revision
                // between the two listings, never backwards).
                let paged = try await client.list(prefix: "test/paging/0000", pageSize: 3)
                let whole = try await client.list(prefix: "test/paging/0000", pageSize: 100)
                #expect(paged.items.map(\.key) == whole.items.map(\.key) && paged.items.count == 10)
                #expect(before.revision <= paged.revision && paged.revision <= whole.revision)
            }
        }
    }
}
