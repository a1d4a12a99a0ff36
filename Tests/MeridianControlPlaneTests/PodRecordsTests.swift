import Foundation
import MeridianCore
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// The workload controller's pods and statuses, kept from changes with the sets a reconcile
/// looks at: after any sequence of changes they equal the same sets found by a pass over
/// every pod and status left.
@Suite("Workload controller: pods from changes")
struct PodRecordsTests {
    static let pods = KeyLayout.resources(plural: ResourceKind.pod.plural)

    static func randomChange(_ rng: inout SeededGenerator) -> (prefix: String, key: String, value: Data?) {
        let namespace = Bool.random(using: &rng) ? "default" : "other"
        let name = "p\(Int.random(in: 1...5, using: &rng))"
        let delete = Int.random(in: 0..<4, using: &rng) == 0
        if Bool.random(using: &rng) {
            let status = PodStatus(phase: .running, podIP: "10.1.1.\(Int.random(in: 1...9, using: &rng))", nodeName: "node1")
            return (KeyLayout.podStatusPrefix, KeyLayout.podStatus(namespace: namespace, name: name), delete ? nil : StoreCoding.encode(status))
        }
        var labels: [String: String] = [:]
        if let owner = ["web", "db", nil].randomElement(using: &rng)! { labels[WorkloadLabels.deployment] = owner }
        var pod = Pod(metadata: ObjectMeta(name: name, namespace: namespace, labels: labels),
                      spec: PodSpec(containers: [Container(name: "c", command: ["true"], ports: [])],
                                    nodeName: ["node1", "node2", nil].randomElement(using: &rng)!))
        if Int.random(in: 0..<3, using: &rng) == 0 { pod = pod.markedForDeletion(at: "2026-12-07T00:00:00Z") }
        let object = KubernetesObject.pod(pod)
        return (pods, ResourceStore.key(for: object), delete ? nil : StoreCoding.encode(object))
    }

    @Test("after every change of a random sequence, the kept sets equal a pass over what is left", arguments: [UInt64(1), 2, 3, 4])
    func setsAgreeWithAPass(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var records = WorkloadController.PodRecords()
        var store: [String: [String: Data]] = [:]
        var sawEach = (terminating: false, unscheduled: false, owned: false, podless: false)
        for step in 0..<300 {
            let change = Self.randomChange(&rng)
            store[change.prefix, default: [:]][change.key] = change.value
            if step % 50 == 49 {
                records.apply(.everything(store[change.prefix] ?? [:]), of: change.prefix)
            } else {
                records.apply(.changed([change.key: change.value]), of: change.prefix)
            }
            let pods = (store[Self.pods] ?? [:]).compactMapValues { value -> Pod? in
                guard case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: "") else { return nil }
                return pod
            }
            let statusNames = Set((store[KeyLayout.podStatusPrefix] ?? [:]).keys.map { String($0.dropFirst(KeyLayout.podStatusPrefix.count)) })
            let podNames = Set(pods.values.map(WorkloadController.PodRecords.name(of:)))
            var owned: [String: Set<String>] = [:]
            var onNode: [String: Int] = [:]
            for (key, pod) in pods {
                if let owner = pod.metadata.labels[WorkloadLabels.deployment] { owned["\(pod.metadata.namespace!)/\(owner)", default: []].insert(key) }
                if let node = pod.spec.nodeName { onNode[node, default: 0] += 1 }
            }
            let at = "seed \(seed), step \(step)"
            #expect(records.pods == pods, "pods, \(at)")
            #expect(records.terminating == Set(pods.filter { $0.value.metadata.isBeingDeleted }.keys), "terminating, \(at)")
            #expect(records.unscheduled == Set(pods.filter { $0.value.spec.nodeName == nil }.keys), "unscheduled, \(at)")
            #expect(records.owned == owned, "owned, \(at)")
            #expect(records.podsOnNode == onNode, "pods on each node, \(at)")
            #expect(records.statusesWithoutPod == statusNames.subtracting(podNames), "statuses without a pod, \(at)")
            sawEach.terminating = sawEach.terminating || !records.terminating.isEmpty
            sawEach.unscheduled = sawEach.unscheduled || !records.unscheduled.isEmpty
            sawEach.owned = sawEach.owned || !records.owned.isEmpty
            sawEach.podless = sawEach.podless || !records.statusesWithoutPod.isEmpty
        }
        #expect(sawEach == (true, true, true, true))
    }
}
