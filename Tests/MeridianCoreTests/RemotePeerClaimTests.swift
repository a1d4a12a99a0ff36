import Foundation
import MeridianCore
import Testing

/// What a peer may claim: addresses inside its pod CIDRs, usable node addresses, identities and
/// labels of its own. Peer c2 has pod CIDRs 10.2.0.0/16 and fd00:2::/48; this cluster's pods
/// live in 10.1.0.0/16.
@Suite("Validation of what a peer may claim")
struct RemotePeerClaimTests {
    typealias Base = RemoteValidationTests

    static func expectRejection(
        _ reason: RemoteRecordRejection.Reason, kind: RemoteRecordRejection.Kind,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws(RemoteRecordRejection) -> Void
    ) {
        Base.expectRejection(reason, kind: kind, sourceLocation: sourceLocation, body)
    }

    static func pair(_ prefix: String, id: UInt32 = 131_073, hostIP: String = "172.30.2.1") throws -> (IPIdentityPair, String) {
        if prefix.contains("/") {
            let cidr = try #require(IPCIDR(prefix))
            return (IPIdentityPair(prefix: cidr, hostIP: hostIP, id: id), cidr.description)
        }
        return (IPIdentityPair(ip: prefix, hostIP: hostIP, id: id), prefix)
    }

    // MARK: ipcache prefixes

    @Test(arguments: ["10.2.1.7", "10.2.0.0/16", "10.2.3.0/24", "fd00:2::9", "fd00:2:0:1::/64"])
    func acceptsEntriesInsideThePeerPodCIDRs(prefix: String) throws {
        let (pair, key) = try Self.pair(prefix)
        try Base.validator().validate(ipIdentityPair: pair, keyName: key)
    }

    /// A local pod's IP, another cluster's prefix, an address outside every cluster.
    @Test(arguments: ["10.1.0.5", "10.1.0.0/24", "10.3.0.0/16", "192.168.0.1", "fd00:1::5"])
    func refusesEntriesOutsideThePeerPodCIDRs(prefix: String) throws {
        let (pair, key) = try Self.pair(prefix)
        let v = try Base.validator()
        Self.expectRejection(.outsidePodCIDR, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
    }

    /// Until `connect` records the peer's pod CIDRs, nothing of the peer's is routed.
    @Test func noRecordedPodCIDRsRefusesEveryPodAddress() throws {
        let v = try RemoteRecordValidation(remoteName: "c2", remoteID: ClusterID(2), podCIDRs: [], layout: Base.layout)
        let (pair, key) = try Self.pair("10.2.1.7")
        Self.expectRejection(.outsidePodCIDR, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
        Self.expectRejection(.outsidePodCIDR, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: Base.node, keyName: "c2/node-1")
        }
        Self.expectRejection(.outsidePodCIDR, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: Base.service, keyName: "shop/web")
        }
    }

    @Test(arguments: ["0.0.0.0/0", "::/0", "10.0.0.0/8", "10.2.0.0/15", "fd00::/16"])
    func refusesDefaultRoutesAndPrefixesWiderThanAPodCIDR(prefix: String) throws {
        let (pair, key) = try Self.pair(prefix)
        let v = try Base.validator()
        Self.expectRejection(.overBroadPrefix, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
    }

    @Test func aDefaultRouteIsOverBroadEvenWithoutPodCIDRs() throws {
        let v = try RemoteRecordValidation(remoteName: "c2", remoteID: ClusterID(2), podCIDRs: [], layout: Base.layout)
        let (pair, key) = try Self.pair("0.0.0.0/0")
        Self.expectRejection(.overBroadPrefix, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
    }

    @Test(arguments: ["0.0.0.0", "::", "127.0.0.1", "::1", "224.0.0.5", "ff02::1", "255.255.255.255", "::ffff:127.0.0.1"])
    func refusesUnusableTunnelEndpoints(hostIP: String) throws {
        let (pair, key) = try Self.pair("10.2.1.7", hostIP: hostIP)
        let v = try Base.validator()
        Self.expectRejection(.unusableAddress, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
    }

    // MARK: Reserved identities and labels

    @Test(arguments: [1, 2, 4, 6, 8, 100, 128, 255] as [UInt32])
    func refusesReservedIdentitiesInIPCacheEntries(id: UInt32) throws {
        let (pair, key) = try Self.pair("10.2.1.7", id: id)
        let v = try Base.validator()
        Self.expectRejection(.reservedIdentity, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: key)
        }
    }

    /// Relabelling `world` (2) or `remote-node` (6) is refused for the number alone.
    @Test(arguments: [("2", "k8s:app=web;"), ("6", "reserved:remote-node=;"), ("255", "k8s:app=web;")])
    func refusesReservedIdentityKeys(key: String, labels: String) throws {
        let v = try Base.validator()
        Self.expectRejection(.reservedIdentity, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: key, labels: labels)
        }
    }

    @Test(arguments: [
        "k8s:app=web;reserved:host=;",
        "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=c2;reserved:world=;",
        "reserved:remote-node=;",
    ])
    func refusesReservedLabels(labels: String) throws {
        let v = try Base.validator()
        Self.expectRejection(.reservedLabel, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: "131073", labels: labels)
        }
    }

