import Foundation
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

/// A failed exchange with the agent: it is not running, or it refused the request.
public struct AgentAPIError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
