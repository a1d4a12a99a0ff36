import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianFlows
import Testing
@testable import MeridianAgent

/// Events become flows with names: pods from local and imported records, identities' labels,
/// the service a socket translation went to, and the policy verdict of a drop by policy.
@Suite("Flow translation")
struct FlowTranslatorTests {
    static let client = IPAddress("10.1.1.2")!
    static let backend = IPAddress("10.2.1.7")!

    static var names: FlowNames {
        FlowNames.build(
            pods: [client: .init(cluster: "cluster1", namespace: "default", name: "client"),
                   backend: .init(cluster: "cluster2", namespace: "default", name: "backend-abc")],
            identities: [(2 << 16) | 5: try! LabelSet([Label(source: "k8s", key: "app", value: "backend")])],
            reverseNAT: [9: (IPAddress("10.101.0.10")!, 80)], serviceIPs: ["backend.default": IPAddress("10.101.0.10")!])
    }

    static func event(type: Int32, subtype: Int32 = 0, ct: Int32 = Int32(MER_CT_NEW), direction: Int32 = Int32(MER_EVENT_DIR_EGRESS),
                      at nanoseconds: UInt64 = 1_000_000_000, revNAT: UInt16 = 0) -> mer_event {
        var event = mer_event()
        event.type = UInt8(type)
        event.subtype = UInt8(subtype)
        event.ct_state = UInt8(ct)
        event.proto = 6
        event.direction = UInt8(direction)
        event.src_identity = (1 << 16) | 3
        event.dst_identity = (2 << 16) | 5
        event.saddr = client.datapathValue!
        event.daddr = backend.datapathValue!
        event.sport = UInt16(40000).bigEndian
        event.dport = UInt16(8080).bigEndian
        event.tcp_flags = UInt8(MER_TCP_SYN)
        event.rev_nat_index = revNAT
        event.timestamp_ns = nanoseconds
        return event
    }

    func translator() -> FlowTranslator {
        FlowTranslator(nodeName: "node1", monotonicOrigin: Date(timeIntervalSince1970: 1_800_000_000))
    }

