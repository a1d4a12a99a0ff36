import Testing
@testable import MeridianCore

// MARK: - The mesh

/// Two clusters, `alpha` and `beta`, with the same namespaces:
/// `shop` (team=shop, env=prod), `ops` (team=ops, env=prod) and `dev` (env=dev).
private enum Mesh {
    static let layout = IdentityLayout(maxConnectedClusters: .c255)
    static let clusterIDs = ["alpha": ClusterID(1), "beta": ClusterID(2)]
    static let namespaceLabels = [
        "shop": ["team": "shop", "env": "prod"],
        "ops": ["team": "ops", "env": "prod"],
        "dev": ["env": "dev"],
    ]

    struct Pod {
        var cluster: String
        var namespace: String
        var labels: [String: String]
        var local: UInt32
        var namedPorts: [NamedPort] = []
    }

    static let pods: [String: Pod] = [
        "a.frontend": Pod(cluster: "alpha", namespace: "shop", labels: ["app": "frontend", "tier": "web"], local: 1),
        "a.backend": Pod(
            cluster: "alpha", namespace: "shop", labels: ["app": "backend", "tier": "api"], local: 2,
            namedPorts: [NamedPort(name: "http", port: 8080, protocol: .tcp), NamedPort(name: "metrics", port: 9090, protocol: .tcp)]),
        "a.db": Pod(
            cluster: "alpha", namespace: "shop", labels: ["app": "db"], local: 3,
            namedPorts: [NamedPort(name: "pg", port: 5432, protocol: .tcp)]),
        "a.monitor": Pod(cluster: "alpha", namespace: "ops", labels: ["app": "prometheus"], local: 4),
        "a.tester": Pod(cluster: "alpha", namespace: "dev", labels: ["app": "tester"], local: 5),
        "a.devfront": Pod(cluster: "alpha", namespace: "dev", labels: ["app": "frontend"], local: 6),
        "a.dns": Pod(
            cluster: "alpha", namespace: "ops", labels: ["app": "dns"], local: 7,
            namedPorts: [NamedPort(name: "dns", port: 53, protocol: .udp), NamedPort(name: "dns-tcp", port: 53, protocol: .tcp)]),
        "b.frontend": Pod(cluster: "beta", namespace: "shop", labels: ["app": "frontend", "tier": "web"], local: 1),
        "b.backend": Pod(
            cluster: "beta", namespace: "shop", labels: ["app": "backend", "tier": "api"], local: 2,
            namedPorts: [NamedPort(name: "http", port: 8081, protocol: .tcp)]),
        "b.monitor": Pod(cluster: "beta", namespace: "ops", labels: ["app": "prometheus"], local: 4),
    ]

    static func identity(of pod: Pod) -> UInt32 {
        try! layout.identity(cluster: clusterIDs[pod.cluster]!, local: pod.local)
    }

    static func labels(of pod: Pod) -> LabelSet {
        var namespace = namespaceLabels[pod.namespace]!
        namespace[LabelKeys.namespaceMetadataName] = pod.namespace
        return LabelSet.podIdentityLabels(
            podLabels: pod.labels, namespace: pod.namespace, namespaceLabels: namespace,
            serviceAccount: nil, cluster: pod.cluster)
    }

    /// A pod by name, `world:<ip>` for an outside address, `host` or `remote-node`, optionally
    /// followed by `@<ip>` to give the endpoint an address.
    static func endpoint(_ name: String) -> PolicyEndpoint {
        let parts = name.split(separator: "@").map(String.init)
        let ip = parts.count > 1 ? IPAddress(parts[1]) : nil
        switch parts[0] {
        case "world": return .reserved(.world, ip: ip)
        case "host": return .reserved(.host, ip: ip)
        case "remote-node": return .reserved(.remoteNode, ip: ip)
        default:
            let pod = pods[parts[0]]!
            return PolicyEndpoint(identity: identity(of: pod), labels: labels(of: pod), ip: ip, namedPorts: pod.namedPorts)
        }
    }

    static var identities: [UInt32: LabelSet] {
        Dictionary(uniqueKeysWithValues: pods.values.map { (identity(of: $0), labels(of: $0)) })
    }

    static var namedPorts: [UInt32: [NamedPort]] {
        Dictionary(uniqueKeysWithValues: pods.values.filter { !$0.namedPorts.isEmpty }.map { (identity(of: $0), $0.namedPorts) })
    }

    static func rules(_ yaml: String, cluster: String, localDefault: Bool) throws -> [PolicyRule] {
        guard !yaml.isEmpty else { return [] }
        let objects = try ManifestDecoder.decode(yaml, source: "\(cluster).yaml")
        return PolicyCompiler.rules(
            for: objects, settings: PolicySettings(clusterName: cluster, policyDefaultLocalCluster: localDefault))
    }
}

// MARK: - Policies

private func np(_ name: String, namespace: String = "shop", _ spec: String) -> String {
    """
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata:
      name: \(name)
      namespace: \(namespace)
    spec:
    \(spec.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
    """
}

private func cnp(_ name: String, namespace: String = "shop", kind: String = "CiliumNetworkPolicy", _ spec: String) -> String {
    """
    apiVersion: cilium.io/v2
    kind: \(kind)
    metadata:
      name: \(name)
      namespace: \(namespace)
    spec:
    \(spec.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
    """
}

private func ccnp(_ name: String, _ spec: String) -> String {
    cnp(name, kind: "CiliumClusterwideNetworkPolicy", spec)
}

private func documents(_ parts: String...) -> String {
    parts.joined(separator: "\n---\n")
}

private let denyIngressInShop = np("default-deny", "podSelector: {}\npolicyTypes: [Ingress]")

private let backendFromFrontend8080 = np("backend-from-frontend", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - podSelector:
          matchLabels: {app: frontend}
    ports:
      - port: 8080
""")

private let backendMetricsFromOps = np("backend-metrics", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - namespaceSelector:
          matchLabels: {team: ops}
    ports:
      - port: metrics
""")

