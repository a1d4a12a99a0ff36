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
                var current = records.value
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
    /// changes bring them: a pod's change decodes that pod, not every pod of the cluster.
    struct PodRecords: Sendable {
        private(set) var pods: [String: Pod] = [:]
        private(set) var statuses: [String: PodStatus] = [:]
        /// The `<namespace>/<name>` of every pod.
        private(set) var names: Set<String> = []
        private var nameOfKey: [String: String] = [:]

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

        private mutating func update(_ key: String, to value: Data?, under prefix: String) {
            if prefix == KeyLayout.podStatusPrefix {
                statuses[String(key.dropFirst(prefix.count))] = value.flatMap { try? StoreCoding.decode(PodStatus.self, from: $0, key: key) }
                return
            }
            if let name = nameOfKey.removeValue(forKey: key) { names.remove(name) }
            guard case let .pod(pod)? = value.flatMap({ try? StoreCoding.decode(KubernetesObject.self, from: $0, key: key) }) else {
                pods[key] = nil
                return
            }
            pods[key] = pod
            let name = "\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"
            nameOfKey[key] = name
            names.insert(name)
        }
    }

    private func reconcile(_ mirror: PrefixMirror, records: PodRecords, orphans: inout OrphanedStatuses) async throws {
        var pods = records.pods
        let statuses = records.statuses
        func observed(_ pod: Pod) -> ObservedPod {
            ObservedPod(pod: pod, status: statuses["\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"])
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
            guard let pod = pods[key] else { return }
            if let node = pod.spec.nodeName, registered.contains(node) {
                guard !pod.metadata.isBeingDeleted else { return }
                let marked = pod.markedForDeletion(at: deletionStamp)
                puts.append((key, StoreCoding.encode(KubernetesObject.pod(marked))))
                pods[key] = marked
            } else {
                deletes.append(key)
                pods[key] = nil
            }
        }
        for (key, pod) in pods where pod.metadata.isBeingDeleted && !(pod.spec.nodeName.map(registered.contains) ?? false) {
            deletes.append(key)
            pods[key] = nil
        }
        // Terminating pods whose node has stopped them (and removed their status) are finished.
        let clock = ContinuousClock.now
        var stopped: [String: ContinuousClock.Instant] = [:]
        for (key, pod) in pods where pod.metadata.isBeingDeleted {
            let name = "\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"
            guard statuses[name] == nil else { continue }
            let since = orphans.stoppedSince[name] ?? clock
            stopped[name] = since
            if clock - since >= orphans.stoppedGrace {
                deletes.append(key)
                pods[key] = nil
            }
        }
        orphans.stoppedSince = stopped
        for deployment in deployments {
            let namespace = deployment.metadata.namespace ?? KubernetesObject.defaultNamespace
            let owned = pods.values.filter { DeploymentPlanner.owns(deployment, $0) }.map(observed)
            let plan = DeploymentPlanner.plan(for: deployment, existing: owned)
            for pod in plan.create {
                let object = KubernetesObject.pod(pod)
                let key = ResourceStore.key(for: object)
                puts.append((key, StoreCoding.encode(object)))
                pods[key] = pod
            }
            for deletion in plan.delete {
                delete(KeyLayout.resource(plural: ResourceKind.pod.plural, namespace: namespace, name: deletion.name))
            }
        }
        // Pods of a Deployment that no longer exists go with it.
        let names = Set(deployments.map { "\($0.metadata.namespace ?? KubernetesObject.defaultNamespace)/\($0.metadata.name)" })
        for (key, pod) in pods {
            guard let owner = pod.metadata.labels[WorkloadLabels.deployment] else { continue }
            if !names.contains("\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(owner)") {
                delete(key)
            }
        }

        // Scheduling: bind pods without a node, counting every pod already bound.
        var loads: [String: Int] = [:]
        for node in registered { loads[node] = 0 }
        for pod in pods.values {
            if let node = pod.spec.nodeName, loads[node] != nil { loads[node, default: 0] += 1 }
        }
        for (key, pod) in pods.filter({ $0.value.spec.nodeName == nil }).sorted(by: { $0.key < $1.key }) {
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
        var live = records.names
        for key in deletes {
            if let pod = records.pods[key] { live.remove("\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)") }
        }
        let now = ContinuousClock.now
        orphans.since = orphans.since.filter { statuses[$0.key] != nil && !live.contains($0.key) }
        for name in statuses.keys where !live.contains(name) {
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
