import CMeridianBPF
import MeridianCore
import MeridianHost

/// The devices an agent owns in its node's network namespace: the collect-metadata VXLAN
/// device (`mer_vxlan`, UDP 8472, the source identity in the VNI), and the pods' gateway
/// address, a /32 on the namespace's loopback (kernels without the dummy link type are
/// common in sandboxes; the address only has to be local). Pod traffic to addresses outside
/// every cluster leaves through the node's stack with the pod's address (the lab's underlay
/// routes pod CIDRs to their nodes). Setup is idempotent, so a restarted agent finds what it
/// made before and keeps it.
public struct NodeNetwork: Sendable {
    public static let vxlanDevice = "mer_vxlan"
    public static let gatewayDevice = "lo"

    public var underlayDevice: String
    public var underlayMTU: Int
    public var gateway: IPAddress
    /// What transparent encryption adds around the VXLAN packet (WireGuard: 60); 0 without.
    public var encryptionOverhead: Int

    public init(underlayDevice: String, underlayMTU: Int, gateway: IPAddress, encryptionOverhead: Int = 0) {
        self.underlayDevice = underlayDevice
        self.underlayMTU = underlayMTU
        self.gateway = gateway
        self.encryptionOverhead = encryptionOverhead
    }

    /// The MTU of pods and of the VXLAN device: the underlay's minus the encapsulation (and
    /// the encryption around it).
    public var podMTU: Int { underlayMTU - MeridianMTU.vxlanOverhead - encryptionOverhead }

    public func setUp() async throws {
        try await HostCommand.sysctl("net.ipv4.ip_forward", "1")
        try await HostCommand.sysctl("net.ipv4.conf.all.rp_filter", "0")
        try await HostCommand.sysctl("net.ipv4.conf.default.rp_filter", "0")
        if !(await Self.linkExists(Self.vxlanDevice)) {
            try await HostCommand.ip("link", "add", Self.vxlanDevice, "type", "vxlan", "external", "dstport", "\(MeridianMTU.vxlanPort)")
        }
        try await HostCommand.ip("link", "set", Self.vxlanDevice, "mtu", "\(podMTU)", "up")
        try await HostCommand.sysctl("net.ipv4.conf.\(Self.vxlanDevice).rp_filter", "0")
        try await HostCommand.sysctl("net.ipv4.conf.\(Self.vxlanDevice).accept_local", "1")
        try await HostCommand.ip("addr", "replace", "\(gateway)/32", "dev", Self.gatewayDevice)
    }

    public static func linkExists(_ name: String) async -> Bool {
        await HostCommand.attempt(["ip", "link", "show", "dev", name])
    }
}

/// Encapsulation constants shared by the agent and the CNI plugin.
public enum MeridianMTU {
    /// Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
    public static let vxlanOverhead = Int(MER_VXLAN_OVERHEAD)
    public static let vxlanPort = Int(MER_VXLAN_PORT)
}