private let backendFromProdFrontends = np("prod-frontends", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - namespaceSelector:
          matchLabels: {env: prod}
        podSelector:
          matchLabels: {app: frontend}
""")

private let backendFromDevOrFrontends = np("dev-or-frontends", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - namespaceSelector:
          matchLabels: {env: dev}
      - podSelector:
          matchLabels: {app: frontend}
""")

private let backendFromAllNamespaces = np("all-namespaces", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - namespaceSelector: {}
""")

private let backendFromAnyone8080 = np("anyone-8080", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - ports:
      - port: 8080
""")

private let backendFromOfficeBlock = np("office", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - ipBlock:
          cidr: 203.0.113.0/24
          except: [203.0.113.128/25]
""")

private let backendFromPodNetwork = np("pod-network", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - ipBlock:
          cidr: 10.0.0.0/8
""")

private let backendFromPodNetworkExceptOne = np("pod-network-but-one", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - ipBlock:
          cidr: 10.0.0.0/8
          except: [10.1.2.3/32]
""")

private let frontendEgressToOnePod = np("frontend-to-one-pod", """
podSelector:
  matchLabels: {app: frontend}
policyTypes: [Egress]
egress:
  - to:
      - ipBlock:
          cidr: 10.1.2.4/32
    ports:
      - port: 8080
  - to:
      - ipBlock:
          cidr: 10.1.2.0/24
    ports:
      - port: metrics
""")

private let ciliumBackendFromPodNetwork = cnp("pod-network-cidr", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromCIDR: [10.0.0.0/8]
""")

private let backendHTTPByName = np("http-by-name", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - podSelector: {}
    ports:
      - port: http
""")

private let backendNodePortRange = np("port-range", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - ports:
      - port: 32000
        endPort: 32767
""")

private let backendUDP53 = np("udp-53", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - ports:
      - protocol: UDP
        port: 53
""")

private let frontendEgressToBackend = np("frontend-egress", """
podSelector:
  matchLabels: {app: frontend}
policyTypes: [Egress]
egress:
  - to:
      - podSelector:
          matchLabels: {app: backend}
    ports:
      - port: 8080
""")

private let frontendEgressDefaultTypes = np("frontend-egress-default-types", """
podSelector:
  matchLabels: {app: frontend}
egress:
  - to:
      - podSelector:
          matchLabels: {app: backend}
""")

private let frontendIngressOnlyTypes = np("frontend-ingress-only", """
podSelector:
  matchLabels: {app: frontend}
policyTypes: [Ingress]
ingress:
  - {}
egress:
  - to:
      - podSelector:
          matchLabels: {app: backend}
""")

private let backendFromBetaFrontends = np("beta-frontends", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - from:
      - podSelector:
          matchLabels:
            app: frontend
            io.cilium.k8s.policy.cluster: beta
""")

private let ciliumBackendFromFrontend = cnp("cnp-backend", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - matchLabels: {app: frontend}
    toPorts:
      - ports:
          - port: "8080"
            protocol: TCP
""")

private let ciliumDenyFrontend = cnp("deny-frontend", """
endpointSelector:
  matchLabels: {app: backend}
ingressDeny:
  - fromEndpoints:
      - matchLabels: {k8s:app: frontend}
""")

private let allowAllIngressToBackend = np("allow-all", """
podSelector:
  matchLabels: {app: backend}
ingress:
  - {}
""")

private let ciliumAllButWorld = cnp("all-but-world", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEntities: [all]
ingressDeny:
  - fromEntities: [world]
""")

private let ciliumFromCluster = cnp("from-cluster", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEntities: [cluster]
""")

private let ciliumFromHost = cnp("from-host", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEntities: [host]
""")

private let ciliumFromRemoteNodes = cnp("from-remote-nodes", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEntities: [remote-node]
""")

private let ciliumFrontendToWorldHTTPS = cnp("frontend-world", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toEntities: [world]
    toPorts:
      - ports:
          - port: "443"
            protocol: TCP
""")

private let ciliumFrontendToPartners = cnp("frontend-partners", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toCIDRSet:
      - cidr: 198.51.100.0/24
        except: [198.51.100.0/28]
  - toCIDR: [192.0.2.10]
""")

private let ciliumBackendDefaultDeny = cnp("backend-lockdown", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - {}
""")

private let ciliumWithoutDefaultDeny = cnp("observe-only", """
endpointSelector:
  matchLabels: {app: backend}
enableDefaultDeny:
  ingress: false
ingress:
  - fromEndpoints:
      - matchLabels: {app: prometheus}
""")

private let ciliumMetricsFromAnywhere = cnp("metrics-anywhere", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - toPorts:
      - ports:
          - port: "9090"
""")

private let ciliumHTTPByName = cnp("cnp-http-name", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - {}
    toPorts:
      - ports:
          - port: http
            protocol: TCP
""")

private let ciliumPortRange = cnp("cnp-range", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - toPorts:
      - ports:
          - port: "8000"
            endPort: 8100
            protocol: TCP
""")

private let ciliumAnyProtocol53 = cnp("any-53", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - toPorts:
      - ports:
          - port: 53
""")

private let ciliumFrontendToDB = cnp("frontend-db", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toEndpoints:
      - matchLabels: {k8s:app: db}
""")

private let ciliumFromOpsTeam = cnp("from-ops-team", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - matchLabels:
          io.cilium.k8s.namespace.labels.team: ops
""")

private let ciliumFromOpsNamespace = cnp("from-ops-namespace", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - matchLabels:
          io.kubernetes.pod.namespace: ops
          app: prometheus
""")

private let ciliumFromBetaFrontends = cnp("from-beta-frontends", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - matchLabels:
          app: frontend
          io.cilium.k8s.policy.cluster: beta
""")

