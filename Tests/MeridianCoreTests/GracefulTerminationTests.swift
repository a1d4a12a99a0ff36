import Foundation
import Testing
@testable import MeridianCore

// MARK: - Manifests

private func pod(spec: String, container: String = "") -> String {
    """
    apiVersion: v1
    kind: Pod
    metadata: {name: web}
    spec:
    \(spec.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
      containers:
      - name: main
        command: [meridian, tool, echo-server]
        ports: [{name: http, containerPort: 8080}]
    \(container.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
    """
}

private func decodedPod(_ yaml: String) throws -> Pod {
    guard case let .pod(pod)? = try ManifestDecoder.decode(yaml, source: "pod.yaml").first else {
        Issue.record("expected a Pod")
        throw CancellationError()
    }
    return pod
}

private func failure(_ yaml: String) throws -> ManifestError {
    try #require(throws: ManifestError.self) { try ManifestDecoder.decode(yaml, source: "pod.yaml") }
}

@Suite("Termination and readiness fields in manifests")
struct TerminationManifestTests {
    @Test("terminationGracePeriodSeconds is read, and defaults to 30")
    func gracePeriod() throws {
        #expect(try decodedPod(pod(spec: "terminationGracePeriodSeconds: 5")).spec.effectiveTerminationGracePeriodSeconds == 5)
        #expect(try decodedPod(pod(spec: "terminationGracePeriodSeconds: 0")).spec.terminationGracePeriodSeconds == 0)
        #expect(try decodedPod(pod(spec: "")).spec.effectiveTerminationGracePeriodSeconds == 30)
    }

    @Test("a grace period must be a whole number of seconds within 0...3600", arguments: [
        ("-1", "must be between 0 and 3600 seconds, got -1"), ("3601", "must be between 0 and 3600 seconds, got 3601"),
        ("\"30\"", "expected an integer"), ("1.5", "expected an integer"),
    ])
    func gracePeriodBounds(value: String, message: String) throws {
        let error = try failure(pod(spec: "terminationGracePeriodSeconds: \(value)"))
        #expect(error.field == "spec.terminationGracePeriodSeconds")
        #expect(error.message.contains(message), "\(error)")
    }

