import Testing
@testable import MeridianCore
import Foundation

// MARK: - Fixtures

/// The example of the Kubernetes NetworkPolicy documentation, in namespace `shop`.
private let kubernetesExample = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: shop
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
        - namespaceSelector:
            matchExpressions:
              - {key: env, operator: In, values: [prod]}
          podSelector:
            matchLabels:
              app: monitor
      ports:
        - protocol: TCP
          port: 6379
        - port: metrics
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
    - ports:
        - protocol: UDP
          port: 53
"""

private let ciliumExample = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: backend.v2
  namespace: shop
spec:
  description: frontend and monitoring may reach the backend
  endpointSelector:
    matchLabels:
      app: backend
  ingress:
    - fromEndpoints:
        - matchLabels:
            k8s:app: frontend
        - matchLabels:
            io.kubernetes.pod.namespace: ops
            app: prometheus
      toPorts:
        - ports:
            - port: "8080"
              protocol: TCP
            - port: 9090
            - port: HTTP
              protocol: tcp
            - port: "8000"
              endPort: 8100
              protocol: UDP
    - fromEntities: [host, remote-node]
  ingressDeny:
    - fromCIDRSet:
        - cidr: 203.0.113.0/24
          except: [203.0.113.128/25]
specs:
  - endpointSelector: {}
    egress:
      - toCIDR: [192.0.2.10, 198.51.100.0/24]
      - toEntities: [world]
        toPorts:
          - ports:
              - port: "443"
    egressDeny:
      - toEndpoints:
          - matchExpressions:
              - key: io.cilium.k8s.policy.cluster
                operator: NotIn
                values: [alpha]
    enableDefaultDeny:
      egress: false
"""

private let clusterwideExample = """
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: mesh-default-deny
  namespace: ignored
spec:
  endpointSelector:
    matchExpressions:
      - key: io.kubernetes.pod.namespace
        operator: NotIn
        values: [kube-system]
  ingress:
    - {}
  egress:
    - toEndpoints:
        - matchLabels:
            io.kubernetes.pod.namespace: kube-system
            k8s-app: kube-dns
      toPorts:
        - ports:
            - port: "53"
              protocol: ANY
"""

private func decodeOne(_ yaml: String) throws -> KubernetesObject {
    let objects = try ManifestDecoder.decode(yaml, source: "policy.yaml")
    try #require(objects.count == 1)
    return objects[0]
}

private func policyFailure(_ yaml: String) throws -> ManifestError {
    try #require(throws: ManifestError.self) {
        try ManifestDecoder.decode(yaml, source: "policy.yaml")
    }
}

private func reindent(_ block: String, by spaces: Int) -> String {
    let padding = String(repeating: " ", count: spaces)
    return block.split(separator: "\n", omittingEmptySubsequences: false)
        .map { $0.isEmpty ? "" : padding + $0 }
        .joined(separator: "\n")
}

private func networkPolicy(spec: String, name: String = "np") -> String {
    """
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata:
      name: \(name)
      namespace: shop
    spec:
    \(reindent(spec, by: 2))
    """
}

private func ciliumPolicy(_ body: String, kind: String = "CiliumNetworkPolicy", name: String = "cnp") -> String {
    """
    apiVersion: cilium.io/v2
    kind: \(kind)
    metadata:
      name: \(name)
      namespace: shop
    \(body)
    """
}

/// A CiliumNetworkPolicy whose `spec` (below `endpointSelector: {}`) is given unindented.
private func ciliumSpec(_ rule: String) -> String {
    ciliumPolicy("spec:\n  endpointSelector: {}\n" + reindent(rule, by: 2))
}

private let settings = PolicySettings(clusterName: "alpha")

// MARK: - Decoding

