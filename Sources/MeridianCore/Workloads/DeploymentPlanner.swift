/// The labels that tie a pod to the Deployment that made it.
///
/// Kubernetes links a pod to its ReplicaSet with `metadata.ownerReferences` and labels it
/// with `pod-template-hash`. Meridian has no ReplicaSets and no owner references: the
/// Deployment owns its pods directly, through the `meridian.io/deployment` label. A label
/// can be listed and selected like any other (`get pods -l meridian.io/deployment=web`),
/// and it is the one mechanism every layer reads. The price is that a pod labelled by hand
/// with a Deployment's name in the same namespace is adopted by that Deployment.
public enum WorkloadLabels {
    /// The name of the Deployment that owns the pod, in the pod's namespace.
    public static let deployment = "meridian.io/deployment"
    /// The `PodTemplateSpec.templateHash` of the template the pod was made from.
    public static let podTemplateHash = "pod-template-hash"
}

/// What a Deployment controller must do to bring a Deployment's pods in line with its spec.
public struct DeploymentPlan: Sendable, Hashable {
    /// The hash of the Deployment's current template, as carried by every pod in `create`.
    public var templateHash: String
    /// New pods, fully formed: name, namespace, labels, annotations and spec.
    public var create: [Pod]
    /// Pods to delete, in the order they should go.
    public var delete: [PodDeletion]

    public init(templateHash: String, create: [Pod] = [], delete: [PodDeletion] = []) {
        self.templateHash = templateHash
        self.create = create
        self.delete = delete
    }

    /// True when the pods already match the Deployment.
    public var isEmpty: Bool { create.isEmpty && delete.isEmpty }
}

/// One pod a Deployment no longer wants, and why, so that the controller can say so.
public struct PodDeletion: Sendable, Hashable {
    /// Why a Deployment lets go of a pod.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// Made from an earlier template; a pod of the current template replaces it.
        case outdatedTemplate
        /// Succeeded or Failed: it will not run again, so it is replaced.
        case finished
        /// More pods of the current template are running than `replicas` asks for.
        case surplus
    }

    public var name: String
    public var reason: Reason

    public init(name: String, reason: Reason) {
        self.name = name
        self.reason = reason
    }
}

/// The decisions of the Deployment controller, kept free of I/O so that they can be
/// tested on their own.
///
/// Given the pods that exist (pods being deleted, `deletionTimestamp` set, are on their way
/// out and count for nothing but `Recreate`'s wait), a plan
/// - deletes every finished owned pod;
/// - creates pods of the current template until `replicas` of them are active;
/// - deletes the surplus when more than `replicas` are active, least valuable first (see
///   `deletionOrder(_:)`);
/// - replaces pods of an outdated template by the Deployment's strategy. `RollingUpdate` (the
///   default): new pods are created while the total stays within `replicas + maxSurge`, and old
///   ones are deleted only while at least `replicas - maxUnavailable` pods stay ready (old pods
///   that are not ready go first, they serve nothing); readiness is the pod's, so with a
///   readiness probe an old pod goes only once a new one answers it. `Recreate`: every old pod
///   is deleted, and new ones are created once none is left, terminating ones included.
public enum DeploymentPlanner {
    /// The length of the random part that ends each generated pod name.
    public static let nameSuffixLength = 5

    /// Whether `pod` belongs to `deployment`: the same namespace, and the
    /// `meridian.io/deployment` label naming it.
    public static func owns(_ deployment: Deployment, _ pod: Pod) -> Bool {
        pod.metadata.labels[WorkloadLabels.deployment] == deployment.metadata.name
            && effectiveNamespace(pod.metadata) == effectiveNamespace(deployment.metadata)
    }

    /// The plan for `deployment`, given the pods that exist. Pods it does not own may be
    /// passed too: they are ignored, except that no new pod takes one of their names.
    /// `generator` draws the random name suffixes; pass a seeded one for repeatable names.
    public static func plan(
        for deployment: Deployment,
        existing pods: [ObservedPod],
        using generator: inout some RandomNumberGenerator
    ) -> DeploymentPlan {
        let hash = deployment.spec.template.templateHash
        var plan = DeploymentPlan(templateHash: hash)
        var active: [ObservedPod] = []
        var old: [ObservedPod] = []
        var oldTerminating = 0
        for observed in pods where owns(deployment, observed.pod) {
            let name = observed.pod.metadata.name
            let outdated = observed.pod.metadata.labels[WorkloadLabels.podTemplateHash] != hash
            if observed.isTerminating {
                if outdated { oldTerminating += 1 }
            } else if observed.status?.phase.isFinished == true {
                plan.delete.append(PodDeletion(name: name, reason: .finished))
            } else if outdated {
                old.append(observed)
            } else {
                active.append(observed)
            }
        }

        let wanted = max(deployment.spec.replicas, 0)
        if active.count > wanted {
            let surplus = deletionOrder(active).prefix(active.count - wanted)
            plan.delete += surplus.map { PodDeletion(name: $0.pod.metadata.name, reason: .surplus) }
            active = Array(deletionOrder(active).suffix(wanted))
        }

        var toCreate = max(wanted - active.count, 0)
        if !old.isEmpty || oldTerminating > 0 {
            let strategy = deployment.spec.strategy ?? DeploymentStrategy()
            switch strategy.effectiveType {
            case .recreate:
                plan.delete += deletionOrder(old).map { PodDeletion(name: $0.pod.metadata.name, reason: .outdatedTemplate) }
                if !old.isEmpty || oldTerminating > 0 { toCreate = 0 }
            case .rollingUpdate:
                let limits = (strategy.rollingUpdate ?? RollingUpdateDeployment()).limits(replicas: wanted)
                toCreate = min(toCreate, max(wanted + limits.surge - active.count - old.count, 0))
                let unready = old.filter { !$0.isReady }
                let ready = old.filter(\.isReady)
                let readyNow = active.filter(\.isReady).count + ready.count
                let removable = max(readyNow - max(wanted - limits.unavailable, 0), 0)
                let going = deletionOrder(unready) + deletionOrder(ready).prefix(removable)
                plan.delete += going.map { PodDeletion(name: $0.pod.metadata.name, reason: .outdatedTemplate) }
            }
        }

        var takenNames = Set(pods.map(\.pod.metadata.name))
        for _ in 0..<toCreate {
            let name = uniquePodName(for: deployment, templateHash: hash, avoiding: takenNames, using: &generator)
            takenNames.insert(name)
            plan.create.append(pod(for: deployment, named: name, templateHash: hash))
        }
        return plan
    }

