import CMeridianBPF
import CoreMetrics
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianFlows
import MeridianStore
import Synchronization

/// What the agent knows to put names on a flow's addresses and numbers: pods by address (local
/// and imported, with their cluster), identities' labels, and the services behind reverse-NAT
/// indices. Rebuilt by the datapath reconciler from the records it already reads.
struct FlowNames: Sendable {
    struct Pod: Sendable, Hashable {
        var cluster: String
        var namespace: String
        var name: String
    }

    var pods: [IPAddress: Pod] = [:]
    var identities: [UInt32: LabelSet] = [:]
    var services: [UInt16: FlowService] = [:]
    /// The node's policy rules and identities' named ports, to name the rules behind a drop by
    /// policy as `policy trace` would.
    var rules: [PolicyRule] = []
    var namedPorts: [UInt32: [NamedPort]] = [:]
    /// Which rebuild this is: explanations worked out under another one are stale.
    var generation = 0

    /// The rules that decided the `direction` verdict of a connection from `source` to
    /// `destination`, as `policy trace` names them.
    func decidingRules(_ direction: TrafficDirection, from source: (identity: UInt32, ip: IPAddress),
                       to destination: (identity: UInt32, ip: IPAddress), port: UInt16, protocol transport: TransportProtocol) -> [String] {
        func endpoint(_ side: (identity: UInt32, ip: IPAddress)) -> PolicyEndpoint {
            PolicyEndpoint(identity: side.identity, labels: identities[side.identity] ?? LabelSet(), ip: side.ip,
                           namedPorts: namedPorts[side.identity] ?? [])
        }
        let verdict = PolicyVerdict.explain(from: endpoint(source), to: endpoint(destination), port: port, protocol: transport, rules: rules)
        let decided = direction == .egress ? verdict.egress : verdict.ingress
        return decided.allowed ? [] : decided.decidingRules.map(\.description)
    }

    /// From the reconciler's results: the pods that hold ipcache entries, the policy snapshot's
    /// identities, and the programmed reverse-NAT targets matched to services by ClusterIP.
    static func build(pods: [IPAddress: Pod], identities: [UInt32: LabelSet], reverseNAT: [UInt16: (address: IPAddress, port: UInt16)],
                      serviceIPs: [String: IPAddress], rules: [PolicyRule] = [], namedPorts: [UInt32: [NamedPort]] = [:]) -> FlowNames {
        var names = FlowNames()
        names.pods = pods
        names.identities = identities
        names.rules = rules
        names.namedPorts = namedPorts
        var byAddress: [IPAddress: (name: String, namespace: String)] = [:]
        for (qualified, address) in serviceIPs {
            guard let dot = qualified.lastIndex(of: ".") else { continue }
            byAddress[address] = (String(qualified[..<dot]), String(qualified[qualified.index(after: dot)...]))
        }
        for (index, target) in reverseNAT {
            guard let service = byAddress[target.address] else { continue }
            names.services[index] = FlowService(name: service.name, namespace: service.namespace, frontend: "\(target.address):\(target.port)")
        }
        return names
    }
}

/// Turns the datapath's events into flows. Pure apart from its memory of recent socket
/// translations: a connect() to a service is reported once, when the socket program picks the
/// backend; the connection's packets then carry only the backend, and the first of them is named
/// with the service the translation went to.
struct FlowTranslator: Sendable {
    var nodeName: String
    /// Boot time in wall-clock terms: event times are `CLOCK_MONOTONIC` nanoseconds.
    var monotonicOrigin: Date

    private var translations: [TranslationKey: (service: UInt16, at: UInt64)] = [:]
    /// Deciding rules already worked out, per verdict asked; a flood of denied packets costs
    /// one evaluation per distinct connection shape, not one per packet.
    private var explained: [VerdictKey: [String]] = [:]
    private var explainedFor: Int = 0

    private struct VerdictKey: Hashable {
        var egress: Bool
        var source: UInt32
        var destination: UInt32
        var sourceAddress: UInt32
        var destinationAddress: UInt32
        var port: UInt16
        var proto: UInt8
    }

    static let maximumExplained = 4096

    private struct TranslationKey: Hashable {
        var address: UInt32
        var port: UInt16
        var proto: UInt8
    }

    /// How long a socket translation waits for its connection's first packet.
    static let translationWindowNanoseconds: UInt64 = 2_000_000_000
    static let maximumTranslations = 4096

    init(nodeName: String, monotonicOrigin: Date = FlowTranslator.currentMonotonicOrigin()) {
        self.nodeName = nodeName
        self.monotonicOrigin = monotonicOrigin
    }

    static func currentMonotonicOrigin() -> Date {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Date().addingTimeInterval(-(Double(now.tv_sec) + Double(now.tv_nsec) / 1e9))
    }

