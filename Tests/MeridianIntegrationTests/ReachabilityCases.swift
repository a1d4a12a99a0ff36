import Foundation
import MeridianCore

// The data of the policy reachability matrix: a fixed two-cluster topology, and cases that each
// apply some NetworkPolicy / CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy objects and
// state which connections must then pass and which must be dropped.
//
// The same data drives two tests: `ReachabilityModelTests` checks every expectation against the
// pure policy model (`PolicyVerdict.explain`), and the lab harness opens real connections. The
// expectations follow the documented semantics of Kubernetes NetworkPolicy (networking.k8s.io/v1)
// and of Cilium's policy language (cilium.io/v2) with `policy-default-local-cluster` on, not
// whatever the model happens to compute.

/// The fixed lab topology every reachability case runs against.
///
/// Two meshed clusters, `cluster1` and `cluster2`, each with two nodes (`node1`, `node2`). Pods
/// reach each other's pod IPs directly across the mesh and identities are global, but each
/// cluster enforces only the policies applied to it.
///
/// Every pod runs the same echo server, listening on TCP 8080 (container port named `http`),
/// TCP 9090 (`admin`), UDP 5353 (`dns`) and UDP 6363 (no name); see `podPorts`. A server
/// outside every cluster, at `worldAddress`, listens on TCP 8080 and UDP 5353 (`worldPorts`); it
/// is reached by pod egress through the node and never opens connections itself, so it only
/// ever appears as a probe's destination.
enum ReachabilityTopology {
    /// Namespace labels per cluster: `[cluster: [namespace: labels]]`. Kubernetes also gives
    /// every namespace `kubernetes.io/metadata.name: <name>`; that label is not listed here.
    static let namespaces: [String: [String: [String: String]]] = [
        "cluster1": [
            "alpha": ["team": "alpha", "env": "prod"],
            "beta": ["team": "beta", "env": "dev"],
        ],
        "cluster2": [
            "alpha": ["team": "alpha", "env": "prod"],
            "gamma": ["team": "gamma", "env": "prod"],
        ],
    ]

    /// Every pod of the lab.
    static let pods: [ReachabilityPod] = [
        ReachabilityPod(cluster: "cluster1", namespace: "alpha", name: "web", node: "node1", labels: ["app": "web", "tier": "frontend"]),
        ReachabilityPod(cluster: "cluster1", namespace: "alpha", name: "api", node: "node2", labels: ["app": "api", "tier": "backend"]),
        ReachabilityPod(cluster: "cluster1", namespace: "alpha", name: "client", node: "node2", labels: ["app": "client"]),
        ReachabilityPod(cluster: "cluster1", namespace: "beta", name: "client", node: "node1", labels: ["app": "client"]),
        ReachabilityPod(cluster: "cluster1", namespace: "beta", name: "db", node: "node2", labels: ["app": "db", "tier": "backend"]),
        ReachabilityPod(cluster: "cluster2", namespace: "alpha", name: "web", node: "node1", labels: ["app": "web", "tier": "frontend"]),
        ReachabilityPod(cluster: "cluster2", namespace: "alpha", name: "client", node: "node2", labels: ["app": "client"]),
        ReachabilityPod(cluster: "cluster2", namespace: "gamma", name: "client", node: "node1", labels: ["app": "client"]),
    ]

    /// The world server address (outside every cluster).
    static let worldAddress = "172.30.1.254"

    /// The ports every pod's echo server listens on, with their container port names.
    static let podPorts: [ReachabilityPort] = [
        ReachabilityPort(name: "http", port: 8080, transport: .tcp),
        ReachabilityPort(name: "admin", port: 9090, transport: .tcp),
        ReachabilityPort(name: "dns", port: 5353, transport: .udp),
        ReachabilityPort(name: nil, port: 6363, transport: .udp),
    ]

    /// The ports the world server listens on.
    static let worldPorts: [ReachabilityPort] = [
        ReachabilityPort(name: nil, port: 8080, transport: .tcp),
        ReachabilityPort(name: nil, port: 5353, transport: .udp),
    ]

    /// Probe shorthand for the cluster names: `c1` is `cluster1`, `c2` is `cluster2`.
    static let clusterAliases = ["c1": "cluster1", "c2": "cluster2"]

    /// The pod with this cluster, namespace and name, if the topology has it.
    static func pod(cluster: String, namespace: String, name: String) -> ReachabilityPod? {
        pods.first { $0.cluster == cluster && $0.namespace == namespace && $0.name == name }
    }
}

/// One pod of the lab topology.
struct ReachabilityPod: Sendable, Hashable, CustomStringConvertible {
    var cluster: String
    var namespace: String
    var name: String
    /// `node1` or `node2` of its cluster.
    var node: String
    var labels: [String: String]

    /// `cluster1 alpha/web`.
    var description: String { "\(cluster) \(namespace)/\(name)" }
}

/// A port an echo server listens on; `name` is the container port name, if any.
struct ReachabilityPort: Sendable, Hashable {
    var name: String?
    var port: UInt16
    var transport: TransportProtocol
}

/// One row of the matrix: policies to apply, and the connections to try while they are in force.
struct ReachabilityCase: Sendable {
    /// One line saying what the case checks; unique among all cases.
    var name: String
    /// YAML documents (`---` separated) applied per cluster name (`cluster1`, `cluster2`)
    /// before probing and deleted afterwards. Policy names are unique within a case.
    var policies: [String: String]
    /// One probe per string: `c1 alpha/client -> c1 alpha/web 8080/tcp allow` or
    /// `c1 alpha/client -> world 8080/tcp deny`; `c1` = cluster1, `c2` = cluster2. See
    /// `ReachabilityProbe(parsing:)`.
    var probes: [String]

    /// Every probe, parsed.
    func parsedProbes() throws(ReachabilityProbeError) -> [ReachabilityProbe] {
        var result: [ReachabilityProbe] = []
        for text in probes { result.append(try ReachabilityProbe(parsing: text)) }
        return result
    }