    @Test("a socket translation names the service of its connection's first packet, once, within its window")
    func socketTranslation() throws {
        var translator = translator()
        #expect(translator.flow(of: Self.event(type: Int32(MER_EVENT_SOCK_TRANSLATE), revNAT: 9), names: Self.names) == nil)
        let firstFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_TRACE), at: 1_100_000_000), names: Self.names)

        let first = try #require(firstFlow)
        #expect(first.destinationService == FlowService(name: "backend", namespace: "default", frontend: "10.101.0.10:80"))
        #expect(first.destination.podName == "backend-abc" && first.destination.clusterName == "cluster2")
        #expect(first.destination.labels == ["k8s:app=backend"])
        #expect(abs(first.time.timeIntervalSince1970 - 1_800_000_001.1) < 1e-6)
        let secondFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_TRACE), at: 1_200_000_000), names: Self.names)

        let second = try #require(secondFlow)
        #expect(second.destinationService == nil, "a translation names one connection")

        _ = translator.flow(of: Self.event(type: Int32(MER_EVENT_SOCK_TRANSLATE), revNAT: 9), names: Self.names)
        let lateFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_TRACE), at: 4_000_000_000), names: Self.names)

        let late = try #require(lateFlow)
        #expect(late.destinationService == nil, "past its window a translation names nothing")
        let packetLBFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_TRACE), revNAT: 9), names: Self.names)

        let packetLB = try #require(packetLBFlow)
        #expect(packetLB.destinationService?.name == "backend", "the packet path's own index is used as it is")
    }

    @Test("a drop by policy carries the reason's name and the policy verdict in the direction of the program that dropped it")
    func policyDrop() throws {
        var translator = translator()
        let dropFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_DROP), subtype: Int32(MER_DROP_POLICY),
                                                                direction: Int32(MER_EVENT_DIR_INGRESS)), names: Self.names)

        let drop = try #require(dropFlow)
        #expect(drop.verdict == .dropped)
        #expect(drop.dropReasonDesc == "POLICY_DENIED")
        #expect(drop.policyVerdict == FlowPolicyVerdict(direction: "INGRESS", decision: "DENIED"))
        #expect(drop.source.podName == "client" && drop.source.clusterName == "cluster1")
        let otherFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_DROP), subtype: Int32(MER_DROP_INVALID_SIP)), names: Self.names)

        let other = try #require(otherFlow)
        #expect(other.policyVerdict == nil && other.dropReasonDesc == "INVALID_SOURCE_IP")
        var world = Self.event(type: Int32(MER_EVENT_TRACE))
        world.daddr = IPAddress("192.0.2.1")!.datapathValue!
        world.dst_identity = ReservedIdentity.world.rawValue
        let outsideFlow = translator.flow(of: world, names: Self.names)

        let outside = try #require(outsideFlow)
        #expect(outside.destination.podName == nil && outside.destination.labels == ["reserved:world"])
    }

    @Test("policy verdicts: a first packet through a pod's egress or ingress is allowed, a drop by policy denied; the node's own traffic and later packets are none")
    func verdicts() {
        func verdict(_ type: Int32, _ subtype: Int32 = 0, ct: Int32 = Int32(MER_CT_NEW), direction: Int32) -> String? {
            FlowObserver.verdict(of: Self.event(type: type, subtype: subtype, ct: ct, direction: direction)).map { "\($0.direction)/\($0.action)" }
        }
        let egress = Int32(MER_EVENT_DIR_EGRESS), ingress = Int32(MER_EVENT_DIR_INGRESS)
        #expect(verdict(Int32(MER_EVENT_TRACE), Int32(MER_TRACE_TO_OVERLAY), direction: egress) == "EGRESS/allowed")
        #expect(verdict(Int32(MER_EVENT_TRACE), Int32(MER_TRACE_TO_POD), direction: ingress) == "INGRESS/allowed")
        #expect(verdict(Int32(MER_EVENT_DROP), Int32(MER_DROP_POLICY), direction: ingress) == "INGRESS/denied")
        #expect(verdict(Int32(MER_EVENT_DROP), Int32(MER_DROP_POLICY_DENY), direction: egress) == "EGRESS/denied")
        #expect(verdict(Int32(MER_EVENT_DROP), Int32(MER_DROP_INVALID_SIP), direction: egress) == nil)
        #expect(verdict(Int32(MER_EVENT_TRACE), Int32(MER_TRACE_TO_STACK), direction: egress) == nil)
        #expect(verdict(Int32(MER_EVENT_TRACE), Int32(MER_TRACE_TO_POD), ct: Int32(MER_CT_ESTABLISHED), direction: ingress) == nil)
        #expect(verdict(Int32(MER_EVENT_TRACE), direction: Int32(MER_EVENT_DIR_UNKNOWN)) == nil)
    }

    @Test("a drop by policy names the rules that decided, as policy trace does")
    func decidingRules() throws {
        let yaml = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: backend-no-ingress, namespace: default}
            spec:
              podSelector:
                matchLabels: {app: backend}
              policyTypes: [Ingress]
            """
        let rules = PolicyCompiler.rules(for: try ManifestDecoder.decode(yaml, source: "test.yaml"), settings: PolicySettings(clusterName: "cluster1"))
        var names = Self.names
        names.rules = rules
        names.identities[(2 << 16) | 5] = try LabelSet([
            Label(source: "k8s", key: "app", value: "backend"),
            Label(source: "k8s", key: "io.kubernetes.pod.namespace", value: "default"),
            Label(source: "k8s", key: "io.cilium.k8s.policy.cluster", value: "cluster1"),
        ])
        var translator = translator()
        let dropFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_DROP), subtype: Int32(MER_DROP_POLICY),
                                                      direction: Int32(MER_EVENT_DIR_INGRESS)), names: names)
        let drop = try #require(dropFlow)
        #expect(drop.policyVerdict?.rules.count == 1)
        #expect(drop.policyVerdict?.rules.first?.hasPrefix("NetworkPolicy default/backend-no-ingress") == true, "\(drop.policyVerdict?.rules ?? [])")
        let egressFlow = translator.flow(of: Self.event(type: Int32(MER_EVENT_DROP), subtype: Int32(MER_DROP_POLICY),
                                                        direction: Int32(MER_EVENT_DIR_EGRESS)), names: names)
        #expect(try #require(egressFlow).policyVerdict?.rules == [], "no rule denies the client's egress")
    }
}