    /// The flow an event stands for, or nil for events that only inform later flows.
    mutating func flow(of event: mer_event, names: FlowNames) -> Flow? {
        let key = TranslationKey(address: event.daddr, port: event.dport, proto: event.proto)
        if event.type == UInt8(MER_EVENT_SOCK_TRANSLATE) {
            if translations.count >= Self.maximumTranslations {
                translations = translations.filter { event.timestamp_ns &- $0.value.at < Self.translationWindowNanoseconds }
                if translations.count >= Self.maximumTranslations { translations.removeAll(keepingCapacity: true) }
            }
            translations[key] = (event.rev_nat_index, event.timestamp_ns)
            return nil
        }
        let isDrop = event.type == UInt8(MER_EVENT_DROP)
        guard isDrop || event.type == UInt8(MER_EVENT_TRACE) else { return nil }
        let source = IPAddress(datapathValue: event.saddr)
        let destination = IPAddress(datapathValue: event.daddr)
        var serviceIndex = event.rev_nat_index
        if serviceIndex == 0, event.ct_state == UInt8(MER_CT_NEW), event.direction == UInt8(MER_EVENT_DIR_EGRESS),
           let translation = translations.removeValue(forKey: key),
           event.timestamp_ns &- translation.at < Self.translationWindowNanoseconds {
            serviceIndex = translation.service
        }
        let reason = UInt32(event.subtype)
        let policyDrop = isDrop && (reason == UInt32(MER_DROP_POLICY) || reason == UInt32(MER_DROP_POLICY_DENY))
        let direction = event.direction == UInt8(MER_EVENT_DIR_EGRESS) ? "EGRESS"
            : event.direction == UInt8(MER_EVENT_DIR_INGRESS) ? "INGRESS" : "TRAFFIC_DIRECTION_UNKNOWN"
        return Flow(
            time: monotonicOrigin.addingTimeInterval(Double(event.timestamp_ns) / 1e9),
            verdict: isDrop ? .dropped : .forwarded,
            dropReason: isDrop ? reason : nil,
            dropReasonDesc: isDrop ? DropReason.name(reason) : nil,
            ip: FlowIP(source: source.description, destination: destination.description),
            l4: Self.l4(event),
            source: endpoint(source, identity: event.src_identity, names: names),
            destination: endpoint(destination, identity: event.dst_identity, names: names),
            nodeName: nodeName,
            eventType: FlowEventType(type: event.type, subType: event.subtype),
            traceObservationPoint: isDrop ? nil : Self.observationPoint(event.subtype),
            trafficDirection: direction,
            destinationService: serviceIndex == 0 ? nil : names.services[serviceIndex],
            policyVerdict: policyDrop
                ? FlowPolicyVerdict(direction: direction, decision: reason == UInt32(MER_DROP_POLICY_DENY) ? "DENIED_BY_RULE" : "DENIED",
                                    rules: decidingRules(event, names: names))
                : nil)
    }

    /// The rules behind a drop by policy, remembered per connection shape while the names stay.
    private mutating func decidingRules(_ event: mer_event, names: FlowNames) -> [String] {
        guard let transport: TransportProtocol = switch event.proto {
            case 6: .tcp
            case 17: .udp
            case 132: .sctp
            default: nil
        } else { return [] }
        let egress = event.direction == UInt8(MER_EVENT_DIR_EGRESS)
        let key = VerdictKey(egress: egress, source: event.src_identity, destination: event.dst_identity, sourceAddress: event.saddr,
                             destinationAddress: event.daddr, port: event.dport, proto: event.proto)
        if names.generation != explainedFor || explained.count >= Self.maximumExplained {
            explained.removeAll(keepingCapacity: true)
            explainedFor = names.generation
        }
        if let known = explained[key] { return known }
        let rules = names.decidingRules(egress ? .egress : .ingress,
                                        from: (event.src_identity, IPAddress(datapathValue: event.saddr)),
                                        to: (event.dst_identity, IPAddress(datapathValue: event.daddr)),
                                        port: UInt16(bigEndian: event.dport), protocol: transport)
        explained[key] = rules
        return rules
    }

    private func endpoint(_ address: IPAddress, identity: UInt32, names: FlowNames) -> FlowEndpoint {
        let labels = names.identities[identity]?.labels.map(\.description).sorted() ?? []
        if let pod = names.pods[address] {
            return FlowEndpoint(identity: identity, clusterName: pod.cluster, namespace: pod.namespace, podName: pod.name, labels: labels)
        }
        var cluster: String?
        if let set = names.identities[identity] { cluster = set.clusterName }
        return FlowEndpoint(identity: identity, clusterName: cluster, labels: labels.isEmpty ? Self.reservedLabels(identity) : labels)
    }

    static func reservedLabels(_ identity: UInt32) -> [String] {
        switch identity {
        case ReservedIdentity.host.rawValue: ["reserved:host"]
        case ReservedIdentity.world.rawValue: ["reserved:world"]
        case ReservedIdentity.remoteNode.rawValue: ["reserved:remote-node"]
        default: []
        }
    }

