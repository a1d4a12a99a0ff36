import Foundation
import Synchronization

/// Something `meridian observe` can read flows from: one node's buffer, or the relay in front
/// of all of a cluster's nodes.
public protocol FlowSource: Sendable {
    /// Emits the history the request asks for, oldest first, then (when it follows) new flows as
    /// they come, until cancelled.
    func flows(_ request: ObserverRequest, emit: @escaping @Sendable (ObserverResponse) async throws -> Void) async throws
}

/// A node's recent flows: the last `capacity` flows (and the losses among them) in memory, and
/// the live readers following them. Readers that fall behind lose flows rather than hold the
/// node's memory; what they lost is counted and told to them in the stream.
public final class FlowBuffer: FlowSource, Sendable {
    private struct Subscriber {
        var continuation: AsyncStream<ObserverResponse>.Continuation
        var filter: FlowFilter
        var dropped: UInt64 = 0
    }

    private struct State {
        var slots: [ObserverResponse?]
        var next = 0
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var seen: UInt64 = 0
        var lost: UInt64 = 0
    }

    public let capacity: Int
    public let nodeName: String
    private let state: Mutex<State>

    /// Flows one follower may have queued before it loses some.
    public static let followerQueue = 4096
    public static let defaultCapacity = 4096

    public init(nodeName: String, capacity: Int = FlowBuffer.defaultCapacity) {
        self.capacity = max(1, capacity)
        self.nodeName = nodeName
        self.state = Mutex(State(slots: Array(repeating: nil, count: max(1, capacity))))
    }

    /// Flows seen since start, and events lost in the kernel's ring buffer.
    public var counts: (seen: UInt64, lost: UInt64) { state.withLock { ($0.seen, $0.lost) } }

    public func append(_ flows: [Flow]) {
        guard !flows.isEmpty else { return }
        state.withLock { state in
            for flow in flows {
                state.seen += 1
                store(ObserverResponse(flow: flow), in: &state)
            }
        }
    }

    /// Records that the kernel could not report `count` events (its ring buffer was full).
    public func recordLoss(_ count: UInt64, at time: Date = Date()) {
        guard count > 0 else { return }
        state.withLock { state in
            state.lost += count
            store(ObserverResponse(lostEvents: LostEvents(source: LostEvents.ringBuffer, numEventsLost: count), nodeName: nodeName, time: time),
                  in: &state)
        }
    }

    private func store(_ response: ObserverResponse, in state: inout State) {
        state.slots[state.next] = response
        state.next = (state.next + 1) % capacity
        for (id, var subscriber) in state.subscribers {
            if let flow = response.flow, !subscriber.filter.matches(flow) { continue }
            if subscriber.dropped > 0 {
                let notice = ObserverResponse(lostEvents: LostEvents(source: LostEvents.readerQueue, numEventsLost: subscriber.dropped),
                                              nodeName: nodeName, time: response.time)
                if case .enqueued = subscriber.continuation.yield(notice) { subscriber.dropped = 0 }
            }
            if case .dropped = subscriber.continuation.yield(response) { subscriber.dropped += 1 }
            state.subscribers[id] = subscriber
        }
    }

    /// The stored answers matching `request`, oldest first: its last `last` flows (all when
    /// nil) at or after `since`, with the losses among them.
    public func history(_ request: ObserverRequest) -> [ObserverResponse] {
        state.withLock { Self.select(Self.ordered(state: $0, capacity: capacity), request) }
    }

    private static func ordered(state: State, capacity: Int) -> [ObserverResponse] {
        (0..<capacity).compactMap { state.slots[(state.next + $0) % capacity] }
    }

    /// The answers of `stored` (oldest first) that `request` asks for, oldest first.
    public static func select(_ stored: [ObserverResponse], _ request: ObserverRequest) -> [ObserverResponse] {
        var picked: [ObserverResponse] = []
        var flows = 0
        for response in stored.reversed() {
            if let since = request.since, response.time < since { break }
            if let flow = response.flow {
                guard request.filter.matches(flow) else { continue }
                if let last = request.last, flows >= last { break }
                flows += 1
            }
            picked.append(response)
        }
        return picked.reversed()
    }

    public func flows(_ request: ObserverRequest, emit: @escaping @Sendable (ObserverResponse) async throws -> Void) async throws {
        guard request.follow else {
            for response in history(request) { try await emit(response) }
            return
        }
        let (stream, continuation) = AsyncStream.makeStream(of: ObserverResponse.self, bufferingPolicy: .bufferingOldest(Self.followerQueue))
        // History and subscription are taken under one lock: nothing is missed or told twice.
        let (id, past) = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = Subscriber(continuation: continuation, filter: request.filter)
            return (id, Self.select(Self.ordered(state: state, capacity: capacity), request))
        }
        defer {
            state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
            continuation.finish()
        }
        for response in past { try await emit(response) }
        for await response in stream {
            try await emit(response)
        }
    }

    /// Live readers right now.
    public var followers: Int { state.withLock { $0.subscribers.count } }
}