    @Test("a Deployment's template carries the grace period, and it is part of the template hash")
    func deploymentTemplate() throws {
        let yaml = """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  terminationGracePeriodSeconds: 12
                  containers: [{name: main, command: [sleep, "1000"]}]
            """
        guard case let .deployment(deployment)? = try ManifestDecoder.decode(yaml, source: "d.yaml").first else {
            Issue.record("expected a Deployment")
            return
        }
        #expect(deployment.spec.template.spec.terminationGracePeriodSeconds == 12)
        var other = deployment.spec.template
        other.spec.terminationGracePeriodSeconds = nil
        #expect(other.templateHash != deployment.spec.template.templateHash)
        let bad = try #require(throws: ManifestError.self) {
            try ManifestDecoder.decode(yaml.replacingOccurrences(of: ": 12", with: ": -3"), source: "d.yaml")
        }
        #expect(bad.field == "spec.template.spec.terminationGracePeriodSeconds")
    }

    @Test("a preStop sleep is read; it may not outlast the grace period; other hooks are refused")
    func preStop() throws {
        let sleeping = try decodedPod(pod(spec: "terminationGracePeriodSeconds: 10", container: "lifecycle: {preStop: {sleep: {seconds: 4}}}"))
        #expect(sleeping.spec.containers[0].lifecycle?.preStop?.sleep?.seconds == 4)
        let long = try failure(pod(spec: "terminationGracePeriodSeconds: 10", container: "lifecycle: {preStop: {sleep: {seconds: 11}}}"))
        #expect(long.field == "spec.containers[0].lifecycle.preStop.sleep.seconds")
        let exec = try failure(pod(spec: "", container: "lifecycle: {preStop: {exec: {command: [sh]}}}"))
        #expect(exec.message.contains("Meridian runs the sleep action only"), "\(exec)")
        #expect(try decodedPod(pod(spec: "", container: "lifecycle: {postStart: {exec: {command: [sh]}}}")).spec.containers[0].lifecycle?.preStop == nil)
    }

    @Test("readiness probes: tcpSocket and httpGet by number or port name; exec is refused; timings are bounded")
    func readinessProbe() throws {
        let tcp = try decodedPod(pod(spec: "", container: "readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}"))
        let probe = try #require(tcp.spec.containers[0].readinessProbe)
        #expect(probe.port(among: tcp.spec.containers[0].ports) == 8080)
        #expect(probe.effectivePeriodSeconds == 1 && probe.effectiveFailureThreshold == 3)
        let http = try decodedPod(pod(spec: "", container: "readinessProbe: {httpGet: {path: /healthz, port: 8080}}"))
        #expect(http.spec.containers[0].readinessProbe?.httpGet?.effectivePath == "/healthz")
        #expect(try failure(pod(spec: "", container: "readinessProbe: {exec: {command: [true]}}")).message.contains("use tcpSocket or httpGet"))
        #expect(try failure(pod(spec: "", container: "readinessProbe: {tcpSocket: {port: admin}}")).message.contains("names no TCP port"))
        #expect(try failure(pod(spec: "", container: "readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 0}")).field
                == "spec.containers[0].readinessProbe.periodSeconds")
        #expect(try failure(pod(spec: "", container: "readinessProbe: {periodSeconds: 1}")).message.contains("one of tcpSocket or httpGet"))
    }

    @Test("deployment strategies: percentages and numbers; both zero, Recreate with rollingUpdate and bad text are refused")
    func strategies() throws {
        func deployment(_ strategy: String) -> String {
            """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              strategy: \(strategy)
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec: {containers: [{name: main, command: [sleep, "1000"]}]}
            """
        }
        guard case let .deployment(rolling)? = try ManifestDecoder.decode(deployment("{rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}"), source: "d").first
        else { Issue.record("expected a Deployment"); return }
        func limits(_ rolling: RollingUpdateDeployment?, _ replicas: Int) -> [Int] {
            rolling.map { [$0.limits(replicas: replicas).surge, $0.limits(replicas: replicas).unavailable] } ?? []
        }
        #expect(limits(rolling.spec.strategy?.rollingUpdate, 4) == [1, 0])
        #expect(limits(RollingUpdateDeployment(), 4) == [1, 1])
        #expect(limits(RollingUpdateDeployment(), 2) == [1, 0])
        #expect(limits(RollingUpdateDeployment(maxSurge: 0, maxUnavailable: "0%"), 3) == [0, 1])
        let refusals = [
            ("{rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}", "may not be 0 when maxSurge is 0"),
            ("{type: Recreate, rollingUpdate: {maxSurge: 1}}", "may not be given when type is Recreate"),
            ("{rollingUpdate: {maxSurge: lots}}", "a percentage"),
            ("{rollingUpdate: {maxUnavailable: 150%}}", "at most 100%"),
            ("{type: BlueGreen}", "expected one of RollingUpdate, Recreate"),
        ]
        for (strategy, message) in refusals {
            let error = try #require(throws: ManifestError.self) { try ManifestDecoder.decode(deployment(strategy), source: "d") }
            #expect(error.message.contains(message), "\(strategy): \(error)")
        }
    }
}

// MARK: - Rolling updates

private func webDeployment(replicas: Int, version: String, strategy: DeploymentStrategy? = nil) -> Deployment {
    let container = Container(name: "main", command: ["meridian", "tool", "echo-server"], ports: [ContainerPort(name: "http", containerPort: 8080)],
                              env: [EnvVar(name: "VERSION", value: version)])
    return Deployment(metadata: ObjectMeta(name: "web", namespace: "default"),
                      spec: DeploymentSpec(replicas: replicas, selector: LabelSelector(matchLabels: ["app": "web"]),
                                           template: PodTemplateSpec(metadata: PodTemplateMetadata(labels: ["app": "web"]),
                                                                     spec: PodSpec(containers: [container])),
                                           strategy: strategy))
}

private func member(_ deployment: Deployment, _ name: String, ready: Bool = true, terminating: Bool = false) -> ObservedPod {
    var pod = DeploymentPlanner.pod(for: deployment, named: name, templateHash: deployment.spec.template.templateHash)
    pod.spec.nodeName = "node-a"
    if terminating { pod = pod.markedForDeletion(at: "2026-01-01T00:00:00Z") }
    return ObservedPod(pod: pod, status: PodStatus(phase: .running, podIP: "10.1.1.\(name.count)", nodeName: "node-a", ready: ready))
}

