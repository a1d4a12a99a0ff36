import Foundation
import MeridianCore
import Testing

/// A parsed JSON document, so that encoder output can be compared with a literal regardless of
/// key order and whitespace, while `true` and `1` stay different.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    init(_ data: Data) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: data)
    }

    init(literal: String) throws {
        try self.init(Data(literal.utf8))
    }
}

func encodedJSON(_ value: some Encodable) throws -> JSONValue {
    try JSONValue(CiliumJSON.encoder().encode(value))
}

func decodeJSON<T: Decodable>(_ type: T.Type, _ literal: String) throws -> T {
    try CiliumJSON.decoder().decode(type, from: Data(literal.utf8))
}

@Suite("CiliumClusterConfig JSON")
struct CiliumClusterConfigJSONTests {
    @Test func encodesOnlyPresentCapabilities() throws {
        let config = CiliumClusterConfig(
            id: 3, capabilities: .init(syncedCanaries: true, maxConnectedClusters: 255))
        #expect(try encodedJSON(config) == JSONValue(literal: #"{"id":3,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}"#))
    }

    @Test func keepsExplicitFalse() throws {
        let config = CiliumClusterConfig(
            id: 3, capabilities: .init(syncedCanaries: true, maxConnectedClusters: 255, serviceExportsEnabled: false))
        #expect(
            try encodedJSON(config)
                == JSONValue(
                    literal: #"{"id":3,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255,"serviceExportsEnabled":false}}"#))
    }

    @Test func decodesKVStoreMeshConfig() throws {
        let config = try decodeJSON(
            CiliumClusterConfig.self, #"{"id":12,"capabilities":{"syncedCanaries":true,"cached":true,"unknown":1}}"#)
        #expect(config.id == 12)
        #expect(config.capabilities == .init(syncedCanaries: true, cached: true))
        #expect(config.effectiveMaxConnectedClusters == .c255)
    }

    @Test func decodesMissingFieldsAsZeroValues() throws {
        let config = try decodeJSON(CiliumClusterConfig.self, "{}")
        #expect(config == CiliumClusterConfig(id: 0))
    }

    @Test(arguments: [(UInt32?.none, MaxConnectedClusters?.some(.c255)), (0, .c255), (255, .c255), (511, .c511), (1023, nil)])
    func effectiveMaxConnectedClusters(value: UInt32?, expected: MaxConnectedClusters?) {
        let config = CiliumClusterConfig(id: 1, capabilities: .init(maxConnectedClusters: value))
        #expect(config.effectiveMaxConnectedClusters == expected)
    }
}

@Suite("ClusterService JSON")
struct ClusterServiceJSONTests {
    static let literal = #"""
        {"cluster":"cluster2","namespace":"shop","name":"web",
         "frontends":{"10.96.0.10":{"http":{"Protocol":"TCP","Port":80}}},
         "backends":{"10.244.2.7":{"http":{"Protocol":"TCP","Port":8080},"dns":{"Protocol":"UDP","Port":53}}},
         "labels":{"app":"web"},"selector":{"app":"web"},
         "includeExternal":true,"shared":true,"clusterID":2}
        """#

    static let service = ClusterService(
        cluster: "cluster2", namespace: "shop", name: "web",
        frontends: ["10.96.0.10": ["http": L4Addr(protocol: .tcp, port: 80)]],
        backends: ["10.244.2.7": ["http": L4Addr(protocol: .tcp, port: 8080), "dns": L4Addr(protocol: .udp, port: 53)]],
        labels: ["app": "web"], selector: ["app": "web"],
        includeExternal: true, shared: true, clusterID: 2)

    @Test func encodesTheWireShape() throws {
        #expect(try encodedJSON(Self.service) == JSONValue(literal: Self.literal))
    }

    @Test func emptyHostnamesAreOmitted() throws {
        var service = Self.service
        service.hostnames = [:]
        #expect(try encodedJSON(service) == JSONValue(literal: Self.literal))
    }

    @Test func hostnamesAreWrittenWhenPresent() throws {
        var service = Self.service
        service.hostnames = ["10.244.2.7": "web-0"]
        guard case let .object(fields) = try encodedJSON(service) else {
            Issue.record("service did not encode as an object")
            return
        }
        #expect(fields["hostnames"] == .object(["10.244.2.7": .string("web-0")]))
    }

    @Test func decodesTheWireShape() throws {
        #expect(try decodeJSON(ClusterService.self, Self.literal) == Self.service)
    }

    @Test func decodesNullMapsAsEmpty() throws {
        let service = try decodeJSON(
            ClusterService.self,
            #"{"cluster":"c","namespace":"n","name":"s","frontends":null,"backends":{},"labels":null,"selector":null,"includeExternal":false,"shared":false,"clusterID":4,"zones":{}}"#)
        #expect(service.frontends.isEmpty)
        #expect(service.labels.isEmpty)
        #expect(service.hostnames == nil)
        #expect(service.clusterID == 4)
    }

    @Test(arguments: L4Protocol.allCases)
    func l4AddrUsesCapitalisedKeys(proto: L4Protocol) throws {
        let addr = L4Addr(protocol: proto, port: 443)
        #expect(try encodedJSON(addr) == JSONValue(literal: #"{"Protocol":"\#(proto.rawValue)","Port":443}"#))
        #expect(try decodeJSON(L4Addr.self, #"{"Protocol":"\#(proto.rawValue)","Port":443}"#) == addr)
    }

    @Test func unknownProtocolFailsToDecode() {
        #expect(throws: DecodingError.self) { try decodeJSON(L4Addr.self, #"{"Protocol":"tcp","Port":1}"#) }
    }
}

@Suite("NodeRecord JSON")
struct NodeRecordJSONTests {
    static let literal = #"""
        {"Name":"node-1","Cluster":"c2",
         "IPAddresses":[{"Type":"InternalIP","IP":"172.18.0.3"},{"Type":"CiliumInternalIP","IP":"10.244.1.1"}],
         "IPv4AllocCIDR":{"IP":"10.244.1.0","Mask":"////AA=="},
         "IPv6AllocCIDR":null,
         "IPv4HealthIP":"10.244.1.9","IPv6HealthIP":"",
         "ClusterID":2,"Source":"custom-resource","EncryptionKey":0,
         "Labels":{"kubernetes.io/hostname":"node-1"},"Annotations":{},
         "WireguardPubKey":"","BootID":""}
        """#

    static let record = NodeRecord(
        name: "node-1", cluster: "c2",
        ipAddresses: [NodeAddress(type: .internalIP, ip: "172.18.0.3"), NodeAddress(type: .ciliumInternalIP, ip: "10.244.1.1")],
        ipv4AllocCIDR: IPCIDR("10.244.1.0/24"),
        ipv4HealthIP: "10.244.1.9",
        clusterID: 2, source: NodeRecord.sourceCustomResource,
        labels: ["kubernetes.io/hostname": "node-1"])

    @Test func encodesLegacyIPNetAndNull() throws {
        #expect(try encodedJSON(Self.record) == JSONValue(literal: Self.literal))
    }

    @Test func decodesLegacyIPNet() throws {
        let decoded = try decodeJSON(NodeRecord.self, Self.literal)
        #expect(decoded == Self.record)
        #expect(decoded.ipv4AllocCIDR?.description == "10.244.1.0/24")
        #expect(decoded.address(ofType: .internalIP) == "172.18.0.3")
    }

    @Test func decodesPlainCIDRStringsAndIPv6Masks() throws {
        let record = try decodeJSON(
            NodeRecord.self,
            #"{"Name":"runtime1","IPAddresses":[{"Type":"InternalIP","IP":"10.0.2.15"}],"IPv4AllocCIDR":"10.11.0.0/16","IPv6AllocCIDR":{"IP":"f00d::a0f:0:0:0","Mask":"//////////////////8AAA=="},"IPv4HealthIP":"","IPv6HealthIP":""}"#)
        #expect(record.ipv4AllocCIDR == IPCIDR("10.11.0.0/16"))
        // Two equal zero runs: RFC 5952 compresses the first.
        #expect(record.ipv6AllocCIDR?.description == "f00d::a0f:0:0:0/112")
        #expect(record.cluster == "")
        #expect(record.labels.isEmpty)
        #expect(record.mtu == nil)
    }

    @Test func acceptsGoIPv4InIPv6Mask() throws {
        let record = try decodeJSON(
            NodeRecord.self, #"{"Name":"n","IPv4AllocCIDR":{"IP":"10.8.0.0","Mask":"/////////////////wAAAA=="}}"#)
        #expect(record.ipv4AllocCIDR == IPCIDR("10.8.0.0/8"))
    }

    @Test(arguments: [
        #"{"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"/wD/AA=="}}"#,
        #"{"IPv4AllocCIDR":{"IP":"10.0.0.0","Mask":"not base64!"}}"#,
        #"{"IPv4AllocCIDR":{"IP":"10.0.0","Mask":"////AA=="}}"#,
        #"{"IPv4AllocCIDR":"10.0.0.0/33"}"#,
    ])
    func rejectsBrokenCIDRs(literal: String) {
        #expect(throws: DecodingError.self) { try decodeJSON(NodeRecord.self, literal) }
    }

    @Test func mtuIsAMeridianExtensionWrittenOnlyWhenSet() throws {
        var record = Self.record
        record.mtu = 1450
        guard case let .object(fields) = try encodedJSON(record) else {
            Issue.record("node did not encode as an object")
            return
        }
        #expect(fields["MTU"] == .number(1450))
        #expect(try decodeJSON(NodeRecord.self, #"{"Name":"n","MTU":1400}"#).mtu == 1400)
    }

    @Test func keyNameIsClusterSlashName() {
        #expect(Self.record.keyName == "c2/node-1")
    }
}

@Suite("IPIdentityPair JSON")
struct IPIdentityPairJSONTests {
    @Test func encodesPodEntryWithoutMask() throws {
        let pair = IPIdentityPair(
            ip: "10.244.1.79", hostIP: "172.18.0.3", id: 199_472, metadata: "",
            k8sNamespace: "shop", k8sPodName: "web-0",
            namedPorts: [NamedPort(name: "http", port: 8080, protocol: .tcp)])
        #expect(
            try encodedJSON(pair)
                == JSONValue(
                    literal: #"{"IP":"10.244.1.79","HostIP":"172.18.0.3","ID":199472,"Key":0,"Metadata":"","K8sNamespace":"shop","K8sPodName":"web-0","NamedPorts":[{"Name":"http","Port":8080,"Protocol":"TCP"}]}"#))
    }

    @Test func decodesNullMaskAsNil() throws {
        let pair = try decodeJSON(
            IPIdentityPair.self,
            #"{"IP":"10.6.6.43","Mask":null,"HostIP":"10.5.1.132","ID":12928,"Key":0,"Metadata":"cilium-global:default:k8s-node1:432","K8sNamespace":"istio-system","K8sPodName":"gw-1"}"#)
        #expect(pair.mask == nil)
        #expect(pair.namedPorts == nil)
        #expect(pair.id == 12_928)
        #expect(pair.metadata == "cilium-global:default:k8s-node1:432")
        #expect(try pair.keyName() == "10.6.6.43")
    }

    @Test func prefixEntryRoundTripsItsMask() throws {
        let prefix = try #require(IPCIDR("10.20.0.0/16"))
        let pair = IPIdentityPair(prefix: prefix, hostIP: "172.18.0.4", id: 16_777_217)
        #expect(pair.mask == "//8AAA==")
        #expect(try pair.prefix() == prefix)
        #expect(try pair.keyName() == "10.20.0.0/16")
        let decoded = try CiliumJSON.decoder().decode(IPIdentityPair.self, from: CiliumJSON.encoder().encode(pair))
        #expect(decoded == pair)
    }

    @Test func keyNameOfIPv6Entry() throws {
        let pair = IPIdentityPair(ip: "FD00:10:244:0:0:0:0:5", hostIP: "fd00::3", id: 70_000)
        #expect(try pair.keyName() == "fd00:10:244::5")
    }
}

@Suite("IP addresses and prefixes")
struct IPCIDRTests {
    @Test(arguments: [
        ("10.244.1.7", "10.244.1.7"),
        ("0.0.0.0", "0.0.0.0"),
        ("::", "::"),
        ("::1", "::1"),
        ("FD00:0:0:0:0:0:0:1", "fd00::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
    ])
    func canonicalForm(input: String, canonical: String) throws {
        #expect(try IPAddress(parsing: input).description == canonical)
    }

    @Test(arguments: [
        "", "10.0.0", "10.0.0.256", "10.0.0.01", "10.0.0.-1", "10..0.1", "a.b.c.d", " 10.0.0.1",
        "1::2::3", ":1::", "1:::2", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "fe80::1%eth0",
        "1:2:3:4:5:6:7::8", "::1.2.3.4:5", "g::1",
    ])
    func rejectsInvalidAddresses(input: String) {
        #expect(throws: IPParseError.self) { try IPAddress(parsing: input) }
    }

    @Test func addressBytesAndOrdering() throws {
        let v4 = try IPAddress(parsing: "10.0.0.2")
        #expect(v4.bytes == [10, 0, 0, 2])
        #expect(IPAddress(bytes: [10, 0, 0, 2]) == v4)
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        let addresses = try ["10.0.0.10", "fd00::1", "10.0.0.9", "9.255.255.255"].map(IPAddress.init(parsing:))
        #expect(addresses.sorted().map(\.description) == ["9.255.255.255", "10.0.0.9", "10.0.0.10", "fd00::1"])
    }

    @Test func parseClearsHostBits() throws {
        let cidr = try IPCIDR(parsing: "10.244.1.77/24")
        #expect(cidr.description == "10.244.1.0/24")
        #expect(cidr.maskBytes == [255, 255, 255, 0])
        #expect(cidr.lastAddress.description == "10.244.1.255")
    }

    @Test(arguments: ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "fd00::/129", "10.0.0.0/8/8", "10.0.0.0/0x8", "10.0.0.0/08"])
    func rejectsInvalidPrefixes(input: String) {
        #expect(throws: IPParseError.self) { try IPCIDR(parsing: input) }
    }

    @Test func containsAddresses() throws {
        let cidr = try IPCIDR(parsing: "10.244.0.0/16")
        #expect(cidr.contains(try IPAddress(parsing: "10.244.255.255")))
        #expect(!cidr.contains(try IPAddress(parsing: "10.245.0.0")))
        #expect(!cidr.contains(try IPAddress(parsing: "::ffff:10.244.0.1")))
        #expect(try IPCIDR(parsing: "0.0.0.0/0").contains(try IPAddress(parsing: "255.255.255.255")))
    }

    @Test(arguments: [
        ("10.0.0.0/8", "10.244.1.0/24", true),
        ("10.244.1.0/24", "10.0.0.0/8", true),
        ("10.244.1.0/24", "10.244.2.0/24", false),
        ("10.244.0.0/16", "10.244.0.0/16", true),
        ("10.244.0.0/23", "10.244.1.0/24", true),
        ("10.1.0.0/16", "fd00::/8", false),
        ("fd00:1::/64", "fd00:1::/48", true),
        ("fd00:1::/64", "fd00:2::/64", false),
    ])
    func overlaps(lhs: String, rhs: String, expected: Bool) throws {
        let a = try IPCIDR(parsing: lhs)
        let b = try IPCIDR(parsing: rhs)
        #expect(a.overlaps(b) == expected)
        #expect(b.overlaps(a) == expected)
    }

    @Test func containsPrefix() throws {
        let wide = try IPCIDR(parsing: "10.0.0.0/8")
        let narrow = try IPCIDR(parsing: "10.3.0.0/16")
        #expect(wide.contains(narrow))
        #expect(!narrow.contains(wide))
    }

    @Test func prefixLengthOfMask() {
        #expect(IPCIDR.prefixLength(ofMask: [255, 255, 240, 0]) == 20)
        #expect(IPCIDR.prefixLength(ofMask: [255, 0, 255, 0]) == nil)
        #expect(IPCIDR.prefixLength(ofMask: [0, 0, 0, 0]) == 0)
    }

    @Test func codesAsString() throws {
        let cidr = try IPCIDR(parsing: "fd00:10::/64")
        #expect(try encodedJSON([cidr]) == JSONValue(literal: #"["fd00:10::/64"]"#))
        #expect(try decodeJSON([IPCIDR].self, #"["10.1.0.0/16"]"#) == [try IPCIDR(parsing: "10.1.0.0/16")])
        #expect(throws: DecodingError.self) { try decodeJSON([IPCIDR].self, #"["10.1.0.0"]"#) }
    }
}

/// Policy elements as they are stored: the peer fields keep Cilium's names per side.
@Suite("Cilium policy element JSON")
struct CiliumPeerRuleJSONTests {
    @Test func peerFieldsAreNamedForTheirSide() throws {
        let ingress = CiliumIngressRule(endpoints: [], entities: [.world], cidr: ["10.0.0.0/8"])
        #expect(try encodedJSON(ingress) == JSONValue(literal: #"{"fromEndpoints":[],"fromEntities":["world"],"fromCIDR":["10.0.0.0/8"]}"#))
        let egress = CiliumEgressRule(endpoints: [], entities: [.world], cidr: ["10.0.0.0/8"])
        #expect(try encodedJSON(egress) == JSONValue(literal: #"{"toEndpoints":[],"toEntities":["world"],"toCIDR":["10.0.0.0/8"]}"#))
        #expect(try decodeJSON(CiliumEgressRule.self, #"{"toEntities":["world"]}"#).entities == [.world])
    }
}