    @Test(arguments: ["k8s:app=web\u{1B}[2J;", "k8s:app\u{202E}=web;", "k8s:app=we\nb;", "k8s:app=web\u{9B}31m;"])
    func refusesLabelsWithNonPrintingCharacters(labels: String) throws {
        let v = try Base.validator()
        Self.expectRejection(.invalidName, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: "131073", labels: labels)
        }
    }

    // MARK: Nodes

    @Test func refusesNodePodCIDRsOutsideThePeerPodCIDRs() throws {
        let v = try Base.validator()
        var local = Base.node
        local.ipv4AllocCIDR = IPCIDR("10.1.1.0/24")
        Self.expectRejection(.outsidePodCIDR, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: local, keyName: "c2/node-1")
        }
        var v6 = Base.node
        v6.ipv6AllocCIDR = IPCIDR("fd00:3::/64")
        Self.expectRejection(.outsidePodCIDR, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: v6, keyName: "c2/node-1")
        }
    }

    @Test(arguments: ["0.0.0.0/0", "10.0.0.0/8", "::/0", "fd00::/8"])
    func refusesOverBroadNodePodCIDRs(cidr: String) throws {
        let v = try Base.validator()
        var node = Base.node
        let prefix = try #require(IPCIDR(cidr))
        if prefix.family == .ipv4 { node.ipv4AllocCIDR = prefix } else { node.ipv6AllocCIDR = prefix }
        Self.expectRejection(.overBroadPrefix, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/node-1")
        }
    }

    @Test(arguments: [("10.1.1.9", ""), ("", "fd00:1::9")])
    func refusesHealthIPsOutsideThePeerPodCIDRs(v4: String, v6: String) throws {
        let v = try Base.validator()
        var node = Base.node
        node.ipv4HealthIP = v4
        node.ipv6HealthIP = v6
        Self.expectRejection(.outsidePodCIDR, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/node-1")
        }
    }

    @Test(arguments: [
        "0.0.0.0", "::", "127.0.0.1", "127.9.9.9", "::1", "224.0.0.1", "239.1.2.3", "ff02::1", "255.255.255.255",
        "::ffff:127.0.0.1", "::ffff:0.0.0.0",
    ])
    func refusesUnusableNodeAddresses(ip: String) throws {
        let v = try Base.validator()
        var node = Base.node
        node.ipAddresses.append(NodeAddress(type: .externalIP, ip: ip))
        Self.expectRejection(.unusableAddress, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/node-1")
        }
    }

    @Test(arguments: [0, -1, Int.min, 575, 65_536, Int.max])
    func refusesNodeMTUsAgentsCannotUse(mtu: Int) throws {
        let v = try Base.validator()
        var node = Base.node
        node.mtu = mtu
        Self.expectRejection(.malformed, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/node-1")
        }
    }

    @Test(arguments: [576, 1500, 9000, 65_535])
    func acceptsNodeMTUs(mtu: Int) throws {
        var node = Base.node
        node.mtu = mtu
        try Base.validator().validate(node: node, keyName: "c2/node-1")
    }

    // MARK: Services

    @Test(arguments: ["10.1.0.7", "192.168.1.1", "fd00:1::7"])
    func refusesServiceBackendsOutsideThePeerPodCIDRs(backend: String) throws {
        let v = try Base.validator()
        var service = Base.service
        service.backends[backend] = ["http": L4Addr(protocol: .tcp, port: 8080)]
        Self.expectRejection(.outsidePodCIDR, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: service, keyName: "shop/web")
        }
    }

    /// Frontends are the peer's own ClusterIPs, which this cluster never programs.
    @Test func serviceFrontendsOnlyHaveToParse() throws {
        var service = Base.service
        service.frontends["10.102.0.10"] = ["http": L4Addr(protocol: .tcp, port: 80)]
        service.frontends["fd00:102::a"] = ["http": L4Addr(protocol: .tcp, port: 80)]
        try Base.validator().validate(service: service, keyName: "shop/web")
    }
}