@Suite("Policy decoding")
struct PolicyDecodingTests {
    @Test func kubernetesExampleDecodes() throws {
        guard case let .networkPolicy(policy) = try decodeOne(kubernetesExample) else {
            Issue.record("expected a NetworkPolicy")
            return
        }
        #expect(policy.metadata.namespace == "shop")
        #expect(policy.spec.podSelector == LabelSelector(matchLabels: ["role": "db"]))
        #expect(policy.spec.policyTypes == [.ingress, .egress])
        let ingress = try #require(policy.spec.ingress.first)
        #expect(ingress.from.count == 4)
        #expect(ingress.from[0].ipBlock == IPBlock(cidr: "172.17.0.0/16", except: ["172.17.1.0/24"]))
        #expect(ingress.from[1].namespaceSelector == LabelSelector(matchLabels: ["project": "myproject"]))
        #expect(ingress.from[1].podSelector == nil)
        #expect(ingress.from[3].namespaceSelector?.matchExpressions == [.init(key: "env", operator: .in, values: ["prod"])])
        #expect(ingress.from[3].podSelector == LabelSelector(matchLabels: ["app": "monitor"]))
        #expect(ingress.ports == [NetworkPolicyPort(protocol: .tcp, port: 6379), NetworkPolicyPort(port: "metrics")])
        #expect(policy.spec.egress.map(\.ports) == [
            [NetworkPolicyPort(protocol: .tcp, port: 32000, endPort: 32768)],
            [NetworkPolicyPort(protocol: .udp, port: 53)],
        ])
        #expect(policy.spec.egress[1].to.isEmpty)
    }

    @Test(arguments: [
        ("ingress:\n  - {}", [NetworkPolicyType.ingress]),
        ("egress:\n  - {}", [.ingress, .egress]),
        ("egress: []", [.ingress]),
        ("policyTypes: []\negress:\n  - {}", [.ingress, .egress]),
        ("policyTypes: [Egress]", [.egress]),
        ("policyTypes: [Egress, Egress]", [.egress]),
    ])
    func policyTypesDefaultLikeTheAPIServer(spec: String, expected: [NetworkPolicyType]) throws {
        guard case let .networkPolicy(policy) = try decodeOne(networkPolicy(spec: "podSelector: {}\n" + spec)) else {
            Issue.record("expected a NetworkPolicy")
            return
        }
        #expect(policy.spec.policyTypes == expected)
    }

    @Test func missingPodSelectorSelectsEveryPod() throws {
        guard case let .networkPolicy(policy) = try decodeOne(networkPolicy(spec: "policyTypes: [Ingress]")) else {
            Issue.record("expected a NetworkPolicy")
            return
        }
        #expect(policy.spec.podSelector.isEmpty)
    }

    @Test func ciliumExampleDecodes() throws {
        guard case let .ciliumNetworkPolicy(policy) = try decodeOne(ciliumExample) else {
            Issue.record("expected a CiliumNetworkPolicy")
            return
        }
        #expect(policy.metadata.name == "backend.v2")
        let spec = try #require(policy.spec)
        #expect(spec.description == "frontend and monitoring may reach the backend")
        #expect(spec.endpointSelector == LabelSelector(matchLabels: ["app": "backend"]))
        let ingress = try #require(spec.ingress)
        #expect(ingress.count == 2)
        #expect(ingress[0].fromEndpoints == [
            LabelSelector(matchLabels: ["k8s:app": "frontend"]),
            LabelSelector(matchLabels: ["io.kubernetes.pod.namespace": "ops", "app": "prometheus"]),
        ])
        #expect(ingress[0].toPorts == [CiliumPortRule(ports: [
            CiliumPortProtocol(port: "8080", protocol: .tcp),
            CiliumPortProtocol(port: "9090", protocol: .any),
            CiliumPortProtocol(port: "http", protocol: .tcp),
            CiliumPortProtocol(port: "8000", protocol: .udp, endPort: 8100),
        ])])
        #expect(ingress[1].fromEntities == [.host, .remoteNode])
        #expect(ingress[1].fromEndpoints == nil)
        #expect(spec.ingressDeny?.first?.fromCIDRSet == [CiliumCIDRRule(cidr: "203.0.113.0/24", except: ["203.0.113.128/25"])])
        #expect(spec.egress == nil)

        let second = try #require(policy.specs?.first)
        #expect(second.endpointSelector.isEmpty)
        #expect(second.egress?[0].toCIDR == ["192.0.2.10", "198.51.100.0/24"])
        #expect(second.egress?[1].toEntities == [.world])
        #expect(second.egress?[1].toPorts?.first?.ports == [CiliumPortProtocol(port: "443")])
        #expect(second.egressDeny?.first?.toEndpoints?.first?.matchExpressions.first?.operator == .notIn)
        #expect(second.enableDefaultDeny == CiliumDefaultDeny(ingress: nil, egress: false))
        #expect(policy.rules.map(\.path) == ["spec", "specs[0]"])
    }

    @Test func clusterwidePolicyIsClusterScoped() throws {
        let object = try decodeOne(clusterwideExample)
        guard case let .ciliumClusterwideNetworkPolicy(policy) = object else {
            Issue.record("expected a CiliumClusterwideNetworkPolicy")
            return
        }
        #expect(object.namespace == nil)
        #expect(policy.metadata.namespace == nil)
        #expect(policy.spec?.ingress == [CiliumIngressRule()])
        #expect(policy.spec?.egress?.first?.toPorts?.first?.ports == [CiliumPortProtocol(port: "53", protocol: .any)])
    }

    @Test func emptyListsAreKeptApartFromAbsentFields() throws {
        let yaml = ciliumSpec("""
        ingress:
          - fromEndpoints: []
            toPorts: [{ports: [{port: "80"}]}]
          - {}
        egress: []
        egressDeny:
          - toEntities: [world]
        """)
        guard case let .ciliumNetworkPolicy(policy) = try decodeOne(yaml) else {
            Issue.record("expected a CiliumNetworkPolicy")
            return
        }
        #expect(policy.spec?.ingress?[0].fromEndpoints == [])
        #expect(policy.spec?.ingress?[1].fromEndpoints == nil)
        #expect(policy.spec?.egress == [])
        #expect(policy.spec?.ingressDeny == nil)
    }

    @Test(arguments: [kubernetesExample, ciliumExample, clusterwideExample])
    func objectsSurviveStorageAsJSON(yaml: String) throws {
        let object = try decodeOne(yaml)
        let data = try JSONEncoder().encode(object)
        let decoded = try JSONDecoder().decode(KubernetesObject.self, from: data)
        #expect(decoded == object)
        #expect(decoded.policyRules(settings: settings) == object.policyRules(settings: settings))
    }

    @Test func multiDocumentFileMixesPolicyKinds() throws {
        let yaml = [kubernetesExample, ciliumExample, clusterwideExample].joined(separator: "\n---\n")
        let objects = try ManifestDecoder.decode(yaml, source: "policies.yaml")
        #expect(objects.map(\.kind) == [.networkPolicy, .ciliumNetworkPolicy, .ciliumClusterwideNetworkPolicy])
        #expect(objects.map(\.namespace) == ["shop", "shop", nil])
    }

    @Test func kindsAreRegistered() {
        #expect(ResourceKind.networkPolicy.apiVersion == "networking.k8s.io/v1")
        #expect(ResourceKind.ciliumNetworkPolicy.apiVersion == "cilium.io/v2")
        #expect(ResourceKind.ciliumClusterwideNetworkPolicy.apiVersion == "cilium.io/v2")
        #expect(ResourceKind.networkPolicy.isNamespaced && ResourceKind.ciliumNetworkPolicy.isNamespaced)
        #expect(!ResourceKind.ciliumClusterwideNetworkPolicy.isNamespaced)
        #expect(ResourceKind(userInput: "netpol") == .networkPolicy)
        #expect(ResourceKind(userInput: "NetworkPolicies") == .networkPolicy)
        #expect(ResourceKind(userInput: "cnp") == .ciliumNetworkPolicy)
        #expect(ResourceKind(userInput: "ciliumclusterwidenetworkpolicies") == .ciliumClusterwideNetworkPolicy)
        #expect(ResourceKind(userInput: "ccnp") == .ciliumClusterwideNetworkPolicy)
    }

    @Test func apiVersionIsChecked() throws {
        let error = try policyFailure(kubernetesExample.replacingOccurrences(of: "networking.k8s.io/v1", with: "cilium.io/v2"))
        #expect(error.field == "apiVersion")
        #expect(error.message == "NetworkPolicy must use apiVersion \"networking.k8s.io/v1\", got \"cilium.io/v2\"")
        let cilium = try policyFailure(ciliumExample.replacingOccurrences(of: "cilium.io/v2", with: "cilium.io/v1"))
        #expect(cilium.message == "CiliumNetworkPolicy must use apiVersion \"cilium.io/v2\", got \"cilium.io/v1\"")
    }

    @Test func kindSpellingIsSuggested() throws {
        let error = try policyFailure(ciliumExample.replacingOccurrences(of: "kind: CiliumNetworkPolicy", with: "kind: ciliumnetworkpolicy"))
        #expect(error.field == "kind")
        #expect(error.message.contains("did you mean CiliumNetworkPolicy?"))
    }
}

