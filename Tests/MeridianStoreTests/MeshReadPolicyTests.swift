import Foundation
import MeridianStore
import Testing

/// The mesh endpoint's range check, in etcd's range terms.
struct MeshReadPolicyTests {
    let policy = MeshReadPolicy(cluster: "cluster2")

    static func end(_ key: String) -> Data { Data(key.utf8) + [0] }

    @Test(arguments: [
        ("cilium/.heartbeat", ""),
        ("cilium/cluster-config/cluster2", ""),
        ("cilium/state/nodes/v1/cluster2/node1", ""),
        ("cilium/state/", "cilium/state0"),
        ("cilium/state/ip/v1/default/", "cilium/state/ip/v1/default0"),
        ("cilium/state/ip/v1/default/10.2.0.1", "cilium/state/ip/v1/default/10.2.0.2"),
        ("cilium/synced/cluster2/", "cilium/synced/cluster20"),
    ])
    func readsInsideTheExportAreAllowed(key: String, rangeEnd: String) {
        #expect(policy.allows(key: Data(key.utf8), rangeEnd: Data(rangeEnd.utf8)))
    }

    @Test func aSingleKeyAsARangeIsAllowed() {
        #expect(policy.allows(key: Data("cilium/.heartbeat".utf8), rangeEnd: Self.end("cilium/.heartbeat")))
    }

    @Test(arguments: [
        ("", ""),
        ("meridian/cluster/settings", ""),
        ("meridian/", "meridian0"),
        ("cilium/", "cilium0"),
        ("cilium/cache/", "cilium/cache0"),
        ("cilium/.heartbeat2", ""),
        ("cilium/.heartbea", "cilium/.heartbeat0"),
        ("cilium/cluster-config/cluster1", ""),
        ("cilium/cluster-config/cluster2x", ""),
        ("cilium/synced/cluster1/", "cilium/synced/cluster10"),
        ("cilium/state/", "meridian/"),
        ("cilium/state/z", "cilium/state/a"),
        ("cilium/state", "cilium/state/x"),
    ])
    func readsOutsideTheExportAreRefused(key: String, rangeEnd: String) {
        #expect(!policy.allows(key: Data(key.utf8), rangeEnd: Data(rangeEnd.utf8)))
    }

    @Test func fromKeyRangesAreRefused() {
        #expect(!policy.allows(key: Data("cilium/state/".utf8), rangeEnd: Data([0])))
        #expect(!policy.allows(key: Data([0]), rangeEnd: Data([0])))
    }

    @Test func oneByteBeyondASingleKeyIsRefused() {
        #expect(!policy.allows(key: Data("cilium/.heartbeat".utf8), rangeEnd: Self.end("cilium/.heartbeat") + [0]))
    }
}
