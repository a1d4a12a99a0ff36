import Foundation
import Synchronization

/// The cluster's one flow endpoint (the part Hubble Relay plays): asks every node's observer
/// for the same flows and hands them on as one stream. History from all nodes is merged in
/// time order and cut to the request's `last`; followed flows are passed on as they arrive. A
/// node that cannot be read is reported in the stream (`node_status`), not hidden.
public struct FlowRelay: FlowSource {
    /// A node's observer.
    public struct Node: Sendable, Hashable {
        public var name: String
        public var address: ObserverAddress

        public init(name: String, address: ObserverAddress) {
            self.name = name
            self.address = address
        }
    }

    public let nodes: @Sendable () async throws -> [Node]
    public let tls: ObserverTLS
    /// How long one node may take to answer a request for history.
    public var historyTimeout: Duration = .seconds(5)

    public init(tls: ObserverTLS, nodes: @escaping @Sendable () async throws -> [Node]) {
        self.tls = tls
        self.nodes = nodes
    }

    public func flows(_ request: ObserverRequest, emit: @escaping @Sendable (ObserverResponse) async throws -> Void) async throws {
        let nodes = try await nodes()
        let asked = Date()
        let history = ObserverRequest(filter: request.filter, last: request.last, since: request.since, follow: false)
        let answers = try await withThrowingTaskGroup(of: (String, [ObserverResponse]).self) { group in
            for node in nodes {
                group.addTask { (node.name, await read(node, history)) }
            }
            return try await group.reduce(into: [String: [ObserverResponse]]()) { $0[$1.0, default: []] += $1.1 }
        }
        let collected = answers.values.flatMap { $0 }
        // Nodes that could not be read are told first, whatever the cut of the history.
        for response in collected where response.nodeStatus != nil { try await emit(response) }
        let merged = FlowBuffer.select(collected.filter { $0.nodeStatus == nil }.sorted { $0.time < $1.time }, request)
        for response in merged { try await emit(response) }
        guard request.follow else { return }

        // Each node is then followed from the newest answer its history held (or from when the
        // history was asked for), and what that history already held is not told again: a flow
        // recorded between a node's history and its follow is neither lost nor repeated.
        let newest = answers.compactMapValues { responses in responses.filter { $0.nodeStatus == nil }.map(\.time).max() }
        let (funnel, continuation) = AsyncStream.makeStream(of: ObserverResponse.self, bufferingPolicy: .bufferingOldest(FlowBuffer.followerQueue))
        let dropped = DropCount()
        let tls = tls
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes {
                let told = newest[node.name]
                let live = ObserverRequest(filter: request.filter, last: nil, since: told ?? asked, follow: true)
                group.addTask {
                    do {
                        try await ObserverClient.getFlows(from: node.address, tls: tls, request: live) { response in
                            if let told, response.time <= told { return }
                            if case .dropped = continuation.yield(response) { dropped.count.withLock { $0 += 1 } }
                        }
                    } catch where !Task.isCancelled {
                        continuation.yield(Self.unavailable(node, error))
                    }
                }
            }
            group.addTask {
                for await response in funnel {
                    let lost = dropped.count.withLock { count in
                        defer { count = 0 }
                        return count
                    }
                    if lost > 0 {
                        try await emit(ObserverResponse(lostEvents: LostEvents(source: LostEvents.readerQueue, numEventsLost: lost),
                                                        nodeName: "relay", time: Date()))
                    }
                    try await emit(response)
                }
            }
            defer { group.cancelAll() }
            // Ends when the caller goes (cancellation) or writing to it fails.
            while try await group.next() != nil {}
        }
    }

    /// Answers the relay's funnel had no room for.
    private final class DropCount: Sendable {
        let count = Mutex<UInt64>(0)
    }

    private func read(_ node: Node, _ request: ObserverRequest) async -> [ObserverResponse] {
        let received = Mutex<[ObserverResponse]>([])
        do {
            try await ObserverClient.getFlows(from: node.address, tls: tls, request: request, timeout: historyTimeout) { response in
                received.withLock { $0.append(response) }
            }
        } catch {
            received.withLock { $0.append(Self.unavailable(node, error)) }
        }
        return received.withLock { $0 }
    }

    static func unavailable(_ node: Node, _ error: any Error) -> ObserverResponse {
        ObserverResponse(nodeStatus: NodeStatus(state: NodeStatus.unavailable, message: "\(node.address): \(error)"),
                         nodeName: node.name, time: Date())
    }
}