@Suite("Rolling updates")
struct RollingUpdateTests {
    @Test("two replicas (surge 1, unavailable 0): one new pod first, an old one only once it is ready")
    func surgeThenReplace() {
        let v1 = webDeployment(replicas: 2, version: "1")
        let v2 = webDeployment(replicas: 2, version: "2")
        let old = [member(v1, "web-a"), member(v1, "web-b")]
        let first = DeploymentPlanner.plan(for: v2, existing: old)
        #expect(first.create.count == 1 && first.delete.isEmpty, "surge first: \(first)")

        let starting = member(v2, "web-c", ready: false)
        let waiting = DeploymentPlanner.plan(for: v2, existing: old + [starting])
        #expect(waiting.isEmpty, "nothing moves while the new pod is not ready: \(waiting)")

        let ready = member(v2, "web-c")
        let replace = DeploymentPlanner.plan(for: v2, existing: old + [ready])
        #expect(replace.create.isEmpty)
        #expect(replace.delete.count == 1 && replace.delete.allSatisfy { $0.reason == .outdatedTemplate })

        // The deleted pod is terminating: it counts for nothing, so the second new pod follows.
        let gone = replace.delete[0].name
        let after = old.map { $0.pod.metadata.name == gone ? member(v1, gone, terminating: true) : $0 } + [ready]
        let next = DeploymentPlanner.plan(for: v2, existing: after)
        #expect(next.create.count == 1 && next.delete.isEmpty, "\(next)")
    }

    @Test("maxUnavailable lets old pods go before new ones are ready, never more than it allows")
    func unavailableBudget() {
        let v1 = webDeployment(replicas: 4, version: "1")
        let v2 = webDeployment(replicas: 4, version: "2")
        let old = ["web-a", "web-b", "web-c", "web-d"].map { member(v1, $0) }
        let plan = DeploymentPlanner.plan(for: v2, existing: old)
        #expect(plan.create.count == 1)
        #expect(plan.delete.count == 1)
    }

    @Test("old pods that are not ready go at once: they serve nothing")
    func unreadyOldGoFirst() {
        let v1 = webDeployment(replicas: 2, version: "1")
        let v2 = webDeployment(replicas: 2, version: "2")
        let plan = DeploymentPlanner.plan(for: v2, existing: [member(v1, "web-a"), member(v1, "web-b", ready: false)])
        #expect(plan.delete == [PodDeletion(name: "web-b", reason: .outdatedTemplate)])
    }

    @Test("Recreate deletes every old pod and creates new ones only once none is left, terminating ones included")
    func recreate() {
        let v1 = webDeployment(replicas: 2, version: "1", strategy: DeploymentStrategy(type: .recreate))
        let v2 = webDeployment(replicas: 2, version: "2", strategy: DeploymentStrategy(type: .recreate))
        let first = DeploymentPlanner.plan(for: v2, existing: [member(v1, "web-a"), member(v1, "web-b")])
        #expect(first.delete.count == 2 && first.create.isEmpty)
        let draining = DeploymentPlanner.plan(for: v2, existing: [member(v1, "web-a", terminating: true)])
        #expect(draining.isEmpty)
        #expect(DeploymentPlanner.plan(for: v2, existing: []).create.count == 2)
    }

    @Test("a terminating pod of the current template is not counted, and not deleted again")
    func terminatingIsNotCounted() {
        let v1 = webDeployment(replicas: 1, version: "1")
        let plan = DeploymentPlanner.plan(for: v1, existing: [member(v1, "web-a", terminating: true)])
        #expect(plan.create.count == 1 && plan.delete.isEmpty)
    }
}

// MARK: - Backend states

@Suite("Backend states of Services and exports")
struct BackendStateTests {
    static let service = Service(metadata: ObjectMeta(name: "web", namespace: "default", annotations: ["service.cilium.io/global": "true"]),
                                 spec: ServiceSpec(selector: ["app": "web"], ports: [ServicePort(port: 80, targetPort: "http")]))
    static let deployment = webDeployment(replicas: 2, version: "1")

