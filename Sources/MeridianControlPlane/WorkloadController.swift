import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore

/// The cluster's workload controllers in one loop: the Deployment controller (keeps each
/// Deployment's pods at its replica count and template, and removes pods whose Deployment is
/// gone) and the scheduler (binds unscheduled pods to the registered node with the fewest
/// pods). Nodes then run what is bound to them.
///
/// A pod a registered node runs is deleted gracefully: stamped with a `deletionTimestamp`, its
/// node stops it (preStop, SIGTERM, grace period, SIGKILL) and removes its status, and this
/// controller then removes the record (nodes may write statuses but not resources). A pod no
/// registered node runs (unscheduled, or its node is gone) is removed at once, also when it
/// was already terminating: nothing would ever finish it (the pod garbage collector's part).
struct WorkloadController: Sendable {
    let client: any KeyValueStore
    let cluster: ClusterSettings
    let logger: Logger

    func run() async throws {
        let mirror = PrefixMirror(prefixes: [
            KeyLayout.resources(plural: ResourceKind.deployment.plural),
            KeyLayout.resources(plural: ResourceKind.pod.plural),
            KeyLayout.podStatusPrefix,
            MeshKind.nodes.statePrefix(cluster: cluster.name),
        ])
        let orphans = Shared(OrphanedStatuses())
        let records = Shared(PodRecords())
        let tracker = await mirror.trackChanges()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await mirror.run(store: client) }
            // Every 2 s as well: placements that found no node are retried when nodes arrive.
            await mirror.reconcile(every: .seconds(2), onFailure: { error in
                logger.warning("workload reconcile failed; retrying", metadata: ["error": "\(error)"])
            }) {
                var seen = orphans.value
                var current = records.take(leaving: PodRecords())
                for prefix in [KeyLayout.resources(plural: ResourceKind.pod.plural), KeyLayout.podStatusPrefix] {
                    current.apply(await mirror.takeChanges(tracker, prefix: prefix), of: prefix)
                }
                records.withLock { $0 = current }
                try await reconcile(mirror, records: current, orphans: &seen)
                orphans.withLock { $0 = seen }
            }
            group.cancelAll()
        }
    }

    /// Statuses seen without their pod, and since when. The mirror follows pods and statuses
    /// on separate watches, so a status can arrive before the pod written in the same
    /// transaction; only a status orphaned for `grace` is removed.
    struct OrphanedStatuses: Sendable {
        var since: [String: ContinuousClock.Instant] = [:]
        var grace: Duration = .seconds(5)
        /// Terminating pods seen without a status, and since when: their node has finished them.
        /// The same separate watches could show a running pod's mark before its status, so the
        /// record goes only after `stoppedGrace`.
        var stoppedSince: [String: ContinuousClock.Instant] = [:]
        var stoppedGrace: Duration = .seconds(1)
    }

    /// The pods (by key) and their statuses (by `<namespace>/<name>`), decoded as the mirror's
    /// changes bring them, with what a reconcile looks for kept as sets: the terminating and
    /// the unscheduled pods, each Deployment's pods, each node's count, the statuses without a
    /// pod. A pod's change then costs its own decoding and a reconcile the pods that need
    /// something done, not a pass over every pod of the cluster.
    struct PodRecords: Sendable {
        private(set) var pods: [String: Pod] = [:]
        private(set) var statuses: [String: PodStatus] = [:]
        private var nameOfKey: [String: String] = [:]
        private var keyOfName: [String: String] = [:]
        private(set) var terminating: Set<String> = []
        private(set) var unscheduled: Set<String> = []
        /// Pod keys by the `<namespace>/<deployment>` their label names.
        private(set) var owned: [String: Set<String>] = [:]
        private(set) var podsOnNode: [String: Int] = [:]
        /// Names of statuses no pod has.
        private(set) var statusesWithoutPod: Set<String> = []

        mutating func apply(_ changes: PrefixChanges, of prefix: String) {
            switch changes {
            case let .changed(keys):
                for (key, value) in keys { update(key, to: value, under: prefix) }
            case let .everything(all):
                let known = prefix == KeyLayout.podStatusPrefix
                    ? statuses.keys.map { KeyLayout.podStatusPrefix + $0 } : Array(pods.keys)
                for key in known where all[key] == nil { update(key, to: nil, under: prefix) }
                for (key, value) in all { update(key, to: value, under: prefix) }
            }
        }

        static func name(of pod: Pod) -> String {
            "\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"
        }

        private mutating func update(_ key: String, to value: Data?, under prefix: String) {
            if prefix == KeyLayout.podStatusPrefix {
                let name = String(key.dropFirst(prefix.count))
                statuses[name] = value.flatMap { try? StoreCoding.decode(PodStatus.self, from: $0, key: key) }
                if statuses[name] != nil, keyOfName[name] == nil { statusesWithoutPod.insert(name) } else { statusesWithoutPod.remove(name) }
                return
            }
            if let old = pods.removeValue(forKey: key) { unindex(key, old) }
            guard case let .pod(pod)? = value.flatMap({ try? StoreCoding.decode(KubernetesObject.self, from: $0, key: key) }) else { return }
            pods[key] = pod
            let name = Self.name(of: pod)
            nameOfKey[key] = name
            keyOfName[name] = key
            statusesWithoutPod.remove(name)
            if pod.metadata.isBeingDeleted { terminating.insert(key) }
            if let node = pod.spec.nodeName { podsOnNode[node, default: 0] += 1 } else { unscheduled.insert(key) }
            if let owner = pod.metadata.labels[WorkloadLabels.deployment] {
                owned["\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(owner)", default: []].insert(key)
            }
        }

        private mutating func unindex(_ key: String, _ pod: Pod) {
            if let name = nameOfKey.removeValue(forKey: key) {
                keyOfName[name] = nil
                if statuses[name] != nil { statusesWithoutPod.insert(name) }
            }
            terminating.remove(key)
            unscheduled.remove(key)
            if let node = pod.spec.nodeName {
                podsOnNode[node, default: 0] -= 1
                if podsOnNode[node] == 0 { podsOnNode[node] = nil }
            }
            if let owner = pod.metadata.labels[WorkloadLabels.deployment] {
                let deployment = "\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(owner)"
                owned[deployment]?.remove(key)
                if owned[deployment]?.isEmpty == true { owned[deployment] = nil }
            }
        }
    }

    private func reconcile(_ mirror: PrefixMirror, records: PodRecords, orphans: inout OrphanedStatuses) async throws {
        let statuses = records.statuses
        // What this reconcile changed: a pod marked, created, or removed (nil).
        var changed: [String: Pod?] = [:]
        func current(_ key: String) -> Pod? {
            if let pod = changed[key] { return pod }
            return records.pods[key]
        }
        func observed(_ pod: Pod) -> ObservedPod {
            ObservedPod(pod: pod, status: statuses[PodRecords.name(of: pod)])
        }
        var deployments: [Deployment] = []
        for (key, value) in await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.deployment.plural)) {
            if case let .deployment(deployment)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) {
                deployments.append(deployment)
            }
        }

        var registered: Set<String> = []
        for (key, value) in await mirror.snapshot(MeshKind.nodes.statePrefix(cluster: cluster.name)) {
            if let node = try? StoreCoding.decode(NodeRecord.self, from: value, key: key) { registered.insert(node.name) }
        }
        let deletionStamp = Self.timestamp()
        var puts: [(key: String, value: Data)] = []
        var deletes: [String] = []
        /// Deletes gracefully what a node runs, at once what none does.
        func delete(_ key: String) {
            guard let pod = current(key) else { return }
            if let node = pod.spec.nodeName, registered.contains(node) {
                guard !pod.metadata.isBeingDeleted else { return }
                let marked = pod.markedForDeletion(at: deletionStamp)
                puts.append((key, StoreCoding.encode(KubernetesObject.pod(marked))))
                changed[key] = .some(marked)
            } else {
                deletes.append(key)
                changed[key] = .some(nil)
            }
        }
        for key in records.terminating.sorted() {
            guard let pod = current(key), !(pod.spec.nodeName.map(registered.contains) ?? false) else { continue }
            deletes.append(key)
            changed[key] = .some(nil)
        }
        // Terminating pods whose node has stopped them (and removed their status) are finished.
        let clock = ContinuousClock.now
        var stopped: [String: ContinuousClock.Instant] = [:]
        for key in records.terminating.sorted() {
            guard let pod = current(key) else { continue }
            let name = PodRecords.name(of: pod)
            guard statuses[name] == nil else { continue }
            let since = orphans.stoppedSince[name] ?? clock
            stopped[name] = since
            if clock - since >= orphans.stoppedGrace {
                deletes.append(key)
                changed[key] = .some(nil)
            }
        }
        orphans.stoppedSince = stopped
        for deployment in deployments {
            let namespace = deployment.metadata.namespace ?? KubernetesObject.defaultNamespace
            let owned = (records.owned["\(namespace)/\(deployment.metadata.name)"] ?? []).sorted().compactMap(current)
                .filter { DeploymentPlanner.owns(deployment, $0) }.map(observed)
            let plan = DeploymentPlanner.plan(for: deployment, existing: owned)
            for pod in plan.create {
                let object = KubernetesObject.pod(pod)
                let key = ResourceStore.key(for: object)
                puts.append((key, StoreCoding.encode(object)))
                changed[key] = .some(pod)
            }
            for deletion in plan.delete {
                delete(KeyLayout.resource(plural: ResourceKind.pod.plural, namespace: namespace, name: deletion.name))
            }
        }
        // Pods of a Deployment that no longer exists go with it.
        let names = Set(deployments.map { "\($0.metadata.namespace ?? KubernetesObject.defaultNamespace)/\($0.metadata.name)" })
        for (deployment, keys) in records.owned where !names.contains(deployment) {
            for key in keys.sorted() { delete(key) }
        }

        // Scheduling: bind pods without a node, counting every pod already bound (and not
        // removed above).
        var loads: [String: Int] = [:]
        for node in registered { loads[node] = records.podsOnNode[node] ?? 0 }
        for (key, pod) in changed where pod == nil {
            if let node = records.pods[key]?.spec.nodeName, let load = loads[node] { loads[node] = load - 1 }
        }
        var waiting = records.unscheduled
        for (key, pod) in changed {
            if let pod, pod.spec.nodeName == nil { waiting.insert(key) }
        }
        for key in waiting.sorted() {
            guard let pod = current(key), pod.spec.nodeName == nil else { continue }
            let nodes = loads.map { NodeLoad(name: $0.key, podCount: $0.value) }.sorted { $0.name < $1.name }
            guard let node = PodScheduler.node(for: pod, among: nodes) else {
                let statusKey = KeyLayout.podStatus(namespace: pod.metadata.namespace ?? KubernetesObject.defaultNamespace, name: pod.metadata.name)
                if statuses[String(statusKey.dropFirst(KeyLayout.podStatusPrefix.count))]?.reason != PodStatusReason.unschedulable {
                    puts.append((statusKey, StoreCoding.encode(PodStatus(phase: .pending, reason: PodStatusReason.unschedulable,
                                                                         message: "no node of cluster \(cluster.name) is registered"))))
                }
                continue
            }
            var bound = pod
            bound.spec.nodeName = node
            loads[node, default: 0] += 1
            if let index = puts.firstIndex(where: { $0.key == key }) { puts.remove(at: index) }
            puts.append((key, StoreCoding.encode(KubernetesObject.pod(bound))))
        }
        // A status whose pod is gone (deleted while unscheduled, or its node is gone) goes too.
        var podless = records.statusesWithoutPod
        for (key, pod) in changed where pod == nil {
            if let old = records.pods[key], statuses[PodRecords.name(of: old)] != nil { podless.insert(PodRecords.name(of: old)) }
        }
        let now = ContinuousClock.now
        orphans.since = orphans.since.filter { podless.contains($0.key) }
        for name in podless.sorted() {
            let since = orphans.since[name] ?? now
            orphans.since[name] = since
            guard now - since >= orphans.grace else { continue }
            let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
            if parts.count == 2 { deletes.append(KeyLayout.podStatus(namespace: parts[0], name: parts[1])) }
        }
        guard !puts.isEmpty || !deletes.isEmpty else { return }
        let deleteSet = Set(deletes)
        puts.removeAll { deleteSet.contains($0.key) }
        for chunk in stride(from: 0, to: max(puts.count, deletes.count), by: 100) {
            try await client.commit(puts: Array(puts[min(chunk, puts.count)..<min(chunk + 100, puts.count)]),
                                    deletes: Array(deleteSet.sorted()[min(chunk, deleteSet.count)..<min(chunk + 100, deleteSet.count)]))
        }
        logger.info("workloads reconciled", metadata: ["writes": "\(puts.count)", "deletes": "\(deleteSet.count)"])
    }

    /// RFC 3339 UTC, as the store writes timestamps.
    static func timestamp() -> String {
        ISO8601DateFormatter().string(from: Date())
    }
}
