import Testing
@testable import MeridianCore

// MARK: - Fixtures

/// SplitMix64: a tiny seeded generator, so generated pod names repeat from run to run.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

private func echoSpec(port: Int = 8080, portName: String = "http") -> PodSpec {
    PodSpec(containers: [
        Container(
            name: "echo",
            command: ["meridian", "tool", "echo-server", "--port", String(port)],
            ports: [ContainerPort(name: portName, containerPort: port)]
        ),
    ])
}

private func deployment(
    name: String = "backend",
    namespace: String? = "default",
    replicas: Int,
    spec: PodSpec = echoSpec()
) -> Deployment {
    Deployment(
        metadata: ObjectMeta(name: name, namespace: namespace),
        spec: DeploymentSpec(
            replicas: replicas,
            selector: LabelSelector(matchLabels: ["app": name]),
            template: PodTemplateSpec(metadata: PodTemplateMetadata(labels: ["app": name]), spec: spec)
        )
    )
}

private func observed(_ pod: Pod, _ status: PodStatus? = nil, created: String? = nil) -> ObservedPod {
    var pod = pod
    pod.metadata.creationTimestamp = created
    return ObservedPod(pod: pod, status: status)
}

private func running(_ ip: String, on node: String = "node-a") -> PodStatus {
    PodStatus(phase: .running, podIP: ip, nodeName: node)
}

/// A pod made by `deployment` from its current template, as the controller would have created it.
private func ownedPod(of deployment: Deployment, named name: String) -> Pod {
    DeploymentPlanner.pod(for: deployment, named: name, templateHash: deployment.spec.template.templateHash)
}

private func isDNSLabel(_ name: String) -> Bool {
    NameSyntax.dns1123LabelProblem(name) == nil
}

// MARK: - Template hash

@Suite("Pod template hash")
struct PodTemplateHashTests {
    @Test func hashIsPinnedSoThatItIsStableAcrossRunsAndMachines() {
        #expect(deployment(replicas: 1).spec.template.templateHash == "76786d7b9")
    }

    @Test func hashUsesOnlySafeCharacters() {
        let hash = deployment(replicas: 1).spec.template.templateHash
        #expect(!hash.isEmpty && hash.count <= 10)
        #expect(hash.allSatisfy { "bcdfghjklmnpqrstvwxz2456789".contains($0) })
    }

    @Test func hashIgnoresReplicasButFollowsTheTemplate() {
        let base = deployment(replicas: 1).spec.template
        #expect(deployment(replicas: 7).spec.template.templateHash == base.templateHash)

        var command = base
        command.spec.containers[0].command.append("--verbose")
        var label = base
        label.metadata.labels["tier"] = "back"
        var port = base
        port.spec.containers[0].ports[0].protocol = .udp
        var env = base
        env.spec.containers[0].env = [EnvVar(name: "A", value: "")]
        let hashes = [base, command, label, port, env].map(\.templateHash)
        #expect(Set(hashes).count == hashes.count)
    }

    @Test func movingAnArgumentBetweenCommandAndArgsChangesTheHash() {
        var first = deployment(replicas: 1).spec.template
        first.spec.containers[0].command = ["a", "b"]
        var second = first
        second.spec.containers[0].command = ["a"]
        second.spec.containers[0].args = ["b"]
        #expect(first.templateHash != second.templateHash)
    }
}

// MARK: - Deployment planner

