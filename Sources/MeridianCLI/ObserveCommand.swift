import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianFlows
import Synchronization

/// `meridian observe`: the flows of a cluster (or of every cluster in the config), read from
/// each cluster's flow relay, as `hubble observe` prints them.
struct ObserveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "observe",
        abstract: "Show flows: forwarded and dropped packets, with pods, services, verdicts and drop reasons.",
        discussion: """
            Flows come from every node of the context's cluster through its flow relay (the context's \
            flows-endpoint). With --all-clusters, from every cluster of the config file (of the same lab \
            when the context is a lab's). Without --last or --since, the last 20 flows (then new ones with --follow).
            """)

    @OptionGroup var contextOptions: ContextOptions
    @Flag(help: "Read every cluster of the config file, not only the context's.") var allClusters = false
    @Flag(name: [.short, .long], help: "Keep printing new flows until interrupted.") var follow = false
    @Option(help: "The last N flows (per request, after filtering).") var last: Int?
    @Option(help: "Flows since a time: a duration ago (30s, 5m, 2h) or an RFC 3339 time.") var since: String?
    @Option(parsing: .singleValue, help: "Flows from pods [NAMESPACE/]NAME-PREFIX.") var fromPod: [String] = []
    @Option(parsing: .singleValue, help: "Flows to pods [NAMESPACE/]NAME-PREFIX.") var toPod: [String] = []
    @Option(parsing: .singleValue, help: "Flows from or to pods [NAMESPACE/]NAME-PREFIX.") var pod: [String] = []
    @Option(parsing: .singleValue, help: "Flows from or to pods of a namespace.") var namespace: [String] = []
    @Option(parsing: .singleValue, help: "Flows from a cluster's endpoints.") var fromCluster: [String] = []
    @Option(parsing: .singleValue, help: "Flows to a cluster's endpoints.") var toCluster: [String] = []
    @Option(parsing: .singleValue, help: "Flows from or to endpoints with a label KEY[=VALUE].") var label: [String] = []
    @Option(parsing: .singleValue, help: "FORWARDED or DROPPED.") var verdict: [String] = []
    @Option(parsing: .singleValue, help: "tcp, udp, sctp or icmp.") var `protocol`: [String] = []
    @Option(parsing: .singleValue, help: "Flows from or to a port.") var port: [UInt16] = []
    @Option(parsing: .singleValue, help: "drop, trace or policy-verdict.") var type: [String] = []
    @Option(name: [.short, .customLong("output")], help: "text (one line per flow) or json (one object per line).") var output: OutputFormat = .text

    func validate() throws {
        _ = try request()
        guard output != .wide else { throw ValidationError("-o: text or json") }
    }

    func request() throws -> ObserverRequest {
        var filter = FlowFilter()
        filter.fromPod = fromPod
        filter.toPod = toPod
        filter.pod = pod
        filter.namespace = namespace
        filter.fromCluster = fromCluster
        filter.toCluster = toCluster
        filter.label = label
        filter.verdict = try verdict.map { text in
            guard let value = FlowVerdict(rawValue: text.uppercased()) else { throw ValidationError("--verdict: \"\(text)\" is not FORWARDED or DROPPED") }
            return value
        }
        filter.protocol = `protocol`.map { $0.lowercased() }
        filter.port = port
        filter.type = try type.map { text in
            guard let value = FlowEventKind(rawValue: text.lowercased()) else {
                throw ValidationError("--type: \"\(text)\" is not drop, trace or policy-verdict")
            }
            return value
        }
        var request = ObserverRequest(filter: filter, last: last, since: try since.map(Self.parseSince), follow: follow)
        if request.last == nil, request.since == nil { request.last = Self.defaultLast }
        do { try request.validate() } catch { throw ValidationError(error.description) }
        return request
    }

    static let defaultLast = 20

    static func parseSince(_ text: String) throws -> Date {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let unit = text.last, let scale = units[unit], let amount = Double(text.dropLast()), amount >= 0 {
            return Date().addingTimeInterval(-amount * scale)
        }
        if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
        throw ValidationError("--since: \"\(text)\" is neither a duration (30s, 5m, 2h) nor an RFC 3339 time")
    }

    func run() async throws {
        try await reportingErrors {
            let sources = try FlowSources.resolve(context: contextOptions.context, allClusters: allClusters)
            let request = try request()
            let sink = ObserveSink(json: output == .json)
            if sources.count > 1 && !follow {
                // History from several clusters is merged in time order before it is printed.
                let (answers, failures) = await FlowSources.history(sources, request)
                for answer in answers { try sink.show(answer) }
                failures.forEach(sink.fail)
            } else {
                // One cluster's history, and followed flows, are printed as they come.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for source in sources {
                        group.addTask {
                            do {
                                try await ObserverClient.getFlows(from: source.address, tls: source.tls, request: request) { try sink.show($0) }
                            } catch {
                                sink.fail("context \(source.context) (\(source.address)): \(error)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let failed = sink.failures
            if !failed.isEmpty { throw ObserveError.unreadable(failed) }
        }
    }
}

/// The flow relays a command reads: the context's cluster's, and with `allClusters` every other
/// cluster's in the config file (of the same lab when the context is a lab's), one per cluster.
struct FlowSources: Sendable {
    var context: String
    var address: ObserverAddress
    var tls: ObserverTLS

    static func resolve(context name: String?, allClusters: Bool) throws -> [FlowSources] {
        let config = try MeridianConfig.load()
        let chosen = try config.context(name)
        var contexts = [chosen]
        if allClusters {
            for other in config.contexts where other.cluster != chosen.cluster && other.flowsEndpoint != nil
                && (chosen.lab == nil || other.lab == chosen.lab) && !contexts.contains(where: { $0.cluster == other.cluster }) {
                contexts.append(other)
            }
        }
        return try contexts.map { context in
            guard let endpoint = context.flowsEndpoint else { throw ObserveError.noFlowsEndpoint(context: context.name) }
            return FlowSources(context: context.name, address: try ObserverAddress(parsing: endpoint),
                               tls: try ObserverTLS(caPath: context.certificateAuthority, certificatePath: context.clientCertificate,
                                                    keyPath: context.clientKey))
        }
    }

    /// The history `request` asks for from every source, merged in time order (nodes that could
    /// not be read first), and the sources that could not be read at all.
    static func history(_ sources: [FlowSources], _ request: ObserverRequest) async -> (answers: [ObserverResponse], failures: [String]) {
        let sink = ObserveSink(json: true)
        await withTaskGroup(of: Void.self) { group in
            for source in sources {
                group.addTask {
                    do {
                        try await ObserverClient.getFlows(from: source.address, tls: source.tls, request: request, timeout: .seconds(10)) { sink.keep($0) }
                    } catch {
                        sink.fail("context \(source.context) (\(source.address)): \(error)")
                    }
                }
            }
        }
        let kept = sink.kept
        let statuses = kept.filter { $0.nodeStatus != nil }
        return (statuses + FlowBuffer.select(kept.filter { $0.nodeStatus == nil }.sorted { $0.time < $1.time }, request), sink.failures)
    }
}

/// Where `observe` prints answers, keeps them for merging, and notes the clusters it could not read.
final class ObserveSink: Sendable {
    private struct State {
        var kept: [ObserverResponse] = []
        var failures: [String] = []
    }

    let json: Bool
    private let state = Mutex(State())

    init(json: Bool) { self.json = json }

    var kept: [ObserverResponse] { state.withLock { $0.kept } }
    var failures: [String] { state.withLock { $0.failures } }

    func keep(_ response: ObserverResponse) { state.withLock { $0.kept.append(response) } }
    func fail(_ message: String) { state.withLock { $0.failures.append(message) } }

    func show(_ response: ObserverResponse) throws {
        let line = json ? String(decoding: try FlowJSON.encoder().encode(response), as: UTF8.self) : FlowLine.render(response)
        // One line at a time, whichever cluster's answer it is.
        state.withLock { _ in
            if response.nodeStatus != nil && !json {
                FileHandle.standardError.write(Data("Warning: \(line)\n".utf8))
            } else {
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
        }
    }
}

/// Why `observe` could not read a cluster's flows.
enum ObserveError: Error, CustomStringConvertible {
    case noFlowsEndpoint(context: String)
    case unreadable([String])

    var description: String {
        switch self {
        case let .noFlowsEndpoint(context):
            "context \(context) has no flows-endpoint: set it to the cluster's flow relay (control-plane --observer-listen)"
        case let .unreadable(failures):
            "flows could not be read from " + failures.joined(separator: "; ")
        }
    }
}