    /// `policies` with every `$(<cluster> <namespace>/<pod>)` replaced by that pod's address as
    /// `address` gives it (the model's address, or the one the lab gave the pod), so that
    /// `ipBlock` rules can name pods by address: `cidr: $(c1 alpha/web)/32`.
    func resolvedPolicies(address: (ReachabilityPod) throws -> String) throws -> [String: String] {
        try policies.mapValues { yaml in
            var result = ""
            var rest = Substring(yaml)
            while let start = rest.range(of: "$(") {
                result += rest[..<start.lowerBound]
                guard let end = rest[start.upperBound...].firstIndex(of: ")") else {
                    throw ReachabilityCaseError(caseName: name, reason: "an unclosed $( in the policies")
                }
                let reference = rest[start.upperBound..<end]
                let words = reference.split(separator: " ")
                let parts = words.count == 2 ? words[1].split(separator: "/") : []
                guard parts.count == 2, let cluster = ReachabilityTopology.clusterAliases[String(words[0])],
                      let pod = ReachabilityTopology.pod(cluster: cluster, namespace: String(parts[0]), name: String(parts[1]))
                else {
                    throw ReachabilityCaseError(caseName: name, reason: "$(\(reference)) names no pod of the topology; write $(c1 alpha/web)")
                }
                result += try address(pod)
                rest = rest[rest.index(after: end)...]
            }
            return result + rest
        }
    }
}

/// A case whose policies cannot be made concrete; names the case.
struct ReachabilityCaseError: Error, Sendable, Hashable, CustomStringConvertible {
    var caseName: String
    var reason: String

    var description: String { "reachability case \"\(caseName)\": \(reason)" }
}

/// Why a probe string could not be parsed; names the probe text.
struct ReachabilityProbeError: Error, Sendable, Hashable, CustomStringConvertible {
    var probe: String
    var reason: String

    var description: String { "invalid reachability probe \"\(probe)\": \(reason)" }
}

/// A parsed probe: a connection from a pod to a pod or to the world server, and whether the
/// policies in force must let it through.
///
/// Grammar, tokens separated by spaces:
///
///     <cluster> <namespace>/<pod> -> <cluster> <namespace>/<pod> <port>/<tcp|udp> <allow|deny>
///     <cluster> <namespace>/<pod> -> world <port>/<tcp|udp> <allow|deny>
///
/// `<cluster>` is `c1`, `c2` or a full cluster name; the parsed fields always hold the full
/// name (`cluster1`).
struct ReachabilityProbe: Sendable, Hashable, CustomStringConvertible {
    enum Target: Sendable, Hashable, CustomStringConvertible {
        case pod(cluster: String, namespace: String, name: String)
        case world

        var description: String {
            switch self {
            case let .pod(cluster, namespace, name): "\(cluster) \(namespace)/\(name)"
            case .world: "world"
            }
        }
    }

    var fromCluster: String
    var fromNamespace: String
    var fromPod: String
    var to: Target
    var port: UInt16
    var transport: TransportProtocol
    var allowed: Bool

    init(
        fromCluster: String, fromNamespace: String, fromPod: String, to: Target,
        port: UInt16, transport: TransportProtocol, allowed: Bool
    ) {
        self.fromCluster = fromCluster
        self.fromNamespace = fromNamespace
        self.fromPod = fromPod
        self.to = to
        self.port = port
        self.transport = transport
        self.allowed = allowed
    }

    init(parsing text: String) throws(ReachabilityProbeError) {
        func fail(_ reason: String) -> ReachabilityProbeError {
            ReachabilityProbeError(probe: text, reason: reason)
        }
        func cluster(_ token: Substring) throws(ReachabilityProbeError) -> String {
            let name = String(token)
            if let full = ReachabilityTopology.clusterAliases[name] { return full }
            if ReachabilityTopology.clusterAliases.values.contains(name) { return name }
            throw fail("unknown cluster \"\(name)\"; expected c1 or c2")
        }
        func pod(_ token: Substring) throws(ReachabilityProbeError) -> (namespace: String, name: String) {
            let parts = token.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw fail("expected <namespace>/<pod>, got \"\(token)\"")
            }
            return (String(parts[0]), String(parts[1]))
        }

        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        if tokens.first == "world" {
            // world -> <cluster> <namespace>/<pod> <port>/<tcp|udp> <allow|deny>
            guard tokens.count == 6, tokens[1] == "->" else {
                throw fail("expected \"world -> <c1|c2> <ns>/<pod> <port>/<tcp|udp> <allow|deny>\"")
            }
            let destination = try pod(tokens[3])
            let (number, transport) = try Self.port(tokens[4], fail: fail)
            self.init(fromCluster: Self.worldSource, fromNamespace: "", fromPod: "",
                      to: .pod(cluster: try cluster(tokens[2]), namespace: destination.namespace, name: destination.name),
                      port: number, transport: transport, allowed: try Self.verdict(tokens[5], fail: fail))
            return
        }
        guard tokens.count == 6 || tokens.count == 7 else {
            throw fail(
                "expected \"<c1|c2> <ns>/<pod> -> <c1|c2> <ns>/<pod> <port>/<tcp|udp> <allow|deny>\" "
                    + "or \"... -> world <port>/<tcp|udp> <allow|deny>\", got \(tokens.count) words")
        }
        guard tokens[2] == "->" else { throw fail("expected \"->\" as the third word, got \"\(tokens[2])\"") }

        let source = try pod(tokens[1])
        let target: Target
        if tokens.count == 6 {
            guard tokens[3] == "world" else {
                throw fail("a destination without a cluster must be \"world\", got \"\(tokens[3])\"")
            }
            target = .world
        } else {
            let destination = try pod(tokens[4])
            target = .pod(cluster: try cluster(tokens[3]), namespace: destination.namespace, name: destination.name)
        }

        let (number, transport) = try Self.port(tokens[tokens.count - 2], fail: fail)
        let allowed = try Self.verdict(tokens[tokens.count - 1], fail: fail)

