import CLibBPF
import CMeridianBPF
import CoreMetrics
import Glibc
import MeridianDatapath
import Synchronization

/// The node's datapath as metrics, read at scrape time from the maps the agent pinned: packets
/// and bytes forwarded and dropped (by drop reason) from the per-CPU counter map, endpoints on
/// the node, and entries and capacity of each map. It opens the pins itself, so it needs no
/// handle on the agent and reports nothing until the agent has loaded the datapath.
public final class DatapathMetrics: Sendable {
    /// Maps whose fill is reported, by their pinned names.
    public static let reportedMaps = [
        MER_MAP_ENDPOINTS, MER_MAP_IPCACHE, MER_MAP_SERVICES, MER_MAP_BACKENDS, MER_MAP_REVNAT, MER_MAP_CT, MER_MAP_FRAG,
        MER_MAP_POLICY, MER_MAP_SOCK_REVNAT, MER_MAP_IPBLOCK, MER_MAP_ENCRYPT,
    ]

    private struct State {
        var counters: PerCPUArrayMap<mer_metric>?
        var maps: [String: Int32] = [:]
        /// Last totals read per counter index, to advance the Prometheus counters by growth.
        var seen: [UInt32: mer_metric] = [:]
    }

    public let pinDirectory: String
    private let state = Mutex(State())

    public init(pinDirectory: String) {
        self.pinDirectory = pinDirectory
    }

    deinit {
        state.withLock { state in
            if let counters = state.counters { close(counters.fd) }
            state.maps.values.forEach { _ = close($0) }
        }
    }

    public func refresh() {
        state.withLock { state in
            refreshCounters(&state)
            refreshMaps(&state)
        }
    }

    private func refreshCounters(_ state: inout State) {
        if state.counters == nil, let fd = open(MER_MAP_METRICS) {
            state.counters = try? PerCPUArrayMap<mer_metric>(name: MER_MAP_METRICS, fd: fd)
            if state.counters == nil { close(fd) }
            // Every known reason starts as a series at zero in both directions, so a first drop
            // is an increase.
            for direction in ["INGRESS", "EGRESS"] {
                Counter(label: "meridian_forward_count_total", dimensions: [("direction", direction)]).increment(by: 0)
                Counter(label: "meridian_forward_bytes_total", dimensions: [("direction", direction)]).increment(by: 0)
                for reason in DropReason.names.values {
                    let labels = [("direction", direction), ("reason", reason)]
                    Counter(label: "meridian_drop_count_total", dimensions: labels).increment(by: 0)
                    Counter(label: "meridian_drop_bytes_total", dimensions: labels).increment(by: 0)
                }
            }
        }
        guard let counters = state.counters else { return }
        for index in 0..<UInt32(MER_METRICS_MAX) {
            let total = counters.values(at: index).reduce(into: mer_metric()) { sum, value in
                sum.packets &+= value.packets
                sum.bytes &+= value.bytes
            }
            let before = state.seen[index] ?? mer_metric()
            guard total.packets != before.packets || total.bytes != before.bytes else { continue }
            state.seen[index] = total
            // A total below the last one means the map was made anew: count it from zero.
            let packets = total.packets >= before.packets ? total.packets - before.packets : total.packets
            let bytes = total.bytes >= before.bytes ? total.bytes - before.bytes : total.bytes
            let reason = index % UInt32(MER_METRICS_REASONS)
            let direction = Self.directions[index / UInt32(MER_METRICS_REASONS)] ?? "UNKNOWN"
            if reason == UInt32(MER_METRIC_EVENTS_LOST) {
                // Events the ring buffer had no room for: flows never seen, not dropped packets.
                Counter(label: "meridian_flows_lost_total").increment(by: Int64(clamping: packets))
            } else if reason == 0 {
                Counter(label: "meridian_forward_count_total", dimensions: [("direction", direction)]).increment(by: Int64(clamping: packets))
                Counter(label: "meridian_forward_bytes_total", dimensions: [("direction", direction)]).increment(by: Int64(clamping: bytes))
            } else {
                let labels = [("direction", direction), ("reason", DropReason.name(reason))]
                Counter(label: "meridian_drop_count_total", dimensions: labels).increment(by: Int64(clamping: packets))
                Counter(label: "meridian_drop_bytes_total", dimensions: labels).increment(by: Int64(clamping: bytes))
            }
        }
    }

    /// The `direction` label of each block of the counter map, as Cilium names directions.
    static let directions: [UInt32: String] = [
        UInt32(MER_EVENT_DIR_UNKNOWN): "UNKNOWN", UInt32(MER_EVENT_DIR_INGRESS): "INGRESS", UInt32(MER_EVENT_DIR_EGRESS): "EGRESS",
    ]

    private func refreshMaps(_ state: inout State) {
        for name in Self.reportedMaps {
            if state.maps[name] == nil, let fd = open(name) { state.maps[name] = fd }
            guard let fd = state.maps[name], let occupancy = MapOccupancy.read(fd: fd) else { continue }
            let labels = [("map_name", name)]
            Gauge(label: "meridian_bpf_map_entries", dimensions: labels).record(occupancy.entries)
            Gauge(label: "meridian_bpf_map_capacity", dimensions: labels).record(occupancy.capacity)
            Gauge(label: "meridian_bpf_map_pressure", dimensions: labels).record(occupancy.pressure)
            if name == MER_MAP_ENDPOINTS { Gauge(label: "meridian_endpoint_count").record(occupancy.entries) }
        }
    }

    private func open(_ name: String) -> Int32? {
        let fd = bpf_obj_get(pinDirectory + "/" + name)
        return fd >= 0 ? fd : nil
    }
}