    static func l4(_ event: mer_event) -> FlowL4? {
        let ports = FlowL4.Ports(sourcePort: UInt16(bigEndian: event.sport), destinationPort: UInt16(bigEndian: event.dport))
        switch event.proto {
        case 6:
            var tcp = ports
            tcp.flags = TCPFlags(bits: event.tcp_flags)
            return FlowL4(tcp: tcp)
        case 17: return FlowL4(udp: ports)
        case 132: return FlowL4(sctp: ports)
        case 1: return FlowL4(icmpv4: .init(type: event.tcp_flags))
        default: return nil
        }
    }

    static func observationPoint(_ point: UInt8) -> String {
        switch Int32(point) {
        case Int32(MER_TRACE_TO_POD): "TO_ENDPOINT"
        case Int32(MER_TRACE_TO_STACK): "TO_STACK"
        case Int32(MER_TRACE_TO_OVERLAY): "TO_OVERLAY"
        case Int32(MER_TRACE_FROM_POD): "FROM_ENDPOINT"
        case Int32(MER_TRACE_FROM_OVERLAY): "FROM_OVERLAY"
        default: "UNKNOWN_POINT_\(point)"
        }
    }
}

/// The labels of one `meridian_policy_verdict_total` series.
struct PolicyVerdictLabels: Hashable, Sendable {
    var direction: String
    var action: String
}

/// Reads the node's event ring without loss at normal rates and keeps the flows: polls the ring
/// every `interval` (the ring holds about 18,000 events, so it overflows only above several
/// hundred thousand events per second), names each event, and stores it in the node's flow
/// buffer; the kernel's count of events it had no room for is read on every poll and recorded
/// as a loss in the buffer.
final class FlowObserver: Sendable {
    let buffer: FlowBuffer
    private let names = Mutex(FlowNames())
    /// Clusters whose identity count was reported, so one that goes is reported at zero.
    private let reportedClusters = Mutex(Set<String>())
    static let interval: Duration = .milliseconds(50)

    init(buffer: FlowBuffer) {
        self.buffer = buffer
    }

    func update(_ names: FlowNames) {
        self.names.withLock { current in
            var next = names
            next.generation = current.generation + 1
            current = next
        }
        var perCluster: [String: Int] = [:]
        for labels in names.identities.values {
            if let cluster = labels.clusterName { perCluster[cluster, default: 0] += 1 }
        }
        let gone = reportedClusters.withLock { reported in
            defer { reported = Set(perCluster.keys) }
            return reported.subtracting(perCluster.keys)
        }
        for cluster in gone { Gauge(label: "meridian_identity_count", dimensions: [("source_cluster", cluster)]).record(0) }
        for (cluster, count) in perCluster { Gauge(label: "meridian_identity_count", dimensions: [("source_cluster", cluster)]).record(count) }
    }

    /// A policy decision an event stands for, as `meridian_policy_verdict_total` counts it: a
    /// connection's first packet passing a pod's egress (from-pod) or ingress (to-pod,
    /// from-overlay) is an allowed verdict of that pod's policy; a drop by policy a denied one.
    static func verdict(of event: mer_event) -> PolicyVerdictLabels? {
        let direction: String
        switch Int32(event.direction) {
        case Int32(MER_EVENT_DIR_EGRESS): direction = "EGRESS"
        case Int32(MER_EVENT_DIR_INGRESS): direction = "INGRESS"
        default: return nil
        }
        if event.type == UInt8(MER_EVENT_DROP) {
            let reason = Int32(event.subtype)
            return reason == Int32(MER_DROP_POLICY) || reason == Int32(MER_DROP_POLICY_DENY) ? PolicyVerdictLabels(direction: direction, action: "denied") : nil
        }
        guard event.type == UInt8(MER_EVENT_TRACE), event.ct_state == UInt8(MER_CT_NEW) else { return nil }
        // A packet handed to the node's stack went to the node itself, which no pod policy judges.
        return Int32(event.subtype) == Int32(MER_TRACE_TO_STACK) ? nil : PolicyVerdictLabels(direction: direction, action: "allowed")
    }

    func run(reader: EventReader, lostEvents: @escaping @Sendable () -> UInt64, translator initial: FlowTranslator) async throws {
        var translator = initial
        var lostSoFar = lostEvents()
        // Losses are counted from the kernel's counter by the datapath metrics.
        let seen = Counter(label: "meridian_flows_seen_total")
        while true {
            let events = reader.drain()
            if !events.isEmpty {
                let current = names.withLock { $0 }
                let flows = events.compactMap { translator.flow(of: $0, names: current) }
                buffer.append(flows)
                seen.increment(by: Int64(flows.count))
                var verdicts: [PolicyVerdictLabels: Int64] = [:]
                for event in events {
                    if let verdict = Self.verdict(of: event) { verdicts[verdict, default: 0] += 1 }
                }
                for (labels, count) in verdicts {
                    Counter(label: "meridian_policy_verdict_total", dimensions: [("direction", labels.direction), ("action", labels.action)])
                        .increment(by: count)
                }
            }
            let lostNow = lostEvents()
            if lostNow > lostSoFar {
                buffer.recordLoss(lostNow - lostSoFar)
            }
            lostSoFar = max(lostSoFar, lostNow)
            try await Task.sleep(for: Self.interval)
        }
    }
}