@Suite("Deployment planner")
struct DeploymentPlannerTests {
    @Test func scaleUpFromNothingCreatesNamedLabelledPods() throws {
        let backend = deployment(replicas: 2)
        var generator = SeededGenerator(seed: 1)
        let plan = DeploymentPlanner.plan(for: backend, existing: [], using: &generator)
        let hash = backend.spec.template.templateHash

        #expect(plan.templateHash == hash)
        #expect(plan.delete.isEmpty)
        #expect(plan.create.count == 2)
        #expect(Set(plan.create.map(\.metadata.name)).count == 2)
        for pod in plan.create {
            let name = pod.metadata.name
            #expect(name.hasPrefix("backend-\(hash)-"))
            let suffix = name.dropFirst("backend-\(hash)-".count)
            #expect(suffix.count == 5)
            #expect(suffix.allSatisfy { $0.isLowercase || $0.isNumber })
            #expect(isDNSLabel(name))
            #expect(pod.metadata.namespace == "default")
            #expect(pod.metadata.labels == [
                "app": "backend", WorkloadLabels.deployment: "backend", WorkloadLabels.podTemplateHash: hash,
            ])
            #expect(pod.spec == backend.spec.template.spec)
            #expect(DeploymentPlanner.owns(backend, pod))
            #expect(backend.spec.selector.matches(pod.metadata.labels))
        }
    }

    @Test func sameSeedGivesSameNames() {
        let backend = deployment(replicas: 3)
        var first = SeededGenerator(seed: 42)
        var second = SeededGenerator(seed: 42)
        var other = SeededGenerator(seed: 43)
        let names = DeploymentPlanner.plan(for: backend, existing: [], using: &first).create.map(\.metadata.name)
        #expect(DeploymentPlanner.plan(for: backend, existing: [], using: &second).create.map(\.metadata.name) == names)
        #expect(DeploymentPlanner.plan(for: backend, existing: [], using: &other).create.map(\.metadata.name) != names)
    }

    @Test func takenNamesAreNotReused() throws {
        let backend = deployment(replicas: 1)
        var probe = SeededGenerator(seed: 7)
        let firstChoice = try #require(DeploymentPlanner.plan(for: backend, existing: [], using: &probe).create.first)

        var stranger = firstChoice
        stranger.metadata.labels = ["app": "something-else"]
        var generator = SeededGenerator(seed: 7)
        let plan = DeploymentPlanner.plan(for: backend, existing: [observed(stranger)], using: &generator)
        #expect(plan.create.count == 1)
        #expect(plan.create[0].metadata.name != firstChoice.metadata.name)
    }

    @Test func matchingPodsNeedNoChange() {
        let backend = deployment(replicas: 2)
        let pods = [
            observed(ownedPod(of: backend, named: "backend-a"), running("10.1.0.1")),
            observed(ownedPod(of: backend, named: "backend-b"), nil),
        ]
        #expect(DeploymentPlanner.plan(for: backend, existing: pods).isEmpty)
    }

    @Test func scaleUpAddsOnlyTheMissingPods() {
        let backend = deployment(replicas: 3)
        let pods = [observed(ownedPod(of: backend, named: "backend-a"), running("10.1.0.1"))]
        let plan = DeploymentPlanner.plan(for: backend, existing: pods)
        #expect(plan.create.count == 2)
        #expect(plan.delete.isEmpty)
    }

    @Test func scaleDownDeletesUnreadyThenNewestFirst() {
        let backend = deployment(replicas: 2)
        let pods = [
            observed(ownedPod(of: backend, named: "old-ready"), running("10.1.0.1"), created: "2025-01-01T00:00:00Z"),
            observed(ownedPod(of: backend, named: "new-ready"), running("10.1.0.2"), created: "2025-01-03T00:00:00Z"),
            observed(ownedPod(of: backend, named: "mid-ready"), running("10.1.0.3"), created: "2025-01-02T00:00:00Z"),
            observed(
                ownedPod(of: backend, named: "old-crashing"),
                PodStatus(phase: .running, reason: PodStatusReason.crashLoopBackOff, podIP: "10.1.0.4", nodeName: "node-a"),
                created: "2024-12-01T00:00:00Z"
            ),
        ]
        let plan = DeploymentPlanner.plan(for: backend, existing: pods)
        #expect(plan.create.isEmpty)
        #expect(plan.delete == [
            PodDeletion(name: "old-crashing", reason: .surplus),
            PodDeletion(name: "new-ready", reason: .surplus),
        ])
    }

    @Test func deletionOrderPrefersPodsThatServeLeast() {
        let backend = deployment(replicas: 0)
        var pinned = ownedPod(of: backend, named: "pending-scheduled")
        pinned.spec.nodeName = "node-b"
        let pods = [
            observed(ownedPod(of: backend, named: "ready"), running("10.1.0.1")),
            observed(
                ownedPod(of: backend, named: "restarting"),
                PodStatus(phase: .running, podIP: "10.1.0.2", nodeName: "node-a", restartCount: 3)
            ),
            observed(pinned, PodStatus(phase: .pending, nodeName: "node-b")),
            observed(ownedPod(of: backend, named: "unscheduled"), nil),
            observed(ownedPod(of: backend, named: "unknown"), PodStatus(phase: .unknown, nodeName: "node-a")),
            observed(
                ownedPod(of: backend, named: "not-ready"),
                PodStatus(phase: .running, reason: PodStatusReason.crashLoopBackOff, nodeName: "node-a")
            ),
        ]
        #expect(DeploymentPlanner.deletionOrder(pods).map(\.pod.metadata.name) == [
            "unscheduled", "pending-scheduled", "unknown", "not-ready", "restarting", "ready",
        ])
    }

    @Test func podsWithoutTimestampCountAsNewest() {
        let backend = deployment(replicas: 1)
        let pods = [
            observed(ownedPod(of: backend, named: "stamped"), running("10.1.0.1"), created: "2025-01-01T00:00:00Z"),
            observed(ownedPod(of: backend, named: "fresh"), running("10.1.0.2")),
        ]
        #expect(DeploymentPlanner.plan(for: backend, existing: pods).delete == [PodDeletion(name: "fresh", reason: .surplus)])
    }

    @Test func scaleToZeroDeletesEverything() {
        let backend = deployment(replicas: 0)
        let pods = [
            observed(ownedPod(of: backend, named: "backend-a"), running("10.1.0.1")),
            observed(ownedPod(of: backend, named: "backend-b"), running("10.1.0.2")),
        ]
        let plan = DeploymentPlanner.plan(for: backend, existing: pods)
        #expect(plan.create.isEmpty)
        #expect(Set(plan.delete.map(\.name)) == ["backend-a", "backend-b"])
        #expect(plan.delete.allSatisfy { $0.reason == .surplus })
    }

    @Test func templateChangeStartsARollingUpdate() {
        let old = deployment(replicas: 2)
        let pods = [
            observed(ownedPod(of: old, named: "backend-old-1"), running("10.1.0.1")),
            observed(ownedPod(of: old, named: "backend-old-2"), running("10.1.0.2")),
        ]
        let updated = deployment(replicas: 2, spec: echoSpec(port: 9090))
        let newHash = updated.spec.template.templateHash
        #expect(newHash != old.spec.template.templateHash)

        // Two replicas: surge 1, unavailable 0; the old pods stay until new ones are ready.
        let plan = DeploymentPlanner.plan(for: updated, existing: pods)
        #expect(plan.delete.isEmpty)
        #expect(plan.create.count == 1)
        #expect(plan.create.allSatisfy { $0.metadata.labels[WorkloadLabels.podTemplateHash] == newHash })
        #expect(plan.create.allSatisfy { $0.spec.containers[0].ports[0].containerPort == 9090 })
    }

    @Test func podWithoutHashLabelIsOutdated() {
        let backend = deployment(replicas: 1)
        var adopted = ownedPod(of: backend, named: "hand-made")
        adopted.metadata.labels[WorkloadLabels.podTemplateHash] = nil
        let plan = DeploymentPlanner.plan(for: backend, existing: [observed(adopted, running("10.1.0.1"))])
        #expect(plan.delete.isEmpty, "it serves until its replacement is ready")
        #expect(plan.create.count == 1)
        let replacement = observed(ownedPod(of: backend, named: "backend-new"), running("10.1.0.2"))
        let next = DeploymentPlanner.plan(for: backend, existing: [observed(adopted, running("10.1.0.1")), replacement])
        #expect(next.delete == [PodDeletion(name: "hand-made", reason: .outdatedTemplate)])
        #expect(next.create.isEmpty)
    }

    @Test func finishedPodsAreReplaced() {
        let backend = deployment(replicas: 2)
        let pods = [
            observed(ownedPod(of: backend, named: "backend-a"), running("10.1.0.1")),
            observed(ownedPod(of: backend, named: "backend-b"), PodStatus(phase: .failed, reason: "Error", exitCode: 1)),
        ]
        let plan = DeploymentPlanner.plan(for: backend, existing: pods)
        #expect(plan.delete == [PodDeletion(name: "backend-b", reason: .finished)])
        #expect(plan.create.count == 1)
    }

    @Test func podsOfOtherDeploymentsAndNamespacesAreLeftAlone() {
        let backend = deployment(replicas: 1)
        let frontend = deployment(name: "frontend", replicas: 1)
        let elsewhere = deployment(namespace: "team-b", replicas: 1)
        let pods = [
            observed(ownedPod(of: frontend, named: "frontend-a"), running("10.1.0.1")),
            observed(ownedPod(of: elsewhere, named: "backend-x"), running("10.1.0.2")),
            observed(ownedPod(of: backend, named: "backend-a"), running("10.1.0.3")),
        ]
        #expect(DeploymentPlanner.plan(for: backend, existing: pods).isEmpty)
        #expect(!DeploymentPlanner.owns(backend, pods[1].pod))
    }

    @Test func implicitDefaultNamespaceOwnsExplicitDefault() {
        let implicit = deployment(namespace: nil, replicas: 1)
        let pod = ownedPod(of: implicit, named: "backend-a")
        #expect(pod.metadata.namespace == "default")
        #expect(DeploymentPlanner.owns(implicit, pod))
        #expect(DeploymentPlanner.owns(deployment(replicas: 1), pod))
    }

    @Test func longDeploymentNamesStillGiveValidPodNames() throws {
        let name = String(repeating: "a", count: 63)
        let long = deployment(name: name, replicas: 3)
        let plan = DeploymentPlanner.plan(for: long, existing: [])
        #expect(plan.create.count == 3)
        for pod in plan.create {
            #expect(pod.metadata.name.count == 63)
            #expect(isDNSLabel(pod.metadata.name))
        }
    }
}

