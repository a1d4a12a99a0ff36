import Foundation
import MeridianCore

/// The one-line form of a flow `meridian observe` prints, as `hubble observe` does: time,
/// source and destination (cluster/namespace/pod:port, or address:port with the identity's
/// labels), the service when one was translated, the verdict with its reason, the TCP flags,
/// and the node. Names come from peers' records and are escaped for the terminal.
public enum FlowLine {
    public static func render(_ response: ObserverResponse) -> String {
        let time = timestamp(response.time)
        if let lost = response.lostEvents {
            return "\(time): \(lost.numEventsLost) flows lost (\(lost.source)) on \(TerminalSafe.escape(response.nodeName))"
        }
        if let status = response.nodeStatus {
            return "\(time): node \(TerminalSafe.escape(response.nodeName)) unavailable: \(TerminalSafe.escape(status.message))"
        }
        guard let flow = response.flow else { return "\(time): (empty answer)" }
        let ports = flow.l4?.ports
        var line = "\(time): \(endpoint(flow.source, address: flow.ip.source, port: ports?.sourcePort))"
        line += " -> \(endpoint(flow.destination, address: flow.ip.destination, port: ports?.destinationPort))"
        if let service = flow.destinationService {
            line += " via service \(TerminalSafe.escape(service.namespace))/\(TerminalSafe.escape(service.name)) \(service.frontend)"
        }
        if let point = flow.traceObservationPoint { line += " \(point.lowercased().replacingOccurrences(of: "_", with: "-"))" }
        if let verdict = flow.policyVerdict {
            line += " policy-verdict:\(verdict.decision) \(verdict.direction)"
            if !verdict.rules.isEmpty { line += " by " + verdict.rules.map { TerminalSafe.escape($0) }.joined(separator: ", ") }
        }
        line += " \(flow.verdict.rawValue)"
        if let reason = flow.dropReasonDesc { line += " (\(reason))" }
        if let l4 = flow.l4 {
            if let flags = l4.tcp?.flags, !flags.names.isEmpty {
                line += " (TCP Flags: \(flags.names.joined(separator: ", ")))"
            } else {
                line += " (\(l4.protocolName.uppercased()))"
            }
        }
        line += " [\(TerminalSafe.escape(flow.nodeName))]"
        return line
    }

    static func endpoint(_ endpoint: FlowEndpoint, address: String, port: UInt16?) -> String {
        let suffix = port.map { $0 == 0 ? "" : ":\($0)" } ?? ""
        if let pod = endpoint.podName {
            let parts = [endpoint.clusterName, endpoint.namespace, pod].compactMap { $0 }.map { TerminalSafe.escape($0) }
            return parts.joined(separator: "/") + suffix + " (ID:\(endpoint.identity))"
        }
        let labels = endpoint.labels.isEmpty ? "" : " " + endpoint.labels.map { TerminalSafe.escape($0) }.joined(separator: ",")
        return address + suffix + " (ID:\(endpoint.identity)\(labels))"
    }

    /// `Dec  7 12:10:26.684`, in UTC, as Hubble prints times.
    static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.month, .day, .hour, .minute, .second, .nanosecond], from: date)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let month = months[((parts.month ?? 1) - 1) % 12]
        let milliseconds = (parts.nanosecond ?? 0) / 1_000_000
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "\(month) \(String(format: "%2d", parts.day ?? 0)) \(two(parts.hour)):\(two(parts.minute)):\(two(parts.second)).\(String(format: "%03d", milliseconds))"
    }
}