        self.init(
            fromCluster: try cluster(tokens[0]), fromNamespace: source.namespace, fromPod: source.name,
            to: target, port: number, transport: transport, allowed: allowed)
    }

    /// `fromCluster` of a probe whose source is the world server.
    static let worldSource = "world"

    /// True when the world server opens the connection.
    var fromWorld: Bool { fromCluster == Self.worldSource }

    static func port(_ token: Substring, fail: (String) -> ReachabilityProbeError) throws(ReachabilityProbeError) -> (UInt16, TransportProtocol) {
        let parts = token.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let number = UInt16(parts[0]), number > 0 else {
            throw fail("expected <port>/<tcp|udp> with a port in 1...65535, got \"\(token)\"")
        }
        switch parts[1].lowercased() {
        case "tcp": return (number, .tcp)
        case "udp": return (number, .udp)
        default: throw fail("unknown protocol \"\(parts[1])\"; expected tcp or udp")
        }
    }

    static func verdict(_ token: Substring, fail: (String) -> ReachabilityProbeError) throws(ReachabilityProbeError) -> Bool {
        switch token {
        case "allow": return true
        case "deny": return false
        default: throw fail("expected allow or deny as the last word, got \"\(token)\"")
        }
    }

    /// The source pod in the topology, or nil if the probe names an unknown pod.
    var sourcePod: ReachabilityPod? {
        ReachabilityTopology.pod(cluster: fromCluster, namespace: fromNamespace, name: fromPod)
    }

    /// The destination pod in the topology; nil for the world or an unknown pod.
    var destinationPod: ReachabilityPod? {
        guard case let .pod(cluster, namespace, name) = to else { return nil }
        return ReachabilityTopology.pod(cluster: cluster, namespace: namespace, name: name)
    }

    /// `cluster1 alpha/client -> world 8080/tcp allow`.
    var description: String {
        let source = fromWorld ? "world" : "\(fromCluster) \(fromNamespace)/\(fromPod)"
        return "\(source) -> \(to) \(port)/\(transport.rawValue.lowercased()) \(allowed ? "allow" : "deny")"
    }
}

// MARK: - The cases

enum ReachabilityCases {
    static let all: [ReachabilityCase] = ciliumSelectors + ciliumClusters + ciliumEntitiesAndCIDRs
        + ciliumPorts + ciliumDenyAndDefaultDeny + kubernetesNetworkPolicies + fromOutside

    // MARK: Connections from outside the clusters (the world server opens them)

