import Foundation
import MeridianCore
import Testing

@Suite("Validation of records imported from a remote cluster")
struct RemoteValidationTests {
    static let layout = IdentityLayout(maxConnectedClusters: .c255)
    /// What `connect` recorded for the peer c2.
    static let podCIDRs = [IPCIDR("10.2.0.0/16"), IPCIDR("fd00:2::/48")].compactMap { $0 }

    static func validator() throws -> RemoteRecordValidation {
        try RemoteRecordValidation(remote: (name: "c2", id: ClusterID(2)), podCIDRs: podCIDRs, layout: layout)
    }

    static func expectRejection(
        _ reason: RemoteRecordRejection.Reason,
        kind: RemoteRecordRejection.Kind,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws(RemoteRecordRejection) -> Void
    ) {
        let error = #expect(throws: RemoteRecordRejection.self, sourceLocation: sourceLocation) { try body() }
        #expect(error?.reason == reason, sourceLocation: sourceLocation)
        #expect(error?.kind == kind, sourceLocation: sourceLocation)
    }

    @Test func remoteMustItselfBeValid() {
        #expect(throws: ClusterConfigError.self) {
            try RemoteRecordValidation(remoteName: "c2", remoteID: ClusterID(300), podCIDRs: Self.podCIDRs, layout: Self.layout)
        }
        #expect(throws: ClusterConfigError.self) {
            try RemoteRecordValidation(remoteName: "default", remoteID: ClusterID(2), podCIDRs: Self.podCIDRs, layout: Self.layout)
        }
        #expect(throws: ClusterConfigError.self) {
            try RemoteRecordValidation(remoteName: "c2", remoteID: ClusterID(0), podCIDRs: Self.podCIDRs, layout: Self.layout)
        }
    }

    @Test(arguments: ["0.0.0.0/0", "::/0"])
    func aPeerPodCIDRIsNeverADefaultRoute(cidr: String) throws {
        let everything = try #require(IPCIDR(cidr))
        let error = #expect(throws: ClusterConfigError.self) {
            try RemoteRecordValidation(remoteName: "c2", remoteID: ClusterID(2), podCIDRs: Self.podCIDRs + [everything], layout: Self.layout)
        }
        #expect(error?.field == .podCIDR)
    }

    // MARK: Nodes

    static let node = NodeRecord(
        name: "node-1", cluster: "c2", ipAddresses: [NodeAddress(type: .internalIP, ip: "172.18.0.3")],
        ipv4AllocCIDR: IPCIDR("10.2.1.0/24"), ipv4HealthIP: "10.2.1.9", clusterID: 2)

    @Test func acceptsAConsistentNode() throws {
        try Self.validator().validate(node: Self.node, keyName: "c2/node-1")
    }

    @Test func nodeRules() throws {
        let v = try Self.validator()
        var other = Self.node
        other.cluster = "c3"
        Self.expectRejection(.wrongCluster, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: other, keyName: "c3/node-1")
        }
        var wrongID = Self.node
        wrongID.clusterID = 3
        Self.expectRejection(.wrongCluster, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: wrongID, keyName: "c2/node-1")
        }
        Self.expectRejection(.keyMismatch, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: Self.node, keyName: "c2/node-2")
        }
        var unnamed = Self.node
        unnamed.name = ""
        Self.expectRejection(.malformed, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: unnamed, keyName: "c2/")
        }
        var noCluster = Self.node
        noCluster.cluster = ""
        Self.expectRejection(.malformed, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: noCluster, keyName: "node-1")
        }
        var badAddress = Self.node
        badAddress.ipAddresses.append(NodeAddress(type: .externalIP, ip: "300.1.1.1"))
        Self.expectRejection(.malformed, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: badAddress, keyName: "c2/node-1")
        }
        var badHealth = Self.node
        badHealth.ipv6HealthIP = "fd00::zz"
        Self.expectRejection(.malformed, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: badHealth, keyName: "c2/node-1")
        }
    }

    /// A real key (`wg genkey | wg pubkey`'s shape) passes; anything else a peer could put in
    /// `WireguardPubKey` is refused with its own reason before it reaches a WireGuard device.
    static let badWireGuardKeys: [(String, String)] = {
        let a43: String = String(repeating: "A", count: 43)
        let a45: String = String(repeating: "A", count: 45)
        let stars: String = String(repeating: "*", count: 43)
        let huge: String = String(repeating: "QUFB", count: 4096)
        let q44: String = String(repeating: "Q", count: 44)
        let a41: String = String(repeating: "A", count: 41)
        return [
            ("short", a43), ("long", a45 + "="), ("huge", huge), ("not base64", stars + "="),
            ("33 bytes in 44 characters", q44), ("all zero", Data(count: 32).base64EncodedString()),
            ("URL-safe alphabet", "-_" + a41 + "="),
        ]
    }()

    @Test(arguments: badWireGuardKeys)
    func aNodeWireGuardKeyMustBe32Bytes(what: String, key: String) throws {
        let v = try Self.validator()
        var node = Self.node
        node.wireguardPublicKey = Data((1...32).map { UInt8($0) }).base64EncodedString()
        try v.validate(node: node, keyName: "c2/node-1")
        node.wireguardPublicKey = key
        Self.expectRejection(.invalidWireGuardKey, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/node-1")
        }
        #expect(WireGuardPublicKey(key) == nil, "\(what)")
    }

    @Test func aWireGuardKeyRoundTripsThroughItsText() throws {
        let bytes = (0..<32).map { UInt8(255 - $0) }
        let key = try #require(WireGuardPublicKey(bytes: bytes))
        #expect(key.description.count == WireGuardPublicKey.textLength)
        #expect(WireGuardPublicKey(key.description) == key)
        #expect(WireGuardPublicKey(bytes: [UInt8](repeating: 0, count: 32)) == nil)
        #expect(WireGuardPublicKey(bytes: [1, 2, 3]) == nil)
    }

    @Test func decodeNodeTurnsBadJSONIntoMalformed() throws {
        let v = try Self.validator()
        let json = Data(#"{"Name":"node-1","Cluster":"c2","ClusterID":2,"IPAddresses":[{"Type":"InternalIP","IP":"172.18.0.3"}]}"#.utf8)
        #expect(try v.decodeNode(keyName: "c2/node-1", value: json).address(ofType: .internalIP) == "172.18.0.3")
        let error = #expect(throws: RemoteRecordRejection.self) {
            try v.decodeNode(keyName: "c2/node-1", value: Data(#"{"Name":"node-1","ClusterID":"two"}"#.utf8))
        }
        #expect(error?.reason == .malformed)
        #expect(error?.message.contains("ClusterID") == true)
    }

    // MARK: Services

    static let service = ClusterService(
        cluster: "c2", namespace: "shop", name: "web",
        frontends: ["10.96.0.10": ["http": L4Addr(protocol: .tcp, port: 80)]],
        backends: ["10.2.1.7": ["http": L4Addr(protocol: .tcp, port: 8080)]],
        includeExternal: true, shared: true, clusterID: 2)

    @Test func acceptsAConsistentService() throws {
        try Self.validator().validate(service: Self.service, keyName: "shop/web")
    }

    @Test func serviceRules() throws {
        let v = try Self.validator()
        var other = Self.service
        other.cluster = "c1"
        Self.expectRejection(.wrongCluster, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: other, keyName: "shop/web")
        }
        var wrongID = Self.service
        wrongID.clusterID = 1
        Self.expectRejection(.wrongCluster, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: wrongID, keyName: "shop/web")
        }
        Self.expectRejection(.keyMismatch, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: Self.service, keyName: "default/web")
        }
        var noNamespace = Self.service
        noNamespace.namespace = ""
        Self.expectRejection(.malformed, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: noNamespace, keyName: "/web")
        }
        var badBackend = Self.service
        badBackend.backends["pod-a"] = ["http": L4Addr(protocol: .tcp, port: 8080)]
        Self.expectRejection(.malformed, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: badBackend, keyName: "shop/web")
        }
        var badHostname = Self.service
        badHostname.hostnames = ["web-0": "web-0"]
        Self.expectRejection(.malformed, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: badHostname, keyName: "shop/web")
        }
    }

    @Test func decodeServiceRejectsUnknownProtocol() throws {
        let v = try Self.validator()
        let json = Data(#"{"cluster":"c2","namespace":"shop","name":"web","backends":{"10.2.1.7":{"http":{"Protocol":"QUIC","Port":1}}},"shared":true,"includeExternal":true,"clusterID":2}"#.utf8)
        let error = #expect(throws: RemoteRecordRejection.self) {
            try v.decodeService(keyName: "shop/web", value: json)
        }
        #expect(error?.reason == .malformed)
        #expect(error?.kind == .service)
        #expect(error?.key == "shop/web")
    }

    // MARK: ipcache entries

    @Test(arguments: [
        ("10.2.1.7", UInt32(131_073)),
        ("10.2.1.8", UInt32(196_607)),
        ("fd00:2::7", UInt32(131_100)),
    ])
    func acceptsEntriesInRange(ip: String, id: UInt32) throws {
        let pair = IPIdentityPair(ip: ip, hostIP: "172.18.0.3", id: id)
        try Self.validator().validate(ipIdentityPair: pair, keyName: ip)
    }

    @Test(arguments: [256, 65_536, 131_071, 196_608, 0x0100_0001] as [UInt32])
    func rejectsIdentitiesOutsideTheRemoteRange(id: UInt32) throws {
        let v = try Self.validator()
        let pair = IPIdentityPair(ip: "10.2.1.7", hostIP: "172.18.0.3", id: id)
        Self.expectRejection(.identityOutOfRange, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.1.7")
        }
    }

    @Test func ipcacheKeyAndFieldRules() throws {
        let v = try Self.validator()
        let pair = IPIdentityPair(ip: "10.2.1.7", hostIP: "172.18.0.3", id: 131_073)
        Self.expectRejection(.keyMismatch, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.1.8")
        }
        Self.expectRejection(.keyMismatch, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.1.7/32")
        }
        let masked = IPIdentityPair(prefix: try #require(IPCIDR("10.2.1.0/24")), hostIP: "172.18.0.3", id: 131_073)
        Self.expectRejection(.keyMismatch, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: masked, keyName: "10.2.1.9/24")
        }
        let invalidIdentity = IPIdentityPair(ip: "10.2.1.7", hostIP: "172.18.0.3", id: 0)
        Self.expectRejection(.malformed, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: invalidIdentity, keyName: "10.2.1.7")
        }
        let badIP = IPIdentityPair(ip: "10.2.1", hostIP: "172.18.0.3", id: 131_073)
        Self.expectRejection(.malformed, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: badIP, keyName: "10.2.1")
        }
        let badHost = IPIdentityPair(ip: "10.2.1.7", hostIP: "node-1", id: 131_073)
        Self.expectRejection(.malformed, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: badHost, keyName: "10.2.1.7")
        }
        let badMask = IPIdentityPair(ip: "10.2.0.0", mask: "/wD/AA==", hostIP: "172.18.0.3", id: 131_073)
        Self.expectRejection(.malformed, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: badMask, keyName: "10.2.0.0/16")
        }
    }

    @Test func prefixEntriesAreKeyedByPrefix() throws {
        let v = try Self.validator()
        let pair = IPIdentityPair(prefix: try #require(IPCIDR("10.2.0.0/16")), hostIP: "", id: 131_080)
        try v.validate(ipIdentityPair: pair, keyName: "10.2.0.0/16")
        Self.expectRejection(.keyMismatch, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.0.0")
        }
        Self.expectRejection(.keyMismatch, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.0.0/24")
        }
    }

    @Test func ipv6KeysCompareByValue() throws {
        let pair = IPIdentityPair(ip: "fd00:2:0:0:0:0:0:7", hostIP: "fd00::3", id: 131_073)
        try Self.validator().validate(ipIdentityPair: pair, keyName: "fd00:2::7")
    }

    @Test func rangeDependsOnLayout() throws {
        let v511 = try RemoteRecordValidation(
            remote: (name: "c2", id: ClusterID(2)), podCIDRs: Self.podCIDRs, layout: IdentityLayout(maxConnectedClusters: .c511))
        #expect(v511.identityRange == 65_536...98_303)
        try v511.validate(ipIdentityPair: IPIdentityPair(ip: "10.2.1.7", hostIP: "", id: 98_303), keyName: "10.2.1.7")
        Self.expectRejection(.identityOutOfRange, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v511.validate(ipIdentityPair: IPIdentityPair(ip: "10.2.1.7", hostIP: "", id: 98_304), keyName: "10.2.1.7")
        }
    }

    // MARK: Identities

    @Test func acceptsIdentityOfTheRemote() throws {
        let (id, labels) = try Self.validator().validateIdentity(
            keyName: "131073", labels: "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=c2;k8s:io.kubernetes.pod.namespace=shop;")
        #expect(id == 131_073)
        #expect(labels.clusterName == "c2")
        #expect(labels["app"]?.value == "web")
    }

    @Test(arguments: [
        ("131073", "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=c1;", RemoteRecordRejection.Reason.wrongCluster),
        ("65537", "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=c2;", .identityOutOfRange),
        ("16777217", "cidr:10.0.0.0/8=;", .identityOutOfRange),
        ("0", "reserved:unknown=;", .malformed),
        ("abc", "k8s:app=web;", .malformed),
        ("+131073", "k8s:app=web;", .malformed),
        ("", "k8s:app=web;", .malformed),
        ("99999999999", "k8s:app=web;", .malformed),
        ("131073", "k8s:app=web", .malformed),
        ("131073", "app=web;", .malformed),
    ])
    func identityRules(key: String, labels: String, reason: RemoteRecordRejection.Reason) throws {
        let v = try Self.validator()
        Self.expectRejection(reason, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: key, labels: labels)
        }
    }

    @Test func identitiesNeedTheirClusterLabelAndCanonicalKeys() throws {
        let v = try Self.validator()
        for labels in ["k8s:app=db;", "unspec:io.cilium.k8s.policy.cluster=c2;k8s:app=db;"] {
            Self.expectRejection(.wrongCluster, kind: .identity) { () throws(RemoteRecordRejection) in
                _ = try v.validateIdentity(keyName: "131074", labels: labels)
            }
        }
        Self.expectRejection(.keyMismatch, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: "0131074", labels: "k8s:app=db;k8s:io.cilium.k8s.policy.cluster=c2;")
        }
    }

    @Test func decodeIdentityReadsUTF8() throws {
        let v = try Self.validator()
        let result = try v.decodeIdentity(keyName: "131074", value: Data("k8s:app=db;k8s:io.cilium.k8s.policy.cluster=c2;".utf8))
        #expect(result.id == 131_074)
        Self.expectRejection(.malformed, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.decodeIdentity(keyName: "131074", value: Data([0xFF, 0xFE]))
        }
        Self.expectRejection(.malformed, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.decodeIdentity(keyName: "131074", value: Data("k8s:app=".utf8) + [0xFF] + Data(";".utf8))
        }
    }

    @Test func rejectionsCanBeCountedPerReason() throws {
        let v = try Self.validator()
        let inputs: [(key: String, ip: String, id: UInt32)] = [
            ("10.2.1.1", "10.2.1.1", 131_073), ("10.2.1.2", "10.2.1.2", 65_537),
            ("10.2.1.3", "10.2.1.3", 70_000), ("10.2.1.9", "10.2.1.4", 131_074),
        ]
        var counts: [RemoteRecordRejection.Reason: Int] = [:]
        for input in inputs {
            let result = Result { () throws(RemoteRecordRejection) in
                try v.validate(ipIdentityPair: IPIdentityPair(ip: input.ip, hostIP: "", id: input.id), keyName: input.key)
            }
            if case let .failure(rejection) = result { counts[rejection.reason, default: 0] += 1 }
        }
        #expect(counts == [.identityOutOfRange: 2, .keyMismatch: 1])
    }

    @Test func rejectionDescriptionCarriesContext() {
        let rejection = RemoteRecordRejection(
            kind: .ipIdentityPair, key: "10.2.1.7", reason: .identityOutOfRange, message: "identity 65537 is outside")
        #expect(rejection.description == #"rejected ip-identity-pair "10.2.1.7" (identity-out-of-range): identity 65537 is outside"#)
    }
}
