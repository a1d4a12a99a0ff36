import CLibBPF
import CMeridianBPF
import Glibc
import MeridianCore

/// The datapath of one node in the kernel: its tc programs and its socket programs loaded, its
/// maps (pinned under `pinDirectory`) opened with their C layouts. An agent makes one at start;
/// loading again over existing pins reuses the maps, so state and traffic survive an agent
/// restart.
public final class BPFNodeDatapath: NodeDatapath {
    public let pinDirectory: String
    public let fromPod: BPFObject
    public let toPod: BPFObject
    public let fromOverlay: BPFObject
    /// The socket programs (`sock.bpf.c`), attached to the node's pod cgroup by `attachSockets`.
    public let sockets: BPFObject

    public let endpoints: BPFMap<mer_endpoint_key, mer_endpoint_info>
    public let ipcache: BPFMap<mer_ipcache_key, mer_ipcache_value>
    public let services: BPFMap<mer_lb4_key, mer_lb4_service>
    public let backends: BPFMap<UInt32, mer_lb4_backend>
    public let reverseNAT: BPFMap<UInt16, mer_lb4_revnat>
    public let conntrack: BPFMap<mer_ct_key, mer_ct_entry>
    public let config: BPFMap<UInt32, mer_config>
    public let policy: BPFMap<mer_policy_key, mer_policy_entry>
    public let ipBlocks: BPFMap<mer_ipblock_key, mer_ipblock_value>
    /// Nodes reached through WireGuard (`mer_encrypt4`), written by the agent's encryption
    /// reconciler and consulted by `from_pod` in strict mode.
    public let encryptedNodes: BPFMap<mer_encrypt_key, mer_encrypt_value>
    public let metrics: PerCPUArrayMap<mer_metric>
    public let eventsFD: Int32
    public let maps: NodeMaps

    public static let fromPodProgram = "from_pod"
    public static let toPodProgram = "to_pod"
    public static let fromOverlayProgram = "from_overlay"
    /// In the from-overlay object: marks what the WireGuard device delivers as decrypted.
    public static let fromWireGuardProgram = "from_wireguard"
    /// The socket programs and the cgroup hook each goes on.
    public static let socketPrograms: [(name: String, hook: bpf_attach_type)] = [
        ("sock_connect4", BPF_CGROUP_INET4_CONNECT), ("sock_sendmsg4", BPF_CGROUP_UDP4_SENDMSG),
        ("sock_recvmsg4", BPF_CGROUP_UDP4_RECVMSG), ("sock_getpeername4", BPF_CGROUP_INET4_GETPEERNAME),
    ]

    public init(pinDirectory: String) throws(BPFError) {
        if mkdir(pinDirectory, 0o700) != 0 && errno != EEXIST {
            throw BPFError("create pin directory \(pinDirectory)", errno: errno)
        }
        self.pinDirectory = pinDirectory
        Self.unpinIfResized(pinDirectory + "/" + MER_MAP_METRICS, maxEntries: UInt32(MER_METRICS_MAX))
        fromPod = try BPFObject(.fromPod, pinDirectory: pinDirectory)
        toPod = try BPFObject(.toPod, pinDirectory: pinDirectory)
        fromOverlay = try BPFObject(.fromOverlay, pinDirectory: pinDirectory)
        sockets = try BPFObject(.sock, pinDirectory: pinDirectory)
        let objectWithMaps = fromPod
        endpoints = BPFMap(name: MER_MAP_ENDPOINTS, fd: try objectWithMaps.mapFD(MER_MAP_ENDPOINTS))
        ipcache = BPFMap(name: MER_MAP_IPCACHE, fd: try objectWithMaps.mapFD(MER_MAP_IPCACHE))
        services = BPFMap(name: MER_MAP_SERVICES, fd: try objectWithMaps.mapFD(MER_MAP_SERVICES))
        backends = BPFMap(name: MER_MAP_BACKENDS, fd: try objectWithMaps.mapFD(MER_MAP_BACKENDS))
        reverseNAT = BPFMap(name: MER_MAP_REVNAT, fd: try objectWithMaps.mapFD(MER_MAP_REVNAT))
        conntrack = BPFMap(name: MER_MAP_CT, fd: try objectWithMaps.mapFD(MER_MAP_CT))
        config = BPFMap(name: MER_MAP_CONFIG, fd: try objectWithMaps.mapFD(MER_MAP_CONFIG))
        policy = BPFMap(name: MER_MAP_POLICY, fd: try objectWithMaps.mapFD(MER_MAP_POLICY))
        ipBlocks = BPFMap(name: MER_MAP_IPBLOCK, fd: try objectWithMaps.mapFD(MER_MAP_IPBLOCK))
        encryptedNodes = BPFMap(name: MER_MAP_ENCRYPT, fd: try objectWithMaps.mapFD(MER_MAP_ENCRYPT))
        metrics = try PerCPUArrayMap(name: MER_MAP_METRICS, fd: try objectWithMaps.mapFD(MER_MAP_METRICS))
        eventsFD = try objectWithMaps.mapFD(MER_MAP_EVENTS)
        self.maps = NodeMaps(endpoints: endpoints, ipcache: ipcache, services: services, backends: backends,
                             reverseNAT: reverseNAT, conntrack: conntrack, policy: policy, ipBlocks: ipBlocks)
    }


