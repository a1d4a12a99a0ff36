import CMeridianBPF
import Foundation
import Glibc
import MeridianCore
@testable import MeridianDatapath
import MeridianTestSupport

/// CI runs as root; these tests load real programs into the kernel and need CAP_BPF.
let runningAsRoot = getuid() == 0

/// A private bpffs mounted in a temporary directory, holding one node's datapath for a test,
/// unmounted (which frees maps and programs) when the test ends.
final class DatapathFixture {
    let scratch: ScratchDatapath
    var directory: String { scratch.directory }
    var datapath: BPFNodeDatapath { scratch.datapath }
    /// `bpf/tests/overlay_harness.bpf.c`, loaded by the first run that needs it.
    private var overlayHarness: BPFObject?

    static let clientIP = "10.1.1.5"
    static let clientIdentity: UInt32 = (1 << 16) | 300
    static let nodeIP = "172.30.1.1"
    static let gatewayIP = "10.1.1.1"
    static let loopbackIndex: UInt32 = 1 // BPF_PROG_TEST_RUN runs packets as if received on lo

    init() throws {
        scratch = try ScratchDatapath(prefix: "meridian-bpftest")
        try datapath.config.update(0, mer_config(
            vxlan_ifindex: 1, node_ip: Self.addr(Self.nodeIP), gateway_ip: Self.addr(Self.gatewayIP), cluster_id: 1, flags: 0,
            identity_cluster_shift: 16))
        try addEndpoint(ip: Self.clientIP, identity: Self.clientIdentity, ifindex: Self.loopbackIndex)
    }

    static func addr(_ text: String) -> UInt32 { IPAddress(text)!.datapathValue! }
    static func port(_ value: UInt16) -> UInt16 { value.bigEndian }

    func addEndpoint(ip: String, identity: UInt32, ifindex: UInt32, mac: [UInt8] = Packets.podMAC, flags: Int = 0) throws {
        var info = mer_endpoint_info()
        info.flags = UInt16(flags)
        info.ifindex = ifindex
        info.identity = identity
        info.endpoint_id = 1
        withUnsafeMutableBytes(of: &info.mac) { $0.copyBytes(from: mac) }
        withUnsafeMutableBytes(of: &info.node_mac) { $0.copyBytes(from: Packets.gatewayMAC) }
        try datapath.endpoints.update(mer_endpoint_key(ip4: Self.addr(ip)), info)
    }

    /// A policy entry for endpoint 1: `identity` 0 is any, `proto` nil any protocol and port,
    /// `portBits` how many leading bits of `port` must match (16 = exactly).
    func addPolicy(direction: Int, identity: UInt32, proto: UInt8?, port: UInt16 = 0, portBits: UInt32 = 16, deny: Bool = false) throws {
        var key = mer_policy_key()
        key.endpoint_id = UInt16(1).bigEndian
        key.direction = UInt8(direction)
        key.identity = identity.bigEndian
        if let proto {
            key.proto = proto
            key.dport = port.bigEndian
            key.prefixlen = UInt32(MER_POLICY_STATIC_PREFIX) + 8 + portBits
        } else {
            key.prefixlen = UInt32(MER_POLICY_STATIC_PREFIX)
        }
        var entry = mer_policy_entry()
        entry.deny = deny ? 1 : 0
        try datapath.policy.update(key, entry)
    }

    func addRoute(_ cidr: String, identity: UInt32, tunnel: String?, flags: UInt8 = 0, clusterID: UInt16 = 0) throws {
        let prefix = IPCIDR(cidr)!
        var value = mer_ipcache_value()
        value.identity = identity
        value.cluster_id = clusterID
        if let tunnel {
            value.tunnel_endpoint = Self.addr(tunnel)
            value.flags = UInt8(MER_IPCACHE_F_TUNNEL) | flags
        } else {
            value.flags = flags
        }
        try datapath.ipcache.update(mer_ipcache_key(prefixlen: UInt32(prefix.prefixLength), ip4: Self.addr(prefix.address.description)), value)
    }