// MARK: - Validation errors

/// One invalid manifest and where and why it must be rejected.
struct PolicyValidationCase: Sendable, CustomTestStringConvertible {
    var name: String
    var yaml: String
    var field: String?
    var message: String

    var testDescription: String { name }
}

private func invalid(_ name: String, _ yaml: String, field: String?, _ message: String) -> PolicyValidationCase {
    PolicyValidationCase(name: name, yaml: yaml, field: field, message: message)
}

private let networkPolicyErrors: [PolicyValidationCase] = [
    invalid(
        "name must be a DNS subdomain",
        networkPolicy(spec: "podSelector: {}", name: "Bad_Name"),
        field: "metadata.name", "invalid name \"Bad_Name\""),
    invalid(
        "spec is required",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n",
        field: "spec", "is required"),
    invalid(
        "podSelector keys are label keys",
        networkPolicy(spec: "podSelector:\n  matchLabels:\n    \"bad key\": x"),
        field: "spec.podSelector.matchLabels[\"bad key\"]", "invalid label key"),
    invalid(
        "policyTypes are Ingress or Egress",
        networkPolicy(spec: "policyTypes: [Ingress, Sideways]"),
        field: "spec.policyTypes[1]", "expected one of Ingress, Egress, got \"Sideways\""),
    invalid(
        "at most two policyTypes",
        networkPolicy(spec: "policyTypes: [Ingress, Egress, Ingress]"),
        field: "spec.policyTypes", "may not specify more than two policyTypes, got 3"),
    invalid(
        "a peer must select something",
        networkPolicy(spec: "ingress:\n  - from:\n      - {}"),
        field: "spec.ingress[0].from[0]", "must specify a peer: podSelector, namespaceSelector or ipBlock"),
    invalid(
        "ipBlock stands alone",
        networkPolicy(spec: "ingress:\n  - from:\n      - ipBlock: {cidr: 10.0.0.0/8}\n        podSelector: {}"),
        field: "spec.ingress[0].from[0]", "may not specify both ipBlock and another peer"),
    invalid(
        "ipBlock needs a cidr",
        networkPolicy(spec: "egress:\n  - to:\n      - ipBlock: {except: [10.0.0.0/9]}"),
        field: "spec.egress[0].to[0].ipBlock.cidr", "is required"),
    invalid(
        "ipBlock cidr must parse",
        networkPolicy(spec: "ingress:\n  - from:\n      - ipBlock: {cidr: 10.0.0.0/33}"),
        field: "spec.ingress[0].from[0].ipBlock.cidr", "must be a CIDR"),
    invalid(
        "except must be inside cidr",
        networkPolicy(spec: "ingress:\n  - from:\n      - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 11.0.0.0/16]}"),
        field: "spec.ingress[0].from[0].ipBlock.except[1]", "must be a strict subset of cidr 10.0.0.0/8, got 11.0.0.0/16"),
    invalid(
        "except must be a strict subset",
        networkPolicy(spec: "ingress:\n  - from:\n      - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}"),
        field: "spec.ingress[0].from[0].ipBlock.except[0]", "must be a strict subset"),
    invalid(
        "except must be of the same family",
        networkPolicy(spec: "ingress:\n  - from:\n      - ipBlock: {cidr: 10.0.0.0/8, except: [\"fd00::/64\"]}"),
        field: "spec.ingress[0].from[0].ipBlock.except[0]", "must be a strict subset"),
    invalid(
        "namespaceSelector is validated",
        networkPolicy(spec: "ingress:\n  - from:\n      - namespaceSelector:\n          matchExpressions:\n            - {key: env, operator: In}"),
        field: "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values", "operator In needs at least one value"),
    invalid(
        "protocol is TCP, UDP or SCTP",
        networkPolicy(spec: "ingress:\n  - ports:\n      - protocol: ICMP"),
        field: "spec.ingress[0].ports[0].protocol", "expected one of TCP, UDP, SCTP, got \"ICMP\""),
    invalid(
        "port numbers start at 1",
        networkPolicy(spec: "ingress:\n  - ports:\n      - port: 0"),
        field: "spec.ingress[0].ports[0].port", "must be between 1 and 65535, got 0"),
    invalid(
        "port names are IANA service names",
        networkPolicy(spec: "egress:\n  - ports:\n      - port: Web_Port"),
        field: "spec.egress[0].ports[0].port", "invalid port name \"Web_Port\""),
    invalid(
        "endPort needs a port",
        networkPolicy(spec: "ingress:\n  - ports:\n      - endPort: 90"),
        field: "spec.ingress[0].ports[0].endPort", "may not be specified when port is not specified"),
    invalid(
        "endPort needs a numeric port",
        networkPolicy(spec: "ingress:\n  - ports:\n      - port: http\n        endPort: 90"),
        field: "spec.ingress[0].ports[0].endPort", "may not be specified when port is non-numeric"),
    invalid(
        "endPort is not below port",
        networkPolicy(spec: "ingress:\n  - ports:\n      - port: 8080\n        endPort: 8000"),
        field: "spec.ingress[0].ports[0].endPort", "must be greater than or equal to port 8080, got 8000"),
    invalid(
        "endPort is a port number",
        networkPolicy(spec: "egress:\n  - ports:\n      - port: 8080\n        endPort: 70000"),
        field: "spec.egress[0].ports[0].endPort", "must be between 1 and 65535, got 70000"),
    invalid(
        "egress peers are validated",
        networkPolicy(spec: "egress:\n  - to:\n      - {}"),
        field: "spec.egress[0].to[0]", "must specify a peer"),
]

