import CMeridianBPF

/// A map of the node's datapath as the agent's reconcilers read and write it, keyed and valued
/// by the C structs of `abi.h`. `BPFMap` is the one every agent uses; unit tests of the
/// reconcilers use an in-memory one (`MeridianTestSupport`), so they run without root.
public protocol DatapathMap<Key, Value>: Sendable {
    associatedtype Key: BitwiseCopyable
    associatedtype Value: BitwiseCopyable

    func lookup(_ key: Key) -> Value?
    func update(_ key: Key, _ value: Value) throws(BPFError)
    /// Returns false when the key was not there.
    @discardableResult
    func delete(_ key: Key) throws(BPFError) -> Bool
    /// Every entry; entries changed concurrently may be missed.
    func entries() -> [(key: Key, value: Value)]
}

extension BPFMap: DatapathMap {}

/// The maps of one node that the agent programs.
public struct NodeMaps: Sendable {
    public var endpoints: any DatapathMap<mer_endpoint_key, mer_endpoint_info>
    public var ipcache: any DatapathMap<mer_ipcache_key, mer_ipcache_value>
    public var services: any DatapathMap<mer_lb4_key, mer_lb4_service>
    public var backends: any DatapathMap<UInt32, mer_lb4_backend>
    public var reverseNAT: any DatapathMap<UInt16, mer_lb4_revnat>
    public var conntrack: any DatapathMap<mer_ct_key, mer_ct_entry>
    public var config: any DatapathMap<UInt32, mer_config>
    public var policy: any DatapathMap<mer_policy_key, mer_policy_entry>

    public init(endpoints: any DatapathMap<mer_endpoint_key, mer_endpoint_info>, ipcache: any DatapathMap<mer_ipcache_key, mer_ipcache_value>,
                services: any DatapathMap<mer_lb4_key, mer_lb4_service>, backends: any DatapathMap<UInt32, mer_lb4_backend>,
                reverseNAT: any DatapathMap<UInt16, mer_lb4_revnat>, conntrack: any DatapathMap<mer_ct_key, mer_ct_entry>,
                config: any DatapathMap<UInt32, mer_config>, policy: any DatapathMap<mer_policy_key, mer_policy_entry>) {
        self.endpoints = endpoints
        self.ipcache = ipcache
        self.services = services
        self.backends = backends
        self.reverseNAT = reverseNAT
        self.conntrack = conntrack
        self.config = config
        self.policy = policy
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