    public func interfaceIndex(_ name: String) throws(BPFError) -> Int32 {
        try TrafficControl.interfaceIndex(name)
    }

    /// Puts from-pod and to-pod on the host side of a pod's veth.
    public func attachEndpoint(hostInterface: String) throws(BPFError) {
        let index = try TrafficControl.interfaceIndex(hostInterface)
        try TrafficControl.attach(programFD: try fromPod.programFD(Self.fromPodProgram), interfaceIndex: index,
                                  direction: .ingress, device: hostInterface)
        try TrafficControl.attach(programFD: try toPod.programFD(Self.toPodProgram), interfaceIndex: index,
                                  direction: .egress, device: hostInterface)
    }

    /// Puts from-overlay on the ingress of the node's VXLAN device.
    public func attachOverlay(device: String) throws(BPFError) {
        let index = try TrafficControl.interfaceIndex(device)
        try TrafficControl.attach(programFD: try fromOverlay.programFD(Self.fromOverlayProgram), interfaceIndex: index,
                                  direction: .ingress, device: device)
    }

    /// Puts from-wireguard on the ingress of the node's WireGuard device unless it is there
    /// already; true when it was attached now. A restarted `wireguard-go` makes a new device,
    /// without programs, so the encryption reconciler calls this on every pass.
    public func attachDecryptionMark(device: String) throws(BPFError) -> Bool {
        let index = try TrafficControl.interfaceIndex(device)
        let id = try fromOverlay.programID(Self.fromWireGuardProgram)
        if TrafficControl.attachedProgramID(interfaceIndex: index, direction: .ingress) == id { return false }
        try TrafficControl.attach(programFD: try fromOverlay.programFD(Self.fromWireGuardProgram), interfaceIndex: index,
                                  direction: .ingress, device: device)
        return true
    }

    /// Puts the socket programs on the cgroup v2 directory holding the node's pods, so every
    /// connect() and UDP send to a service picks its backend at the socket. Attaching again
    /// (an agent restart) replaces the node's programs.
    public func attachSockets(cgroup: String) throws(BPFError) {
        let directory = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw BPFError("open cgroup \(cgroup)", errno: errno) }
        defer { close(directory) }
        for (name, hook) in Self.socketPrograms {
            let result = bpf_prog_attach(try sockets.programFD(name), directory, hook, 0)
            try BPFError.check(result, "attach \(name) to cgroup \(cgroup)")
        }
    }

    /// Removes the pin of a map whose contents can be rebuilt (counters) when its size is not the
    /// one the programs now declare: an upgrade that resized it would otherwise fail to load over
    /// the old pin. The programs then create it anew; the metrics count from zero again.
    static func unpinIfResized(_ path: String, maxEntries: UInt32) {
        let fd = bpf_obj_get(path)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        if bpf_obj_get_info_by_fd(fd, &info, &length) == 0, info.max_entries != maxEntries {
            unlink(path)
        }
    }

    /// Packets and bytes counted under `reason` (0 = forwarded) over all CPUs, in every direction.
    public func counter(_ reason: UInt32) -> (packets: UInt64, bytes: UInt64) {
        [MER_EVENT_DIR_UNKNOWN, MER_EVENT_DIR_INGRESS, MER_EVENT_DIR_EGRESS].map { counter(reason, direction: UInt32($0)) }
            .reduce(into: (UInt64(0), UInt64(0))) { total, value in
                total.0 &+= value.packets
                total.1 &+= value.bytes
            }
    }

    /// Packets and bytes counted under `reason` by the programs of one `direction` (`MER_EVENT_DIR_*`).
    public func counter(_ reason: UInt32, direction: UInt32) -> (packets: UInt64, bytes: UInt64) {
        metrics.values(at: direction * UInt32(MER_METRICS_REASONS) + reason).reduce(into: (UInt64(0), UInt64(0))) { total, value in
            total.0 &+= value.packets
            total.1 &+= value.bytes
        }
    }
}

extension IPAddress {
    /// The IPv4 address as the datapath stores it: a `__u32` whose bytes are in network order.
    public var datapathValue: UInt32? {
        guard family == .ipv4 else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }

    public init(datapathValue: UInt32) {
        let bytes = withUnsafeBytes(of: datapathValue) { Array($0) }
        self = IPAddress(bytes: bytes)!
    }
}
