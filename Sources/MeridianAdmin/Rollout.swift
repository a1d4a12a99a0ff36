import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// How far a Deployment's rollout has come, as `meridian rollout status` reports it.
public struct RolloutProgress: Sendable, Hashable, Codable {
    public var replicas: Int
    /// Pods of the current template that are not being deleted.
    public var updated: Int
    /// Of those, the ready ones.
    public var updatedReady: Int
    /// Pods of an earlier template, terminating ones included.
    public var old: Int
    /// Pods being deleted, of any template.
    public var terminating: Int

    public init(replicas: Int, updated: Int, updatedReady: Int, old: Int, terminating: Int) {
        self.replicas = replicas
        self.updated = updated
        self.updatedReady = updatedReady
        self.old = old
        self.terminating = terminating
    }

    /// Every pod is of the current template and ready, and none is left winding down.
    public var isComplete: Bool { updated == replicas && updatedReady == replicas && old == 0 && terminating == 0 }

    /// A line in kubectl's words.
    public func summary(name: String) -> String {
        if isComplete { return "deployment \"\(name)\" successfully rolled out" }
        if updated < replicas { return "Waiting for deployment \"\(name)\" rollout to finish: \(updated) out of \(replicas) new replicas have been updated..." }
        if old > 0 || terminating > 0 {
            return "Waiting for deployment \"\(name)\" rollout to finish: \(old) old replicas are pending termination..."
        }
        return "Waiting for deployment \"\(name)\" rollout to finish: \(updatedReady) of \(replicas) updated replicas are available..."
    }
}

/// `meridian rollout restart | status`: what kubectl's rollout commands do for Deployments.
public enum Rollout {
    /// The annotation `kubectl rollout restart` sets on the pod template.
    public static let restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

    /// Sets `restartedAt` on the Deployment's template: a new template, so its controller
    /// replaces every pod by the Deployment's strategy. Returns the timestamp written.
    @discardableResult
    public static func restart(_ name: String, namespace: String, context: MeridianContext) async throws -> String {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let store = ResourceStore(client: client)
            guard case var .deployment(deployment)? = try await store.get(.deployment, namespace: namespace, name: name) else {
                throw AdminError.deploymentNotFound(namespace: namespace, name: name, cluster: context.cluster)
            }
            let now = ISO8601DateFormatter().string(from: Date())
            deployment.spec.template.metadata.annotations[restartedAtAnnotation] = now
            let object = KubernetesObject.deployment(deployment)
            try await client.put(ResourceStore.key(for: object), StoreCoding.encode(object))
            return now
        }
    }

    /// The Deployment's pods counted against its current template.
    public static func progress(_ name: String, namespace: String, context: MeridianContext) async throws -> RolloutProgress {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            guard case let .deployment(deployment)? = try await ResourceStore(client: client).get(.deployment, namespace: namespace, name: name) else {
                throw AdminError.deploymentNotFound(namespace: namespace, name: name, cluster: context.cluster)
            }
            return progress(of: deployment, pods: try await ObservedPods.list(client).pods)
        }
    }

    public static func progress(of deployment: Deployment, pods: [ObservedPod]) -> RolloutProgress {
        let hash = deployment.spec.template.templateHash
        var progress = RolloutProgress(replicas: max(deployment.spec.replicas, 0), updated: 0, updatedReady: 0, old: 0, terminating: 0)
        for observed in pods where DeploymentPlanner.owns(deployment, observed.pod) {
            let current = observed.pod.metadata.labels[WorkloadLabels.podTemplateHash] == hash
            if observed.isTerminating { progress.terminating += 1 }
            if !current {
                progress.old += 1
            } else if !observed.isTerminating {
                progress.updated += 1
                if observed.isReady { progress.updatedReady += 1 }
            }
        }
        return progress
    }
}
