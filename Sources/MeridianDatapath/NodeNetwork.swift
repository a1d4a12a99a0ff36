import MeridianCore

/// The devices an agent owns in its node's network namespace: the collect-metadata VXLAN
/// device (`mer_vxlan`, UDP 8472, the source identity in the VNI), and the pods' gateway
/// address, a /32 on the namespace's loopback (kernels without the dummy link type are
/// common in sandboxes; the address only has to be local). Pod traffic that leaves the node
/// unencapsulated (to addresses outside every cluster) is masqueraded behind the node's
/// underlay address, as Cilium does by default, so the outside can answer without routes to
/// pod CIDRs. Setup is idempotent, so a restarted agent finds what it made before and keeps it.
public struct NodeNetwork: Sendable {
    public static let vxlanDevice = "mer_vxlan"
    public static let gatewayDevice = "lo"

    public var underlayDevice: String
    public var underlayMTU: Int
    public var gateway: IPAddress
    /// The node's pod CIDR, masqueraded when it leaves through the underlay.
    public var podCIDR: IPCIDR?

    /// The nftables table the masquerade rule lives in (one per node namespace).
    public static let natTable = "meridian"

    public init(underlayDevice: String, underlayMTU: Int, gateway: IPAddress, podCIDR: IPCIDR? = nil) {
        self.underlayDevice = underlayDevice
        self.underlayMTU = underlayMTU
        self.gateway = gateway
        self.podCIDR = podCIDR
    }

    /// The MTU of pods and of the VXLAN device: the underlay's minus the encapsulation.
    public var podMTU: Int { underlayMTU - MeridianMTU.vxlanOverhead }

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
        if let podCIDR {
            _ = await HostCommand.attempt(["nft", "delete", "table", "ip", Self.natTable])
            try await HostCommand.run(["nft", "add", "table", "ip", Self.natTable])
            try await HostCommand.run(["nft", "add", "chain", "ip", Self.natTable, "postrouting",
                                       "{ type nat hook postrouting priority srcnat; policy accept; }"])
            try await HostCommand.run(["nft", "add", "rule", "ip", Self.natTable, "postrouting",
                                       "ip", "saddr", "\(podCIDR)", "oifname", underlayDevice, "masquerade"])
            // A NAT hook turns connection tracking on in the namespace; the tunnel's UDP (outer
            // headers only: the inner packets are redirected by the programs and never meet
            // netfilter) is exempt, or every encapsulated packet would pay a conntrack lookup.
            for (chain, hook) in [("tunnel-in", "prerouting"), ("tunnel-out", "output")] {
                try await HostCommand.run(["nft", "add", "chain", "ip", Self.natTable, chain,
                                           "{ type filter hook \(hook) priority raw; policy accept; }"])
                try await HostCommand.run(["nft", "add", "rule", "ip", Self.natTable, chain, "udp", "dport", "\(MeridianMTU.vxlanPort)", "notrack"])
            }
        }
    }

    public static func linkExists(_ name: String) async -> Bool {
        await HostCommand.attempt(["ip", "link", "show", "dev", name])
    }
}

/// Encapsulation constants shared by the agent and the CNI plugin.
public enum MeridianMTU {
    /// Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
    public static let vxlanOverhead = 50
    public static let vxlanPort = 8472
}