private let ciliumErrors: [PolicyValidationCase] = [
    invalid(
        "spec or specs is required",
        ciliumPolicy("status: {}"),
        field: "spec", "is required: give one rule in spec or a list of rules in specs"),
    invalid(
        "specs must not be empty",
        ciliumPolicy("specs: []"),
        field: "spec", "is required"),
    invalid(
        "endpointSelector is required",
        ciliumPolicy("spec:\n  ingress:\n    - {}"),
        field: "spec.endpointSelector", "is required"),
    invalid(
        "nodeSelector is not supported",
        ciliumPolicy("spec:\n  nodeSelector: {}\n  ingress:\n    - {}", kind: "CiliumClusterwideNetworkPolicy"),
        field: "spec.nodeSelector", "is not supported"),
    invalid(
        "a rule needs a non-empty section",
        ciliumSpec("ingress: []\negress:"),
        field: "spec", "rule must have at least one of ingress, ingressDeny, egress, egressDeny"),
    invalid(
        "each rule of specs needs a section",
        ciliumPolicy("specs:\n  - endpointSelector: {}\n    ingress: [{}]\n  - endpointSelector: {}"),
        field: "specs[1]", "rule must have at least one of"),
    invalid(
        "label sources are k8s, reserved or any",
        ciliumPolicy("spec:\n  endpointSelector:\n    matchLabels:\n      k9s:app: web\n  ingress: [{}]"),
        field: "spec.endpointSelector.matchLabels[\"k9s:app\"]", "unknown label source \"k9s\""),
    invalid(
        "reserved labels are known names",
        ciliumSpec("ingress:\n  - fromEndpoints:\n      - matchLabels:\n          reserved:hots: \"\""),
        field: "spec.ingress[0].fromEndpoints[0].matchLabels[\"reserved:hots\"]", "unknown reserved label \"hots\""),
    invalid(
        "selector values are label values",
        ciliumSpec("egress:\n  - toEndpoints:\n      - matchLabels:\n          app: \"not valid!\""),
        field: "spec.egress[0].toEndpoints[0].matchLabels[\"app\"]", "invalid label value"),
    invalid(
        "expression operators take values as in Kubernetes",
        ciliumPolicy("specs:\n  - endpointSelector: {}\n    ingress: [{}]\n  - endpointSelector: {}\n    egressDeny:\n      - toEndpoints:\n          - matchExpressions:\n              - {key: k8s:app, operator: NotIn}"),
        field: "specs[1].egressDeny[0].toEndpoints[0].matchExpressions[0].values", "operator NotIn needs at least one value"),
    invalid(
        "one kind of peer per rule",
        ciliumSpec("ingress:\n  - fromEndpoints: [{}]\n    fromCIDR: [10.0.0.0/8]"),
        field: "spec.ingress[0]", "combining fromEndpoints and fromCIDR in one rule is not supported"),
    invalid(
        "entities are Cilium's",
        ciliumSpec("ingress:\n  - fromEntities: [world, internet]"),
        field: "spec.ingress[0].fromEntities[1]", "unsupported entity \"internet\"; expected one of all, world"),
    invalid(
        "fromCIDR entries must parse",
        ciliumSpec("ingress:\n  - fromCIDR: [10.0.0.0/8, 10.0.0.300]"),
        field: "spec.ingress[0].fromCIDR[1]", "must be a CIDR such as 10.0.0.0/8 or an IP address"),
    invalid(
        "CIDR set needs a cidr",
        ciliumSpec("egress:\n  - toCIDRSet:\n      - except: [10.0.0.0/9]"),
        field: "spec.egress[0].toCIDRSet[0].cidr", "is required"),
    invalid(
        "CIDR set except must be inside",
        ciliumSpec("egress:\n  - toCIDRSet:\n      - cidr: 10.0.0.0/16\n        except: [10.0.0.0/8]"),
        field: "spec.egress[0].toCIDRSet[0].except[0]", "must lie inside cidr 10.0.0.0/16, got 10.0.0.0/8"),
    invalid(
        "CIDR groups are not supported",
        ciliumSpec("egress:\n  - toCIDRSet:\n      - cidrGroupRef: office"),
        field: "spec.egress[0].toCIDRSet[0].cidrGroupRef", "is not supported by Meridian"),
    invalid(
        "FQDN rules are not supported",
        ciliumSpec("egress:\n  - toFQDNs:\n      - matchName: example.com"),
        field: "spec.egress[0].toFQDNs", "is not supported by Meridian"),
    invalid(
        "fromRequires is not supported",
        ciliumSpec("ingress:\n  - fromRequires: [{}]"),
        field: "spec.ingress[0].fromRequires", "is not supported by Meridian"),
    invalid(
        "L7 rules are not supported",
        ciliumSpec("ingress:\n  - toPorts:\n      - ports: [{port: \"80\", protocol: TCP}]\n        rules:\n          http: [{method: GET}]"),
        field: "spec.ingress[0].toPorts[0].rules", "is not supported: Meridian enforces policy at layers 3 and 4 only"),
    invalid(
        "a port is required",
        ciliumSpec("ingress:\n  - toPorts:\n      - ports: [{protocol: TCP}]"),
        field: "spec.ingress[0].toPorts[0].ports[0].port", "is required; use \"0\" for every port"),
    invalid(
        "port numbers end at 65535",
        ciliumSpec("ingress:\n  - toPorts:\n      - ports: [{port: \"70000\"}]"),
        field: "spec.ingress[0].toPorts[0].ports[0].port", "must be between 0 (every port) and 65535, got 70000"),
    invalid(
        "port names are IANA service names",
        ciliumSpec("ingress:\n  - toPorts:\n      - ports: [{port: web_port}]"),
        field: "spec.ingress[0].toPorts[0].ports[0].port", "invalid port name \"web_port\""),
    invalid(
        "ICMP is not supported",
        ciliumSpec("egress:\n  - toPorts:\n      - ports: [{port: \"0\", protocol: ICMP}]"),
        field: "spec.egress[0].toPorts[0].ports[0].protocol", "protocol ICMP is not supported by Meridian"),
    invalid(
        "protocols are TCP, UDP, SCTP or ANY",
        ciliumSpec("egress:\n  - toPorts:\n      - ports: [{port: \"80\", protocol: HTTP}]"),
        field: "spec.egress[0].toPorts[0].ports[0].protocol", "expected one of TCP, UDP, SCTP, ANY, got \"HTTP\""),
    invalid(
        "endPort needs a numeric port",
        ciliumSpec("egress:\n  - toPorts:\n      - ports: [{port: http, endPort: 90}]"),
        field: "spec.egress[0].toPorts[0].ports[0].endPort", "may not be specified when port is a name"),
    invalid(
        "endPort needs a real port",
        ciliumSpec("egress:\n  - toPorts:\n      - ports: [{port: \"0\", endPort: 90}]"),
        field: "spec.egress[0].toPorts[0].ports[0].endPort", "may not be specified when port is 0"),
    invalid(
        "endPort is not below port",
        ciliumSpec("egress:\n  - toPorts:\n      - ports: [{port: \"443\", endPort: 80}]"),
        field: "spec.egress[0].toPorts[0].ports[0].endPort", "must be greater than or equal to port 443, got 80"),
    invalid(
        "at most forty ports per toPorts element",
        ciliumSpec("ingress:\n  - toPorts:\n      - ports: [" + (1...41).map { "{port: \"\($0)\"}" }.joined(separator: ", ") + "]"),
        field: "spec.ingress[0].toPorts[0].ports", "too many ports, the maximum is 40, got 41"),
    invalid(
        "enableDefaultDeny takes booleans",
        ciliumSpec("enableDefaultDeny:\n  ingress: \"yes\"\ningress: [{}]"),
        field: "spec.enableDefaultDeny.ingress", "expected a boolean (true or false), got \"yes\""),
    invalid(
        "clusterwide names are DNS subdomains",
        ciliumPolicy("spec:\n  endpointSelector: {}\n  ingress: [{}]", kind: "CiliumClusterwideNetworkPolicy", name: "-bad"),
        field: "metadata.name", "invalid name \"-bad\""),
]

