import Testing
@testable import MeridianCore
import Foundation

// MARK: - Fixtures

private let exampleDeployment = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels:
      app: backend
  template:
    metadata:
      labels:
        app: backend
    spec:
      containers:
      - name: echo
        image: meridian/echo
        command: ["meridian", "tool", "echo-server", "--port", "8080"]
        ports:
        - name: http
          containerPort: 8080
"""

private func indented(_ block: String, by spaces: Int) -> String {
    let padding = String(repeating: " ", count: spaces)
    return block.split(separator: "\n", omittingEmptySubsequences: false)
        .map { $0.isEmpty ? "" : padding + $0 }
        .joined(separator: "\n")
}

/// A Pod document whose `spec` body is given unindented.
private func podManifest(name: String = "web", spec: String) -> String {
    """
    apiVersion: v1
    kind: Pod
    metadata:
      name: \(name)
    spec:
    \(indented(spec, by: 2))
    """
}

/// A Pod whose only container has the given body, given unindented, below `name: app`.
private func podWithContainer(_ body: String) -> String {
    podManifest(spec: "containers:\n- name: app\n" + indented(body, by: 2))
}

private let runnable = #"command: ["sleep", "infinity"]"#

/// A Deployment document; `spec` is the Deployment spec body, given unindented.
private func deploymentManifest(name: String = "web", spec: String) -> String {
    """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: \(name)
    spec:
    \(indented(spec, by: 2))
    """
}

/// A Deployment spec with the given selector and template bodies, given unindented.
private func deploymentSpec(
    replicas: String? = nil,
    selector: String? = "matchLabels:\n  app: web",
    templateLabels: String = "app: web",
    podSpec: String = "containers:\n- name: app\n  " + runnable
) -> String {
    var lines: [String] = []
    if let replicas { lines.append("replicas: \(replicas)") }
    if let selector { lines.append("selector:\n" + indented(selector, by: 2)) }
    lines.append("template:")
    lines.append("  metadata:\n    labels:\n" + indented(templateLabels, by: 6))
    lines.append("  spec:\n" + indented(podSpec, by: 4))
    return lines.joined(separator: "\n")
}

private func decodeFailure(_ yaml: String) throws -> ManifestError {
    try #require(throws: ManifestError.self) {
        try ManifestDecoder.decode(yaml, source: "workload.yaml")
    }
}

private func decodeSingle(_ yaml: String) throws -> KubernetesObject {
    let objects = try ManifestDecoder.decode(yaml, source: "workload.yaml")
    try #require(objects.count == 1)
    return objects[0]
}

private func decodePod(_ yaml: String) throws -> Pod {
    guard case let .pod(pod) = try decodeSingle(yaml) else {
        Issue.record("expected a Pod")
        throw CancellationError()
    }
    return pod
}

private func decodeDeployment(_ yaml: String) throws -> Deployment {
    guard case let .deployment(deployment) = try decodeSingle(yaml) else {
        Issue.record("expected a Deployment")
        throw CancellationError()
    }
    return deployment
}

private let commandRequiredMessage = "a command is required because Meridian runs the container's command "
    + "directly on the node (there are no images); set command, or args to give the whole command line"

// MARK: - Deployments that decode

@Suite("Deployment manifests")
struct DeploymentManifestTests {
    @Test func exampleDeploymentDecodes() throws {
        let object = try decodeSingle(exampleDeployment)
        #expect(object.kind == .deployment)
        #expect(object.name == "backend")
        #expect(object.namespace == "default")
        guard case let .deployment(deployment) = object else {
            Issue.record("expected a Deployment")
            return
        }
        #expect(deployment.apiVersion == "apps/v1")
        #expect(deployment.kind == "Deployment")
        #expect(deployment.spec.replicas == 2)
        #expect(deployment.spec.selector == LabelSelector(matchLabels: ["app": "backend"]))
        #expect(deployment.spec.template.metadata == PodTemplateMetadata(labels: ["app": "backend"]))
        #expect(deployment.spec.template.spec == PodSpec(containers: [
            Container(
                name: "echo",
                image: "meridian/echo",
                command: ["meridian", "tool", "echo-server", "--port", "8080"],
                ports: [ContainerPort(name: "http", containerPort: 8080, protocol: .tcp)]
            ),
        ]))
        #expect(deployment.spec.template.spec.containers[0].commandLine.first == "meridian")
    }

    @Test func replicasDefaultToOne() throws {
        let deployment = try decodeDeployment(deploymentManifest(spec: deploymentSpec()))
        #expect(deployment.spec.replicas == 1)
    }

    @Test func zeroReplicasAreAllowed() throws {
        let deployment = try decodeDeployment(deploymentManifest(spec: deploymentSpec(replicas: "0")))
        #expect(deployment.spec.replicas == 0)
    }

    @Test func matchExpressionsThatHoldAreAccepted() throws {
        let selector = """
        matchLabels:
          app: web
        matchExpressions:
        - key: tier
          operator: In
          values: [front, edge]
        - key: canary
          operator: DoesNotExist
        """
        let deployment = try decodeDeployment(deploymentManifest(
            spec: deploymentSpec(selector: selector, templateLabels: "app: web\ntier: front")
        ))
        #expect(deployment.spec.selector.matchExpressions == [
            LabelSelectorRequirement(key: "tier", operator: .in, values: ["front", "edge"]),
            LabelSelectorRequirement(key: "canary", operator: .doesNotExist),
        ])
    }

    @Test func ordinaryKubernetesFieldsAreIgnored() throws {
        let yaml = """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: backend
          labels:
            app: backend
        spec:
          replicas: 3
          revisionHistoryLimit: 5
          progressDeadlineSeconds: 600
          strategy:
            type: RollingUpdate
            rollingUpdate:
              maxSurge: 25%
              maxUnavailable: 0
          selector:
            matchLabels:
              app: backend
          template:
            metadata:
              name: ignored
              labels:
                app: backend
              annotations:
                example.com/owner: team-a
            spec:
              terminationGracePeriodSeconds: 5
              serviceAccountName: backend
              securityContext:
                runAsNonRoot: true
              volumes:
              - name: data
                emptyDir: {}
              containers:
              - name: echo
                image: meridian/echo:1.0
                imagePullPolicy: IfNotPresent
                command: ["meridian", "tool", "echo-server"]
                workingDir: /srv
                resources:
                  requests:
                    cpu: 100m
                    memory: 64Mi
                  limits:
                    memory: 128Mi
                livenessProbe:
                  httpGet:
                    path: /healthz
                    port: http
                readinessProbe:
                  tcpSocket:
                    port: 8080
                volumeMounts:
                - name: data
                  mountPath: /data
                ports:
                - name: http
                  containerPort: 8080
                  hostPort: 18080
        status:
          replicas: 3
        """
        let deployment = try decodeDeployment(yaml)
        #expect(deployment.spec.replicas == 3)
        #expect(deployment.spec.template.metadata.annotations == ["example.com/owner": "team-a"])
        let container = try #require(deployment.spec.template.spec.containers.first)
        #expect(container.image == "meridian/echo:1.0")
        #expect(container.ports == [ContainerPort(name: "http", containerPort: 8080)])
    }

    @Test func deploymentServiceAndPodInOneFile() throws {
        let service = """
        apiVersion: v1
        kind: Service
        metadata:
          name: backend
        spec:
          selector:
            app: backend
          ports:
          - port: 80
            targetPort: http
        """
        let pod = podWithContainer(runnable)
        let objects = try ManifestDecoder.decode(
            [exampleDeployment, service, pod].joined(separator: "\n---\n"),
            source: "app.yaml"
        )
        #expect(objects.map(\.kind) == [.deployment, .service, .pod])
        #expect(objects.map(\.namespace) == ["default", "default", "default"])
    }

    @Test func serviceSelectingNothingIsNotAnError() throws {
        let yaml = """
        apiVersion: v1
        kind: Service
        metadata:
          name: lonely
        spec:
          selector:
            app: nobody-has-this-label
          ports:
          - port: 80
        """
        #expect(try decodeSingle(yaml).kind == .service)
    }
}

// MARK: - Deployment errors

@Suite("Deployment manifest errors")
struct DeploymentManifestErrorTests {
    @Test func deploymentMustUseAppsV1() throws {
        let yaml = exampleDeployment.replacingOccurrences(of: "apiVersion: apps/v1", with: "apiVersion: v1")
        let error = try decodeFailure(yaml)
        #expect(error.kind == "Deployment")
        #expect(error.name == "backend")
        #expect(error.field == "apiVersion")
        #expect(error.message == "Deployment must use apiVersion \"apps/v1\", got \"v1\"")
    }

    @Test func negativeReplicasAreRejected() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(replicas: "-1")))
        #expect(error.field == "spec.replicas")
        #expect(error.message == "must be 0 or more, got -1")
    }

    @Test func replicasMustBeAnInteger() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(replicas: "\"2\"")))
        #expect(error.field == "spec.replicas")
        #expect(error.message.hasPrefix("expected an integer"))
    }

    @Test func selectorIsRequired() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(selector: nil)))
        #expect(error.field == "spec.selector")
        #expect(error.message.hasPrefix("is required"))
    }

    @Test func emptySelectorIsRejected() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(selector: "matchLabels: {}")))
        #expect(error.field == "spec.selector")
        #expect(error.message.hasPrefix("must not be empty"))
    }

    @Test func selectorMustMatchTemplateLabels() throws {
        let wrongValue = try decodeFailure(deploymentManifest(spec: deploymentSpec(templateLabels: "app: api")))
        #expect(wrongValue.field == "spec.selector")
        #expect(wrongValue.message.hasPrefix("selector does not match template labels"))
        #expect(wrongValue.message.contains("app=web"))
        #expect(wrongValue.message.contains("app=api"))

        let missing = try decodeFailure(deploymentManifest(spec: deploymentSpec(templateLabels: "tier: front")))
        #expect(missing.field == "spec.selector")
        #expect(missing.message.hasPrefix("selector does not match template labels"))
        #expect(missing.message.contains("has no label \"app\""))
    }

    @Test func templateWithoutLabelsDoesNotMatch() throws {
        let yaml = deploymentManifest(spec: """
        selector:
          matchLabels:
            app: web
        template:
          spec:
            containers:
            - name: app
              \(runnable)
        """)
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.selector")
        #expect(error.message.hasPrefix("selector does not match template labels"))
    }

    @Test func failingMatchExpressionIsNamed() throws {
        let selector = """
        matchExpressions:
        - key: tier
          operator: In
          values: [front]
        """
        let error = try decodeFailure(deploymentManifest(
            spec: deploymentSpec(selector: selector, templateLabels: "tier: back")
        ))
        #expect(error.field == "spec.selector")
        #expect(error.message == "selector does not match template labels: "
            + "spec.template.metadata.labels fail matchExpressions[0] (tier In [front])")
    }

    @Test func invalidSelectorPartsAreNamed() throws {
        let badOperator = try decodeFailure(deploymentManifest(spec: deploymentSpec(
            selector: "matchExpressions:\n- key: app\n  operator: Equals\n  values: [web]"
        )))
        #expect(badOperator.field == "spec.selector.matchExpressions[0].operator")
        #expect(badOperator.message == "expected one of In, NotIn, Exists, DoesNotExist, got \"Equals\"")

        let missingValues = try decodeFailure(deploymentManifest(spec: deploymentSpec(
            selector: "matchExpressions:\n- key: app\n  operator: In"
        )))
        #expect(missingValues.field == "spec.selector.matchExpressions[0].values")

        let badLabel = try decodeFailure(deploymentManifest(spec: deploymentSpec(
            selector: "matchLabels:\n  app: \"not valid!\""
        )))
        #expect(badLabel.field == "spec.selector.matchLabels[\"app\"]")
        #expect(badLabel.message.hasPrefix("invalid label value"))
    }

    @Test func templateIsRequired() throws {
        let error = try decodeFailure(deploymentManifest(spec: "selector:\n  matchLabels:\n    app: web"))
        #expect(error.field == "spec.template")
        #expect(error.message == "is required")
    }

    @Test func templateSpecIsRequired() throws {
        let yaml = deploymentManifest(spec: """
        selector:
          matchLabels:
            app: web
        template:
          metadata:
            labels:
              app: web
        """)
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.template.spec")
        #expect(error.message == "is required")
    }

    @Test func missingSpecIsRejected() throws {
        let error = try decodeFailure("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n")
        #expect(error.field == "spec")
        #expect(error.message == "is required")
    }

    @Test func invalidTemplateLabelIsNamed() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(templateLabels: "app: web\n\"bad key!\": x")))
        #expect(error.field == "spec.template.metadata.labels[\"bad key!\"]")
        #expect(error.message.hasPrefix("invalid label key"))
    }

    @Test func templatePodSpecErrorsCarryTheTemplatePath() throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(podSpec: "containers:\n- name: app")))
        #expect(error.field == "spec.template.spec.containers[0].command")
        #expect(error.message == commandRequiredMessage)

        let port = try decodeFailure(deploymentManifest(spec: deploymentSpec(
            podSpec: "containers:\n- name: app\n  \(runnable)\n  ports:\n  - containerPort: 70000"
        )))
        #expect(port.field == "spec.template.spec.containers[0].ports[0].containerPort")
    }

    @Test(arguments: [RestartPolicy.never, .onFailure])
    func deploymentPodsMustRestartAlways(policy: RestartPolicy) throws {
        let error = try decodeFailure(deploymentManifest(spec: deploymentSpec(
            podSpec: "restartPolicy: \(policy.rawValue)\ncontainers:\n- name: app\n  \(runnable)"
        )))
        #expect(error.field == "spec.template.spec.restartPolicy")
        #expect(error.message.hasPrefix("must be Always in a Deployment, got \(policy.rawValue)"))
    }

    @Test func explicitAlwaysIsAccepted() throws {
        let deployment = try decodeDeployment(deploymentManifest(spec: deploymentSpec(
            podSpec: "restartPolicy: Always\ncontainers:\n- name: app\n  \(runnable)"
        )))
        #expect(deployment.spec.template.spec.restartPolicy == .always)
    }
}

// MARK: - Pods

@Suite("Pod manifests")
struct PodManifestTests {
    @Test func fullPodDecodes() throws {
        let yaml = podManifest(spec: """
        nodeName: node-2
        restartPolicy: OnFailure
        containers:
        - name: server
          image: ignored
          command: ["meridian", "tool", "echo-server"]
          args: ["--port", "8080"]
          env:
          - name: GREETING
            value: hello
          - name: EMPTY
          ports:
          - name: http
            containerPort: 8080
          - name: dns
            containerPort: 53
            protocol: UDP
        - name: sidecar
          args: ["/bin/sleep", "infinity"]
        """)
        let pod = try decodePod(yaml)
        #expect(pod.apiVersion == "v1")
        #expect(pod.kind == "Pod")
        #expect(pod.spec.nodeName == "node-2")
        #expect(pod.spec.restartPolicy == .onFailure)
        #expect(pod.spec.containers.map(\.name) == ["server", "sidecar"])
        let server = pod.spec.containers[0]
        #expect(server.commandLine == ["meridian", "tool", "echo-server", "--port", "8080"])
        #expect(server.env == [EnvVar(name: "GREETING", value: "hello"), EnvVar(name: "EMPTY", value: "")])
        #expect(server.ports == [
            ContainerPort(name: "http", containerPort: 8080, protocol: .tcp),
            ContainerPort(name: "dns", containerPort: 53, protocol: .udp),
        ])
    }

    @Test func argsAloneAreTheWholeCommandLine() throws {
        let pod = try decodePod(podWithContainer(#"args: ["/bin/sleep", "10"]"#))
        #expect(pod.spec.containers[0].command.isEmpty)
        #expect(pod.spec.containers[0].commandLine == ["/bin/sleep", "10"])
    }

    @Test func restartPolicyDefaultsToAlways() throws {
        let pod = try decodePod(podWithContainer(runnable))
        #expect(pod.spec.restartPolicy == nil)
        #expect(pod.spec.effectiveRestartPolicy == .always)
    }

    @Test func statusInAManifestIsIgnored() throws {
        let yaml = podWithContainer(runnable) + "\nstatus:\n  phase: Running\n  podIP: 10.0.0.9"
        let pod = try decodePod(yaml)
        #expect(pod.metadata.name == "web")
    }
}

@Suite("Pod manifest errors")
struct PodManifestErrorTests {
    @Test(arguments: ["image: nginx", "command: []", "command: []\nargs: []", "image: nginx\nenv:\n- name: A\n  value: b"])
    func containerWithoutCommandIsRejected(body: String) throws {
        let error = try decodeFailure(podWithContainer(body))
        #expect(error.kind == "Pod")
        #expect(error.field == "spec.containers[0].command")
        #expect(error.message == commandRequiredMessage)
    }

    @Test func commandErrorNamesTheContainerIndex() throws {
        let yaml = podManifest(spec: "containers:\n- name: a\n  \(runnable)\n- name: b\n  image: busybox")
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.containers[1].command")
    }

    @Test func emptyProgramIsRejected() throws {
        let command = try decodeFailure(podWithContainer(#"command: [""]"#))
        #expect(command.field == "spec.containers[0].command[0]")
        #expect(command.message == "the program to run must not be empty")

        let args = try decodeFailure(podWithContainer(#"args: ["", "x"]"#))
        #expect(args.field == "spec.containers[0].args[0]")
    }

    @Test(arguments: [0, -1, 65536, 100_000])
    func containerPortOutOfRangeIsRejected(port: Int) throws {
        let error = try decodeFailure(podWithContainer("\(runnable)\nports:\n- containerPort: \(port)"))
        #expect(error.field == "spec.containers[0].ports[0].containerPort")
        #expect(error.message == "must be between 1 and 65535, got \(port)")
    }

    @Test func containerPortIsRequired() throws {
        let error = try decodeFailure(podWithContainer("\(runnable)\nports:\n- name: http"))
        #expect(error.field == "spec.containers[0].ports[0].containerPort")
        #expect(error.message == "is required")
    }

    @Test(arguments: [
        ("HTTP", "lowercase"),
        ("\"8080\"", "at least one letter"),
        ("averyverylongname", "at most 15"),
        ("-http", "start and end"),
        ("http--alt", "'--'"),
    ])
    func invalidPortNameIsRejected(name: String, fragment: String) throws {
        let error = try decodeFailure(podWithContainer("\(runnable)\nports:\n- name: \(name)\n  containerPort: 80"))
        #expect(error.field == "spec.containers[0].ports[0].name")
        #expect(error.message.contains(fragment))
    }

    @Test func unknownPortProtocolIsRejected() throws {
        let error = try decodeFailure(podWithContainer("\(runnable)\nports:\n- containerPort: 80\n  protocol: ICMP"))
        #expect(error.field == "spec.containers[0].ports[0].protocol")
        #expect(error.message == "expected one of TCP, UDP, SCTP, got \"ICMP\"")
    }

    @Test func duplicatePortNamesAcrossContainersAreRejected() throws {
        let yaml = podManifest(spec: """
        containers:
        - name: a
          \(runnable)
          ports:
          - name: http
            containerPort: 80
        - name: b
          \(runnable)
          ports:
          - name: metrics
            containerPort: 9090
          - name: http
            containerPort: 8080
        """)
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.containers[1].ports[1].name")
        #expect(error.message == "duplicate port name \"http\" (already used by spec.containers[0].ports[0])")
    }

    @Test func duplicateContainerNamesAreRejected() throws {
        let yaml = podManifest(spec: "containers:\n- name: app\n  \(runnable)\n- name: app\n  \(runnable)")
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.containers[1].name")
        #expect(error.message == "duplicate container name \"app\" (already used by spec.containers[0])")
    }

    @Test(arguments: ["App", "app_1", "-app"])
    func containerNameMustBeADNSLabel(name: String) throws {
        let error = try decodeFailure(podManifest(spec: "containers:\n- name: \(name)\n  \(runnable)"))
        #expect(error.field == "spec.containers[0].name")
        #expect(error.message.hasPrefix("invalid container name \"\(name)\""))
    }

    @Test func containerNameIsRequired() throws {
        let error = try decodeFailure(podManifest(spec: "containers:\n- \(runnable)"))
        #expect(error.field == "spec.containers[0].name")
        #expect(error.message == "is required")
    }

    @Test(arguments: ["containers: []", "nodeName: node-1"])
    func atLeastOneContainerIsRequired(spec: String) throws {
        let error = try decodeFailure(podManifest(spec: spec))
        #expect(error.field == "spec.containers")
        #expect(error.message == "at least one container is required")
    }

    @Test func podSpecIsRequired() throws {
        let error = try decodeFailure("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n")
        #expect(error.field == "spec")
        #expect(error.message == "is required")
    }

    @Test func unknownRestartPolicyIsRejected() throws {
        let error = try decodeFailure(podManifest(spec: "restartPolicy: Sometimes\ncontainers:\n- name: a\n  \(runnable)"))
        #expect(error.field == "spec.restartPolicy")
        #expect(error.message == "expected one of Always, OnFailure, Never, got \"Sometimes\"")
    }

    @Test func invalidNodeNameIsRejected() throws {
        let error = try decodeFailure(podManifest(spec: "nodeName: Node_1\ncontainers:\n- name: a\n  \(runnable)"))
        #expect(error.field == "spec.nodeName")
        #expect(error.message.hasPrefix("invalid node name \"Node_1\""))
    }

    @Test func environmentFromElsewhereIsRefused() throws {
        let valueFrom = try decodeFailure(podWithContainer("""
        \(runnable)
        env:
        - name: PASSWORD
          valueFrom:
            secretKeyRef:
              name: db
              key: password
        """))
        #expect(valueFrom.field == "spec.containers[0].env[0].valueFrom")
        #expect(valueFrom.message.hasPrefix("is not supported"))

        let envFrom = try decodeFailure(podWithContainer("\(runnable)\nenvFrom:\n- configMapRef:\n    name: settings"))
        #expect(envFrom.field == "spec.containers[0].envFrom")
    }

    @Test func environmentVariableNeedsAName() throws {
        let error = try decodeFailure(podWithContainer("\(runnable)\nenv:\n- name: \"A=B\"\n  value: x"))
        #expect(error.field == "spec.containers[0].env[0].name")
    }

    @Test func podNameFollowsMetadataRules() throws {
        let error = try decodeFailure(podManifest(name: "Web_1", spec: "containers:\n- name: a\n  \(runnable)"))
        #expect(error.field == "metadata.name")
    }
}

// MARK: - Storage form

@Suite("Workload JSON")
struct WorkloadJSONTests {
    @Test func workloadsSurviveJSONThroughTheEnvelope() throws {
        let objects = try ManifestDecoder.decode(
            exampleDeployment + "\n---\n" + podWithContainer("\(runnable)\nports:\n- name: http\n  containerPort: 80"),
            source: "t.yaml"
        )
        for object in objects {
            let data = try JSONEncoder().encode(object)
            let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(json["kind"] as? String == object.kind.rawValue)
            #expect(json["apiVersion"] as? String == object.kind.apiVersion)
            #expect(try JSONDecoder().decode(KubernetesObject.self, from: data) == object)
        }
    }

    @Test func kubernetesJSONGetsDefaults() throws {
        let json = #"""
        {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
         "spec":{"selector":{"matchLabels":{"app":"web"}},
                 "template":{"metadata":{"labels":{"app":"web"}},
                             "spec":{"containers":[{"name":"a","args":["x"],"ports":[{"containerPort":80}]}]}}}}
        """#
        let object = try JSONDecoder().decode(KubernetesObject.self, from: Data(json.utf8))
        guard case let .deployment(deployment) = object else {
            Issue.record("expected a Deployment")
            return
        }
        #expect(deployment.spec.replicas == 1)
        #expect(deployment.spec.template.spec.containers[0].ports == [ContainerPort(containerPort: 80, protocol: .tcp)])
    }

    @Test func podStatusUsesKubernetesKeysAndOmitsUnsetFields() throws {
        let status = PodStatus(
            phase: .running,
            podIP: "10.1.0.7",
            hostIP: "192.168.0.2",
            nodeName: "node-1",
            identity: 65_536,
            startedAt: "2025-01-02T03:04:05Z",
            restartCount: 2,
            exitCode: 137
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let text = try #require(String(data: try encoder.encode(status), encoding: .utf8))
        #expect(text == #"{"exitCode":137,"hostIP":"192.168.0.2","identity":65536,"nodeName":"node-1","#
            + #""phase":"Running","podIP":"10.1.0.7","restartCount":2,"startedAt":"2025-01-02T03:04:05Z"}"#)
        #expect(try JSONDecoder().decode(PodStatus.self, from: Data(text.utf8)) == status)

        let minimal = try JSONDecoder().decode(PodStatus.self, from: Data(#"{"phase":"Pending"}"#.utf8))
        #expect(minimal == PodStatus(phase: .pending))
        #expect(minimal.restartCount == 0)
    }

    @Test func podStatusReadinessAndDisplay() {
        let running = PodStatus(phase: .running, podIP: "10.1.0.7")
        #expect(running.isReady)
        #expect(running.displayStatus == "Running")

        let crashing = PodStatus(phase: .running, reason: PodStatusReason.crashLoopBackOff, podIP: "10.1.0.7")
        #expect(!crashing.isReady)
        #expect(crashing.displayStatus == "CrashLoopBackOff")

        let creating = PodStatus(phase: .pending, reason: PodStatusReason.containerCreating)
        #expect(!creating.isReady)
        #expect(creating.displayStatus == "ContainerCreating")

        #expect(!PodStatus(phase: .running).isReady)
        #expect(!PodStatus(phase: .succeeded, podIP: "10.1.0.7").isReady)
        #expect(PodPhase.failed.isFinished && PodPhase.succeeded.isFinished && !PodPhase.running.isFinished)
    }

    @Test func unknownPhaseFailsToDecode() {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(PodStatus.self, from: Data(#"{"phase":"Sleeping"}"#.utf8))
        }
    }
}