    static let fromOutside: [ReachabilityCase] = [
        ReachabilityCase(
            name: "CNP fromCIDR admits the outside server on one port, and never selects pods",
            policies: ["cluster1": cnp("web-from-outside", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromCIDR:
                  - 172.30.1.254/32
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "world -> c1 alpha/web 8080/tcp allow",
                "world -> c1 alpha/web 9090/tcp deny",
                "world -> c1 alpha/web 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "world -> c1 alpha/api 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP fromEntities world admits outside traffic but no pod of either cluster",
            policies: ["cluster1": cnp("web-from-world", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - world
                """)],
            probes: [
                "world -> c1 alpha/web 8080/tcp allow",
                "world -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP ipBlock except on ingress keeps the excepted outside address out, pods by podSelector in",
            policies: ["cluster1": np("web-ingress", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - ipBlock:
                      cidr: 172.30.0.0/16
                      except:
                      - 172.30.1.254/32
                  - podSelector:
                      matchLabels:
                        app: client
                """)],
            probes: [
                "world -> c1 alpha/web 8080/tcp deny",
                "world -> c1 alpha/web 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "world -> c1 alpha/api 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CCNP ingressDeny fromCIDR beats fromEntities all, only in the enforcing cluster",
            policies: ["cluster1": ccnp("web-not-from-outside", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - all
                ingressDeny:
                - fromCIDRSet:
                  - cidr: 172.30.1.0/24
                """)],
            probes: [
                "world -> c1 alpha/web 8080/tcp deny",
                "world -> c1 alpha/web 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "world -> c2 alpha/web 8080/tcp allow",
                "world -> c1 alpha/api 5353/udp allow",
            ]),
    ]

    // MARK: CiliumNetworkPolicy selectors and namespaces

    static let ciliumSelectors: [ReachabilityCase] = [
        ReachabilityCase(
            name: "CNP endpointSelector matchLabels isolates only the selected pod, peers from its namespace",
            policies: ["cluster1": cnp("web-from-clients", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/api -> c1 alpha/client 8080/tcp allow",
                "c1 alpha/web -> c1 alpha/api 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP endpointSelector {} and fromEndpoints [{}] stay within the policy namespace and cluster",
            policies: ["cluster1": cnp("alpha-internal", "alpha", """
                endpointSelector: {}
                ingress:
                - fromEndpoints:
                  - {}
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/api -> c1 alpha/web 6363/udp allow",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 beta/db 5353/udp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP endpointSelector matchExpressions In selects the backend tier of its namespace only",
            policies: ["cluster1": cnp("backend-admin", "alpha", """
                endpointSelector:
                  matchExpressions:
                  - key: tier
                    operator: In
                    values: [backend]
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: web
                  toPorts:
                  - ports:
                    - port: "9090"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/web -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/web -> c1 alpha/api 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/web -> c1 beta/db 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP fromEndpoints matchExpressions In admits any listed value",
            policies: ["cluster1": cnp("web-from-client-or-api", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchExpressions:
                    - key: app
                      operator: In
                      values: [client, api]
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> c1 alpha/web 5353/udp allow",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP fromEndpoints matchExpressions NotIn also matches pods without the label",
            policies: ["cluster1": cnp("web-not-from-backend", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchExpressions:
                    - key: tier
                      operator: NotIn
                      values: [backend]
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 6363/udp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/api -> c1 alpha/web 6363/udp deny",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP fromEndpoints Exists with k8s:io.kubernetes.pod.namespace reaches into another namespace",
            policies: ["cluster1": cnp("db-from-tiered-alpha", "beta", """
                endpointSelector:
                  matchLabels:
                    app: db
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      k8s:io.kubernetes.pod.namespace: alpha
                    matchExpressions:
                    - key: tier
                      operator: Exists
                """)],
            probes: [
                "c1 alpha/web -> c1 beta/db 8080/tcp allow",
                "c1 alpha/api -> c1 beta/db 5353/udp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP fromEndpoints DoesNotExist with a k8s: prefixed key",
            policies: ["cluster1": cnp("api-from-untiered", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: api
                ingress:
                - fromEndpoints:
                  - matchExpressions:
                    - key: k8s:tier
                      operator: DoesNotExist
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/api 5353/udp allow",
                "c1 alpha/web -> c1 alpha/api 9090/tcp deny",
                "c1 beta/client -> c1 alpha/api 9090/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP k8s: prefixed matchLabels select like unprefixed ones",
            policies: ["cluster1": cnp("web-from-api-http", "alpha", """
                endpointSelector:
                  matchLabels:
                    k8s:app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      k8s:app: api
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/api -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/api 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP fromEndpoints by namespace label admits that namespace instead of its own",
            policies: ["cluster1": cnp("web-from-beta", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      k8s:io.kubernetes.pod.namespace: beta
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP egress toEndpoints with a namespace In expression and a UDP port",
            policies: ["cluster1": cnp("client-to-beta-db-dns", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEndpoints:
                  - matchLabels:
                      app: db
                    matchExpressions:
                    - key: io.kubernetes.pod.namespace
                      operator: In
                      values: [beta]
                  toPorts:
                  - ports:
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> c1 beta/db 5353/udp allow",
                "c1 alpha/client -> c1 beta/db 6363/udp deny",
                "c1 alpha/client -> c1 beta/client 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
                "c1 beta/client -> c1 beta/db 6363/udp allow",
            ]),
        ReachabilityCase(
            name: "CCNP fromEndpoints by io.cilium.k8s.namespace.labels selects pods of labelled namespaces",
            policies: ["cluster1": ccnp("web-from-team-beta", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      io.cilium.k8s.namespace.labels.team: beta
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c1 beta/client -> c2 alpha/web 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CCNP egress toEndpoints by namespace label expression (env In prod), local cluster only",
            policies: ["cluster1": ccnp("clients-to-prod", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEndpoints:
                  - matchExpressions:
                    - key: io.cilium.k8s.namespace.labels.env
                      operator: In
                      values: [prod]
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/api 5353/udp allow",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/api -> c1 beta/db 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CCNP selects pods in every namespace and admits peers from every local namespace",
            policies: ["cluster1": ccnp("backends-from-clients", """
                endpointSelector:
                  matchLabels:
                    tier: backend
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                  toPorts:
                  - ports:
                    - port: "9090"
                      protocol: TCP
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> c1 beta/db 9090/tcp allow",
                "c1 beta/client -> c1 alpha/api 5353/udp allow",
                "c1 beta/client -> c1 alpha/api 8080/tcp deny",
                "c1 alpha/web -> c1 alpha/api 9090/tcp deny",
                "c2 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP with a specs list: the rules add up",
            policies: ["cluster1": cnp("web-two-rules", "alpha", key: "specs", """
                - endpointSelector:
                    matchLabels:
                      app: web
                  ingress:
                  - fromEndpoints:
                    - matchLabels:
                        app: client
                    toPorts:
                    - ports:
                      - port: "8080"
                        protocol: TCP
                - endpointSelector:
                    matchLabels:
                      app: web
                  ingress:
                  - fromEndpoints:
                    - matchLabels:
                        app: api
                    toPorts:
                    - ports:
                      - port: "9090"
                        protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/api -> c1 alpha/web 9090/tcp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
            ]),
    ]

    // MARK: Cluster label and cross-cluster enforcement

    static let ciliumClusters: [ReachabilityCase] = [
        ReachabilityCase(
            name: "CNP ingress from cluster2's clients via io.cilium.k8s.policy.cluster (same namespace name)",
            policies: ["cluster1": cnp("web-from-cluster2-clients", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                      io.cilium.k8s.policy.cluster: cluster2
                """)],
            probes: [
                "c2 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c2 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 gamma/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/web -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "Peers that omit the cluster label match only the enforcing cluster, in both clusters",
            policies: [
                "cluster1": cnp("c1-web-from-clients", "alpha", webFromClients),
                "cluster2": cnp("c2-web-from-clients", "alpha", webFromClients),
            ],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c2 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/web 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "CNP egress toEndpoints in cluster2 on one TCP port",
            policies: ["cluster1": cnp("client-to-cluster2-web", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEndpoints:
                  - matchLabels:
                      app: web
                      io.cilium.k8s.policy.cluster: cluster2
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c2 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/client 8080/tcp deny",
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 beta/client -> c2 alpha/web 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "Cluster label matchExpressions In (two clusters) and Exists (any cluster)",
            policies: [
                "cluster1": cnp("web-from-listed-clusters", "alpha", """
                    endpointSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - fromEndpoints:
                      - matchLabels:
                          app: client
                        matchExpressions:
                        - key: io.cilium.k8s.policy.cluster
                          operator: In
                          values: [cluster1, cluster2]
                    """),
                "cluster2": cnp("web-from-any-cluster", "alpha", """
                    endpointSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - fromEndpoints:
                      - matchLabels:
                          app: client
                        matchExpressions:
                        - key: io.cilium.k8s.policy.cluster
                          operator: Exists
                    """),
            ],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c2 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c2 alpha/client -> c2 alpha/web 6363/udp allow",
                "c2 gamma/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "Cross-cluster traffic needs the sender's egress and the receiver's ingress (CNP)",
            policies: [
                "cluster1": cnp("client-to-cluster2", "alpha", """
                    endpointSelector:
                      matchLabels:
                        app: client
                    egress:
                    - toEndpoints:
                      - matchLabels:
                          io.cilium.k8s.policy.cluster: cluster2
                    """),
                "cluster2": cnp("web-deny-ingress", "alpha", """
                    endpointSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - {}
                    """),
            ],
            probes: [
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/client 8080/tcp allow",
                "c1 alpha/client -> c2 alpha/client 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 gamma/client 8080/tcp deny",
                "c2 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/client 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CCNP in cluster2 admits cluster1's clients from every namespace",
            policies: ["cluster2": ccnp("web-from-cluster1-clients", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                      io.cilium.k8s.policy.cluster: cluster1
                """)],
            probes: [
                "c1 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c1 beta/client -> c2 alpha/web 5353/udp allow",
                "c2 gamma/client -> c2 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/api -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
            ]),
    ]

    // MARK: Entities and CIDRs

    static let ciliumEntitiesAndCIDRs: [ReachabilityCase] = [
        ReachabilityCase(
            name: "fromEntities cluster admits the local cluster's pods, not other mesh clusters'",
            policies: ["cluster1": cnp("web-from-cluster", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - cluster
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 5353/udp allow",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 gamma/client -> c1 alpha/web 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "toEntities cluster reaches the local cluster only, not cluster1 or the world",
            policies: ["cluster2": cnp("client-to-cluster", "gamma", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEntities:
                  - cluster
                """)],
            probes: [
                "c2 gamma/client -> c2 alpha/web 8080/tcp allow",
                "c2 gamma/client -> c2 alpha/client 6363/udp allow",
                "c2 gamma/client -> c1 alpha/web 8080/tcp deny",
                "c2 gamma/client -> world 8080/tcp deny",
                "c2 gamma/client -> world 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "fromEntities all admits every mesh cluster, limited by toPorts",
            policies: ["cluster1": cnp("web-from-all", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - all
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c2 gamma/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/client -> c1 alpha/web 5353/udp allow",
                "c2 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 6363/udp deny",
            ]),
        ReachabilityCase(
            name: "toEntities all reaches pods of both clusters and the world on the allowed port",
            policies: ["cluster1": cnp("client-to-all-http", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEntities:
                  - all
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp allow",
                "c1 alpha/client -> c2 gamma/client 8080/tcp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c1 alpha/client -> world 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
            ]),
        ReachabilityCase(
            name: "toEntities world reaches outside the mesh only",
            policies: ["cluster1": cnp("client-to-world", "beta", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEntities:
                  - world
                """)],
            probes: [
                "c1 beta/client -> world 8080/tcp allow",
                "c1 beta/client -> world 5353/udp allow",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/client -> c2 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "fromEntities world does not admit pods of either cluster",
            policies: ["cluster1": cnp("web-from-world", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - world
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 5353/udp deny",
                "c1 alpha/web -> world 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/api 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "toCIDR /32 with a UDP toPorts reaches the world server on that port only",
            policies: ["cluster1": cnp("client-to-world-dns", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toCIDR:
                  - 172.30.1.254/32
                  toPorts:
                  - ports:
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> world 5353/udp allow",
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 5353/udp deny",
                "c1 alpha/web -> world 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "toCIDRSet 172.30.0.0/16 except 172.30.1.254/32 denies the world server",
            policies: ["cluster1": cnp("client-to-lab-net", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toCIDRSet:
                  - cidr: 172.30.0.0/16
                    except:
                    - 172.30.1.254/32
                - toEndpoints:
                  - matchLabels:
                      app: web
                  toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 beta/client -> world 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "toCIDRSet 0.0.0.0/0 with an unrelated except reaches the world but never selects pods",
            policies: ["cluster1": cnp("client-to-internet", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toCIDRSet:
                  - cidr: 0.0.0.0/0
                    except:
                    - 172.30.2.0/24
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp allow",
                "c1 alpha/client -> world 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
            ]),
    ]

    // MARK: Ports

    static let ciliumPorts: [ReachabilityCase] = [
        ReachabilityCase(
            name: "CNP toPorts without protocol (ANY) matches TCP and UDP on the listed numbers",
            policies: ["cluster1": cnp("web-any-protocol", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                  toPorts:
                  - ports:
                    - port: "9090"
                    - port: "6363"
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/web 6363/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "CNP toPorts endPort ranges for TCP and UDP",
            policies: ["cluster1": cnp("api-port-ranges", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: api
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                  toPorts:
                  - ports:
                    - port: "8000"
                      endPort: 8999
                      protocol: TCP
                    - port: "5000"
                      endPort: 6000
                      protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/api 5353/udp allow",
                "c1 alpha/client -> c1 alpha/api 6363/udp deny",
            ]),
        ReachabilityCase(
            name: "CNP toPorts named ports on ingress resolve on the selected pod",
            policies: ["cluster1": cnp("web-named-ports", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                  toPorts:
                  - ports:
                    - port: http
                    - port: dns
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 6363/udp deny",
            ]),
        ReachabilityCase(
            name: "CNP toPorts named port on egress resolves on the destination, across clusters",
            policies: ["cluster1": cnp("client-to-cluster2-admin", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEndpoints:
                  - matchLabels:
                      app: web
                      io.cilium.k8s.policy.cluster: cluster2
                  toPorts:
                  - ports:
                    - port: admin
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> c2 alpha/web 9090/tcp allow",
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c2 alpha/client 9090/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP egress element with only toPorts applies to every destination on those ports",
            policies: ["cluster1": cnp("client-http-anywhere", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toPorts:
                  - ports:
                    - port: "8080"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp allow",
                "c1 alpha/client -> c2 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
            ]),
    ]

    // MARK: Deny rules and default deny

    static let ciliumDenyAndDefaultDeny: [ReachabilityCase] = [
        ReachabilityCase(
            name: "ingressDeny wins over fromEntities all; the deny peer stays namespace- and cluster-scoped",
            policies: ["cluster1": cnp("web-open-but-no-client-admin", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: web
                ingress:
                - fromEntities:
                  - all
                ingressDeny:
                - fromEndpoints:
                  - matchLabels:
                      app: client
                  toPorts:
                  - ports:
                    - port: "9090"
                      protocol: TCP
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/api -> c1 alpha/web 9090/tcp allow",
                "c1 beta/client -> c1 alpha/web 9090/tcp allow",
                "c2 alpha/client -> c1 alpha/web 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "egressDeny wins over toEntities all (world, and one pod on one port)",
            policies: ["cluster1": cnp("client-all-but-world", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEntities:
                  - all
                egressDeny:
                - toEntities:
                  - world
                - toEndpoints:
                  - matchLabels:
                      app: db
                      k8s:io.kubernetes.pod.namespace: beta
                  toPorts:
                  - ports:
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
                "c1 alpha/client -> c1 beta/db 5353/udp deny",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c1 alpha/client -> c2 alpha/web 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "egressDeny toCIDR on one port wins over toEntities world",
            policies: ["cluster1": cnp("client-world-no-dns", "beta", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - toEntities:
                  - world
                egressDeny:
                - toCIDR:
                  - 172.30.1.254/32
                  toPorts:
                  - ports:
                    - port: "5353"
                      protocol: UDP
                """)],
            probes: [
                "c1 beta/client -> world 8080/tcp allow",
                "c1 beta/client -> world 5353/udp deny",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/db -> world 5353/udp allow",
            ]),
        ReachabilityCase(
            name: "CCNP ingressDeny wins over a NetworkPolicy allow; enableDefaultDeny false leaves the rest open",
            policies: ["cluster1": documents(
                ccnp("no-http-from-beta", """
                    endpointSelector: {}
                    enableDefaultDeny:
                      ingress: false
                    ingressDeny:
                    - fromEndpoints:
                      - matchLabels:
                          k8s:io.kubernetes.pod.namespace: beta
                      toPorts:
                      - ports:
                        - port: "8080"
                          protocol: TCP
                    """),
                np("web-from-all-namespaces", "alpha", """
                    podSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - from:
                      - namespaceSelector: {}
                    """))],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 alpha/web 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/client -> c1 alpha/api 8080/tcp deny",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/client -> c1 alpha/api 5353/udp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP enableDefaultDeny egress false: allow rules restrict nothing, egressDeny still denies",
            policies: ["cluster1": cnp("client-no-default-deny", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: client
                enableDefaultDeny:
                  egress: false
                egress:
                - toEndpoints:
                  - matchLabels:
                      app: web
                egressDeny:
                - toEntities:
                  - world
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/client -> c2 alpha/web 5353/udp allow",
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "CCNP endpointSelector by namespace label; toEndpoints [{}] means every local pod, no world",
            policies: ["cluster1": ccnp("beta-egress-local-pods", """
                endpointSelector:
                  matchLabels:
                    k8s:io.kubernetes.pod.namespace: beta
                egress:
                - toEndpoints:
                  - {}
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 beta/client 5353/udp allow",
                "c1 beta/client -> world 8080/tcp deny",
                "c1 beta/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> world 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "CNP ingress: [{}] allows nothing and puts the pod into ingress default deny",
            policies: ["cluster1": cnp("api-ingress-default-deny", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: api
                ingress:
                - {}
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/web -> c1 alpha/api 5353/udp deny",
                "c2 alpha/client -> c1 alpha/api 8080/tcp deny",
                "c1 alpha/api -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> world 5353/udp allow",
            ]),
        ReachabilityCase(
            name: "CNP ingress: [] is no ingress section at all; the egress section still enforces",
            policies: ["cluster1": cnp("api-egress-to-web", "alpha", """
                endpointSelector:
                  matchLabels:
                    app: api
                ingress: []
                egress:
                - toEndpoints:
                  - matchLabels:
                      app: web
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c2 alpha/client -> c1 alpha/api 5353/udp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> c1 alpha/client 8080/tcp deny",
                "c1 alpha/api -> world 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "CNP egress: [{}] default-denies egress only",
            policies: ["cluster2": cnp("client-egress-default-deny", "gamma", """
                endpointSelector:
                  matchLabels:
                    app: client
                egress:
                - {}
                """)],
            probes: [
                "c2 gamma/client -> c2 alpha/web 8080/tcp deny",
                "c2 gamma/client -> world 5353/udp deny",
                "c2 gamma/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c2 gamma/client 8080/tcp allow",
                "c1 alpha/client -> c2 gamma/client 6363/udp allow",
            ]),
    ]

    // MARK: Kubernetes NetworkPolicy

    static let kubernetesNetworkPolicies: [ReachabilityCase] = [
        ReachabilityCase(
            name: "NP podSelector {} with no rules: default deny ingress for the namespace",
            policies: ["cluster1": np("default-deny-ingress", "alpha", """
                podSelector: {}
                policyTypes:
                - Ingress
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 alpha/api 5353/udp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c1 alpha/web -> world 8080/tcp allow",
                "c1 beta/client -> c1 beta/db 6363/udp allow",
            ]),
        ReachabilityCase(
            name: "NP policyTypes Ingress and Egress with no rules: default deny both ways; a pod still reaches its own address",
            policies: ["cluster1": np("default-deny-all", "beta", """
                podSelector: {}
                policyTypes:
                - Ingress
                - Egress
                """)],
            probes: [
                "c1 beta/db -> c1 beta/db 8080/tcp allow",
                "c1 beta/client -> c1 beta/client 5353/udp allow",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/client -> world 8080/tcp deny",
                "c1 beta/db -> c1 alpha/web 5353/udp deny",
                "c1 alpha/client -> c1 beta/db 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/web -> c1 alpha/api 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP ingress from podSelector on a numeric port (protocol defaults to TCP)",
            policies: ["cluster1": np("web-from-client-http", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        app: client
                  ports:
                  - port: 8080
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 5353/udp deny",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP namespaceSelector alone admits every pod of the matching namespaces",
            policies: ["cluster1": np("api-from-team-beta", "alpha", """
                podSelector:
                  matchLabels:
                    app: api
                ingress:
                - from:
                  - namespaceSelector:
                      matchLabels:
                        team: beta
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/api 9090/tcp allow",
                "c1 beta/db -> c1 alpha/api 5353/udp allow",
                "c1 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c2 gamma/client -> c1 alpha/api 9090/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP namespaceSelector and podSelector in one peer: both must match (AND)",
            policies: ["cluster1": np("web-from-beta-clients", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - namespaceSelector:
                      matchLabels:
                        team: beta
                    podSelector:
                      matchLabels:
                        app: client
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/client -> c1 alpha/web 6363/udp allow",
                "c1 beta/db -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP namespaceSelector and podSelector as separate peers: either may match (OR)",
            policies: ["cluster1": np("web-from-beta-or-clients", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - namespaceSelector:
                      matchLabels:
                        team: beta
                  - podSelector:
                      matchLabels:
                        app: client
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP namespaceSelector {} with podSelector: matching pods of every local namespace, UDP only",
            policies: ["cluster1": np("db-dns-from-clients", "beta", """
                podSelector:
                  matchLabels:
                    app: db
                ingress:
                - from:
                  - namespaceSelector: {}
                    podSelector:
                      matchLabels:
                        app: client
                  ports:
                  - protocol: UDP
                """)],
            probes: [
                "c1 alpha/client -> c1 beta/db 5353/udp allow",
                "c1 beta/client -> c1 beta/db 6363/udp allow",
                "c1 alpha/client -> c1 beta/db 8080/tcp deny",
                "c1 alpha/api -> c1 beta/db 5353/udp deny",
                "c2 alpha/client -> c1 beta/db 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "NP empty podSelector peer admits every pod of the policy's namespace",
            policies: ["cluster1": np("web-from-own-namespace", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - podSelector: {}
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> c1 alpha/web 6363/udp allow",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP ingress rule without from admits every source on the listed ports; named port without protocol is TCP",
            policies: ["cluster1": np("api-admin-from-anywhere", "alpha", """
                podSelector:
                  matchLabels:
                    app: api
                ingress:
                - ports:
                  - port: admin
                  - port: dns
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c1 beta/client -> c1 alpha/api 9090/tcp allow",
                "c2 alpha/client -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/api 5353/udp deny",
                "c1 alpha/client -> c1 alpha/api 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP named ports with their protocols",
            policies: ["cluster1": np("web-named-ports", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        app: client
                  ports:
                  - port: http
                  - protocol: UDP
                    port: dns
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/web 6363/udp deny",
            ]),
        ReachabilityCase(
            name: "NP endPort ranges for TCP and UDP",
            policies: ["cluster1": np("db-port-ranges", "beta", """
                podSelector:
                  matchLabels:
                    app: db
                ingress:
                - from:
                  - namespaceSelector:
                      matchLabels:
                        team: alpha
                  ports:
                  - port: 8000
                    endPort: 8999
                  - protocol: UDP
                    port: 6000
                    endPort: 7000
                """)],
            probes: [
                "c1 alpha/client -> c1 beta/db 8080/tcp allow",
                "c1 alpha/web -> c1 beta/db 9090/tcp deny",
                "c1 alpha/api -> c1 beta/db 6363/udp allow",
                "c1 alpha/client -> c1 beta/db 5353/udp deny",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP several policies selecting the same pod: their rules add up",
            policies: ["cluster1": documents(
                np("web-http-from-client", "alpha", """
                    podSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            app: client
                      ports:
                      - port: 8080
                    """),
                np("frontend-admin-from-api", "alpha", """
                    podSelector:
                      matchLabels:
                        tier: frontend
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            app: api
                      ports:
                      - port: 9090
                    """))],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/api -> c1 alpha/web 9090/tcp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP policyTypes Ingress only: its egress rules are ignored and egress stays open",
            policies: ["cluster1": np("web-ingress-only", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                policyTypes:
                - Ingress
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        app: client
                egress:
                - to:
                  - podSelector:
                      matchLabels:
                        app: api
                  ports:
                  - port: 9090
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/api -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/web -> c1 alpha/api 8080/tcp allow",
                "c1 alpha/web -> world 5353/udp allow",
                "c1 alpha/web -> c1 beta/db 6363/udp allow",
            ]),
        ReachabilityCase(
            name: "NP policyTypes Egress only: egress restricted, its ingress rules ignored, ingress stays open",
            policies: ["cluster1": np("web-egress-only", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                policyTypes:
                - Egress
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        app: api
                egress:
                - to:
                  - podSelector:
                      matchLabels:
                        app: api
                  ports:
                  - port: 9090
                  - protocol: UDP
                    port: 5353
                """)],
            probes: [
                "c1 alpha/web -> c1 alpha/api 9090/tcp allow",
                "c1 alpha/web -> c1 alpha/api 5353/udp allow",
                "c1 alpha/web -> c1 alpha/api 8080/tcp deny",
                "c1 alpha/web -> world 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/client -> c1 alpha/web 6363/udp allow",
            ]),
        ReachabilityCase(
            name: "NP without policyTypes but with egress rules isolates ingress too",
            policies: ["cluster1": np("client-to-world-only", "alpha", """
                podSelector:
                  matchLabels:
                    app: client
                egress:
                - to:
                  - ipBlock:
                      cidr: 172.30.1.254/32
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp allow",
                "c1 alpha/client -> world 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/web -> c1 alpha/client 8080/tcp deny",
                "c1 beta/client -> c1 alpha/client 5353/udp deny",
                "c1 alpha/web -> c1 alpha/api 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP egress ipBlock with except excludes the world server; a pod peer still works",
            policies: ["cluster1": np("client-egress-lab-net", "alpha", """
                podSelector:
                  matchLabels:
                    app: client
                policyTypes:
                - Egress
                egress:
                - to:
                  - ipBlock:
                      cidr: 172.30.0.0/16
                      except:
                      - 172.30.1.0/24
                - to:
                  - podSelector:
                      matchLabels:
                        app: web
                """)],
            probes: [
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> world 5353/udp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/api 8080/tcp deny",
                "c1 alpha/web -> world 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP egress ipBlock 0.0.0.0/0 on a UDP port reaches the world and every pod on that port (upstream)",
            policies: ["cluster1": np("client-world-dns", "beta", """
                podSelector:
                  matchLabels:
                    app: client
                policyTypes:
                - Egress
                egress:
                - to:
                  - ipBlock:
                      cidr: 0.0.0.0/0
                  ports:
                  - protocol: UDP
                    port: 5353
                """)],
            probes: [
                "c1 beta/client -> world 5353/udp allow",
                "c1 beta/client -> world 8080/tcp deny",
                "c1 beta/client -> c1 beta/db 5353/udp allow",
                "c1 beta/client -> c2 gamma/client 5353/udp allow",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 beta/db -> world 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP ipBlock egress to a pod by its /32 and to pods by a covering CIDR; the pod still reaches itself",
            policies: ["cluster1": np("client-to-pods-by-address", "alpha", """
                podSelector:
                  matchLabels:
                    app: client
                policyTypes:
                - Egress
                egress:
                - to:
                  - ipBlock:
                      cidr: $(c1 alpha/web)/32
                  ports:
                  - port: 8080
                - to:
                  - ipBlock:
                      cidr: 10.1.2.0/24
                  ports:
                  - protocol: UDP
                    port: 5353
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 alpha/client -> c1 alpha/web 9090/tcp deny",
                "c1 alpha/client -> c1 alpha/api 5353/udp allow",
                "c1 alpha/client -> c1 beta/db 5353/udp allow",
                "c1 alpha/client -> c1 beta/client 5353/udp deny",
                "c1 alpha/client -> world 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/client 9090/tcp allow",
                "c1 alpha/client -> c1 alpha/client 6363/udp allow",
            ]),
        ReachabilityCase(
            name: "NP ipBlock ingress from the pod range admits pods by address; except carves one pod out",
            policies: ["cluster1": np("web-from-pod-range", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - ipBlock:
                      cidr: 10.1.0.0/16
                      except:
                      - $(c1 beta/client)/32
                """)],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 5353/udp allow",
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/client -> c1 alpha/web 6363/udp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "world -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/web -> c1 alpha/web 9090/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP ipBlock selects a remote cluster's pods by address, egress and ingress",
            policies: [
                "cluster1": np("client-to-cluster2-but-gamma", "beta", """
                    podSelector:
                      matchLabels:
                        app: client
                    policyTypes:
                    - Egress
                    egress:
                    - to:
                      - ipBlock:
                          cidr: 10.2.0.0/16
                          except:
                          - $(c2 gamma/client)/32
                    """),
                "cluster2": np("web-from-cluster1-client", "alpha", """
                    podSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - from:
                      - ipBlock:
                          cidr: $(c1 beta/client)/32
                      ports:
                      - protocol: UDP
                        port: 5353
                      - port: 8080
                    """),
            ],
            probes: [
                "c1 beta/client -> c2 alpha/web 8080/tcp allow",
                "c1 beta/client -> c2 alpha/web 5353/udp allow",
                "c1 beta/client -> c2 alpha/web 9090/tcp deny",
                "c1 beta/client -> c2 alpha/client 6363/udp allow",
                "c1 beta/client -> c2 gamma/client 8080/tcp deny",
                "c1 beta/client -> c1 beta/db 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c2 alpha/client -> c2 alpha/web 5353/udp deny",
            ]),
        ReachabilityCase(
            name: "NP ipBlock and CNP fromCIDR over the same range side by side: the ipBlock admits pods, the CIDR only the outside",
            policies: ["cluster1": documents(
                np("web-from-range", "alpha", """
                    podSelector:
                      matchLabels:
                        app: web
                    ingress:
                    - from:
                      - ipBlock:
                          cidr: 10.1.0.0/16
                    """),
                cnp("api-from-range", "alpha", """
                    endpointSelector:
                      matchLabels:
                        app: api
                    ingress:
                    - fromCIDR:
                      - 10.1.0.0/16
                      - 172.30.1.254/32
                    """))],
            probes: [
                "c1 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c1 beta/db -> c1 alpha/web 6363/udp allow",
                "c1 alpha/client -> c1 alpha/api 8080/tcp deny",
                "c1 beta/db -> c1 alpha/api 6363/udp deny",
                "world -> c1 alpha/api 8080/tcp allow",
                "world -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP peer podSelector with the cluster label admits cluster2's pods (matchExpressions on both sides)",
            policies: ["cluster1": np("front-and-api-from-cluster2", "alpha", """
                podSelector:
                  matchExpressions:
                  - key: app
                    operator: In
                    values: [web, api]
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        io.cilium.k8s.policy.cluster: cluster2
                      matchExpressions:
                      - key: app
                        operator: Exists
                """)],
            probes: [
                "c2 alpha/client -> c1 alpha/web 8080/tcp allow",
                "c2 alpha/web -> c1 alpha/api 5353/udp allow",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c2 gamma/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/web -> c1 alpha/client 8080/tcp allow",
            ]),
        ReachabilityCase(
            name: "NP namespaceSelector AND cluster-labelled podSelector admits a cluster2 namespace",
            policies: ["cluster1": np("web-from-cluster2-gamma", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - namespaceSelector:
                      matchExpressions:
                      - key: team
                        operator: In
                        values: [gamma]
                    podSelector:
                      matchLabels:
                        io.cilium.k8s.policy.cluster: cluster2
                """)],
            probes: [
                "c2 gamma/client -> c1 alpha/web 8080/tcp allow",
                "c2 gamma/client -> c1 alpha/web 5353/udp allow",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c1 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP egress allowed by cluster1 but ingress denied by cluster2's own policy",
            policies: [
                "cluster1": np("client-to-cluster2", "alpha", """
                    podSelector:
                      matchLabels:
                        app: client
                    policyTypes:
                    - Egress
                    egress:
                    - to:
                      - podSelector:
                          matchLabels:
                            io.cilium.k8s.policy.cluster: cluster2
                    """),
                "cluster2": np("web-deny-ingress", "alpha", """
                    podSelector:
                      matchLabels:
                        app: web
                    policyTypes:
                    - Ingress
                    """),
            ],
            probes: [
                "c1 alpha/client -> c2 alpha/web 8080/tcp deny",
                "c1 alpha/client -> c2 alpha/client 9090/tcp allow",
                "c1 alpha/client -> c2 alpha/client 6363/udp allow",
                "c1 alpha/client -> c1 alpha/api 9090/tcp deny",
                "c1 alpha/client -> world 8080/tcp deny",
                "c2 gamma/client -> c2 alpha/client 8080/tcp allow",
                "c2 gamma/client -> c2 alpha/web 8080/tcp deny",
            ]),
        ReachabilityCase(
            name: "NP egress rule without to reaches every destination on the listed ports",
            policies: ["cluster1": np("client-egress-ports-anywhere", "beta", """
                podSelector:
                  matchLabels:
                    app: client
                policyTypes:
                - Egress
                egress:
                - ports:
                  - port: 8080
                  - protocol: UDP
                    port: 5353
                """)],
            probes: [
                "c1 beta/client -> world 8080/tcp allow",
                "c1 beta/client -> world 5353/udp allow",
                "c1 beta/client -> c2 gamma/client 8080/tcp allow",
                "c1 beta/client -> c1 alpha/api 9090/tcp deny",
                "c1 beta/client -> c1 beta/db 6363/udp deny",
            ]),
        ReachabilityCase(
            name: "NP podSelector-only peer stays in the policy's namespace even when it names io.kubernetes.pod.namespace",
            policies: ["cluster1": np("web-from-namespace-key", "alpha", """
                podSelector:
                  matchLabels:
                    app: web
                ingress:
                - from:
                  - podSelector:
                      matchLabels:
                        io.kubernetes.pod.namespace: beta
                """)],
            probes: [
                "c1 beta/client -> c1 alpha/web 8080/tcp deny",
                "c1 beta/db -> c1 alpha/web 5353/udp deny",
                "c2 alpha/client -> c1 alpha/web 8080/tcp deny",
                "c1 alpha/web -> c1 beta/client 8080/tcp allow",
                "c1 beta/client -> c1 alpha/api 9090/tcp allow",
            ]),
    ]

    // MARK: Shared policy bodies

    /// `spec` of a CNP letting `app=client` into `app=web`, with no cluster named.
    private static let webFromClients = """
        endpointSelector:
          matchLabels:
            app: web
        ingress:
        - fromEndpoints:
          - matchLabels:
              app: client
        """

    // MARK: YAML helpers

    /// A CiliumNetworkPolicy; `body` is the value of `key` (`spec`, or `specs` for a list).
    private static func cnp(_ name: String, _ namespace: String, key: String = "spec", _ body: String) -> String {
        """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata:
          name: \(name)
          namespace: \(namespace)
        \(key):
        \(indented(body))
        """
    }

    /// A CiliumClusterwideNetworkPolicy (cluster-scoped, no namespace).
    private static func ccnp(_ name: String, _ spec: String) -> String {
        """
        apiVersion: cilium.io/v2
        kind: CiliumClusterwideNetworkPolicy
        metadata:
          name: \(name)
        spec:
        \(indented(spec))
        """
    }

    /// A Kubernetes NetworkPolicy in the namespace it applies to.
    private static func np(_ name: String, _ namespace: String, _ spec: String) -> String {
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: \(name)
          namespace: \(namespace)
        spec:
        \(indented(spec))
        """
    }

    private static func documents(_ parts: String...) -> String {
        parts.joined(separator: "\n---\n")
    }

    private static func indented(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.isEmpty ? "" : "  " + $0 }
            .joined(separator: "\n")
    }
}
