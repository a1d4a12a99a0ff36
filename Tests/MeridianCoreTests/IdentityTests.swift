import Foundation
import MeridianCore
import Testing

@Suite("Cluster identity layout")
struct IdentityLayoutTests {
    @Test(arguments: [
        (MaxConnectedClusters.c255, 8, 16, 65_535),
        (MaxConnectedClusters.c511, 9, 15, 32_767),
    ])
    func bitSplit(max: MaxConnectedClusters, clusterBits: Int, shift: Int, perCluster: Int) {
        let layout = IdentityLayout(maxConnectedClusters: max)
        #expect(layout.clusterIDBits == clusterBits)
        #expect(layout.shift == shift)
        #expect(layout.clusterIDBits + layout.shift == 24)
        #expect(layout.maxIdentitiesPerCluster == perCluster)
    }

    @Test(arguments: [
        (MaxConnectedClusters.c255, UInt32(1), UInt32(65_536), UInt32(131_071)),
        (MaxConnectedClusters.c255, 3, 196_608, 262_143),
        (MaxConnectedClusters.c255, 255, 16_711_680, 16_777_215),
        (MaxConnectedClusters.c511, 1, 32_768, 65_535),
        (MaxConnectedClusters.c511, 511, 16_744_448, 16_777_215),
        (MaxConnectedClusters.c255, 0, 0, 65_535),
    ])
    func clusterRanges(max: MaxConnectedClusters, cluster: UInt32, lower: UInt32, upper: UInt32) {
        let layout = IdentityLayout(maxConnectedClusters: max)
        let range = layout.range(of: ClusterID(cluster))
        #expect(range == lower...upper)
        #expect(layout.clusterID(of: lower) == ClusterID(cluster))
        #expect(layout.clusterID(of: upper) == ClusterID(cluster))
    }

    @Test func clusterIDOfIdentityDependsOnLayout() {
        // 199472 = 3 << 16 + 2864 in 255 mode, but 6 << 15 + 2864 in 511 mode.
        #expect(IdentityLayout(maxConnectedClusters: .c255).clusterID(of: 199_472) == ClusterID(3))
        #expect(IdentityLayout(maxConnectedClusters: .c511).clusterID(of: 199_472) == ClusterID(6))
    }

    @Test func reservedBoundary() {
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        #expect(layout.isReserved(0))
        #expect(layout.isReserved(255))
        #expect(!layout.isReserved(256))
    }

    @Test func ownershipIsFalseForReservedAndForeignIdentities() {
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        #expect(layout.isIdentity(65_537, ownedBy: ClusterID(1)))
        #expect(!layout.isIdentity(131_072, ownedBy: ClusterID(1)))
        #expect(!layout.isIdentity(8, ownedBy: ClusterID(0)))
        #expect(!layout.isIdentity(65_537, ownedBy: ClusterID(300)))
    }

    @Test(arguments: [
        (MaxConnectedClusters.c255, UInt32(0), UInt32(1), UInt32(256)),
        (MaxConnectedClusters.c255, 0, 65_280, 65_535),
        (MaxConnectedClusters.c255, 1, 1, 65_537),
        (MaxConnectedClusters.c255, 1, 65_535, 131_071),
        (MaxConnectedClusters.c255, 3, 2_864, 199_472),
        (MaxConnectedClusters.c511, 511, 32_767, 16_777_215),
        (MaxConnectedClusters.c511, 0, 1, 256),
    ])
    func localIndexRoundTrip(max: MaxConnectedClusters, cluster: UInt32, local: UInt32, identity: UInt32) throws {
        let layout = IdentityLayout(maxConnectedClusters: max)
        #expect(try layout.identity(cluster: ClusterID(cluster), local: local) == identity)
        #expect(layout.localIndex(of: identity) == local)
        #expect(layout.clusterID(of: identity) == ClusterID(cluster))
    }

    @Test func firstIdentityOfARangeHasNoLocalIndex() {
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        #expect(layout.localIndex(of: 65_536) == nil)
        #expect(layout.localIndex(of: 7) == nil)
        #expect(layout.localIndex(of: 0x0100_0001) == nil)
    }

    @Test func identityRejectsIndicesOutsideTheRange() {
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        #expect(throws: IdentityError.localIndexOutOfRange(0, cluster: ClusterID(2), allowed: 1...65_535)) {
            try layout.identity(cluster: ClusterID(2), local: 0)
        }
        #expect(throws: IdentityError.localIndexOutOfRange(65_281, cluster: ClusterID(0), allowed: 1...65_280)) {
            try layout.identity(cluster: ClusterID(0), local: 65_281)
        }
        #expect(throws: IdentityError.clusterIDOutOfRange(ClusterID(256), maxClusterID: 255)) {
            try layout.identity(cluster: ClusterID(256), local: 1)
        }
        let c511 = IdentityLayout(maxConnectedClusters: .c511)
        #expect(throws: IdentityError.localIndexOutOfRange(32_768, cluster: ClusterID(5), allowed: 1...32_767)) {
            try c511.identity(cluster: ClusterID(5), local: 32_768)
        }
    }

    @Test func identityErrorDescribesTheRange() {
        let error = IdentityError.localIndexOutOfRange(0, cluster: ClusterID(2), allowed: 1...65_535)
        #expect(error.description == "local identity index 0 for cluster 2 is outside 1...65535")
    }

    @Test func maxConnectedClustersAcceptsOnlyKnownSizes() {
        #expect(MaxConnectedClusters(rawValue: 255) == .c255)
        #expect(MaxConnectedClusters(rawValue: 511) == .c511)
        #expect(MaxConnectedClusters(rawValue: 256) == nil)
        #expect(MaxConnectedClusters(rawValue: 0) == nil)
    }

    @Test func clusterIDCodesAsABareNumberAndOrders() throws {
        let encoded = try JSONEncoder().encode([ClusterID(7)])
        #expect(String(decoding: encoded, as: UTF8.self) == "[7]")
        #expect(try JSONDecoder().decode(ClusterID.self, from: Data("42".utf8)) == ClusterID(42))
        #expect(ClusterID(3) < ClusterID(10))
        #expect([ClusterID(9), ClusterID(2)].sorted() == [ClusterID(2), ClusterID(9)])
    }
}

