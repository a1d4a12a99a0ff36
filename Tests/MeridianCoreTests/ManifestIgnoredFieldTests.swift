import Foundation
import Testing
@testable import MeridianCore

// MARK: - Fields Kubernetes defines and Meridian drops

/// Objects as `kubectl get -o yaml` prints them (with a command, which Meridian needs).
private let kubectlOutput = """
apiVersion: v1
kind: Namespace
metadata:
  creationTimestamp: "2025-01-01T00:00:00Z"
  labels:
    kubernetes.io/metadata.name: shop
  name: shop
  resourceVersion: "412"
  uid: 3f1d2c4b-0000-4000-8000-000000000001
spec:
  finalizers:
  - kubernetes
status:
  phase: Active
---
apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    deployment.kubernetes.io/revision: "1"
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"apps/v1","kind":"Deployment"}
  creationTimestamp: "2025-01-01T00:00:00Z"
  generation: 1
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:replicas: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2025-01-01T00:00:00Z"
  name: backend
  namespace: shop
  resourceVersion: "500"
  uid: 3f1d2c4b-0000-4000-8000-000000000002
spec:
  progressDeadlineSeconds: 600
  replicas: 2
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      app: backend
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
    type: RollingUpdate
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: backend
    spec:
      containers:
      - command: [meridian, tool, echo-server]
        image: meridian/echo
        imagePullPolicy: Always
        name: echo
        ports:
        - containerPort: 8080
          name: http
          protocol: TCP
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
status:
  availableReplicas: 2
  conditions:
  - lastTransitionTime: "2025-01-01T00:00:00Z"
    status: "True"
    type: Available
  observedGeneration: 1
  readyReplicas: 2
  replicas: 2
---
apiVersion: v1
kind: Service
metadata:
  creationTimestamp: "2025-01-01T00:00:00Z"
  name: backend
  namespace: shop
  resourceVersion: "501"
  uid: 3f1d2c4b-0000-4000-8000-000000000003
spec:
  clusterIP: 10.96.0.20
  clusterIPs:
  - 10.96.0.20
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - appProtocol: http
    port: 80
    protocol: TCP
    targetPort: http
  selector:
    app: backend
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
---
apiVersion: v1
kind: Pod
metadata:
  generateName: client-
  name: client
  namespace: shop
  ownerReferences: []
spec:
  containers:
  - command: [sleep, infinity]
    name: client
    volumeMounts:
    - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      name: kube-api-access
      readOnly: true
  enableServiceLinks: true
  nodeName: node-a
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  serviceAccountName: default
  tolerations:
  - effect: NoExecute
    key: node.kubernetes.io/not-ready
    operator: Exists
    tolerationSeconds: 300
  volumes:
  - name: kube-api-access
    projected:
      sources:
      - serviceAccountToken:
          path: token
status:
  phase: Running
  podIP: 10.1.0.5
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  generation: 1
  name: backend
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: backend
  policyTypes:
  - Ingress
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend
  namespace: shop
spec:
  description: callers of the backend
  endpointSelector:
    matchLabels:
      app: backend
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: client
  labels:
  - key: owner
    value: team-a
status:
  derivativePolicies: {}
"""

/// A Deployment as a Helm chart renders it, with the usual probes, resources and scheduling.
private let helmOutput = """
---
# Source: backend/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: release-backend
  labels:
    helm.sh/chart: backend-0.1.0
    app.kubernetes.io/name: backend
    app.kubernetes.io/instance: release
    app.kubernetes.io/managed-by: Helm
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: backend
  template:
    metadata:
      annotations:
        checksum/config: 0123abcd
      labels:
        app.kubernetes.io/name: backend
    spec:
      serviceAccountName: release-backend
      securityContext:
        fsGroup: 2000
      containers:
        - name: backend
          securityContext:
            runAsNonRoot: true
          image: "backend:1.0.0"
          imagePullPolicy: IfNotPresent
          command: [meridian, tool, echo-server]
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /
              port: http
          readinessProbe:
            httpGet:
              path: /
              port: http
          resources:
            limits:
              cpu: 100m
              memory: 128Mi
      nodeSelector:
        kubernetes.io/os: linux
      affinity: {}
      tolerations: []
"""

@Suite("Manifest fields Meridian ignores")
struct ManifestIgnoredFieldTests {
    @Test func kubectlOutputApplies() throws {
        let objects = try ManifestDecoder.decode(kubectlOutput, source: "kubectl.yaml")
        #expect(objects.map(\.kind) == [.namespace, .deployment, .service, .pod, .networkPolicy, .ciliumNetworkPolicy])
        #expect(objects.map(\.name) == ["shop", "backend", "backend", "client", "backend", "backend"])
    }

    @Test func helmOutputApplies() throws {
        let objects = try ManifestDecoder.decode(helmOutput, source: "helm.yaml")
        guard case let .deployment(deployment)? = objects.first else {
            Issue.record("expected a Deployment, got \(objects.map(\.kind))")
            return
        }
        #expect(deployment.spec.template.spec.containers.map(\.name) == ["backend"])
    }
}

@Suite("Example manifests")
struct ExampleManifestTests {
    @Test(arguments: ["echo-app.yaml", "global-service.yaml", "policy.yaml"])
    func exampleDecodes(file: String) throws {
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples")
        let text = try String(contentsOf: examples.appendingPathComponent(file), encoding: .utf8)
        #expect(try !ManifestDecoder.decode(text, source: file).isEmpty)
    }
}