@Suite("Policy validation")
struct PolicyValidationTests {
    @Test(arguments: networkPolicyErrors + ciliumErrors)
    func invalidPolicyIsRejectedAtItsField(_ testCase: PolicyValidationCase) throws {
        let error = try policyFailure(testCase.yaml)
        #expect(error.field == testCase.field)
        #expect(error.message.contains(testCase.message), "message was: \(error.message)")
        #expect(error.documentIndex == 1)
    }

    @Test func errorNamesTheObject() throws {
        let error = try policyFailure(networkPolicy(spec: "ingress:\n  - ports:\n      - port: 0", name: "allow-web"))
        #expect(error.kind == "NetworkPolicy")
        #expect(error.name == "allow-web")
        #expect(error.description == """
            policy.yaml: document 1 (NetworkPolicy "allow-web"): spec.ingress[0].ports[0].port: \
            must be between 1 and 65535, got 0
            """)
    }

    @Test(arguments: [
        "ingress: [{}]",
        "egressDeny: [{}]",
        "ingress:\n  - fromEndpoints: []\n    toPorts: [{ports: [{port: \"0\"}]}]",
        "ingress:\n  - fromCIDR: [10.0.0.1, \"fd00::1\"]\n  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.0.0.0/8]}]",
        "egress:\n  - toPorts:\n      - ports: [{port: \"8000\", endPort: 8000, protocol: sctp}]",
        "ingress:\n  - fromEntities: [all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, ingress, init, health, unmanaged, none]",
        "enableDefaultDeny: {ingress: false}\ningress:\n  - fromEndpoints:\n      - matchLabels:\n          reserved:host: \"\"\n          any:app: web",
    ])
    func validCiliumRulesAreAccepted(rule: String) throws {
        _ = try decodeOne(ciliumSpec(rule))
    }
}

// MARK: - Compilation

@Suite("Policy compilation")
struct PolicyCompilationTests {
    private func requirement(_ source: String?, _ key: String, _ value: String) -> EndpointSelector.Requirement {
        .equals(source, key, value)
    }

    @Test func networkPolicySubjectIsNamespacedAndLocal() throws {
        let rules = try decodeOne(kubernetesExample).policyRules(settings: settings)
        #expect(rules.map(\.origin.rule) == ["spec.ingress[0]", "spec.egress[0]", "spec.egress[1]"])
        let subject = try #require(rules.first?.subject)
        #expect(subject.requirements == [
            requirement("k8s", "role", "db"),
            requirement("k8s", LabelKeys.podNamespace, "shop"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])
        #expect(rules.allSatisfy { $0.enablesDefaultDeny && $0.action == .allow && $0.cluster == "alpha" })
    }

    @Test func networkPolicyPeersFollowCilium() throws {
        let rules = try decodeOne(kubernetesExample).policyRules(settings: settings)
        let peers = rules[0].peers
        #expect(peers.count == 4)
        // Selectors follow Cilium's translation; ipBlock follows upstream (any address, pods' too).
        #expect(peers[0] == .ipBlock(CIDRPeer(cidr: IPCIDR("172.17.0.0/16")!, except: [IPCIDR("172.17.1.0/24")!])))
        #expect(peers[1] == .endpoints(EndpointSelector([
            requirement("k8s", "io.cilium.k8s.namespace.labels.project", "myproject"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])))
        #expect(peers[2] == .endpoints(EndpointSelector([
            requirement("k8s", "role", "frontend"),
            requirement("k8s", LabelKeys.podNamespace, "shop"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])))
        #expect(peers[3] == .endpoints(EndpointSelector([
            .init(source: "k8s", key: "io.cilium.k8s.namespace.labels.env", operator: .in, values: ["prod"]),
            requirement("k8s", "app", "monitor"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])))
        #expect(rules[0].ports == [.port(6379, .tcp), PortSelector(protocol: .tcp, ports: .named("metrics"))])
        #expect(rules[1].ports == [PortSelector(protocol: .tcp, ports: .range(first: 32000, last: 32768))])
        #expect(rules[2].peers == [.entity(.all)])
    }

    @Test func directionWithoutRulesOnlyEnforcesDefaultDeny() throws {
        let yaml = networkPolicy(spec: "podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress:\n  - {}")
        let rules = try decodeOne(yaml).policyRules(settings: settings)
        #expect(rules.map(\.direction) == [.ingress, .egress])
        #expect(rules[0].peers == [.entity(.all)] && rules[0].ports == [.all])
        #expect(rules[1].peers.isEmpty && rules[1].ports.isEmpty && rules[1].enablesDefaultDeny)
        #expect(rules[1].origin.rule == "spec.policyTypes")
    }

    @Test func ingressRulesAreIgnoredWhenPolicyTypesLeaveIngressOut() throws {
        let yaml = networkPolicy(spec: "podSelector: {}\npolicyTypes: [Egress]\ningress:\n  - {}\negress:\n  - {}")
        let rules = try decodeOne(yaml).policyRules(settings: settings)
        #expect(rules.map(\.direction) == [.egress])
    }

    @Test func withoutLocalClusterDefaultPeersSpanClusters() throws {
        let rules = try decodeOne(kubernetesExample).policyRules(
            settings: PolicySettings(clusterName: "alpha", policyDefaultLocalCluster: false))
        #expect(rules[0].peers[2] == .endpoints(EndpointSelector([
            requirement("k8s", "role", "frontend"),
            requirement("k8s", LabelKeys.podNamespace, "shop"),
        ])))
        #expect(rules[0].subject.constrains(kubernetesKey: LabelKeys.cluster))
    }

    @Test func ciliumPeersFollowCilium() throws {
        let rules = try decodeOne(ciliumExample).policyRules(settings: settings)
        #expect(rules.map(\.origin.rule) == [
            "spec.ingress[0]", "spec.ingress[1]", "spec.ingressDeny[0]", "specs[0].egress[0]", "specs[0].egress[1]",
            "specs[0].egressDeny[0]",
        ])
        #expect(rules.map(\.action) == [.allow, .allow, .deny, .allow, .allow, .deny])
        #expect(rules.map(\.enablesDefaultDeny) == [true, true, true, false, false, false])
        #expect(rules[0].subject.requirements == [
            requirement(nil, "app", "backend"),
            requirement("k8s", LabelKeys.podNamespace, "shop"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])
        #expect(rules[0].peers == [
            .endpoints(EndpointSelector([
                requirement("k8s", "app", "frontend"),
                requirement("k8s", LabelKeys.podNamespace, "shop"),
                requirement("k8s", LabelKeys.cluster, "alpha"),
            ])),
            .endpoints(EndpointSelector([
                requirement(nil, "app", "prometheus"),
                requirement(nil, LabelKeys.podNamespace, "ops"),
                requirement("k8s", LabelKeys.cluster, "alpha"),
            ])),
        ])
        #expect(rules[0].ports == [
            .port(8080, .tcp), .port(9090, .any), PortSelector(protocol: .tcp, ports: .named("http")),
            PortSelector(protocol: .udp, ports: .range(first: 8000, last: 8100)),
        ])
        #expect(rules[1].peers == [.entity(.host), .entity(.remoteNode)] && rules[1].ports == [.all])
        #expect(rules[3].peers == [.cidr(CIDRPeer(cidr: IPCIDR("192.0.2.10/32")!)), .cidr(CIDRPeer(cidr: IPCIDR("198.51.100.0/24")!))])
        #expect(rules[4].ports == [.port(443, .any)])
        #expect(rules[5].peers == [.endpoints(EndpointSelector([
            .init(source: nil, key: LabelKeys.cluster, operator: .notIn, values: ["alpha"]),
            requirement("k8s", LabelKeys.podNamespace, "shop"),
        ]))])
    }

    @Test func clusterwidePeersNeedANamespaceButNotTheirOwn() throws {
        let rules = try decodeOne(clusterwideExample).policyRules(settings: settings)
        #expect(rules[0].subject.requirements == [
            .init(source: nil, key: LabelKeys.podNamespace, operator: .notIn, values: ["kube-system"]),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ])
        #expect(rules[0].peers.isEmpty && rules[0].enablesDefaultDeny)
        #expect(rules[1].peers == [.endpoints(EndpointSelector([
            requirement(nil, LabelKeys.podNamespace, "kube-system"),
            requirement(nil, "k8s-app", "kube-dns"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ]))])

        let wildcard = try decodeOne(ciliumPolicy(
            "spec:\n  endpointSelector: {}\n  ingress:\n    - fromEndpoints: [{}]", kind: "CiliumClusterwideNetworkPolicy"))
        #expect(wildcard.policyRules(settings: settings)[0].peers == [.endpoints(EndpointSelector([
            .init(source: "k8s", key: LabelKeys.podNamespace, operator: .exists),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ]))])
    }

    @Test func emptyRulesAndEmptyPeerListsAllowNothing() throws {
        let yaml = ciliumSpec("""
        ingress:
          - {}
          - fromEndpoints: []
            toPorts: [{ports: [{port: "80"}]}]
          - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
          - toPorts: []
          - fromEntities: [world]
            toPorts: [{ports: []}]
        """)
        let rules = try decodeOne(yaml).policyRules(settings: settings)
        #expect(rules.map(\.peers) == [[], [], [.entity(.all)], [], [.entity(.world)]])
        #expect(rules[2].ports == [.port(80, .tcp)])
        #expect(rules[4].ports.isEmpty)
        #expect(rules.allSatisfy { $0.enablesDefaultDeny })
    }

    @Test func reservedSelectorsAreTakenAsWritten() throws {
        let yaml = ciliumSpec("ingress:\n  - fromEndpoints:\n      - matchLabels:\n          reserved:host: \"\"")
        let rules = try decodeOne(yaml).policyRules(settings: settings)
        #expect(rules[0].peers == [.endpoints(EndpointSelector([requirement("reserved", "host", "")]))])
    }

    @Test func namespaceLabelSelectorsReachOtherNamespaces() throws {
        let yaml = ciliumSpec("ingress:\n  - fromEndpoints:\n      - matchLabels:\n          io.cilium.k8s.namespace.labels.team: ops")
        let rules = try decodeOne(yaml).policyRules(settings: settings)
        #expect(rules[0].peers == [.endpoints(EndpointSelector([
            requirement(nil, "io.cilium.k8s.namespace.labels.team", "ops"),
            requirement("k8s", LabelKeys.cluster, "alpha"),
        ]))])
    }

    @Test func cidrSubtractionCoversExactlyTheRest() throws {
        let peer = CIDRPeer(cidr: IPCIDR("10.0.0.0/8")!, except: [IPCIDR("10.1.0.0/16")!, IPCIDR("10.0.0.0/24")!])
        let prefixes = peer.effectivePrefixes
        #expect(prefixes.map(\.description) == [
            "10.0.1.0/24", "10.0.2.0/23", "10.0.4.0/22", "10.0.8.0/21", "10.0.16.0/20", "10.0.32.0/19", "10.0.64.0/18",
            "10.0.128.0/17", "10.2.0.0/15", "10.4.0.0/14", "10.8.0.0/13", "10.16.0.0/12", "10.32.0.0/11", "10.64.0.0/10",
            "10.128.0.0/9",
        ])
        for address in ["10.0.0.5", "10.1.200.1", "10.0.1.1", "10.255.255.255", "11.0.0.0"] {
            let ip = IPAddress(address)!
            #expect(prefixes.contains { $0.contains(ip) } == peer.contains(ip), "\(address)")
        }
    }
}