@Suite("Reserved identities")
struct ReservedIdentityTests {
    @Test(arguments: [
        (ReservedIdentity.host, UInt32(1), "reserved:host=;"),
        (.world, 2, "reserved:world=;"),
        (.unmanaged, 3, "reserved:unmanaged=;"),
        (.health, 4, "reserved:health=;"),
        (.`init`, 5, "reserved:init=;"),
        (.remoteNode, 6, "reserved:remote-node=;"),
        (.kubeAPIServer, 7, "reserved:kube-apiserver=;"),
        (.ingress, 8, "reserved:ingress=;"),
        (.worldIPv4, 9, "reserved:world-ipv4=;"),
        (.worldIPv6, 10, "reserved:world-ipv6=;"),
    ])
    func numbersAndLabels(identity: ReservedIdentity, number: UInt32, labelString: String) throws {
        #expect(identity.rawValue == number)
        #expect(ReservedIdentity(rawValue: number) == identity)
        #expect(identity.label.ciliumString == labelString)
        #expect(ReservedIdentity(labelName: identity.labelName) == identity)
        #expect(IdentityLayout(maxConnectedClusters: .c255).isReserved(identity.rawValue))
    }

    @Test func unknownReservedNameIsNil() {
        #expect(ReservedIdentity(labelName: "aggregate-cluster") == nil)
    }
}

@Suite("Cluster name and ID rules")
struct ClusterValidationTests {
    @Test(arguments: ["c1", "a", "7", "cluster-3", "a-b-c", String(repeating: "x", count: 32)])
    func validNames(name: String) throws {
        try ClusterValidation.validate(name: name, id: 3, max: .c255)
    }

    @Test(arguments: [
        ("", "must not be empty"),
        ("-c1", "must start and end with a lowercase letter or digit"),
        ("c1-", "must start and end with a lowercase letter or digit"),
        ("Cluster1", "may contain only lowercase letters, digits and '-'"),
        ("c_1", "may contain only lowercase letters, digits and '-'"),
        ("c.1", "may contain only lowercase letters, digits and '-'"),
        ("cluster one", "may contain only lowercase letters, digits and '-'"),
        (String(repeating: "x", count: 33), "is 33 characters long; at most 32 are allowed"),
    ])
    func invalidNames(name: String, message: String) {
        #expect(throws: ClusterConfigError(field: .name, value: name, message: message)) {
            try ClusterValidation.validate(name: name, id: 3, max: .c255)
        }
    }

    @Test func defaultNameIsOnlyForStandaloneClusters() throws {
        let error = #expect(throws: ClusterConfigError.self) {
            try ClusterValidation.validate(name: "default", id: 1, max: .c255)
        }
        #expect(error?.field == .name)
        #expect(error?.value == "default")
        try ClusterValidation.validate(name: "default", id: 0, max: .c255, allowZero: true)
    }

    @Test func idZeroNeedsAllowZero() throws {
        let error = #expect(throws: ClusterConfigError.self) {
            try ClusterValidation.validate(name: "c1", id: 0, max: .c255)
        }
        #expect(error?.field == .id)
        #expect(error?.description.contains("1...255") == true)
        try ClusterValidation.validate(name: "c1", id: 0, max: .c255, allowZero: true)
    }

    @Test(arguments: [
        (UInt32(1), MaxConnectedClusters.c255, true),
        (255, .c255, true),
        (256, .c255, false),
        (256, .c511, true),
        (511, .c511, true),
        (512, .c511, false),
    ])
    func idBoundsFollowMeshSize(id: UInt32, max: MaxConnectedClusters, valid: Bool) {
        let result = Result { () throws(ClusterConfigError) in
            try ClusterValidation.validate(name: "mesh-a", id: id, max: max)
        }
        switch result {
        case .success:
            #expect(valid)
        case let .failure(error):
            #expect(!valid)
            #expect(error.field == .id)
            #expect(error.value == String(id))
        }
    }

    @Test func errorDescriptionNamesFieldAndValue() {
        let error = ClusterConfigError(field: .id, value: "900", message: "must be in 1...511")
        #expect(error.description == "invalid cluster-id \"900\": must be in 1...511")
    }
}
