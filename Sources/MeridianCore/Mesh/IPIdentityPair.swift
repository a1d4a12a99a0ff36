import Foundation

/// A named container port of the endpoint behind an ipcache entry (`{"Name","Port","Protocol"}`).
public struct NamedPort: Codable, Sendable, Hashable {
    public var name: String
    public var port: UInt16
    public var `protocol`: L4Protocol

    public init(name: String, port: UInt16, protocol: L4Protocol) {
        self.name = name
        self.port = port
        self.protocol = `protocol`
    }

    private enum CodingKeys: String, CodingKey {
        case name = "Name"
        case port = "Port"
        case `protocol` = "Protocol"
    }
}

/// One ipcache entry, stored under `cilium/state/ip/v1/default/<IP or prefix>`.
///
/// It maps a pod IP to the pod's security identity and to the node that hosts it (the tunnel
/// endpoint). This is what lets a datapath in another cluster enforce policy on traffic from a
/// remote pod. JSON keys are the Go field names: `IP`, `Mask`, `HostIP`, `ID`, `Key`,
/// `Metadata`, `K8sNamespace`, `K8sPodName`, `NamedPorts`. `Mask` (base64 netmask bytes, only
/// for prefix entries) and `NamedPorts` are omitted when nil; a JSON `null` reads as nil.
public struct IPIdentityPair: Codable, Sendable, Hashable {
    public var ip: String
    /// Base64 of the netmask bytes, for entries that describe a prefix rather than one IP.
    public var mask: String?
    /// The node IP to tunnel to.
    public var hostIP: String
    /// The numeric security identity.
    public var id: UInt32
    /// IPsec key index; 0 means none.
    public var key: UInt8
    public var metadata: String
    public var k8sNamespace: String
    public var k8sPodName: String
    public var namedPorts: [NamedPort]?

    public init(
        ip: String,
        mask: String? = nil,
        hostIP: String,
        id: UInt32,
        key: UInt8 = 0,
        metadata: String = "",
        k8sNamespace: String = "",
        k8sPodName: String = "",
        namedPorts: [NamedPort]? = nil
    ) {
        self.ip = ip
        self.mask = mask
        self.hostIP = hostIP
        self.id = id
        self.key = key
        self.metadata = metadata
        self.k8sNamespace = k8sNamespace
        self.k8sPodName = k8sPodName
        self.namedPorts = namedPorts
    }

    /// An entry for a whole prefix; `mask` is derived from the prefix length.
    public init(prefix: IPCIDR, hostIP: String, id: UInt32, metadata: String = "") {
        self.init(
            ip: prefix.address.description, mask: Data(prefix.maskBytes).base64EncodedString(),
            hostIP: hostIP, id: id, metadata: metadata)
    }

    /// The prefix the entry covers: the IP with `Mask` applied, or a host prefix when there is
    /// no mask.
    public func prefix() throws(IPParseError) -> IPCIDR {
        let address = try IPAddress(parsing: ip)
        guard let mask else {
            return try IPCIDR(address: address, prefixLength: address.family.bitWidth)
        }
        guard let bytes = Data(base64Encoded: mask) else {
            throw IPParseError(input: mask, reason: "netmask is not base64")
        }
        return try IPCIDR(address: address, mask: Array(bytes))
    }

    /// The key below `cilium/state/ip/v1/default/`: the IP, or `IP/length` for a prefix entry.
    public func keyName() throws(IPParseError) -> String {
        let prefix = try prefix()
        return mask == nil ? prefix.address.description : prefix.description
    }

    private enum CodingKeys: String, CodingKey {
        case ip = "IP"
        case mask = "Mask"
        case hostIP = "HostIP"
        case id = "ID"
        case key = "Key"
        case metadata = "Metadata"
        case k8sNamespace = "K8sNamespace"
        case k8sPodName = "K8sPodName"
        case namedPorts = "NamedPorts"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ip = try container.decodeIfPresent(String.self, forKey: .ip) ?? ""
        mask = try container.decodeIfPresent(String.self, forKey: .mask)
        hostIP = try container.decodeIfPresent(String.self, forKey: .hostIP) ?? ""
        id = try container.decodeIfPresent(UInt32.self, forKey: .id) ?? 0
        key = try container.decodeIfPresent(UInt8.self, forKey: .key) ?? 0
        metadata = try container.decodeIfPresent(String.self, forKey: .metadata) ?? ""
        k8sNamespace = try container.decodeIfPresent(String.self, forKey: .k8sNamespace) ?? ""
        k8sPodName = try container.decodeIfPresent(String.self, forKey: .k8sPodName) ?? ""
        namedPorts = try container.decodeIfPresent([NamedPort].self, forKey: .namedPorts)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        try container.encodeIfPresent(mask, forKey: .mask)
        try container.encode(hostIP, forKey: .hostIP)
        try container.encode(id, forKey: .id)
        try container.encode(key, forKey: .key)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(k8sNamespace, forKey: .k8sNamespace)
        try container.encode(k8sPodName, forKey: .k8sPodName)
        try container.encodeIfPresent(namedPorts, forKey: .namedPorts)
    }
}
