import Foundation
import MeridianCore
import Testing

/// Names, sizes and the records exporters really write.
@Suite("Validation of peer record names, sizes and shapes")
struct RemoteRecordShapeTests {
    typealias Base = RemoteValidationTests

    static func expectRejection(
        _ reason: RemoteRecordRejection.Reason, kind: RemoteRecordRejection.Kind,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws(RemoteRecordRejection) -> Void
    ) {
        Base.expectRejection(reason, kind: kind, sourceLocation: sourceLocation, body)
    }

    // MARK: Records as exporters write them

    /// A Meridian agent's node record (`NodeRecord` encoded by `CiliumJSON`).
    static let meridianNode = #"""
        {"Name":"c2-n1","Cluster":"c2","IPAddresses":[{"Type":"InternalIP","IP":"172.30.2.1"}],\#
        "IPv4AllocCIDR":{"IP":"10.2.1.0","Mask":"////AA=="},"IPv6AllocCIDR":null,"IPv4HealthIP":"","IPv6HealthIP":"",\#
        "ClusterID":2,"Source":"kvstore","EncryptionKey":0,"Labels":{},"Annotations":{},"WireguardPubKey":"","BootID":"","MTU":1500}
        """#

    /// Cilium's shape, with a router and health address inside the node's pod CIDR.
    static let ciliumNode = #"""
        {"Name":"ip-172-18-0-3.ec2.internal","Cluster":"c2","IPAddresses":[{"Type":"InternalIP","IP":"172.18.0.3"},\#
        {"Type":"CiliumInternalIP","IP":"10.2.1.1"},{"Type":"InternalIP","IP":"fd00:18::3"}],\#
        "IPv4AllocCIDR":{"IP":"10.2.1.0","Mask":"////AA=="},"IPv6AllocCIDR":"fd00:2:0:1::/64","IPv4HealthIP":"10.2.1.9",\#
        "IPv6HealthIP":"fd00:2:0:1::9","ClusterID":2,"Source":"custom-resource","EncryptionKey":0,\#
        "Labels":{"kubernetes.io/hostname":"ip-172-18-0-3"},"Annotations":{},"WireguardPubKey":"","BootID":"3f2b"}
        """#

    static let endpoint = #"""
        {"IP":"10.2.1.7","HostIP":"172.30.2.1","ID":131073,"Key":0,"Metadata":"","K8sNamespace":"shop",\#
        "K8sPodName":"web-7d4b9c-x2k4p","NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"}]}
        """#

    static let exportedService = #"""
        {"cluster":"c2","namespace":"shop","name":"web","frontends":{"10.102.0.10":{"":{"Protocol":"TCP","Port":80}}},\#
        "backends":{"10.2.1.7":{"":{"Protocol":"TCP","Port":8080}},"10.2.2.4":{"":{"Protocol":"TCP","Port":8080}}},\#
        "labels":{"app":"web"},"selector":{"app":"web"},"includeExternal":true,"shared":true,"clusterID":2}
        """#

    @Test func acceptsRecordsAsExportersWriteThem() throws {
        let v = try Base.validator()
        #expect(try v.decodeNode(keyName: "c2/c2-n1", value: Data(Self.meridianNode.utf8)).mtu == 1500)
        let cilium = try v.decodeNode(keyName: "c2/ip-172-18-0-3.ec2.internal", value: Data(Self.ciliumNode.utf8))
        #expect(cilium.ipv6AllocCIDR == IPCIDR("fd00:2:0:1::/64"))
        #expect(try v.decodeIPIdentityPair(keyName: "10.2.1.7", value: Data(Self.endpoint.utf8)).namedPorts?.first?.name == "http")
        #expect(try v.decodeService(keyName: "shop/web", value: Data(Self.exportedService.utf8)).backends.count == 2)
        let labels = LabelSet.podIdentityLabels(
            podLabels: ["app": "web", "app.kubernetes.io/part-of": "shop"], namespace: "shop",
            namespaceLabels: [LabelKeys.namespaceMetadataName: "shop"], serviceAccount: "web", cluster: "c2")
        #expect(try v.decodeIdentity(keyName: "131073", value: Data(labels.ciliumString.utf8)).labels == labels)
    }

    // MARK: Names

    static let longestSubdomain = [String](repeating: String(repeating: "a", count: 63), count: 3)
        .joined(separator: ".") + "." + String(repeating: "b", count: 61)

    @Test(arguments: ["node-1", "ip-10-0-0-1.ec2.internal", "1", longestSubdomain])
    func acceptsNodeNames(name: String) throws {
        var node = Base.node
        node.name = name
        try Base.validator().validate(node: node, keyName: "c2/\(name)")
    }

    @Test(arguments: [
        "../etc", "..", "Node-1", "node_1", "node\u{1B}[31m", "node\n1", "-node", "node-", "node..1", "node/1", "nöde",
        longestSubdomain + "b",
    ])
    func refusesNodeNames(name: String) throws {
        let v = try Base.validator()
        var node = Base.node
        node.name = name
        Self.expectRejection(.invalidName, kind: .node) { () throws(RemoteRecordRejection) in
            try v.validate(node: node, keyName: "c2/\(name)")
        }
    }

    static let badLabels = ["Shop", "../shop", "sh\u{1B}op", "shop.prod", "shop\t", String(repeating: "s", count: 64)]

    @Test(arguments: badLabels)
    func refusesServiceNamespaces(namespace: String) throws {
        let v = try Base.validator()
        var service = Base.service
        service.namespace = namespace
        Self.expectRejection(.invalidName, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: service, keyName: "\(namespace)/web")
        }
    }

    @Test(arguments: badLabels)
    func refusesServiceNames(name: String) throws {
        let v = try Base.validator()
        var service = Base.service
        service.name = name
        Self.expectRejection(.invalidName, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: service, keyName: "shop/\(name)")
        }
    }

    @Test(arguments: [("backend", "HTTP"), ("backend", "http\u{1B}"), ("frontend", "web_port"), ("frontend", "\u{7}")])
    func refusesServicePortNames(role: String, portName: String) throws {
        let v = try Base.validator()
        var service = Base.service
        if role == "backend" {
            service.backends["10.2.1.8"] = [portName: L4Addr(protocol: .tcp, port: 8080)]
        } else {
            service.frontends["10.102.0.11"] = [portName: L4Addr(protocol: .tcp, port: 80)]
        }
        Self.expectRejection(.invalidName, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: service, keyName: "shop/web")
        }
    }

    @Test(arguments: ["web_0", "web-0\u{7}", "Web", "../x", ""])
    func refusesServiceHostnames(hostname: String) throws {
        let v = try Base.validator()
        var service = Base.service
        service.hostnames = ["10.2.1.7": hostname]
        Self.expectRejection(.invalidName, kind: .service) { () throws(RemoteRecordRejection) in
            try v.validate(service: service, keyName: "shop/web")
        }
    }

    @Test(arguments: [
        ("kube\u{1B}", "web-1", "http"), ("Shop", "web-1", "http"), ("shop", "../x", "http"), ("shop", "web\n", "http"),
        ("shop", "web-1", "HTTP"), ("shop", "web-1", "http\u{1B}"), ("shop", "web-1", ""),
    ])
    func refusesIPCacheNames(namespace: String, pod: String, port: String) throws {
        let v = try Base.validator()
        let pair = IPIdentityPair(
            ip: "10.2.1.7", hostIP: "172.30.2.1", id: 131_073, k8sNamespace: namespace, k8sPodName: pod,
            namedPorts: [NamedPort(name: port, port: 80, protocol: .tcp)])
        Self.expectRejection(.invalidName, kind: .ipIdentityPair) { () throws(RemoteRecordRejection) in
            try v.validate(ipIdentityPair: pair, keyName: "10.2.1.7")
        }
    }

    @Test func peerStringsAreEscapedInRejections() throws {
        let v = try Base.validator()
        var node = Base.node
        node.name = "n\u{1B}]0;owned\u{7}"
        let error = #expect(throws: RemoteRecordRejection.self) { try v.validate(node: node, keyName: "c2/\(node.name)") }
        let text = try #require(error).description
        #expect(!TerminalSafe.containsNonPrintable(text))
        #expect(text.contains(#"n\u{1B}]0;owned\u{07}"#))
    }

    // MARK: Sizes

    /// A record of `kind` that is valid and exactly `size` bytes long (padded in a free-form field).
    static func record(_ kind: RemoteRecordRejection.Kind, size: Int) -> (key: String, value: Data) {
        let (key, head, tail): (String, String, String) =
            switch kind {
            case .node:
                ("c2/node-1", #"{"Name":"node-1","Cluster":"c2","ClusterID":2,"IPAddresses":[{"Type":"InternalIP","IP":"172.30.2.1"}],"Annotations":{"pad":""#, #""}}"#)
            case .ipIdentityPair:
                ("10.2.1.7", #"{"IP":"10.2.1.7","HostIP":"172.30.2.1","ID":131073,"Metadata":""#, #""}"#)
            case .identity:
                ("131073", "k8s:io.cilium.k8s.policy.cluster=c2;k8s:app=", ";")
            case .service:
                ("shop/web", #"{"cluster":"c2","clusterID":2,"namespace":"shop","name":"web","labels":{"pad":""#, #""}}"#)
            case .serviceSlice:
                ("shop/web/1", #"{"cluster":"c2","clusterID":2,"namespace":"shop","name":"web","backendSlices":2,"slice":1,"labels":{"pad":""#, #""}}"#)
            case .serviceExport:
                // JSON whitespace pads it: no field of an export is free-form.
                ("shop/web", #"{"cluster":"c2","namespace":"shop","name":"web","exportCreationTimestamp":"2026-01-01T00:00:00Z","type":"ClusterSetIP","ports":[]"#, "}")
            }
        let padding = String(repeating: kind == .serviceExport ? " " : "x", count: size - head.utf8.count - tail.utf8.count)
        return (key, Data((head + padding + tail).utf8))
    }

    static func decode(_ kind: RemoteRecordRejection.Kind, key: String, value: Data) throws(RemoteRecordRejection) {
        let v: RemoteRecordValidation
        do { v = try Base.validator() } catch { fatalError("the test validator is valid: \(error)") }
        switch kind {
        case .node: _ = try v.decodeNode(keyName: key, value: value)
        case .service: _ = try v.decodeService(keyName: key, value: value)
        case .ipIdentityPair: _ = try v.decodeIPIdentityPair(keyName: key, value: value)
        case .identity: _ = try v.decodeIdentity(keyName: key, value: value)
        case .serviceExport: _ = try v.decodeServiceExport(keyName: key, value: value)
        case .serviceSlice: _ = try v.decodeServiceSlice(keyName: key, value: value)
        }
    }

    @Test(arguments: RemoteRecordRejection.Kind.allCases)
    func acceptsRecordsAtTheLimit(kind: RemoteRecordRejection.Kind) throws {
        let (key, value) = Self.record(kind, size: RemoteRecordLimits.maximumBytes(of: kind))
        try Self.decode(kind, key: key, value: value)
    }

    @Test(arguments: RemoteRecordRejection.Kind.allCases)
    func refusesValidRecordsOverTheLimit(kind: RemoteRecordRejection.Kind) {
        let (key, value) = Self.record(kind, size: RemoteRecordLimits.maximumBytes(of: kind) + 1)
        Self.expectRejection(.tooLarge, kind: kind) { () throws(RemoteRecordRejection) in
            try Self.decode(kind, key: key, value: value)
        }
    }

    /// Size comes first: an oversized value is never parsed, whatever it holds.
    @Test(arguments: RemoteRecordRejection.Kind.allCases)
    func sizeIsCheckedBeforeDecoding(kind: RemoteRecordRejection.Kind) {
        let garbage = Data(repeating: 0xFF, count: RemoteRecordLimits.maximumBytes(of: kind) + 1)
        Self.expectRejection(.tooLarge, kind: kind) { () throws(RemoteRecordRejection) in
            try Self.decode(kind, key: "x", value: garbage)
        }
    }

    @Test func validateIdentityChecksTheSizeOfItsText() throws {
        let v = try Base.validator()
        let (_, value) = Self.record(.identity, size: RemoteRecordLimits.identityBytes + 1)
        Self.expectRejection(.tooLarge, kind: .identity) { () throws(RemoteRecordRejection) in
            _ = try v.validateIdentity(keyName: "131073", labels: String(decoding: value, as: UTF8.self))
        }
    }

    @Test func limitsAreTheDocumentedOnes() {
        #expect(RemoteRecordLimits.maximumBytes(of: .node) == 16 * 1024)
        #expect(RemoteRecordLimits.maximumBytes(of: .ipIdentityPair) == 4 * 1024)
        #expect(RemoteRecordLimits.maximumBytes(of: .identity) == 8 * 1024)
        #expect(RemoteRecordLimits.maximumBytes(of: .service) == 1024 * 1024)
    }
}