// MARK: - Scheduler

@Suite("Pod scheduler")
struct PodSchedulerTests {
    private static func pods(_ count: Int) -> [Pod] {
        (0..<count).map { Pod(metadata: ObjectMeta(name: "pod-\($0)"), spec: echoSpec()) }
    }

    @Test func fivePodsSpreadThreeAndTwoOverTwoNodes() {
        let placements = PodScheduler.schedule(Self.pods(5), onto: [NodeLoad(name: "node-b"), NodeLoad(name: "node-a")])
        #expect(placements == ["node-a", "node-b", "node-a", "node-b", "node-a"])
        #expect(placements.filter { $0 == "node-a" }.count == 3)
        #expect(placements.filter { $0 == "node-b" }.count == 2)
    }

    @Test func fewestPodsWinsAndTiesGoByName() throws {
        let pod = try #require(Self.pods(1).first)
        let busy = [NodeLoad(name: "node-a", podCount: 4), NodeLoad(name: "node-c", podCount: 1), NodeLoad(name: "node-b", podCount: 1)]
        #expect(PodScheduler.node(for: pod, among: busy) == "node-b")
    }

    @Test func existingLoadIsTakenIntoAccount() {
        let placements = PodScheduler.schedule(
            Self.pods(4),
            onto: [NodeLoad(name: "node-a", podCount: 3), NodeLoad(name: "node-b", podCount: 0)]
        )
        #expect(placements == ["node-b", "node-b", "node-b", "node-a"])
    }

