import Foundation

/// One observed packet of a connection, as `meridian observe` prints it and `-o json` writes it:
/// the shape of Hubble's flow (`hubble observe -o json`), so scripts written for one read the
/// other with few changes. Documented field by field in docs/flows.md.
public struct Flow: Codable, Sendable, Hashable {
    public var time: Date
    public var verdict: FlowVerdict
    /// Cilium's drop reason number, on DROPPED flows.
    public var dropReason: UInt32?
    /// Its name (`POLICY_DENIED`, ...), on DROPPED flows.
    public var dropReasonDesc: String?
    public var ip: FlowIP
    public var l4: FlowL4?
    public var source: FlowEndpoint
    public var destination: FlowEndpoint
    public var type: String
    public var nodeName: String
    public var eventType: FlowEventType
    /// Where a forwarded packet went next: TO_ENDPOINT, TO_OVERLAY, TO_STACK, FROM_OVERLAY, ...
    public var traceObservationPoint: String?
    /// EGRESS for what a pod sent (seen leaving it), INGRESS for what reached a pod.
    public var trafficDirection: String
    /// Set when the destination was reached through a service: the service, and the frontend
    /// the client asked for (the destination is then the chosen backend).
    public var destinationService: FlowService?
    /// The policy decision of a drop by policy, and the rule that decided when it is known.
    public var policyVerdict: FlowPolicyVerdict?
    /// One line for people, as Hubble's `Summary`.
    public var summary: String

    enum CodingKeys: String, CodingKey {
        case time, verdict, source, destination, summary
        case dropReason = "drop_reason"
        case dropReasonDesc = "drop_reason_desc"
        case ip = "IP"
        case l4
        case type = "Type"
        case nodeName = "node_name"
        case eventType = "event_type"
        case traceObservationPoint = "trace_observation_point"
        case trafficDirection = "traffic_direction"
        case destinationService = "destination_service"
        case policyVerdict = "policy_verdict"
    }

    public init(time: Date, verdict: FlowVerdict, dropReason: UInt32? = nil, dropReasonDesc: String? = nil, ip: FlowIP, l4: FlowL4?,
                source: FlowEndpoint, destination: FlowEndpoint, nodeName: String, eventType: FlowEventType,
                traceObservationPoint: String? = nil, trafficDirection: String, destinationService: FlowService? = nil,
                policyVerdict: FlowPolicyVerdict? = nil) {
        self.time = time
        self.verdict = verdict
        self.dropReason = dropReason
        self.dropReasonDesc = dropReasonDesc
        self.ip = ip
        self.l4 = l4
        self.source = source
        self.destination = destination
        self.type = "L3_L4"
        self.nodeName = nodeName
        self.eventType = eventType
        self.traceObservationPoint = traceObservationPoint
        self.trafficDirection = trafficDirection
        self.destinationService = destinationService
        self.policyVerdict = policyVerdict
        self.summary = ""
        self.summary = Self.summarize(self)
    }

    static func summarize(_ flow: Flow) -> String {
        var text = flow.l4?.summary ?? "IPv4"
        if let reason = flow.dropReasonDesc { text += " (\(reason))" }
        return text
    }
}

/// What happened to the packet.
public enum FlowVerdict: String, Codable, Sendable, Hashable, CaseIterable {
    case forwarded = "FORWARDED"
    case dropped = "DROPPED"
}

/// The packet's addresses.
public struct FlowIP: Codable, Sendable, Hashable {
    public var source: String
    public var destination: String
    public var ipVersion: String = "IPv4"

    public init(source: String, destination: String) {
        self.source = source
        self.destination = destination
    }
}

/// Transport header fields, one key per protocol as Hubble writes them.
public struct FlowL4: Codable, Sendable, Hashable {
    /// Ports of a TCP, UDP or SCTP packet, and TCP's flags.
    public struct Ports: Codable, Sendable, Hashable {
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var flags: TCPFlags?

        enum CodingKeys: String, CodingKey {
            case sourcePort = "source_port"
            case destinationPort = "destination_port"
            case flags
        }

        public init(sourcePort: UInt16, destinationPort: UInt16, flags: TCPFlags? = nil) {
            self.sourcePort = sourcePort
            self.destinationPort = destinationPort
            self.flags = flags
        }
    }

    /// The ICMP type of an ICMPv4 packet.
    public struct ICMP: Codable, Sendable, Hashable {
        public var type: UInt8

        public init(type: UInt8) { self.type = type }
    }

    public var tcp: Ports?
    public var udp: Ports?
    public var sctp: Ports?
    public var icmpv4: ICMP?

    enum CodingKeys: String, CodingKey {
        case tcp = "TCP"
        case udp = "UDP"
        case sctp = "SCTP"
        case icmpv4 = "ICMPv4"
    }

    public init(tcp: Ports? = nil, udp: Ports? = nil, sctp: Ports? = nil, icmpv4: ICMP? = nil) {
        self.tcp = tcp
        self.udp = udp
        self.sctp = sctp
        self.icmpv4 = icmpv4
    }

    /// The protocol's name as `--protocol` takes it.
    public var protocolName: String {
        if tcp != nil { return "tcp" }
        if udp != nil { return "udp" }
        if sctp != nil { return "sctp" }
        return "icmp"
    }

    public var ports: Ports? { tcp ?? udp ?? sctp }

    var summary: String {
        if let tcp { return "TCP Flags: " + (tcp.flags?.names.joined(separator: ", ") ?? "") }
        if udp != nil { return "UDP" }
        if sctp != nil { return "SCTP" }
        if let icmpv4 { return "ICMPv4 type \(icmpv4.type)" }
        return "IPv4"
    }
}