    @Test("a deleted pod that was ready stays a backend, terminating; one that was not ready is none")
    func terminatingBackend() {
        let pods = [member(Self.deployment, "web-a"), member(Self.deployment, "web-bb", terminating: true),
                    member(Self.deployment, "web-ccc", ready: false, terminating: true)]
        let backends = ServiceBackendResolver.resolve(Self.service, pods: pods)[0].backends
        #expect(backends.map(\.podName) == ["web-a", "web-bb"])
        #expect(backends.map(\.state) == [.active, .terminating])
    }

    @Test("an imported backend's state reaches the merge; the extension is left out when all are active")
    func importedState() throws {
        var exported = ClusterService(cluster: "cluster2", namespace: "default", name: "web",
                                      backends: ["10.2.1.5": ["": L4Addr(protocol: .tcp, port: 8080)], "10.2.1.6": ["": L4Addr(protocol: .tcp, port: 8080)]],
                                      includeExternal: true, shared: true, clusterID: 2)
        let plain = String(decoding: try JSONEncoder().encode(exported), as: UTF8.self)
        #expect(!plain.contains("backendStates"), "an all-active record is exactly Cilium's")
        exported.backendStates = ["10.2.1.5": "terminating"]
        let decoded = try JSONDecoder().decode(ClusterService.self, from: JSONEncoder().encode(exported))
        #expect(decoded.state(of: "10.2.1.5") == .terminating && decoded.state(of: "10.2.1.6") == .active)
        var local = Self.service
        local.spec.clusterIP = "10.96.0.20"
        let frontends = GlobalServiceMerge.frontends(cluster: "cluster1", clusterID: 1, services: [local], pods: [], remote: [decoded])
        let states = Dictionary(uniqueKeysWithValues: try #require(frontends.first).backends.map { ($0.ip, $0.state) })
        #expect(states == ["10.2.1.5": "terminating", "10.2.1.6": "active"])
    }

    @Test("affinity local with only terminating local backends adds the remote ones, keeping the local ones")
    func affinityFallsBackOnTerminating() {
        let local = [MeshBackend(ip: "10.1.1.5", ports: [:], cluster: "c1", isLocal: true, state: .terminating)]
        let remote = [MeshBackend(ip: "10.2.1.5", ports: [:], cluster: "c2", isLocal: false)]
        let selected = BackendSelection.select(local: local, remote: remote, affinity: .local).selected
        #expect(selected.map(\.ip) == ["10.1.1.5", "10.2.1.5"])
        let active = [MeshBackend(ip: "10.1.1.6", ports: [:], cluster: "c1", isLocal: true)]
        #expect(BackendSelection.select(local: local + active, remote: remote, affinity: .local).selected.map(\.cluster) == ["c1", "c1"])
    }
}

@Suite("Remote backend states")
struct RemoteBackendStateTests {
    static let validation = try! RemoteRecordValidation(remoteName: "cluster2", remoteID: ClusterID(2), podCIDRs: [IPCIDR("10.2.0.0/16")!],
                                                         layout: IdentityLayout(maxConnectedClusters: .c255))

    static func record(states: [String: String]?) -> ClusterService {
        ClusterService(cluster: "cluster2", namespace: "default", name: "web", backends: ["10.2.1.5": ["": L4Addr(protocol: .tcp, port: 8080)]],
                       includeExternal: true, shared: true, clusterID: 2, backendStates: states)
    }

    @Test("terminating and active are accepted")
    func accepted() throws {
        try Self.validation.validate(service: Self.record(states: ["10.2.1.5": "terminating"]), keyName: "default/web")
        try Self.validation.validate(service: Self.record(states: ["10.2.1.5": "active"]), keyName: "default/web")
    }

    @Test("a state a cluster does not export, or for an address that is not a backend, is refused with its reason", arguments: [
        ["10.2.1.5": "quarantined"], ["10.2.1.5": "draining"], ["10.2.1.5": "\u{1b}[31mterminating"], ["10.2.9.9": "terminating"],
    ])
    func refused(states: [String: String]) throws {
        let rejection = try #require(throws: RemoteRecordRejection.self) {
            try Self.validation.validate(service: Self.record(states: states), keyName: "default/web")
        }
        #expect(rejection.reason == .unknownBackendState)
        #expect(!rejection.description.contains("\u{1b}"), "peer text is escaped")
    }
}
