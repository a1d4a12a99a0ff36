import Foundation
import Glibc
import MeridianCore

/// The requests the CNI plugin makes to its node's agent over the agent's unix socket, one
/// JSON object per connection, as cilium-cni talks to cilium-agent: the plugin builds the
/// veth, the agent owns addresses, identities and the datapath.
public enum AgentRequest: Codable, Sendable {
    /// Reserve an address for a container.
    case allocateAddress(containerID: String, namespace: String, pod: String)
    /// The container's interface exists: program the datapath and publish the endpoint.
    case createEndpoint(EndpointSpec)
    /// Remove everything the agent holds for a container (idempotent).
    case deleteEndpoint(containerID: String)
    /// Is the container's endpoint programmed?
    case checkEndpoint(containerID: String)
}

/// What the CNI plugin hands the agent once the pod's interface is up.
public struct EndpointSpec: Codable, Sendable, Hashable {
    public var containerID: String
    public var namespace: String
    public var pod: String
    public var interface: PodInterfaceDescription

    public init(containerID: String, namespace: String, pod: String, interface: PodInterfaceDescription) {
        self.containerID = containerID
        self.namespace = namespace
        self.pod = pod
        self.interface = interface
    }
}

/// The pod interface as the agent needs it (a Codable mirror of the datapath's PodInterface).
public struct PodInterfaceDescription: Codable, Sendable, Hashable {
    public var hostInterface: String
    public var networkNamespace: String
    public var address: String
    public var hostMAC: [UInt8]
    public var podMAC: [UInt8]

    public init(hostInterface: String, networkNamespace: String, address: String, hostMAC: [UInt8], podMAC: [UInt8]) {
        self.hostInterface = hostInterface
        self.networkNamespace = networkNamespace
        self.address = address
        self.hostMAC = hostMAC
        self.podMAC = podMAC
    }
}

/// The agent's answer to any request.
public struct AgentResponse: Codable, Sendable {
    public var error: String?
    public var address: String?
    public var gateway: String?
    public var mtu: Int?
    public var identity: UInt32?
    public var dnsServer: String?
    public var dnsSearch: [String]?

    public init(error: String? = nil, address: String? = nil, gateway: String? = nil, mtu: Int? = nil,
                identity: UInt32? = nil, dnsServer: String? = nil, dnsSearch: [String]? = nil) {
        self.error = error
        self.address = address
        self.gateway = gateway
        self.mtu = mtu
        self.identity = identity
        self.dnsServer = dnsServer
        self.dnsSearch = dnsSearch
    }
}

/// A failed exchange with the agent over its socket (the CNI plugin's side): the agent is not
/// running, or the exchange broke.
public enum AgentAPIError: Error, Sendable, CustomStringConvertible {
    case system(call: String, errno: Int32)
    case socketPathTooLong(String)
    case unreachable(socketPath: String, errno: Int32)
    case unreadableResponse(bytes: Int, detail: String)

    public var message: String { description }

    public var description: String {
        switch self {
        case let .system(call, code): "\(call): \(String(cString: strerror(code)))"
        case let .socketPathTooLong(path): "agent socket path too long: \(path)"
        case let .unreachable(path, code):
            "cannot reach the agent at \(path): \(String(cString: strerror(code))) (is `meridian agent` running on this node?)"
        case let .unreadableResponse(bytes, detail): "agent sent an unreadable response (\(bytes) bytes): \(detail)"
        }
    }
}

/// Why the agent could not do something for its node or a pod; sent back to the CNI plugin as
/// the answer's error, logged, or shown in the pod's status.
public enum AgentError: Error, Sendable, CustomStringConvertible {
    case podCIDRUnusable(clusterCIDR: String, nodePrefixLength: Int)
    case podCIDRsExhausted(clusterCIDR: String, nodePrefixLength: Int, node: String)
    case underlayWithoutAddress(device: String)
    case underlayMTUUnreadable(device: String)
    case podAddressesExhausted(podCIDR: String, node: String, inUse: Int)
    case addressNotReserved(container: String, address: String)
    case endpointDeletedWhileCreated(container: String)
    case podNotFound(namespace: String, pod: String)
    case cniFailed(command: String, message: String)
    case containerStartFailed(container: String, reason: String)
    case containerPIDMissing(container: String)

    public var description: String {
        switch self {
        case let .podCIDRUnusable(cidr, size): "cluster pod CIDR \(cidr) must be an IPv4 prefix shorter than the node's /\(size) (16...29)"
        case let .podCIDRsExhausted(cidr, size, node): "cluster pod CIDR \(cidr) has no free /\(size) left for node \(node)"
        case let .underlayWithoutAddress(device): "underlay device \(device) has no IPv4 address"
        case let .underlayMTUUnreadable(device): "cannot read the MTU of \(device)"
        case let .podAddressesExhausted(cidr, node, inUse): "pod CIDR \(cidr) of node \(node) is exhausted (\(inUse) addresses in use)"
        case let .addressNotReserved(container, address): "container \(container) has no address \(address) reserved on this node"
        case let .endpointDeletedWhileCreated(container): "container \(container) was deleted while its endpoint was being created"
        case let .podNotFound(namespace, pod): "pod \(namespace)/\(pod) does not exist"
        case let .cniFailed(command, message): "CNI \(command) failed: \(message)"
        case let .containerStartFailed(container, reason): "could not start container \(container): \(reason)"
        case let .containerPIDMissing(container): "container \(container) did not report its pid"
        }
    }
}
