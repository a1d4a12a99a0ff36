import Foundation
@testable import MeridianFlows
import Synchronization
import Testing

func flow(_ second: Double, from: String? = "client", fromNamespace: String = "default", fromCluster: String = "cluster1",
          to: String? = "server", toCluster: String = "cluster2", verdict: FlowVerdict = .forwarded, port: UInt16 = 8080,
          labels: [String] = ["k8s:app=server"], policy: Bool = false) -> Flow {
    Flow(time: Date(timeIntervalSince1970: 1_800_000_000 + second), verdict: verdict,
         dropReason: verdict == .dropped ? 133 : nil, dropReasonDesc: verdict == .dropped ? "POLICY_DENIED" : nil,
         ip: FlowIP(source: "10.1.1.2", destination: "10.2.1.2"),
         l4: FlowL4(tcp: .init(sourcePort: 40000, destinationPort: port, flags: TCPFlags(bits: 0x02))),
         source: FlowEndpoint(identity: 65537, clusterName: fromCluster, namespace: fromNamespace, podName: from),
         destination: FlowEndpoint(identity: 131073, clusterName: toCluster, namespace: "default", podName: to, labels: labels),
         nodeName: "node1", eventType: FlowEventType(type: verdict == .dropped ? 1 : 4, subType: 0), trafficDirection: "EGRESS",
         policyVerdict: policy ? FlowPolicyVerdict(direction: "INGRESS", decision: "DENIED") : nil)
}

@Suite("Flow filters")
struct FlowFilterTests {
    @Test("pods match by [namespace/]name prefix on the right side; clusters, labels, verdicts, protocols, ports and types as hubble's flags")
    func matching() {
        let subject = flow(1, verdict: .dropped, policy: true)
        func matches(_ change: (inout FlowFilter) -> Void) -> Bool {
            var filter = FlowFilter()
            change(&filter)
            return filter.matches(subject)
        }
        #expect(matches { $0.fromPod = ["default/cli"] })
        #expect(!matches { $0.fromPod = ["other/client"] })
        #expect(!matches { $0.fromPod = ["server"] }, "--from-pod looks at the source only")
        #expect(matches { $0.pod = ["server"] })
        #expect(matches { $0.toPod = ["serv"] })
        #expect(matches { $0.fromCluster = ["cluster1"] } && !matches { $0.fromCluster = ["cluster2"] })
        #expect(matches { $0.toCluster = ["cluster2"] })
        #expect(matches { $0.label = ["app=server"] } && matches { $0.label = ["k8s:app=server"] } && matches { $0.label = ["app"] })
        #expect(!matches { $0.label = ["app=client"] } && !matches { $0.label = ["ap"] })
        #expect(matches { $0.verdict = [.dropped] } && !matches { $0.verdict = [.forwarded] })
        #expect(matches { $0.protocol = ["tcp"] } && !matches { $0.protocol = ["udp"] })
        #expect(matches { $0.port = [8080] } && matches { $0.port = [40000] } && !matches { $0.port = [53] })
        #expect(matches { $0.type = [.policyVerdict] } && matches { $0.type = [.drop] } && !matches { $0.type = [.trace] })
        #expect(matches { $0.namespace = ["default"] } && !matches { $0.namespace = ["kube-system"] })
        #expect(!matches { $0.fromPod = ["default/client"]; $0.verdict = [.forwarded] }, "every condition must hold")
    }

    @Test("a request from the network is bounded: too many values, long values, unknown protocols and negative counts are refused")
    func validation() {
        var filter = FlowFilter()
        filter.pod = Array(repeating: "a", count: FlowFilter.maximumValues + 1)
        #expect(throws: FlowRequestError.tooManyValues(filter: "pod", count: 65, limit: 64)) { try filter.validate() }
        filter = FlowFilter()
        filter.label = [String(repeating: "x", count: 300)]
        #expect(throws: FlowRequestError.valueTooLong(filter: "label", length: 300, limit: 253)) { try filter.validate() }
        filter = FlowFilter()
        filter.protocol = ["gre"]
        #expect(throws: FlowRequestError.unknownProtocol("gre")) { try filter.validate() }
        #expect(throws: FlowRequestError.negativeLast(-1)) { try ObserverRequest(last: -1).validate() }
        #expect(throws: Never.self) { try ObserverRequest(filter: FlowFilter(), last: 5).validate() }
    }
}