/// TCP header flags of the packet, present keys only.
public struct TCPFlags: Codable, Sendable, Hashable {
    public var fin: Bool?
    public var syn: Bool?
    public var rst: Bool?
    public var psh: Bool?
    public var ack: Bool?

    enum CodingKeys: String, CodingKey {
        case fin = "FIN"
        case syn = "SYN"
        case rst = "RST"
        case psh = "PSH"
        case ack = "ACK"
    }

    /// From the header's flag byte.
    public init(bits: UInt8) {
        func flag(_ bit: UInt8) -> Bool? { bits & bit != 0 ? true : nil }
        fin = flag(0x01)
        syn = flag(0x02)
        rst = flag(0x04)
        psh = flag(0x08)
        ack = flag(0x10)
    }

    public var names: [String] {
        [(syn, "SYN"), (ack, "ACK"), (psh, "PSH"), (fin, "FIN"), (rst, "RST")].compactMap { $0.0 == true ? $0.1 : nil }
    }
}

/// One side of a flow: a pod (its cluster, namespace and name), or an address with only its
/// identity and the identity's labels (`reserved:world`, `reserved:host`, a CIDR identity).
public struct FlowEndpoint: Codable, Sendable, Hashable {
    public var identity: UInt32
    public var clusterName: String?
    public var namespace: String?
    public var podName: String?
    public var labels: [String]

    enum CodingKeys: String, CodingKey {
        case identity, namespace, labels
        case clusterName = "cluster_name"
        case podName = "pod_name"
    }

    public init(identity: UInt32, clusterName: String? = nil, namespace: String? = nil, podName: String? = nil, labels: [String] = []) {
        self.identity = identity
        self.clusterName = clusterName
        self.namespace = namespace
        self.podName = podName
        self.labels = labels
    }
}

/// Hubble's `event_type`: the datapath's event type and its subtype (trace point or drop reason).
public struct FlowEventType: Codable, Sendable, Hashable {
    public var type: UInt8
    public var subType: UInt8

    enum CodingKeys: String, CodingKey {
        case type
        case subType = "sub_type"
    }

    public init(type: UInt8, subType: UInt8) {
        self.type = type
        self.subType = subType
    }
}

/// The service a translated flow went through.
public struct FlowService: Codable, Sendable, Hashable {
    public var name: String
    public var namespace: String
    /// `ADDRESS:PORT` the client connected to.
    public var frontend: String

    public init(name: String, namespace: String, frontend: String) {
        self.name = name
        self.namespace = namespace
        self.frontend = frontend
    }
}

/// The policy decision behind a drop by policy.
public struct FlowPolicyVerdict: Codable, Sendable, Hashable {
    /// `EGRESS` (the sender's policy) or `INGRESS` (the receiver's).
    public var direction: String
    /// `DENIED` when nothing allowed the connection, `DENIED_BY_RULE` when a deny rule matched.
    public var decision: String
    /// The rules that decided, as `policy trace` names them (`NetworkPolicy default/web
    /// spec.ingress[0]`): the deny rules that matched, or the rules that put the pod in default
    /// deny. Empty when the node's policy snapshot could not tell (it changed meanwhile).
    public var rules: [String]

    public init(direction: String, decision: String, rules: [String] = []) {
        self.direction = direction
        self.decision = decision
        self.rules = rules
    }
}

/// One answer of the flow stream, as Hubble's GetFlowsResponse: a flow, or a count of events
/// lost (the kernel's ring buffer had no room, or a reader fell behind), or a node that could
/// not be read. `node_name` and `time` say where and when.
public struct ObserverResponse: Codable, Sendable, Hashable {
    public var flow: Flow?
    public var lostEvents: LostEvents?
    public var nodeStatus: NodeStatus?
    public var nodeName: String
    public var time: Date

    enum CodingKeys: String, CodingKey {
        case flow, time
        case lostEvents = "lost_events"
        case nodeStatus = "node_status"
        case nodeName = "node_name"
    }

    public init(flow: Flow) {
        self.flow = flow
        self.nodeName = flow.nodeName
        self.time = flow.time
    }

    public init(lostEvents: LostEvents, nodeName: String, time: Date) {
        self.lostEvents = lostEvents
        self.nodeName = nodeName
        self.time = time
    }

    public init(nodeStatus: NodeStatus, nodeName: String, time: Date) {
        self.nodeStatus = nodeStatus
        self.nodeName = nodeName
        self.time = time
    }
}

/// Events that never became flows, and where they were lost.
public struct LostEvents: Codable, Sendable, Hashable {
    /// `PERF_EVENT_RING_BUFFER` (the kernel's ring was full) or `OBSERVER_EVENTS_QUEUE` (a
    /// reader of this stream fell behind).
    public var source: String
    public var numEventsLost: UInt64

    enum CodingKeys: String, CodingKey {
        case source
        case numEventsLost = "num_events_lost"
    }

    public init(source: String, numEventsLost: UInt64) {
        self.source = source
        self.numEventsLost = numEventsLost
    }

    public static let ringBuffer = "PERF_EVENT_RING_BUFFER"
    public static let readerQueue = "OBSERVER_EVENTS_QUEUE"
}

/// A node the relay could not read flows from.
public struct NodeStatus: Codable, Sendable, Hashable {
    public var state: String
    public var message: String

    public init(state: String, message: String) {
        self.state = state
        self.message = message
    }

    public static let unavailable = "NODE_UNAVAILABLE"
}
