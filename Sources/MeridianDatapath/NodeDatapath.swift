import CMeridianBPF

/// The maps of one node that the agent's reconcilers program (the node's configuration is
/// written once, at start, through the concrete datapath).
public struct NodeMaps: Sendable {
    public var endpoints: any DatapathMap<mer_endpoint_key, mer_endpoint_info>
    public var ipcache: any DatapathMap<mer_ipcache_key, mer_ipcache_value>
    public var services: any DatapathMap<mer_lb4_key, mer_lb4_service>
    public var backends: any DatapathMap<UInt32, mer_lb4_backend>
    public var reverseNAT: any DatapathMap<UInt16, mer_lb4_revnat>
    public var conntrack: any DatapathMap<mer_ct_key, mer_ct_entry>
    public var policy: any DatapathMap<mer_policy_key, mer_policy_entry>
    /// NetworkPolicy ipBlock prefixes of the node and their numbers (`mer_ipblock4`).
    public var ipBlocks: any DatapathMap<mer_ipblock_key, mer_ipblock_value>

    public init(endpoints: any DatapathMap<mer_endpoint_key, mer_endpoint_info>, ipcache: any DatapathMap<mer_ipcache_key, mer_ipcache_value>,
                services: any DatapathMap<mer_lb4_key, mer_lb4_service>, backends: any DatapathMap<UInt32, mer_lb4_backend>,
                reverseNAT: any DatapathMap<UInt16, mer_lb4_revnat>, conntrack: any DatapathMap<mer_ct_key, mer_ct_entry>,
                policy: any DatapathMap<mer_policy_key, mer_policy_entry>,
                ipBlocks: any DatapathMap<mer_ipblock_key, mer_ipblock_value>) {
        self.endpoints = endpoints
        self.ipcache = ipcache
        self.services = services
        self.backends = backends
        self.reverseNAT = reverseNAT
        self.conntrack = conntrack
        self.policy = policy
        self.ipBlocks = ipBlocks
    }
}

/// What the agent needs of its node's datapath: the maps, and putting the programs on the
/// node's devices and cgroup. `BPFNodeDatapath` is the kernel's; unit tests use an in-memory one.
public protocol NodeDatapath: Sendable {
    var maps: NodeMaps { get }
    /// Puts from-pod and to-pod on the host side of a pod's veth.
    func attachEndpoint(hostInterface: String) throws(BPFError)
    /// Puts from-overlay on the ingress of the node's VXLAN device.
    func attachOverlay(device: String) throws(BPFError)
    /// Puts the socket programs on the cgroup holding the node's pods.
    func attachSockets(cgroup: String) throws(BPFError)
    /// The interface index of a device of the node.
    func interfaceIndex(_ name: String) throws(BPFError) -> Int32
}