private let ciliumFromAnyClusterFrontends = cnp("from-any-cluster", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - matchLabels: {app: frontend}
        matchExpressions:
          - {key: io.cilium.k8s.policy.cluster, operator: Exists}
""")

private let clusterwideFromAllPods = ccnp("backend-from-all-pods", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEndpoints:
      - {}
""")

private let clusterwideNoWorldEgress = ccnp("no-world-egress", """
endpointSelector: {}
egressDeny:
  - toEntities: [world]
""")

private let egressAllFromFrontend = np("frontend-egress-all", """
podSelector:
  matchLabels: {app: frontend}
policyTypes: [Egress]
egress:
  - {}
""")

private let betaFrontendToAlphaBackend = cnp("to-alpha-backend", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toEndpoints:
      - matchLabels:
          app: backend
          io.cilium.k8s.policy.cluster: alpha
""")

private let betaFrontendToBackendLocalDefault = cnp("to-backend", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toEndpoints:
      - matchLabels: {app: backend}
""")

private let ciliumDeny9090FromAll = cnp("deny-9090", """
endpointSelector:
  matchLabels: {app: backend}
ingress:
  - fromEntities: [all]
ingressDeny:
  - toPorts:
      - ports:
          - port: "9090"
            protocol: TCP
""")

private let ciliumDenyWorldOnly = cnp("deny-world-only", """
endpointSelector:
  matchLabels: {app: backend}
ingressDeny:
  - fromEntities: [world]
""")

private let ciliumDenyWorldWithoutDefaultDeny = cnp("deny-world-only", """
endpointSelector:
  matchLabels: {app: backend}
enableDefaultDeny:
  ingress: false
ingressDeny:
  - fromEntities: [world]
""")

private let frontendEgressByName = np("egress-by-name", """
podSelector:
  matchLabels: {app: frontend}
policyTypes: [Egress]
egress:
  - ports:
      - port: http
""")

private let frontendDNSByName = cnp("dns-by-name", """
endpointSelector:
  matchLabels: {app: frontend}
egress:
  - toEndpoints:
      - matchLabels: {io.kubernetes.pod.namespace: ops}
    toPorts:
      - ports:
          - port: dns
            protocol: UDP
""")

// MARK: - Cases

/// One probe through policies applied in the two clusters.
struct PolicyProbeCase: Sendable, CustomTestStringConvertible {
    var name: String
    var alpha: String = ""
    var beta: String = ""
    var alphaLocalDefault = true
    var betaLocalDefault = true
    var from: String
    var to: String
    var port: UInt16
    var transport: TransportProtocol = .tcp
    var allowed: Bool
    /// Policy names (`Kind namespace/name`) expected among the deciding policies.
    var deciders: [String] = []

    var testDescription: String { name }
}

private func probe(
    _ name: String, alpha: String = "", beta: String = "", alphaLocalDefault: Bool = true, betaLocalDefault: Bool = true,
    from: String, to: String, port: UInt16, _ transport: TransportProtocol = .tcp, allowed: Bool, deciders: [String] = []
) -> PolicyProbeCase {
    PolicyProbeCase(
        name: name, alpha: alpha, beta: beta, alphaLocalDefault: alphaLocalDefault, betaLocalDefault: betaLocalDefault,
        from: from, to: to, port: port, transport: transport, allowed: allowed, deciders: deciders)
}

