import Foundation

/// What `observe` asks for: every condition given must hold (as `hubble observe`'s flags
/// combine). Pods are written `[NAMESPACE/]NAME-PREFIX`; labels `KEY=VALUE` or `KEY`, matched
/// with or without their source prefix (`k8s:app=web` and `app=web` are the same label).
public struct FlowFilter: Codable, Sendable, Hashable {
    public var fromPod: [String] = []
    public var toPod: [String] = []
    public var pod: [String] = []
    public var namespace: [String] = []
    public var fromCluster: [String] = []
    public var toCluster: [String] = []
    public var label: [String] = []
    public var verdict: [FlowVerdict] = []
    public var `protocol`: [String] = []
    public var port: [UInt16] = []
    public var type: [FlowEventKind] = []

    public init() {}

    /// Bounds on what a request may carry (it arrives from the network).
    public static let maximumValues = 64
    public static let maximumValueLength = 253

    /// Refuses a filter with more or longer values than any real use needs.
    public func validate() throws(FlowRequestError) {
        let lists: [(String, [String])] = [
            ("from-pod", fromPod), ("to-pod", toPod), ("pod", pod), ("namespace", namespace), ("from-cluster", fromCluster),
            ("to-cluster", toCluster), ("label", label), ("protocol", `protocol`),
        ]
        for (name, values) in lists {
            guard values.count <= Self.maximumValues else { throw .tooManyValues(filter: name, count: values.count, limit: Self.maximumValues) }
            if let long = values.first(where: { $0.utf8.count > Self.maximumValueLength }) {
                throw .valueTooLong(filter: name, length: long.utf8.count, limit: Self.maximumValueLength)
            }
        }
        for protocolName in `protocol` where !["tcp", "udp", "sctp", "icmp"].contains(protocolName.lowercased()) {
            throw .unknownProtocol(protocolName)
        }
        guard port.count <= Self.maximumValues else { throw .tooManyValues(filter: "port", count: port.count, limit: Self.maximumValues) }
    }

    public func matches(_ flow: Flow) -> Bool {
        if !fromPod.isEmpty && !fromPod.contains(where: { Self.pod($0, matches: flow.source) }) { return false }
        if !toPod.isEmpty && !toPod.contains(where: { Self.pod($0, matches: flow.destination) }) { return false }
        if !pod.isEmpty && !pod.contains(where: { Self.pod($0, matches: flow.source) || Self.pod($0, matches: flow.destination) }) { return false }
        if !namespace.isEmpty && !namespace.contains(where: { $0 == flow.source.namespace || $0 == flow.destination.namespace }) { return false }
        if !fromCluster.isEmpty && !fromCluster.contains(where: { $0 == flow.source.clusterName }) { return false }
        if !toCluster.isEmpty && !toCluster.contains(where: { $0 == flow.destination.clusterName }) { return false }
        if !label.isEmpty && !label.contains(where: { Self.label($0, in: flow.source) || Self.label($0, in: flow.destination) }) { return false }
        if !verdict.isEmpty && !verdict.contains(flow.verdict) { return false }
        if !`protocol`.isEmpty && !`protocol`.contains(where: { $0.lowercased() == (flow.l4?.protocolName ?? "") }) { return false }
        if !port.isEmpty {
            guard let ports = flow.l4?.ports, port.contains(ports.sourcePort) || port.contains(ports.destinationPort) else { return false }
        }
        if !type.isEmpty && !type.contains(where: { $0.includes(flow) }) { return false }
        return true
    }

    static func pod(_ pattern: String, matches endpoint: FlowEndpoint) -> Bool {
        guard let name = endpoint.podName else { return false }
        if let slash = pattern.firstIndex(of: "/") {
            return endpoint.namespace == String(pattern[..<slash]) && name.hasPrefix(pattern[pattern.index(after: slash)...])
        }
        return name.hasPrefix(pattern)
    }

    static func label(_ pattern: String, in endpoint: FlowEndpoint) -> Bool {
        let wanted = Self.withoutSource(pattern)
        return endpoint.labels.contains { label in
            let plain = Self.withoutSource(label)
            return wanted.contains("=") ? plain == wanted : plain == wanted || plain.hasPrefix(wanted + "=")
        }
    }

    /// `k8s:app=web` → `app=web`; a key without a source stays as it is.
    static func withoutSource(_ label: String) -> String {
        guard let colon = label.firstIndex(of: ":"), !label[..<colon].contains("=") else { return label }
        return String(label[label.index(after: colon)...])
    }
}

/// `--type`: drops, traces of forwarded packets, or policy verdicts (drops decided by policy).
public enum FlowEventKind: String, Codable, Sendable, Hashable, CaseIterable {
    case drop
    case trace
    case policyVerdict = "policy-verdict"

    func includes(_ flow: Flow) -> Bool {
        switch self {
        case .drop: flow.verdict == .dropped
        case .trace: flow.verdict == .forwarded
        case .policyVerdict: flow.policyVerdict != nil
        }
    }
}

/// What the observer is asked: a filter, how much history (`last` flows, or those `since` a
/// time; both given, both hold), and whether to keep the stream open for new flows.
public struct ObserverRequest: Codable, Sendable, Hashable {
    public var filter: FlowFilter
    public var last: Int?
    public var since: Date?
    public var follow: Bool

    public init(filter: FlowFilter = FlowFilter(), last: Int? = nil, since: Date? = nil, follow: Bool = false) {
        self.filter = filter
        self.last = last
        self.since = since
        self.follow = follow
    }

    public func validate() throws(FlowRequestError) {
        try filter.validate()
        if let last, last < 0 { throw .negativeLast(last) }
    }
}

/// Why a flow request was refused; the stream's caller sees the text.
public enum FlowRequestError: Error, Sendable, Hashable, CustomStringConvertible {
    case tooManyValues(filter: String, count: Int, limit: Int)
    case valueTooLong(filter: String, length: Int, limit: Int)
    case unknownProtocol(String)
    case negativeLast(Int)

    public var description: String {
        switch self {
        case let .tooManyValues(filter, count, limit): "--\(filter): \(count) values, at most \(limit)"
        case let .valueTooLong(filter, length, limit): "--\(filter): a value of \(length) bytes, at most \(limit)"
        case let .unknownProtocol(name): "--protocol: \"\(name)\" is not tcp, udp, sctp or icmp"
        case let .negativeLast(value): "--last: \(value) is negative"
        }
    }
}
