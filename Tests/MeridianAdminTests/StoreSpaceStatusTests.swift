import Foundation
@testable import MeridianAdmin
import MeridianCore
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing

/// `clustermesh status` says when the store is out of disk space, where, and what to do.
struct StoreSpaceStatusTests {
    static let settings = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                          maxConnectedClusters: 255, clientEndpoints: [], serverName: "mesh.cluster1")

    static func warnings(availableBytes: Int64) async throws -> [String] {
        let store = InMemoryKeyValueStore(name: "cluster1")
        let filesystem = StoreSpaceRecord.Filesystem(path: "/var/lib/meridian/cluster1/etcd", availableBytes: availableBytes,
                                                     totalBytes: 10 << 30, minimumFreeBytes: 128 << 20)
        try await store.put(KeyLayout.storeSpace, StoreCoding.encode(StoreSpaceRecord(
            checkedAt: Date(), backendBytes: 1 << 20, quotaBytes: 2 << 30, lastRecovery: nil, filesystem: filesystem)))
        var report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: [], statuses: [:], reportedAt: Date())
        try await report.addExportAndStore(store)
        return report.warnings
    }

    @Test func aStoreShortOfDiskSpaceIsAWarningNamingTheFilesystem() async throws {
        let warnings = try await Self.warnings(availableBytes: 3 << 20)
        #expect(warnings == [
            "the store is out of disk space (no space left on device): 3 MiB free on the filesystem of /var/lib/meridian/cluster1/etcd, "
                + "below the 128 MiB etcd needs to keep writing; writes are refused until space is freed there",
        ])
        #expect(try await Self.warnings(availableBytes: 1 << 30).isEmpty)
    }
}
