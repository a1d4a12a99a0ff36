import CMeridianBPF
import CLibBPF
import Foundation
import Glibc
@testable import MeridianDatapath
import MeridianTestSupport
import Testing

/// The events the programs report for flows: what is reported (a connection's first packet and
/// its close, every drop, with direction, TCP flags and the service index), and that a full
/// ring loses events, never silently.
@Suite("Flow events", .serialized, .enabled(if: runningAsRoot, "loading BPF programs needs root; CI runs as root"))
struct FlowEventTests {
    @Test("a connection's first packet and its FIN are reported with their flags and direction; packets in between are only counted")
    func firstPacketAndClose() throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        _ = try fixture.events()
        for flags: Packets.TCPFlags in [.syn, .ack, .ack, [.ack, .fin]] {
            _ = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: "10.1.2.5", sport: 41000, dport: 80, flags: flags))
        }
        let traces = try fixture.events().filter { $0.type == UInt8(MER_EVENT_TRACE) }
        #expect(traces.map(\.tcp_flags) == [UInt8(MER_TCP_SYN), UInt8(MER_TCP_ACK | MER_TCP_FIN)])
        #expect(traces.allSatisfy { $0.direction == UInt8(MER_EVENT_DIR_EGRESS) })
        #expect(fixture.datapath.counter(0).packets == 4, "all four are counted as forwarded")
        #expect(fixture.datapath.counter(0, direction: UInt32(MER_EVENT_DIR_EGRESS)).packets == 4, "from-pod counts in the egress block")
    }

    @Test("a packet translated by the service LB carries the frontend's reverse-NAT index")
    func serviceIndex() throws {
        let fixture = try DatapathFixture()
        try fixture.addRoute("10.1.2.0/24", identity: 2, tunnel: "172.30.1.2")
        try fixture.addService(vip: "10.101.0.10", port: 80, revNAT: 7, backends: [("10.1.2.9", 8080)])
        _ = try fixture.events()
        _ = try fixture.fromPod(Packets.tcp(src: DatapathFixture.clientIP, dst: "10.101.0.10", sport: 41001, dport: 80, flags: .syn))
        let trace = try #require(try fixture.events().first { $0.type == UInt8(MER_EVENT_TRACE) })
        #expect(trace.rev_nat_index == 7)
        #expect(trace.daddr == DatapathFixture.addr("10.1.2.9"), "the destination is the chosen backend")
    }

    @Test("a full ring loses events and counts each one: reported plus lost equals what happened")
    func overflowIsCounted() throws {
        let fixture = try DatapathFixture()
        _ = try fixture.events()
        let lostBefore = fixture.datapath.counter(UInt32(MER_METRIC_EVENTS_LOST)).packets
        // Each run is one drop (a source the node does not know), so one event or one loss.
        let runs: UInt32 = 40_000
        let packet = Packets.tcp(src: "10.1.1.66", dst: "10.1.2.5", sport: 1, dport: 2, flags: .syn)
        _ = try fixture.datapath.fromPod.timedRun(program: BPFNodeDatapath.fromPodProgram, packet: packet, repeat: runs)
        let reported = try fixture.events().filter { $0.type == UInt8(MER_EVENT_DROP) }.count
        let lost = fixture.datapath.counter(UInt32(MER_METRIC_EVENTS_LOST)).packets - lostBefore
        #expect(lost > 0, "\(runs) events do not fit in a ring of \(MER_EVENTS_BYTES) bytes")
        #expect(UInt64(reported) + lost == UInt64(runs), "reported \(reported), lost \(lost)")
        #expect(fixture.datapath.counter(UInt32(MER_DROP_INVALID_SIP)).packets == UInt64(runs), "every drop is counted, reported or not")
        #expect(fixture.datapath.counter(UInt32(MER_DROP_INVALID_SIP), direction: UInt32(MER_EVENT_DIR_EGRESS)).packets == UInt64(runs))
    }

    @Test("with events off (no observer on the node) nothing is reported and nothing counted lost; drops are still counted")
    func eventsOff() throws {
        let fixture = try DatapathFixture()
        var config = try #require(fixture.datapath.config.lookup(0))
        config.flags |= UInt16(MER_CONFIG_F_NO_EVENTS)
        try fixture.datapath.config.update(0, config)
        _ = try fixture.events()
        let packet = Packets.tcp(src: "10.1.1.66", dst: "10.1.2.5", sport: 1, dport: 2, flags: .syn)
        _ = try fixture.datapath.fromPod.timedRun(program: BPFNodeDatapath.fromPodProgram, packet: packet, repeat: 30_000)
        #expect(try fixture.events().isEmpty)
        #expect(fixture.datapath.counter(UInt32(MER_METRIC_EVENTS_LOST)).packets == 0)
        #expect(fixture.datapath.counter(UInt32(MER_DROP_INVALID_SIP)).packets == 30_000)
    }

    @Test("a pinned counter map of an older size (before the direction blocks) is replaced on load, not a reason to fail")
    func resizedCounterMap() throws {
        let fixture = try DatapathFixture()
        let path = fixture.datapath.pinDirectory + "/" + MER_MAP_METRICS
        #expect(unlink(path) == 0)
        let old = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, MER_MAP_METRICS, 4, UInt32(MemoryLayout<mer_metric>.size), 256, nil)
        try #require(old >= 0)
        defer { close(old) }
        #expect(bpf_obj_pin(old, path) == 0)
        let reloaded = try BPFNodeDatapath(pinDirectory: fixture.datapath.pinDirectory)
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        #expect(bpf_obj_get_info_by_fd(reloaded.metrics.fd, &info, &length) == 0)
        #expect(info.max_entries == UInt32(MER_METRICS_MAX))
    }
}