    @Test func pinnedPodKeepsItsNode() {
        var pinned = Pod(metadata: ObjectMeta(name: "pinned"), spec: echoSpec())
        pinned.spec.nodeName = "node-z"
        #expect(PodScheduler.node(for: pinned, among: [NodeLoad(name: "node-a")]) == "node-z")
        #expect(PodScheduler.node(for: pinned, among: []) == "node-z")
    }

    @Test func pinnedPodsCountAgainstTheirNode() {
        var pinned = Pod(metadata: ObjectMeta(name: "pinned"), spec: echoSpec())
        pinned.spec.nodeName = "node-a"
        let placements = PodScheduler.schedule([pinned] + Self.pods(1), onto: [NodeLoad(name: "node-a"), NodeLoad(name: "node-b")])
        #expect(placements == ["node-a", "node-b"])
    }

    @Test func nodesWithoutRoomAreSkipped() {
        let nodes = [NodeLoad(name: "node-a", capacity: 0), NodeLoad(name: "node-b", podCount: 10, capacity: 2)]
        let placements = PodScheduler.schedule(Self.pods(3), onto: nodes)
        #expect(placements == ["node-b", "node-b", nil])
    }

    @Test func noNodesMeansNoPlacement() throws {
        let pod = try #require(Self.pods(1).first)
        #expect(PodScheduler.node(for: pod, among: []) == nil)
        #expect(PodScheduler.node(for: pod, among: [NodeLoad(name: "full", capacity: 0)]) == nil)
    }
}

// MARK: - Service backends

@Suite("Service backend resolver")
struct ServiceBackendResolverTests {
    private static func service(
        namespace: String? = nil,
        selector: [String: String] = ["app": "backend"],
        ports: [ServicePort]
    ) -> Service {
        Service(
            metadata: ObjectMeta(name: "backend", namespace: namespace),
            spec: ServiceSpec(selector: selector, ports: ports)
        )
    }