    /// `plan(for:existing:using:)` with the system's random number generator.
    public static func plan(for deployment: Deployment, existing pods: [ObservedPod]) -> DeploymentPlan {
        var generator = SystemRandomNumberGenerator()
        return plan(for: deployment, existing: pods, using: &generator)
    }

    /// A pod of `deployment`'s current template: the template's labels plus the ownership
    /// labels (which override template labels of the same keys), its annotations and spec.
    public static func pod(for deployment: Deployment, named name: String, templateHash: String) -> Pod {
        let template = deployment.spec.template
        var labels = template.metadata.labels
        labels[WorkloadLabels.deployment] = deployment.metadata.name
        labels[WorkloadLabels.podTemplateHash] = templateHash
        let metadata = ObjectMeta(
            name: name,
            namespace: effectiveNamespace(deployment.metadata),
            labels: labels,
            annotations: template.metadata.annotations
        )
        return Pod(metadata: metadata, spec: template.spec)
    }

    /// `<deployment>-<templatehash>-<suffix>`, with the part before the suffix cut to 58
    /// characters as Kubernetes cuts generated names, so that the name stays a DNS label.
    /// The suffix is drawn again while the name is taken.
    static func uniquePodName(
        for deployment: Deployment,
        templateHash: String,
        avoiding taken: Set<String>,
        using generator: inout some RandomNumberGenerator
    ) -> String {
        let prefix = String("\(deployment.metadata.name)-\(templateHash)-".prefix(namePrefixLength))
        while true {
            let name = prefix + SafeAlphabet.randomString(length: nameSuffixLength, using: &generator)
            if !taken.contains(name) { return name }
        }
    }

    static let namePrefixLength = NameSyntax.maximumLabelLength - nameSuffixLength

    /// Pods in the order a scale-down removes them, the pods that serve least first:
    /// unscheduled before scheduled; Pending (or not yet reported) before Unknown before
    /// Running; not ready before ready; more restarts before fewer; newer before older by
    /// `creationTimestamp` (a pod without one counts as newest); then by name.
    /// Timestamps are compared as text, which orders the RFC 3339 UTC form the store writes.
    public static func deletionOrder(_ pods: [ObservedPod]) -> [ObservedPod] {
        pods.sorted(by: deletedBefore)
    }

    private static func deletedBefore(_ lhs: ObservedPod, _ rhs: ObservedPod) -> Bool {
        let lhsScheduled = lhs.nodeName != nil
        let rhsScheduled = rhs.nodeName != nil
        if lhsScheduled != rhsScheduled { return !lhsScheduled }
        let lhsPhase = phaseRank(lhs.status?.phase)
        let rhsPhase = phaseRank(rhs.status?.phase)
        if lhsPhase != rhsPhase { return lhsPhase < rhsPhase }
        if lhs.isReady != rhs.isReady { return !lhs.isReady }
        let lhsRestarts = lhs.status?.restartCount ?? 0
        let rhsRestarts = rhs.status?.restartCount ?? 0
        if lhsRestarts != rhsRestarts { return lhsRestarts > rhsRestarts }
        let lhsCreated = lhs.pod.metadata.creationTimestamp
        let rhsCreated = rhs.pod.metadata.creationTimestamp
        if lhsCreated != rhsCreated {
            guard let lhsCreated else { return true }
            guard let rhsCreated else { return false }
            return lhsCreated > rhsCreated
        }
        return lhs.pod.metadata.name.utf8.lexicographicallyPrecedes(rhs.pod.metadata.name.utf8)
    }

    private static func phaseRank(_ phase: PodPhase?) -> Int {
        switch phase {
        case nil, .pending?: 0
        case .unknown?: 1
        case .running?, .succeeded?, .failed?: 2
        }
    }

    private static func effectiveNamespace(_ metadata: ObjectMeta) -> String {
        metadata.namespace ?? KubernetesObject.defaultNamespace
    }
}
