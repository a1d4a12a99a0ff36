import Foundation
import Testing
@testable import MeridianCore

// MARK: - Fixtures

/// One manifest with a field no Kubernetes type has, and where the error must point.
struct UnknownFieldCase: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var field: String
    var typeName: String
    var suggestion: String?

    var testDescription: String { name }
}

private func unknown(
    _ name: String, _ yaml: String, at field: String, in typeName: String, suggesting suggestion: String? = nil
) -> UnknownFieldCase {
    UnknownFieldCase(name: name, yaml: yaml, field: field, typeName: typeName, suggestion: suggestion)
}

private let pod = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    command: [sleep, infinity]
"""

private let deployment = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        command: [sleep, infinity]
"""

private let networkPolicy = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
"""

private let ciliumPolicy = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp}
spec:
  endpointSelector: {}
"""

private let unknownFieldCases: [UnknownFieldCase] = [
    unknown("a top-level field, before the kind is known", "apiVersion: v1\nKind: Namespace\nmetadata: {name: a}",
            at: "Kind", in: "a Kubernetes object", suggesting: "kind"),
    unknown("a field of another kind", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspecs: []",
            at: "specs", in: "Service", suggesting: "spec"),
    unknown("Namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nstatuss: {}",
            at: "statuss", in: "Namespace", suggesting: "status"),
    unknown("ObjectMeta", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, lables: {}}",
            at: "metadata.lables", in: "ObjectMeta", suggesting: "labels"),
    unknown("ServiceSpec", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selecter: {}, ports: [{port: 80}]}",
            at: "spec.selecter", in: "ServiceSpec", suggesting: "selector"),
    unknown("ServicePort", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80, targetport: 8080}]}",
            at: "spec.ports[0].targetport", in: "ServicePort", suggesting: "targetPort"),
    unknown("PodSpec", pod + "\n  restartPolicyy: Never", at: "spec.restartPolicyy", in: "PodSpec", suggesting: "restartPolicy"),
    unknown("Container in a Deployment", deployment + "\n        imagePullPolicyy: Always",
            at: "spec.template.spec.containers[0].imagePullPolicyy", in: "Container", suggesting: "imagePullPolicy"),
    unknown("ContainerPort", pod + "\n    ports: [{containerPort: 80, hostport: 80}]",
            at: "spec.containers[0].ports[0].hostport", in: "ContainerPort", suggesting: "hostPort"),
    unknown("EnvVar", pod + "\n    env: [{name: A, valu: b}]", at: "spec.containers[0].env[0].valu", in: "EnvVar", suggesting: "value"),
    unknown("DeploymentSpec", deployment + "\n  replica: 2", at: "spec.replica", in: "DeploymentSpec", suggesting: "replicas"),
    unknown("PodTemplateSpec", deployment + "\n    specs: {}", at: "spec.template.specs", in: "PodTemplateSpec", suggesting: "spec"),
    unknown("a pod template's metadata", deployment.replacingOccurrences(
        of: "      labels: {app: web}", with: "      labels: {app: web}\n      label: {}"),
            at: "spec.template.metadata.label", in: "ObjectMeta", suggesting: "labels"),
    unknown("LabelSelector", deployment.replacingOccurrences(
        of: "    matchLabels: {app: web}", with: "    matchLabels: {app: web}\n    matchLabel: {}"), at: "spec.selector.matchLabel", in: "LabelSelector",
            suggesting: "matchLabels"),
    unknown("LabelSelectorRequirement", networkPolicy.replacingOccurrences(
        of: "podSelector: {}", with: "podSelector: {matchExpressions: [{key: a, operator: In, value: [b]}]}"),
            at: "spec.podSelector.matchExpressions[0].value", in: "LabelSelectorRequirement", suggesting: "values"),
    unknown("NetworkPolicySpec", networkPolicy + "\n  egres: []", at: "spec.egres", in: "NetworkPolicySpec", suggesting: "egress"),
    unknown("NetworkPolicyIngressRule", networkPolicy + "\n  ingress: [{form: []}]",
            at: "spec.ingress[0].form", in: "NetworkPolicyIngressRule", suggesting: "from"),
    unknown("NetworkPolicyEgressRule", networkPolicy + "\n  egress: [{too: []}]",
            at: "spec.egress[0].too", in: "NetworkPolicyEgressRule", suggesting: "to"),
    unknown("NetworkPolicyPeer", networkPolicy + "\n  ingress: [{from: [{podselector: {}}]}]",
            at: "spec.ingress[0].from[0].podselector", in: "NetworkPolicyPeer", suggesting: "podSelector"),
    unknown("IPBlock", networkPolicy + "\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, exept: []}}]}]",
            at: "spec.ingress[0].from[0].ipBlock.exept", in: "IPBlock", suggesting: "except"),
    unknown("NetworkPolicyPort", networkPolicy + "\n  ingress: [{ports: [{port: 80, endport: 90}]}]",
            at: "spec.ingress[0].ports[0].endport", in: "NetworkPolicyPort", suggesting: "endPort"),
    unknown("a Cilium rule", ciliumPolicy + "\n  ingres: [{}]", at: "spec.ingres", in: "Rule", suggesting: "ingress"),
    unknown("a Cilium ingress element", ciliumPolicy + "\n  ingress: [{fromEndpoint: [{}]}]",
            at: "spec.ingress[0].fromEndpoint", in: "IngressRule", suggesting: "fromEndpoints"),
    unknown("the other side's peer field in a Cilium egress element", ciliumPolicy + "\n  egress: [{fromEndpoints: [{}]}]",
            at: "spec.egress[0].fromEndpoints", in: "EgressRule"),
    unknown("a Cilium toPorts element", ciliumPolicy + "\n  egress: [{toPorts: [{port: [{port: \"80\"}]}]}]",
            at: "spec.egress[0].toPorts[0].port", in: "PortRule", suggesting: "ports"),
    unknown("a Cilium port", ciliumPolicy + "\n  egress: [{toPorts: [{ports: [{port: \"80\", protocl: TCP}]}]}]",
            at: "spec.egress[0].toPorts[0].ports[0].protocl", in: "PortProtocol", suggesting: "protocol"),
    unknown("a Cilium CIDR set element", ciliumPolicy + "\n  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, excepts: []}]}]",
            at: "spec.egress[0].toCIDRSet[0].excepts", in: "CIDRRule", suggesting: "except"),
    unknown("enableDefaultDeny", ciliumPolicy + "\n  ingress: [{}]\n  enableDefaultDeny: {ingres: false}",
            at: "spec.enableDefaultDeny.ingres", in: "DefaultDenyConfig", suggesting: "ingress"),
    unknown("a rule of a clusterwide policy's specs", """
        apiVersion: cilium.io/v2
        kind: CiliumClusterwideNetworkPolicy
        metadata: {name: ccnp}
        specs:
        - endpointSelector: {}
          egres: [{}]
        """, at: "specs[0].egres", in: "Rule", suggesting: "egress"),
    unknown("a field with a null value", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, colour: null}",
            at: "metadata.colour", in: "ObjectMeta"),
]