    /// A service `vip:port/proto` whose slots hold `backends` (ip, port), with reverse NAT index `revNAT`.
    func addService(vip: String, port: UInt16, proto: UInt8 = 6, revNAT: UInt16, backends: [(String, UInt16)], firstBackendID: UInt32 = 1) throws {
        for (offset, backend) in backends.enumerated() {
            let id = firstBackendID + UInt32(offset)
            try datapath.backends.update(id, mer_lb4_backend(address: Self.addr(backend.0), port: Self.port(backend.1), proto: proto,
                                                             flags: UInt8(MER_BACKEND_ACTIVE), cluster_id: 1, pad: 0))
            var slot = mer_lb4_key()
            slot.address = Self.addr(vip)
            slot.dport = Self.port(port)
            slot.proto = proto
            slot.backend_slot = UInt16(offset + 1)
            var value = mer_lb4_service()
            value.backend_id = id
            try datapath.services.update(slot, value)
        }
        var master = mer_lb4_key()
        master.address = Self.addr(vip)
        master.dport = Self.port(port)
        master.proto = proto
        var service = mer_lb4_service()
        service.count = UInt16(backends.count)
        service.rev_nat_index = revNAT
        try datapath.services.update(master, service)
        try datapath.reverseNAT.update(revNAT, mer_lb4_revnat(address: Self.addr(vip), port: Self.port(port), pad: 0))
    }

    func fromPod(_ packet: [UInt8]) throws -> (verdict: UInt32, frame: ParsedFrame) {
        let result = try datapath.fromPod.testRun(program: BPFNodeDatapath.fromPodProgram, packet: packet)
        return (result.verdict, ParsedFrame(bytes: result.packet))
    }

    func toPod(_ packet: [UInt8]) throws -> (verdict: UInt32, frame: ParsedFrame) {
        let result = try datapath.toPod.testRun(program: BPFNodeDatapath.toPodProgram, packet: packet)
        return (result.verdict, ParsedFrame(bytes: result.packet))
    }

    func fromOverlay(_ packet: [UInt8]) throws -> (verdict: UInt32, frame: ParsedFrame) {
        let result = try datapath.fromOverlay.testRun(program: BPFNodeDatapath.fromOverlayProgram, packet: packet)
        return (result.verdict, ParsedFrame(bytes: result.packet))
    }

    /// Runs from-overlay on `packet` as the VXLAN device hands it over after decapsulating a
    /// datagram from `sender` with VNI `vni`: the harness attaches that tunnel metadata and
    /// tail-calls from-overlay. `mark` is the skb's mark as decapsulation leaves it
    /// (`MER_MARK_MAGIC_DECRYPTED` when the datagram came through the WireGuard device).
    func fromOverlay(_ packet: [UInt8], vni: UInt32, sender: String, mark: UInt32 = 0) throws -> (verdict: UInt32, frame: ParsedFrame) {
        let harness = try loadOverlayHarness()
        let senderHostOrder = UInt32(bigEndian: Self.addr(sender))
        let result = try harness.testRun(program: Self.harnessProgram, packet: packet, controlBuffer: [vni, senderHostOrder, mark, 0, 0])
        guard result.verdict != Self.harnessMissed else { throw HarnessError.fromOverlayNotReached }
        return (result.verdict, ParsedFrame(bytes: result.packet))
    }

    static let harnessProgram = "overlay_harness"
    static let harnessSlots = "overlay_harness_next"
    /// TC_ACT_UNSPEC: what the harness returns when from-overlay was not reached.
    static let harnessMissed = UInt32(bitPattern: -1)

    enum HarnessError: Error {
        case fromOverlayNotReached
    }

    private func loadOverlayHarness() throws -> BPFObject {
        if let overlayHarness { return overlayHarness }
        let harness = try BPFObject(.overlayHarness, pinDirectory: datapath.pinDirectory)
        let slots = BPFMap<UInt32, UInt32>(name: Self.harnessSlots, fd: try harness.mapFD(Self.harnessSlots))
        try slots.update(0, UInt32(bitPattern: try datapath.fromOverlay.programFD(BPFNodeDatapath.fromOverlayProgram)))
        overlayHarness = harness
        return harness
    }

    func events() throws -> [mer_event] {
        try EventReader(mapFD: datapath.eventsFD).drain()
    }

    static func monotonicSeconds() -> UInt32 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt32(now.tv_sec)
    }
}

enum Verdict {
    static let ok: UInt32 = 0
    static let shot: UInt32 = 2
    static let redirect: UInt32 = 7
}