@Suite("Flow buffer")
struct FlowBufferTests {
    @Test("keeps the last N flows; history answers last and since, oldest first, with the losses among them")
    func history() {
        let buffer = FlowBuffer(nodeName: "node1", capacity: 4)
        buffer.append([flow(1), flow(2), flow(3)])
        buffer.recordLoss(7, at: Date(timeIntervalSince1970: 1_800_000_003.5))
        buffer.append([flow(4), flow(5, to: "other")])
        let all = buffer.history(ObserverRequest())
        #expect(all.count == 4, "capacity 4: the oldest two went")
        #expect(all.compactMap { $0.flow?.time.timeIntervalSince1970 } == [1_800_000_003, 1_800_000_004, 1_800_000_005])
        #expect(all.compactMap(\.lostEvents).map(\.numEventsLost) == [7])
        var toServer = FlowFilter()
        toServer.toPod = ["server"]
        let last = buffer.history(ObserverRequest(filter: toServer, last: 1))
        #expect(last.compactMap { $0.flow?.time.timeIntervalSince1970 } == [1_800_000_004])
        let since = buffer.history(ObserverRequest(since: Date(timeIntervalSince1970: 1_800_000_004)))
        #expect(since.compactMap { $0.flow?.time.timeIntervalSince1970 } == [1_800_000_004, 1_800_000_005])
        #expect(buffer.counts.seen == 5 && buffer.counts.lost == 7)
    }

    @Test("a follower gets matching new flows after the history, and is told what it lost when it falls behind")
    func follow() async throws {
        let buffer = FlowBuffer(nodeName: "node1", capacity: 16)
        buffer.append([flow(1)])
        var filter = FlowFilter()
        filter.toPod = ["server"]
        let toServer = filter
        let received = AsyncStream.makeStream(of: ObserverResponse.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await buffer.flows(ObserverRequest(filter: toServer, last: 10, follow: true)) { received.continuation.yield($0) }
            }
            while buffer.followers == 0 { try await Task.sleep(for: .milliseconds(5)) }
            buffer.append([flow(2, to: "other"), flow(3)])
            var times: [Double] = []
            for await response in received.stream {
                times.append(response.flow?.time.timeIntervalSince1970 ?? 0)
                if times.count == 2 { break }
            }
            #expect(times == [1_800_000_001, 1_800_000_003], "history, then the new matching flow only")
            group.cancelAll()
        }
        #expect(buffer.followers == 0, "a follower that goes is forgotten")

        // A follower that reads nothing: its queue fills, then the losses are counted and told.
        let slow = FlowBuffer(nodeName: "node1", capacity: 16)
        let gate = AsyncStream.makeStream(of: Void.self)
        let told = AsyncStream.makeStream(of: UInt64.self)
        let delivered = Delivered()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await slow.flows(ObserverRequest(follow: true)) { response in
                    if delivered.next() == 1 {
                        for await _ in gate.stream { break }
                    }
                    if let lost = response.lostEvents { told.continuation.yield(lost.numEventsLost) }
                }
            }
            while slow.followers == 0 { try await Task.sleep(for: .milliseconds(5)) }
            slow.append([flow(0)])
            try await Task.sleep(for: .milliseconds(50))
            slow.append((1...(FlowBuffer.followerQueue + 10)).map { flow(Double($0)) })
            gate.continuation.yield()
            while delivered.count < 1 + FlowBuffer.followerQueue { try await Task.sleep(for: .milliseconds(5)) }
            slow.append([flow(99_999)])
            var lost: UInt64 = 0
            for await count in told.stream {
                lost = count
                break
            }
            #expect(lost == 10, "the queue held \(FlowBuffer.followerQueue) flows; the 10 past it are reported lost")
            group.cancelAll()
        }
    }
}

/// How many answers a test's reader has taken.
final class Delivered: Sendable {
    private let value = Mutex(0)
    var count: Int { value.withLock { $0 } }
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}