private func failure(_ yaml: String, source: String = "app.yaml") throws -> ManifestError {
    try #require(throws: ManifestError.self) { try ManifestDecoder.decode(yaml, source: source) }
}

// MARK: - Unknown fields

@Suite("Manifest strict fields")
struct ManifestStrictFieldTests {
    @Test(arguments: unknownFieldCases)
    func unknownFieldIsRefusedAtItsPath(_ testCase: UnknownFieldCase) throws {
        let error = try failure(testCase.yaml)
        #expect(error.field == testCase.field)
        let name = String(testCase.field.split(separator: ".").last!.split(separator: "[").first!)
        let hint = testCase.suggestion.map { "; did you mean \($0.debugDescription)?" } ?? ""
        #expect(error.message == "unknown field \(name.debugDescription) in \(testCase.typeName)\(hint)")
    }

    @Test func errorNamesFileDocumentObjectAndFullPath() throws {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" + deployment
            + "\n        imagePullPolicyy: Always"
        let error = try failure(yaml, source: "app.yaml")
        #expect(error.description == """
            app.yaml: document 2 (Deployment "web"): spec.template.spec.containers[0].imagePullPolicyy: \
            unknown field "imagePullPolicyy" in Container; did you mean "imagePullPolicy"?
            """)
    }

    @Test func unknownFieldFailsTheWholeFile() throws {
        let yaml = [pod, deployment + "\n  paused: false\n  pausd: true", networkPolicy].joined(separator: "\n---\n")
        var decoded: [KubernetesObject]?
        let error = try #require(throws: ManifestError.self) { decoded = try ManifestDecoder.decode(yaml, source: "app.yaml") }
        #expect(decoded == nil)
        #expect(error.documentIndex == 2)
        #expect(error.field == "spec.pausd")
    }

    @Test func keysThatAreNotTextAreRefused() throws {
        let error = try failure("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  ? [x, y]\n  : z")
        #expect(error.field == "metadata")
        #expect(error.message == "field names must be text, got a list as a key")
    }

    @Test func mapsKeepKeysOfTheUsersChoosing() throws {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {imagePullPolicyy: x}\n  annotations: {spec: y}"
        let objects = try ManifestDecoder.decode(yaml, source: "app.yaml")
        #expect(objects.first?.metadata.labels == ["imagePullPolicyy": "x", "kubernetes.io/metadata.name": "a"])
        #expect(objects.first?.metadata.annotations == ["spec": "y"])
    }

    @Test(arguments: [
        ("imagePullPolicyy", "imagePullPolicy"), ("ImagePullPolicy", "imagePullPolicy"), ("contianers", "containers"),
        ("comand", "command"), ("nam", "name"), ("xyz", nil), ("a", nil),
    ] as [(String, String?)])
    func suggestionsAreNearFieldsOnly(typo: String, expected: String?) {
        let fields = ManifestFields("Test", read: ["name", "command", "containers"], ignored: ["imagePullPolicy"])
        #expect(fields.suggestion(for: typo) == expected)
    }

    @Test func editDistanceCountsInsertionsDeletionsAndSubstitutions() {
        #expect(EditDistance.between("kitten", "sitting", atMost: 3) == 3)
        #expect(EditDistance.between("kitten", "sitting", atMost: 2) == nil)
        #expect(EditDistance.between("port", "ports", atMost: 1) == 1)
        #expect(EditDistance.between("same", "same", atMost: 0) == 0)
        #expect(EditDistance.between("form", "from", atMost: 1) == 1, "swapped neighbours are one edit")
    }
}
