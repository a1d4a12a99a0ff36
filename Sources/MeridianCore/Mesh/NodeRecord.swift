import Foundation

/// The kind of a node address, as carried in `IPAddresses[].Type`.
///
/// A string-backed value rather than an enum so that types added by newer peers still decode.
public struct NodeAddressType: RawRepresentable, Codable, Sendable, Hashable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public static let internalIP: NodeAddressType = "InternalIP"
    public static let externalIP: NodeAddressType = "ExternalIP"
    public static let hostname: NodeAddressType = "Hostname"
    public static let internalDNS: NodeAddressType = "InternalDNS"
    public static let externalDNS: NodeAddressType = "ExternalDNS"
    /// The router IP of the node inside its pod CIDR.
    public static let ciliumInternalIP: NodeAddressType = "CiliumInternalIP"
}

/// One address of a node (`{"Type":"InternalIP","IP":"172.18.0.3"}`).
public struct NodeAddress: Codable, Sendable, Hashable {
    public var type: NodeAddressType
    /// Kept as text so that a record with an unparseable address still decodes and can be
    /// rejected with a reason by `RemoteRecordValidation`.
    public var ip: String

    public init(type: NodeAddressType, ip: String) {
        self.type = type
        self.ip = ip
    }

    private enum CodingKeys: String, CodingKey {
        case type = "Type"
        case ip = "IP"
    }
}

/// A node as published under `cilium/state/nodes/v1/<cluster>/<node>`.
///
/// Other clusters learn from it where to tunnel to (the node's InternalIP) and which pod CIDR
/// lives behind that node. The JSON keys are the Go field names of Cilium's `Node` type.
/// `IPv4AllocCIDR`/`IPv6AllocCIDR` use Go's legacy `net.IPNet` form
/// `{"IP":"10.244.0.0","Mask":"////AA=="}` (mask as base64 bytes), written as `null` when unset;
/// a plain `"10.244.1.0/24"` string is also accepted on read. Keys absent on read take Go's zero
/// values, and keys this type does not know are ignored.
///
/// Meridian extension: `MTU` (the node's pod-network MTU, so peers can detect a mismatch) is
/// not part of Cilium's type; it is omitted when nil, and Cilium ignores it when present.
public struct NodeRecord: Codable, Sendable, Hashable {
    public var name: String
    public var cluster: String
    public var ipAddresses: [NodeAddress]
    public var ipv4AllocCIDR: IPCIDR?
    public var ipv6AllocCIDR: IPCIDR?
    /// Empty when the node has none.
    public var ipv4HealthIP: String
    public var ipv6HealthIP: String
    public var clusterID: UInt32
    /// Who wrote the record: `custom-resource`, `kvstore`, `local`, ...
    public var source: String
    /// IPsec key index; 0 means no encryption.
    public var encryptionKey: UInt8
    public var labels: [String: String]
    public var annotations: [String: String]
    /// Base64 WireGuard public key; empty without WireGuard.
    public var wireguardPublicKey: String
    public var bootID: String
    /// Meridian extension, see the type's notes.
    public var mtu: Int?

    public static let sourceCustomResource = "custom-resource"
    public static let sourceKVStore = "kvstore"
    public static let sourceLocal = "local"

    public init(
        name: String,
        cluster: String,
        ipAddresses: [NodeAddress] = [],
        ipv4AllocCIDR: IPCIDR? = nil,
        ipv6AllocCIDR: IPCIDR? = nil,
        ipv4HealthIP: String = "",
        ipv6HealthIP: String = "",
        clusterID: UInt32,
        source: String = NodeRecord.sourceKVStore,
        encryptionKey: UInt8 = 0,
        labels: [String: String] = [:],
        annotations: [String: String] = [:],
        wireguardPublicKey: String = "",
        bootID: String = "",
        mtu: Int? = nil
    ) {
        self.name = name
        self.cluster = cluster
        self.ipAddresses = ipAddresses
        self.ipv4AllocCIDR = ipv4AllocCIDR
        self.ipv6AllocCIDR = ipv6AllocCIDR
        self.ipv4HealthIP = ipv4HealthIP
        self.ipv6HealthIP = ipv6HealthIP
        self.clusterID = clusterID
        self.source = source
        self.encryptionKey = encryptionKey
        self.labels = labels
        self.annotations = annotations
        self.wireguardPublicKey = wireguardPublicKey
        self.bootID = bootID
        self.mtu = mtu
    }

    /// `<cluster>/<name>`: the key below `cilium/state/nodes/v1/`.
    public var keyName: String { "\(cluster)/\(name)" }