    private static func pod(
        _ name: String,
        namespace: String? = "default",
        labels: [String: String] = ["app": "backend"],
        spec: PodSpec = echoSpec()
    ) -> Pod {
        Pod(metadata: ObjectMeta(name: name, namespace: namespace, labels: labels), spec: spec)
    }

    @Test func numericTargetPortGoesToEveryReadyPod() {
        let service = Self.service(ports: [ServicePort(name: "http", port: 80, targetPort: 8080)])
        let pods = [
            observed(Self.pod("b"), running("10.1.0.2", on: "node-b")),
            observed(Self.pod("a"), running("10.1.0.1", on: "node-a")),
        ]
        let resolved = ServiceBackendResolver.resolve(service, pods: pods)
        #expect(resolved == [
            ServicePortBackends(servicePort: service.spec.ports[0], backends: [
                ServiceBackend(podName: "a", podIP: "10.1.0.1", port: 8080, nodeName: "node-a"),
                ServiceBackend(podName: "b", podIP: "10.1.0.2", port: 8080, nodeName: "node-b"),
            ]),
        ])
    }

    @Test func absentTargetPortMeansTheServicePort() {
        let service = Self.service(ports: [ServicePort(port: 8080)])
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a"), running("10.1.0.1"))])
        #expect(resolved[0].backends.map(\.port) == [8080])
    }

    @Test func namedTargetPortIsResolvedPerPod() {
        let service = Self.service(ports: [
            ServicePort(name: "web", port: 80, targetPort: "http"),
            ServicePort(name: "raw", port: 81, targetPort: 7000),
        ])
        let pods = [
            observed(Self.pod("a", spec: echoSpec(port: 8080)), running("10.1.0.1")),
            observed(Self.pod("b", spec: echoSpec(port: 9090)), running("10.1.0.2")),
            observed(Self.pod("c", spec: echoSpec(port: 8080, portName: "metrics")), running("10.1.0.3")),
        ]
        let resolved = ServiceBackendResolver.resolve(service, pods: pods)
        #expect(resolved.count == 2)
        #expect(resolved[0].backends == [
            ServiceBackend(podName: "a", podIP: "10.1.0.1", port: 8080, nodeName: "node-a"),
            ServiceBackend(podName: "b", podIP: "10.1.0.2", port: 9090, nodeName: "node-a"),
        ])
        #expect(resolved[1].backends.map(\.podName) == ["a", "b", "c"])
        #expect(resolved[1].backends.allSatisfy { $0.port == 7000 })
    }

    @Test func namedTargetPortMustMatchTheProtocol() {
        let service = Self.service(ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: "dns")])
        let tcpOnly = Self.pod("tcp", spec: echoSpec(port: 53, portName: "dns"))
        var udp = Self.pod("udp", spec: echoSpec(port: 5353, portName: "dns"))
        udp.spec.containers[0].ports[0].protocol = .udp
        let resolved = ServiceBackendResolver.resolve(service, pods: [
            observed(tcpOnly, running("10.1.0.1")), observed(udp, running("10.1.0.2")),
        ])
        #expect(resolved[0].backends.map(\.podName) == ["udp"])
        #expect(resolved[0].backends.map(\.port) == [5353])
    }

    @Test func namedPortIsFoundInAnyContainer() {
        let service = Self.service(ports: [ServicePort(port: 80, targetPort: "admin")])
        var spec = echoSpec()
        spec.containers.append(Container(name: "admin", command: ["admin"], ports: [ContainerPort(name: "admin", containerPort: 9901)]))
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a", spec: spec), running("10.1.0.1"))])
        #expect(resolved[0].backends.map(\.port) == [9901])
    }

    @Test func onlyReadyPodsAreBackends() {
        let service = Self.service(ports: [ServicePort(port: 80, targetPort: 8080)])
        let pods = [
            observed(Self.pod("ready"), running("10.1.0.1")),
            observed(Self.pod("unreported"), nil),
            observed(Self.pod("creating"), PodStatus(phase: .pending, reason: PodStatusReason.containerCreating, podIP: "10.1.0.2")),
            observed(Self.pod("no-ip"), PodStatus(phase: .running)),
            observed(Self.pod("crashing"), PodStatus(phase: .running, reason: PodStatusReason.crashLoopBackOff, podIP: "10.1.0.3")),
            observed(Self.pod("done"), PodStatus(phase: .succeeded, reason: PodStatusReason.completed, podIP: "10.1.0.4")),
            observed(Self.pod("failed"), PodStatus(phase: .failed, reason: PodStatusReason.error, podIP: "10.1.0.5")),
        ]
        let resolved = ServiceBackendResolver.resolve(service, pods: pods)
        #expect(resolved[0].backends.map(\.podName) == ["ready"])
        #expect(ServiceBackendResolver.selectedPods(of: service, among: pods).count == pods.count)
    }

    @Test func onlyPodsOfTheServiceNamespaceAndSelectorCount() {
        let service = Self.service(namespace: "team-a", ports: [ServicePort(port: 80)])
        let pods = [
            observed(Self.pod("mine", namespace: "team-a"), running("10.1.0.1")),
            observed(Self.pod("other-namespace", namespace: "default"), running("10.1.0.2")),
            observed(Self.pod("other-app", namespace: "team-a", labels: ["app": "frontend"]), running("10.1.0.3")),
            observed(Self.pod("more-labels", namespace: "team-a", labels: ["app": "backend", "tier": "x"]), running("10.1.0.4")),
        ]
        let resolved = ServiceBackendResolver.resolve(service, pods: pods)
        #expect(resolved[0].backends.map(\.podName) == ["mine", "more-labels"])
    }

    @Test func defaultNamespaceMatchesPodsWithoutANamespace() {
        let service = Self.service(ports: [ServicePort(port: 80)])
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a", namespace: nil), running("10.1.0.1"))])
        #expect(resolved[0].backends.map(\.podName) == ["a"])
    }

    @Test func serviceWithoutSelectorHasNoBackends() {
        let service = Self.service(selector: [:], ports: [ServicePort(name: "a", port: 80), ServicePort(name: "b", port: 81)])
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a"), running("10.1.0.1"))])
        #expect(resolved.map(\.servicePort.name) == ["a", "b"])
        #expect(resolved.allSatisfy { $0.backends.isEmpty })
    }

    @Test func externalNameServiceHasNoBackends() {
        var service = Self.service(ports: [ServicePort(port: 80)])
        service.spec.type = .externalName
        service.spec.externalName = "db.example.com"
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a"), running("10.1.0.1"))])
        #expect(resolved[0].backends.isEmpty)
    }

    @Test func selectorMatchingNothingGivesEmptyBackends() {
        let service = Self.service(selector: ["app": "nobody"], ports: [ServicePort(port: 80)])
        let resolved = ServiceBackendResolver.resolve(service, pods: [observed(Self.pod("a"), running("10.1.0.1"))])
        #expect(resolved.count == 1)
        #expect(resolved[0].backends.isEmpty)
    }

    @Test func statusNodeNameWinsOverSpec() {
        let service = Self.service(ports: [ServicePort(port: 80)])
        var pinned = Self.pod("a")
        pinned.spec.nodeName = "node-spec"
        let fromStatus = ServiceBackendResolver.resolve(service, pods: [observed(pinned, running("10.1.0.1", on: "node-status"))])
        #expect(fromStatus[0].backends.map(\.nodeName) == ["node-status"])
        let fromSpec = ServiceBackendResolver.resolve(service, pods: [observed(pinned, PodStatus(phase: .running, podIP: "10.1.0.1"))])
        #expect(fromSpec[0].backends.map(\.nodeName) == ["node-spec"])
    }

    @Test func plannedPodsBecomeBackendsOnceRunning() throws {
        let backend = deployment(replicas: 2)
        let plan = DeploymentPlanner.plan(for: backend, existing: [])
        let service = Self.service(ports: [ServicePort(name: "http", port: 80, targetPort: "http")])
        let nodes = PodScheduler.schedule(plan.create, onto: [NodeLoad(name: "node-a"), NodeLoad(name: "node-b")])
        let pods = zip(plan.create, nodes).enumerated().map { index, pair in
            ObservedPod(pod: pair.0, status: PodStatus(phase: .running, podIP: "10.1.0.\(index + 1)", nodeName: pair.1))
        }
        let resolved = ServiceBackendResolver.resolve(service, pods: pods)
        #expect(resolved[0].backends.count == 2)
        #expect(Set(resolved[0].backends.compactMap(\.nodeName)) == ["node-a", "node-b"])
        #expect(resolved[0].backends.allSatisfy { $0.port == 8080 })
    }
}