private let probeCases: [PolicyProbeCase] = [
    // Kubernetes NetworkPolicy
    probe("no policy: everything passes", from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP default deny ingress", alpha: denyIngressInShop, from: "a.frontend", to: "a.backend", port: 8080,
        allowed: false, deciders: ["NetworkPolicy shop/default-deny"]),
    probe(
        "NP union: an allow policy opens a default-deny namespace", alpha: documents(denyIngressInShop, backendFromFrontend8080),
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true, deciders: ["NetworkPolicy shop/backend-from-frontend"]),
    probe(
        "NP union: ports outside every policy stay closed", alpha: documents(denyIngressInShop, backendFromFrontend8080),
        from: "a.frontend", to: "a.backend", port: 9090, allowed: false),
    probe(
        "NP union: a second policy adds a namespaceSelector peer on a named port",
        alpha: documents(denyIngressInShop, backendFromFrontend8080, backendMetricsFromOps),
        from: "a.monitor", to: "a.backend", port: 9090, allowed: true, deciders: ["NetworkPolicy shop/backend-metrics"]),
    probe(
        "NP podSelector alone stays in the policy's namespace", alpha: backendFromFrontend8080,
        from: "a.devfront", to: "a.backend", port: 8080, allowed: false),
    probe(
        "NP podSelector AND namespaceSelector: both match", alpha: backendFromProdFrontends,
        from: "a.frontend", to: "a.backend", port: 80, allowed: true),
    probe(
        "NP podSelector AND namespaceSelector: namespace does not match", alpha: backendFromProdFrontends,
        from: "a.devfront", to: "a.backend", port: 80, allowed: false),
    probe(
        "NP separate peers are OR (namespace peer)", alpha: backendFromDevOrFrontends,
        from: "a.tester", to: "a.backend", port: 80, allowed: true),
    probe(
        "NP separate peers are OR (neither)", alpha: backendFromDevOrFrontends,
        from: "a.monitor", to: "a.backend", port: 80, allowed: false),
    probe(
        "NP empty namespaceSelector selects every namespace", alpha: backendFromAllNamespaces,
        from: "a.tester", to: "a.backend", port: 80, allowed: true),
    probe(
        "NP empty namespaceSelector is not the world", alpha: backendFromAllNamespaces,
        from: "world@203.0.113.10", to: "a.backend", port: 80, allowed: false),
    probe(
        "NP absent from admits every source, world included", alpha: backendFromAnyone8080,
        from: "world@203.0.113.10", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP ipBlock admits its addresses", alpha: backendFromOfficeBlock,
        from: "world@203.0.113.10", to: "a.backend", port: 443, allowed: true),
    probe(
        "NP ipBlock except carves a hole", alpha: backendFromOfficeBlock,
        from: "world@203.0.113.200", to: "a.backend", port: 443, allowed: false),
    probe(
        "NP ipBlock selects pods by address, as upstream", alpha: backendFromPodNetwork,
        from: "a.frontend@10.1.2.3", to: "a.backend", port: 443, allowed: true, deciders: ["NetworkPolicy shop/pod-network"]),
    probe(
        "NP ipBlock selects a remote cluster's pod by address", alpha: backendFromPodNetwork,
        from: "b.frontend@10.2.0.9", to: "a.backend", port: 443, allowed: true),
    probe(
        "NP ipBlock needs the address: a pod outside the block is not selected", alpha: backendFromPodNetwork,
        from: "a.frontend@192.168.0.3", to: "a.backend", port: 443, allowed: false),
    probe(
        "NP ipBlock except carves one pod out", alpha: backendFromPodNetworkExceptOne,
        from: "a.frontend@10.1.2.3", to: "a.backend", port: 443, allowed: false),
    probe(
        "NP ipBlock except leaves a pod of the same identity at another address in", alpha: backendFromPodNetworkExceptOne,
        from: "a.frontend@10.1.2.5", to: "a.backend", port: 443, allowed: true),
    probe(
        "NP egress ipBlock /32 admits the pod at that address", alpha: frontendEgressToOnePod,
        from: "a.frontend@10.1.1.2", to: "a.backend@10.1.2.4", port: 8080, allowed: true),
    probe(
        "NP egress ipBlock /32 admits only its port", alpha: frontendEgressToOnePod,
        from: "a.frontend@10.1.1.2", to: "a.backend@10.1.2.4", port: 8081, allowed: false),
    probe(
        "NP egress ipBlock /32 does not admit the same identity at another address", alpha: frontendEgressToOnePod,
        from: "a.frontend@10.1.1.2", to: "a.backend@10.1.3.4", port: 8080, allowed: false),
    probe(
        "NP egress named port never pairs with an ipBlock (the name is the destination pod's)", alpha: frontendEgressToOnePod,
        from: "a.frontend@10.1.1.2", to: "a.backend@10.1.2.4", port: 9090, allowed: false),
    probe(
        "CNP fromCIDR keeps Cilium's meaning: never a pod", alpha: ciliumBackendFromPodNetwork,
        from: "a.frontend@10.1.2.3", to: "a.backend", port: 443, allowed: false),
    probe(
        "CNP fromCIDR still admits outside addresses", alpha: ciliumBackendFromPodNetwork,
        from: "world@10.200.0.1", to: "a.backend", port: 443, allowed: true),
    probe(
        "NP named port resolves on the receiving pod", alpha: backendHTTPByName,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP named port does not open other numbers", alpha: backendHTTPByName,
        from: "a.frontend", to: "a.backend", port: 8081, allowed: false),
    probe(
        "NP endPort range includes its end", alpha: backendNodePortRange,
        from: "a.frontend", to: "a.backend", port: 32767, allowed: true),
    probe(
        "NP endPort range ends at endPort", alpha: backendNodePortRange,
        from: "a.frontend", to: "a.backend", port: 32768, allowed: false),
    probe(
        "NP protocol UDP admits UDP", alpha: backendUDP53, from: "a.frontend", to: "a.backend", port: 53, .udp, allowed: true),
    probe(
        "NP protocol UDP does not admit TCP", alpha: backendUDP53, from: "a.frontend", to: "a.backend", port: 53, allowed: false),
    probe(
        "NP egress rule admits its destination", alpha: frontendEgressToBackend,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP egress default deny", alpha: frontendEgressToBackend, from: "a.frontend", to: "a.db", port: 5432,
        allowed: false, deciders: ["NetworkPolicy shop/frontend-egress"]),
    probe(
        "NP without policyTypes but with egress isolates ingress too", alpha: frontendEgressDefaultTypes,
        from: "a.backend", to: "a.frontend", port: 80, allowed: false),
    probe(
        "NP policyTypes [Ingress] ignores egress rules", alpha: frontendIngressOnlyTypes,
        from: "a.frontend", to: "a.db", port: 5432, allowed: true),
    probe(
        "NP egress named port resolves on each destination", alpha: frontendEgressByName,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP egress named port: destination without the name", alpha: frontendEgressByName,
        from: "a.frontend", to: "a.db", port: 8080, allowed: false),
    probe(
        "NP cross-cluster: local cluster only by default", alpha: backendFromFrontend8080,
        from: "b.frontend", to: "a.backend", port: 8080, allowed: false),
    probe(
        "NP cross-cluster: without policyDefaultLocalCluster peers span clusters", alpha: backendFromFrontend8080,
        alphaLocalDefault: false, from: "b.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "NP cross-cluster: the cluster label selects the named cluster", alpha: backendFromBetaFrontends,
        from: "b.frontend", to: "a.backend", port: 80, allowed: true),
    probe(
        "NP cross-cluster: the cluster label excludes the local cluster", alpha: backendFromBetaFrontends,
        from: "a.frontend", to: "a.backend", port: 80, allowed: false),

    // CiliumNetworkPolicy
    probe(
        "CNP fromEndpoints and toPorts", alpha: ciliumBackendFromFrontend, from: "a.frontend", to: "a.backend", port: 8080,
        allowed: true, deciders: ["CiliumNetworkPolicy shop/cnp-backend"]),
    probe(
        "CNP default deny for others", alpha: ciliumBackendFromFrontend, from: "a.tester", to: "a.backend", port: 8080,
        allowed: false),
    probe(
        "CNP deny wins over a NetworkPolicy allow", alpha: documents(allowAllIngressToBackend, ciliumDenyFrontend),
        from: "a.frontend", to: "a.backend", port: 8080, allowed: false, deciders: ["CiliumNetworkPolicy shop/deny-frontend"]),
    probe(
        "CNP deny only denies what it selects", alpha: documents(allowAllIngressToBackend, ciliumDenyFrontend),
        from: "a.monitor", to: "a.backend", port: 8080, allowed: true),
    probe(
        "CNP deny of world inside an allow-all", alpha: ciliumAllButWorld,
        from: "world@198.51.100.1", to: "a.backend", port: 80, allowed: false),
    probe(
        "CNP allow-all still admits pods", alpha: ciliumAllButWorld, from: "b.monitor", to: "a.backend", port: 80, allowed: true),
    probe(
        "CNP port deny beats an allow of all peers", alpha: ciliumDeny9090FromAll,
        from: "a.frontend", to: "a.backend", port: 9090, allowed: false),
    probe(
        "CNP port deny leaves other ports", alpha: ciliumDeny9090FromAll,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "CNP entity cluster admits local pods", alpha: ciliumFromCluster, from: "a.tester", to: "a.backend", port: 80,
        allowed: true),
    probe(
        "CNP entity cluster excludes other clusters' pods", alpha: ciliumFromCluster,
        from: "b.frontend", to: "a.backend", port: 80, allowed: false),
    probe(
        "CNP entity cluster admits remote nodes", alpha: ciliumFromCluster, from: "remote-node", to: "a.backend", port: 80,
        allowed: true),
    probe(
        "CNP entity cluster excludes the world", alpha: ciliumFromCluster,
        from: "world@203.0.113.10", to: "a.backend", port: 80, allowed: false),
    probe("CNP entity host", alpha: ciliumFromHost, from: "host", to: "a.backend", port: 80, allowed: true),
    probe("CNP entity host is not a pod", alpha: ciliumFromHost, from: "a.frontend", to: "a.backend", port: 80, allowed: false),
    probe("CNP entity remote-node", alpha: ciliumFromRemoteNodes, from: "remote-node", to: "a.backend", port: 80, allowed: true),
    probe(
        "CNP egress to world on 443", alpha: ciliumFrontendToWorldHTTPS,
        from: "a.frontend", to: "world@93.184.216.34", port: 443, allowed: true),
    probe(
        "CNP egress to world is not egress to pods", alpha: ciliumFrontendToWorldHTTPS,
        from: "a.frontend", to: "a.backend", port: 443, allowed: false),
    probe(
        "CNP toCIDRSet admits its addresses", alpha: ciliumFrontendToPartners,
        from: "a.frontend", to: "world@198.51.100.77", port: 443, allowed: true),
    probe(
        "CNP toCIDRSet except", alpha: ciliumFrontendToPartners,
        from: "a.frontend", to: "world@198.51.100.5", port: 443, allowed: false),
    probe(
        "CNP toCIDR with a bare address", alpha: ciliumFrontendToPartners,
        from: "a.frontend", to: "world@192.0.2.10", port: 22, allowed: true),
    probe(
        "CNP toCIDR with a bare address is one host", alpha: ciliumFrontendToPartners,
        from: "a.frontend", to: "world@192.0.2.11", port: 22, allowed: false),
    probe(
        "CNP ingress: [{}] is default deny alone", alpha: ciliumBackendDefaultDeny,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: false, deciders: ["CiliumNetworkPolicy shop/backend-lockdown"]),
    probe(
        "CNP enableDefaultDeny false leaves other traffic alone", alpha: ciliumWithoutDefaultDeny,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "CNP a deny-only policy also enables default deny", alpha: ciliumDenyWorldOnly,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: false, deciders: ["CiliumNetworkPolicy shop/deny-world-only"]),
    probe(
        "CNP a deny-only policy with enableDefaultDeny false only denies", alpha: ciliumDenyWorldWithoutDefaultDeny,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe(
        "CNP a deny-only policy with enableDefaultDeny false still denies", alpha: ciliumDenyWorldWithoutDefaultDeny,
        from: "world@203.0.113.10", to: "a.backend", port: 8080, allowed: false),
    probe(
        "CNP L4-only rule admits every peer on its port", alpha: ciliumMetricsFromAnywhere,
        from: "world@203.0.113.10", to: "a.backend", port: 9090, allowed: true),
    probe(
        "CNP L4-only rule keeps other ports closed", alpha: ciliumMetricsFromAnywhere,
        from: "a.frontend", to: "a.backend", port: 8080, allowed: false),
    probe(
        "CNP named port", alpha: ciliumHTTPByName, from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe("CNP port range", alpha: ciliumPortRange, from: "a.frontend", to: "a.backend", port: 8080, allowed: true),
    probe("CNP port range end", alpha: ciliumPortRange, from: "a.frontend", to: "a.backend", port: 8101, allowed: false),
    probe(
        "CNP protocol ANY admits UDP", alpha: ciliumAnyProtocol53, from: "a.frontend", to: "a.backend", port: 53, .udp,
        allowed: true),
    probe(
        "CNP protocol ANY admits SCTP", alpha: ciliumAnyProtocol53, from: "a.frontend", to: "a.backend", port: 53, .sctp,
        allowed: true),
    probe(
        "CNP k8s: source prefix", alpha: ciliumFrontendToDB, from: "a.frontend", to: "a.db", port: 5432, allowed: true),
    probe(
        "CNP egress default deny", alpha: ciliumFrontendToDB, from: "a.frontend", to: "a.backend", port: 8080, allowed: false),
    probe(
        "CNP egress named port on the selected namespace", alpha: frontendDNSByName,
        from: "a.frontend", to: "a.dns", port: 53, .udp, allowed: true),
    probe(
        "CNP egress named port is protocol-specific", alpha: frontendDNSByName,
        from: "a.frontend", to: "a.dns", port: 53, .tcp, allowed: false),
    probe(
        "CNP namespace-label selector reaches other namespaces", alpha: ciliumFromOpsTeam,
        from: "a.monitor", to: "a.backend", port: 80, allowed: true),
    probe(
        "CNP namespace-label selector excludes other teams", alpha: ciliumFromOpsTeam,
        from: "a.tester", to: "a.backend", port: 80, allowed: false),
    probe(
        "CNP explicit namespace label", alpha: ciliumFromOpsNamespace, from: "a.monitor", to: "a.backend", port: 80,
        allowed: true),
    probe(
        "CNP explicit namespace label in another cluster", alpha: ciliumFromOpsNamespace,
        from: "b.monitor", to: "a.backend", port: 80, allowed: false),
    probe(
        "CNP cluster label selects the remote cluster", alpha: ciliumFromBetaFrontends,
        from: "b.frontend", to: "a.backend", port: 80, allowed: true),
    probe(
        "CNP cluster label excludes the local cluster", alpha: ciliumFromBetaFrontends,
        from: "a.frontend", to: "a.backend", port: 80, allowed: false),
    probe(
        "CNP cluster Exists spans clusters", alpha: ciliumFromAnyClusterFrontends,
        from: "b.frontend", to: "a.backend", port: 80, allowed: true),
    probe(
        "CNP without cluster label: local cluster only", alpha: ciliumBackendFromFrontend,
        from: "b.frontend", to: "a.backend", port: 8080, allowed: false),
    probe(
        "CNP without cluster label and without policyDefaultLocalCluster", alpha: ciliumBackendFromFrontend,
        alphaLocalDefault: false, from: "b.frontend", to: "a.backend", port: 8080, allowed: true),

    // CiliumClusterwideNetworkPolicy
    probe(
        "CCNP fromEndpoints {} spans namespaces", alpha: clusterwideFromAllPods,
        from: "a.tester", to: "a.backend", port: 80, allowed: true),
    probe(
        "CCNP fromEndpoints {} is pods only", alpha: clusterwideFromAllPods, from: "host", to: "a.backend", port: 80,
        allowed: false),
    probe(
        "CCNP egress deny beats a NetworkPolicy egress allow", alpha: documents(egressAllFromFrontend, clusterwideNoWorldEgress),
        from: "a.frontend", to: "world@93.184.216.34", port: 443, allowed: false,
        deciders: ["CiliumClusterwideNetworkPolicy no-world-egress"]),
    probe(
        "CCNP egress deny leaves pods reachable", alpha: documents(egressAllFromFrontend, clusterwideNoWorldEgress),
        from: "a.frontend", to: "a.db", port: 5432, allowed: true),

    // Both ends must allow; each end is judged by its own cluster's policies.
    probe(
        "receiver allows but sender's egress denies", alpha: documents(ciliumBackendFromFrontend, ciliumFrontendToDB),
        from: "a.frontend", to: "a.backend", port: 8080, allowed: false, deciders: ["CiliumNetworkPolicy shop/frontend-db"]),
    probe(
        "cross-cluster: both ends allow", alpha: ciliumFromBetaFrontends, beta: betaFrontendToAlphaBackend,
        from: "b.frontend", to: "a.backend", port: 80, allowed: true,
        deciders: ["CiliumNetworkPolicy shop/from-beta-frontends", "CiliumNetworkPolicy shop/to-alpha-backend"]),
    probe(
        "cross-cluster: sender's selector defaults to its own cluster", alpha: ciliumFromBetaFrontends,
        beta: betaFrontendToBackendLocalDefault, from: "b.frontend", to: "a.backend", port: 80, allowed: false,
        deciders: ["CiliumNetworkPolicy shop/to-backend"]),
    probe(
        "cross-cluster: sender cluster without the local default", alpha: ciliumFromBetaFrontends,
        beta: betaFrontendToBackendLocalDefault, betaLocalDefault: false,
        from: "b.frontend", to: "a.backend", port: 80, allowed: true),
    probe(
        "cross-cluster: a policy of one cluster never applies in the other", alpha: denyIngressInShop,
        from: "a.frontend", to: "b.backend", port: 8081, allowed: true),
]

// MARK: - Tests

@Suite("Policy semantics")
struct PolicySemanticsTests {
    private static func rules(_ testCase: PolicyProbeCase) throws -> [PolicyRule] {
        try Mesh.rules(testCase.alpha, cluster: "alpha", localDefault: testCase.alphaLocalDefault)
            + Mesh.rules(testCase.beta, cluster: "beta", localDefault: testCase.betaLocalDefault)
    }

    @Test func thereAreEnoughCases() {
        #expect(probeCases.count >= 30)
        #expect(Set(probeCases.map(\.name)).count == probeCases.count)
    }

    @Test(arguments: probeCases)
    func traceMatchesTheDocumentedSemantics(_ testCase: PolicyProbeCase) throws {
        let verdict = PolicyVerdict.explain(
            from: Mesh.endpoint(testCase.from), to: Mesh.endpoint(testCase.to),
            port: testCase.port, protocol: testCase.transport, rules: try Self.rules(testCase))
        #expect(verdict.allowed == testCase.allowed, "\(verdict)")
        for decider in testCase.deciders {
            #expect(verdict.decidingPolicies.contains(decider), "\(verdict.decidingPolicies)")
        }
    }

    /// The policy maps of each endpoint's own cluster give the same answer as the trace, so the
    /// datapath (which only sees the maps) enforces what `policy trace` explains.
    @Test(arguments: probeCases)
    func policyMapsAgreeWithTheTrace(_ testCase: PolicyProbeCase) throws {
        let rules = try Self.rules(testCase)
        let from = Mesh.endpoint(testCase.from)
        let to = Mesh.endpoint(testCase.to)
        let verdict = PolicyVerdict.explain(from: from, to: to, port: testCase.port, protocol: testCase.transport, rules: rules)
        let proto = L4Protocol(testCase.transport).ipProtocolNumber
        for (subject, peer, direction, expected) in [(from, to, TrafficDirection.egress, verdict.egress), (to, from, .ingress, verdict.ingress)] {
            guard let cluster = subject.labels.clusterName else {
                #expect(expected.allowed)
                continue
            }
            let resolver = PolicyResolver(
                rules: rules, identities: Mesh.identities, namedPorts: Mesh.namedPorts, localCluster: cluster)
            let policy = resolver.resolve(identity: subject.identity)[direction]
            let allowed = policy.allows(
                remoteIdentity: peer.identity, remoteLabels: peer.labels, remoteIP: peer.ip, protocol: proto, port: testCase.port)
            #expect(allowed == expected.allowed, "\(direction): map says \(allowed), trace says \(expected)")
            #expect(policy.enforced == rules.contains {
                $0.direction == direction && $0.enablesDefaultDeny && $0.subject.matches(subject.labels)
            })
        }
    }

    @Test func traceNamesTheRules() throws {
        let rules = try Mesh.rules(documents(denyIngressInShop, backendFromFrontend8080), cluster: "alpha", localDefault: true)
        let allowed = PolicyVerdict.explain(
            from: Mesh.endpoint("a.frontend"), to: Mesh.endpoint("a.backend"), port: 8080, protocol: .tcp, rules: rules)
        #expect(allowed.egress.reason == .notEnforced)
        #expect(allowed.ingress.reason == .allowedByRule)
        #expect(allowed.decidingRules.map(\.description) == ["NetworkPolicy shop/backend-from-frontend (spec.ingress[0])"])
        #expect(allowed.description == """
            allowed: egress allowed (not enforced); ingress allowed (allowed by rule): \
            NetworkPolicy shop/backend-from-frontend (spec.ingress[0])
            """)

        let denied = PolicyVerdict.explain(
            from: Mesh.endpoint("a.tester"), to: Mesh.endpoint("a.backend"), port: 8080, protocol: .tcp, rules: rules)
        #expect(denied.ingress.reason == .defaultDeny)
        #expect(denied.decidingPolicies == ["NetworkPolicy shop/backend-from-frontend", "NetworkPolicy shop/default-deny"])
    }
}

// MARK: - Policy maps

@Suite("Policy resolution")
struct PolicyResolutionTests {
    private static func resolve(_ yaml: String, cluster: String = "alpha", pod: String = "a.backend") throws -> EndpointPolicy {
        let rules = try Mesh.rules(yaml, cluster: cluster, localDefault: true)
        let resolver = PolicyResolver(rules: rules, identities: Mesh.identities, namedPorts: Mesh.namedPorts, localCluster: cluster)
        return resolver.resolve(identity: Mesh.identity(of: Mesh.pods[pod]!))
    }

    private static func id(_ pod: String) -> UInt32 { Mesh.identity(of: Mesh.pods[pod]!) }

    @Test func localEndpointsAreThoseOfTheLocalCluster() {
        let resolver = PolicyResolver(rules: [], identities: Mesh.identities, localCluster: "beta")
        #expect(resolver.localIdentities == ["b.frontend", "b.backend", "b.monitor"].map(Self.id).sorted())
        let all = resolver.resolve()
        #expect(all.count == 3)
        #expect(all.values.allSatisfy { !$0.ingress.enforced && $0.ingress.entries.isEmpty && !$0.egress.enforced })
    }

    @Test func endpointPeersBecomeOneEntryPerIdentityAndPortBlock() throws {
        let policy = try Self.resolve(ciliumBackendFromFrontend)
        #expect(policy.ingress.enforced)
        #expect(policy.ingress.entries == [PolicyMapEntry(remoteIdentity: Self.id("a.frontend"), protocol: 6, port: 8080, portPrefixLength: 16)])
        #expect(!policy.egress.enforced && policy.egress.entries.isEmpty)
    }

    @Test func entitiesMapToReservedIdentities() throws {
        let world = try Self.resolve(ciliumAllButWorld)
        #expect(world.ingress.entries == [
            PolicyMapEntry(remoteIdentity: 0, protocol: 0),
            PolicyMapEntry(remoteIdentity: 2, protocol: 0, deny: true),
            PolicyMapEntry(remoteIdentity: 9, protocol: 0, deny: true),
            PolicyMapEntry(remoteIdentity: 10, protocol: 0, deny: true),
        ])
        let cluster = try Self.resolve(ciliumFromCluster)
        let alphaPods = Mesh.pods.filter { $0.value.cluster == "alpha" }.keys.map(Self.id)
        #expect(Set(cluster.ingress.entries.map(\.remoteIdentity)) == Set([1, 3, 4, 5, 6, 7, 8] + alphaPods))
        #expect(cluster.ingress.entries.allSatisfy { $0.protocol == 0 && !$0.deny })
        let host = try Self.resolve(ciliumFromHost)
        #expect(host.ingress.entries == [PolicyMapEntry(remoteIdentity: 1, protocol: 0)])
    }

    @Test func cidrPeersStayApart() throws {
        let policy = try Self.resolve(ciliumFrontendToPartners, pod: "a.frontend")
        #expect(policy.egress.entries.isEmpty)
        #expect(policy.egress.cidrEntries == [
            CIDRPolicyEntry(peer: CIDRPeer(cidr: IPCIDR("192.0.2.10/32")!), protocol: 0),
            CIDRPolicyEntry(peer: CIDRPeer(cidr: IPCIDR("198.51.100.0/24")!, except: [IPCIDR("198.51.100.0/28")!]), protocol: 0),
        ])
    }

    @Test func portRangesAreCutIntoPrefixBlocks() throws {
        let policy = try Self.resolve(ciliumPortRange)
        #expect(policy.ingress.entries.map { PortPrefix(port: $0.port, prefixLength: $0.portPrefixLength) }
            == PortPrefix.decompose(8000, 8100))
        #expect(PortPrefix.decompose(8000, 8100).map(\.description) == ["8000/10", "8064/11", "8096/14", "8100/16"])
        #expect(policy.ingress.entries.allSatisfy { $0.remoteIdentity == 0 && $0.protocol == 6 })
        for port in UInt16(7990)...8110 {
            #expect(policy.ingress.allows(remoteIdentity: 5, protocol: 6, port: port) == (8000...8100).contains(port), "\(port)")
        }
    }

    @Test func anyProtocolWithAPortBecomesThreeProtocols() throws {
        let policy = try Self.resolve(ciliumAnyProtocol53)
        #expect(policy.ingress.entries.map(\.protocol) == [6, 17, 132])
        #expect(policy.ingress.entries.allSatisfy { $0.port == 53 && $0.portPrefixLength == 16 })
    }

    @Test func namedPortsResolvePerDestination() throws {
        let ingress = try Self.resolve(backendHTTPByName)
        #expect(Set(ingress.ingress.entries.map(\.port)) == [8080])
        let betaIngress = try Self.resolve(backendHTTPByName, cluster: "beta", pod: "b.backend")
        #expect(Set(betaIngress.ingress.entries.map(\.port)) == [8081])

        let egress = try Self.resolve(frontendEgressByName, pod: "a.frontend")
        #expect(egress.egress.entries == [
            PolicyMapEntry(remoteIdentity: Self.id("a.backend"), protocol: 6, port: 8080, portPrefixLength: 16),
            PolicyMapEntry(remoteIdentity: Self.id("b.backend"), protocol: 6, port: 8081, portPrefixLength: 16),
        ])
    }

    @Test func defaultDenyWithoutRulesIsEnforcedAndEmpty() throws {
        let policy = try Self.resolve(ciliumBackendDefaultDeny)
        #expect(policy.ingress.enforced && policy.ingress.entries.isEmpty && policy.ingress.cidrEntries.isEmpty)
        #expect(!policy.ingress.allows(remoteIdentity: Self.id("a.frontend"), protocol: 6, port: 80))
        #expect(policy.egress.allows(remoteIdentity: 2, protocol: 6, port: 80))
    }

    @Test func denyForOnePeerIsRepeatedUnderAWildcardAllow() {
        let backend = Self.id("a.backend")
        let normalized = PolicyResolver.normalize([
            PolicyMapEntry(remoteIdentity: 0, protocol: 6, port: 80, portPrefixLength: 16),
            PolicyMapEntry(remoteIdentity: backend, protocol: 6, deny: true),
            PolicyMapEntry(remoteIdentity: backend, protocol: 6, port: 443, portPrefixLength: 16),
            PolicyMapEntry(remoteIdentity: 2, protocol: 17, port: 53, portPrefixLength: 16),
            PolicyMapEntry(remoteIdentity: 0, protocol: 17, port: 0, portPrefixLength: 0, deny: true),
        ])
        #expect(normalized == [
            PolicyMapEntry(remoteIdentity: 0, protocol: 6, port: 80, portPrefixLength: 16),
            PolicyMapEntry(remoteIdentity: 0, protocol: 17, deny: true),
            PolicyMapEntry(remoteIdentity: backend, protocol: 6, deny: true),
            PolicyMapEntry(remoteIdentity: backend, protocol: 6, port: 80, portPrefixLength: 16, deny: true),
        ])
    }

    /// The longest-prefix lookup over normalized entries equals "a matching deny drops, else a
    /// matching allow passes, else default", for pseudo-random entry sets.
    @Test func lookupHonoursDenyPrecedence() {
        var generator = SplitMix(seed: 0x5EED)
        let identities: [UInt32] = [0, 300, 301]
        let protocols: [UInt8] = [0, 6, 17]
        let blocks = [PortPrefix(port: 0, prefixLength: 0), PortPrefix(port: 80, prefixLength: 16),
                      PortPrefix(port: 64, prefixLength: 11), PortPrefix(port: 0, prefixLength: 8), PortPrefix(port: 81, prefixLength: 16)]
        for _ in 0..<400 {
            var raw: Set<PolicyMapEntry> = []
            for _ in 0..<generator.next(upTo: 7) {
                let proto = protocols[generator.next(upTo: protocols.count)]
                let block = blocks[generator.next(upTo: blocks.count)]
                raw.insert(PolicyMapEntry(
                    remoteIdentity: identities[generator.next(upTo: identities.count)], protocol: proto,
                    port: block.port, portPrefixLength: block.prefixLength, deny: generator.next(upTo: 2) == 0))
            }
            let enforced = generator.next(upTo: 2) == 0
            let policy = DirectionPolicy(enforced: enforced, entries: PolicyResolver.normalize(raw))
            for peer: UInt32 in [300, 301, 302] {
                for proto: UInt8 in [6, 17] {
                    for port: UInt16 in [53, 79, 80, 81, 100, 5000] {
                        let matching = raw.filter {
                            ($0.remoteIdentity == peer || $0.remoteIdentity == 0) && $0.matches(protocol: proto, port: port)
                        }
                        let expected = matching.contains(where: \.deny) ? false : (!matching.isEmpty || !enforced)
                        #expect(
                            policy.allows(remoteIdentity: peer, protocol: proto, port: port) == expected,
                            "\(raw.sorted()) peer \(peer) proto \(proto) port \(port)")
                    }
                }
            }
        }
    }
}

/// A small deterministic generator, so the property test is reproducible.
private struct SplitMix {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next(upTo bound: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        value ^= value >> 31
        return Int(value % UInt64(bound))
    }
}
