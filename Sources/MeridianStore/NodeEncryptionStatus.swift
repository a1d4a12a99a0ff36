import Foundation

/// One node's transparent encryption as its agent last saw it, published under
/// `meridian/status/encryption/<node>`.
///
/// It exists because the WireGuard device lives inside the node (a kernel device or a
/// `wireguard-go` process in the node's network namespace) where an administrator's CLI cannot
/// look: the agent reads the device (`wg show DEV dump`) and publishes what matters, never the
/// private key. Handshake times are absolute (seconds since 1970) so a reader computes their age
/// against its own clock; byte counts are as of `updatedAt`.
public struct NodeEncryptionStatus: Codable, Sendable, Hashable {
    public var node: String
    public var cluster: String
    /// `wireguard` (the only kind so far).
    public var type: String
    /// `kernel` (the kernel's WireGuard module) or `userspace` (`wireguard-go` on a TUN device).
    public var mode: String
    public var interface: String
    public var publicKey: String
    public var listenPort: Int
    public var mtu: Int
    /// Peers configured on the device, by public key order.
    public var peers: [Peer]
    /// Node records that carry no usable key (or none at all): traffic to them is not encrypted,
    /// or, in strict mode, dropped.
    public var unencryptedNodes: [String]
    /// Whether the node runs strict mode (`--encryption-strict`): pod traffic to a node without
    /// a tunnel is dropped. Nil from agents older than strict mode (which never ran it).
    public var strict: Bool?
    /// Seconds since 1970 of the last replacement of the node's key pair (its creation, a rotation
    /// on request or on schedule). Nil from agents older than scheduled rotation.
    public var lastKeyRotation: Int64?
    /// `--wireguard-rotation-interval` in seconds; nil: the key is replaced only on request.
    public var keyRotationIntervalSeconds: Int64?
    /// Seconds since 1970 of the next scheduled rotation; nil without a schedule.
    public var nextKeyRotation: Int64?
    /// The last error configuring the device, if the last pass failed.
    public var lastError: String?
    /// Seconds since 1970 when the agent read the device.
    public var updatedAt: Int64

    /// One peer of the device: a node of this or another cluster.
    public struct Peer: Codable, Sendable, Hashable {
        /// `<cluster>/<node>` of the record the peer was made from.
        public var node: String
        public var publicKey: String
        public var endpoint: String
        public var allowedIPs: [String]
        /// Seconds since 1970 of the last handshake; 0 when there has been none.
        public var latestHandshake: Int64
        public var receivedBytes: UInt64
        public var sentBytes: UInt64

        public init(node: String, publicKey: String, endpoint: String, allowedIPs: [String], latestHandshake: Int64,
                    receivedBytes: UInt64, sentBytes: UInt64) {
            self.node = node
            self.publicKey = publicKey
            self.endpoint = endpoint
            self.allowedIPs = allowedIPs
            self.latestHandshake = latestHandshake
            self.receivedBytes = receivedBytes
            self.sentBytes = sentBytes
        }
    }

    public init(node: String, cluster: String, type: String = "wireguard", mode: String, interface: String, publicKey: String,
                listenPort: Int, mtu: Int, peers: [Peer], unencryptedNodes: [String], strict: Bool? = nil, lastError: String?,
                updatedAt: Int64) {
        self.node = node
        self.cluster = cluster
        self.type = type
        self.mode = mode
        self.interface = interface
        self.publicKey = publicKey
        self.listenPort = listenPort
        self.mtu = mtu
        self.peers = peers
        self.unencryptedNodes = unencryptedNodes
        self.strict = strict
        self.lastError = lastError
        self.updatedAt = updatedAt
    }
}