    /// The first address of the given type, e.g. the InternalIP used as tunnel endpoint.
    public func address(ofType type: NodeAddressType) -> String? {
        ipAddresses.first { $0.type == type }?.ip
    }

    private enum CodingKeys: String, CodingKey {
        case name = "Name"
        case cluster = "Cluster"
        case ipAddresses = "IPAddresses"
        case ipv4AllocCIDR = "IPv4AllocCIDR"
        case ipv6AllocCIDR = "IPv6AllocCIDR"
        case ipv4HealthIP = "IPv4HealthIP"
        case ipv6HealthIP = "IPv6HealthIP"
        case clusterID = "ClusterID"
        case source = "Source"
        case encryptionKey = "EncryptionKey"
        case labels = "Labels"
        case annotations = "Annotations"
        case wireguardPublicKey = "WireguardPubKey"
        case bootID = "BootID"
        case mtu = "MTU"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name) ?? ""
        cluster = try container.decodeIfPresent(String.self, forKey: .cluster) ?? ""
        ipAddresses = try container.decodeIfPresent([NodeAddress].self, forKey: .ipAddresses) ?? []
        ipv4AllocCIDR = try container.decodeIfPresent(GoIPNet.self, forKey: .ipv4AllocCIDR)?.cidr
        ipv6AllocCIDR = try container.decodeIfPresent(GoIPNet.self, forKey: .ipv6AllocCIDR)?.cidr
        ipv4HealthIP = try container.decodeIfPresent(String.self, forKey: .ipv4HealthIP) ?? ""
        ipv6HealthIP = try container.decodeIfPresent(String.self, forKey: .ipv6HealthIP) ?? ""
        clusterID = try container.decodeIfPresent(UInt32.self, forKey: .clusterID) ?? 0
        source = try container.decodeIfPresent(String.self, forKey: .source) ?? ""
        encryptionKey = try container.decodeIfPresent(UInt8.self, forKey: .encryptionKey) ?? 0
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
        wireguardPublicKey = try container.decodeIfPresent(String.self, forKey: .wireguardPublicKey) ?? ""
        bootID = try container.decodeIfPresent(String.self, forKey: .bootID) ?? ""
        mtu = try container.decodeIfPresent(Int.self, forKey: .mtu)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(cluster, forKey: .cluster)
        try container.encode(ipAddresses, forKey: .ipAddresses)
        try Self.encodeIPNet(ipv4AllocCIDR, forKey: .ipv4AllocCIDR, in: &container)
        try Self.encodeIPNet(ipv6AllocCIDR, forKey: .ipv6AllocCIDR, in: &container)
        try container.encode(ipv4HealthIP, forKey: .ipv4HealthIP)
        try container.encode(ipv6HealthIP, forKey: .ipv6HealthIP)
        try container.encode(clusterID, forKey: .clusterID)
        try container.encode(source, forKey: .source)
        try container.encode(encryptionKey, forKey: .encryptionKey)
        try container.encode(labels, forKey: .labels)
        try container.encode(annotations, forKey: .annotations)
        try container.encode(wireguardPublicKey, forKey: .wireguardPublicKey)
        try container.encode(bootID, forKey: .bootID)
        try container.encodeIfPresent(mtu, forKey: .mtu)
    }

    private static func encodeIPNet(
        _ cidr: IPCIDR?, forKey key: CodingKeys, in container: inout KeyedEncodingContainer<CodingKeys>
    ) throws {
        if let cidr {
            try container.encode(GoIPNet(cidr: cidr), forKey: key)
        } else {
            try container.encodeNil(forKey: key)
        }
    }
}

/// Go's `net.IPNet` JSON form, `{"IP":"10.244.0.0","Mask":"////AA=="}`; also reads `"a.b.c.d/n"`.
struct GoIPNet: Codable {
    var cidr: IPCIDR

    init(cidr: IPCIDR) {
        self.cidr = cidr
    }

    private enum CodingKeys: String, CodingKey {
        case ip = "IP"
        case mask = "Mask"
    }

    init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            do {
                cidr = try IPCIDR(parsing: text)
            } catch {
                throw DecodingError.dataCorrupted(
                    DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
            }
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let ip = try container.decode(IPAddress.self, forKey: .ip)
        let maskText = try container.decode(String.self, forKey: .mask)
        guard let mask = Data(base64Encoded: maskText) else {
            throw DecodingError.dataCorruptedError(
                forKey: .mask, in: container, debugDescription: "netmask \"\(maskText)\" is not base64")
        }
        do {
            cidr = try IPCIDR(address: ip, mask: Array(mask))
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .mask, in: container, debugDescription: error.description)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(cidr.address, forKey: .ip)
        try container.encode(Data(cidr.maskBytes).base64EncodedString(), forKey: .mask)
    }
}
