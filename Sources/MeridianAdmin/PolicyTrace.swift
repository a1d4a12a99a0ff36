import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// `meridian policy trace`: whether a connection passes, and which rules decide it. Each side is
/// judged by its own cluster's policies, the sender's egress and the receiver's ingress, with
/// the identities the pods have in the store.
public struct PolicyTrace: Sendable {
    public var result: Result
    /// The human explanation.
    public var text: String

    public static func run(from: String, to: String, port: String, fromContext: MeridianContext, toContext: MeridianContext) async throws -> PolicyTrace {
        let (portNumber, transport) = try parsePort(port)
        var views: [String: PolicyClusterView] = [:]
        for context in [fromContext, toContext] where views[context.name] == nil {
            views[context.name] = try await PolicyClusterView.load(context)
        }
        let source = try views[fromContext.name]!.endpoint(podReference(from))
        let destination: PolicyEndpoint
        var destinationName = to
        if let address = IPAddress(to) {
            // A ClusterIP is translated to a backend before policy sees the connection (at the
            // socket or on the first packet); tracing it as an outside address would judge
            // address and identity rules (ipBlock among them) against the wrong peer.
            for view in views.values.sorted(by: { $0.cluster < $1.cluster }) {
                if let range = IPCIDR(view.serviceCIDR), range.contains(address) {
                    throw AdminError.traceToServiceAddress(address: to, serviceCIDR: view.serviceCIDR, cluster: view.cluster)
                }
            }
            destination = views.values.lazy.compactMap { $0.endpoint(ip: address) }.first ?? .reserved(.world, ip: address)
            destinationName = "\(to) (identity \(destination.identity))"
        } else {
            destination = try views[toContext.name]!.endpoint(podReference(to))
        }
        let rules = views.values.sorted { $0.cluster < $1.cluster }.flatMap(\.rules)
        let verdict = PolicyVerdict.explain(from: source, to: destination, port: portNumber, protocol: transport, rules: rules)
        var lines = ["Tracing \(from) (\(fromContext.cluster), identity \(source.identity)) -> \(destinationName)"
            + (IPAddress(to) == nil ? " (\(toContext.cluster), identity \(destination.identity))" : "") + " \(portNumber)/\(transport.rawValue)"]
        for side in [verdict.egress, verdict.ingress] {
            lines.append("  \(side.direction.rawValue): \(side.allowed ? "allowed" : "denied") (\(side.reason.rawValue))")
            for rule in side.decidingRules { lines.append("    \(rule)") }
        }
        lines.append("Final verdict: \(verdict.allowed ? "ALLOWED" : "DENIED")")
        return PolicyTrace(result: Result(verdict), text: lines.joined(separator: "\n"))
    }

    /// `80`, `80/TCP`, `53/udp`.
    public static func parsePort(_ text: String) throws(AdminError) -> (UInt16, TransportProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard let number = parts.first.flatMap({ UInt16($0) }), number > 0, parts.count <= 2 else {
            throw .invalidPort(text, reason: "expected PORT or PORT/PROTOCOL, e.g. 80/TCP")
        }
        guard parts.count == 2 else { return (number, .tcp) }
        guard let transport = TransportProtocol(rawValue: parts[1].uppercased()) else {
            throw .invalidPort(text, reason: "protocol must be TCP, UDP or SCTP")
        }
        return (number, transport)
    }

    /// `NAMESPACE/POD`, or `POD` in the default namespace.
    public static func podReference(_ text: String) -> (namespace: String, name: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        return parts.count == 2 ? (String(parts[0]), String(parts[1])) : (KubernetesObject.defaultNamespace, text)
    }

    /// The verdict as `-o json` prints it.
    public struct Result: Encodable, Sendable {
        public var allowed: Bool
        public var egress: Side
        public var ingress: Side

        public struct Side: Encodable, Sendable {
            public var allowed: Bool
            public var reason: String
            public var rules: [String]
        }

        init(_ verdict: PolicyVerdict) {
            allowed = verdict.allowed
            egress = Side(allowed: verdict.egress.allowed, reason: verdict.egress.reason.rawValue, rules: verdict.egress.decidingRules.map(\.description))
            ingress = Side(allowed: verdict.ingress.allowed, reason: verdict.ingress.reason.rawValue,
                           rules: verdict.ingress.decidingRules.map(\.description))
        }
    }
}

/// One cluster as policy sees it: its compiled rules, its pods with their identities, labels,
/// addresses and named ports, and the per-node record of what is programmed.
struct PolicyClusterView: Sendable {
    var cluster: String
    /// The cluster's service range (ClusterIPs).
    var serviceCIDR: String
    var policySettings: PolicySettings
    var objects: [KubernetesObject]
    var rules: [PolicyRule]
    var pods: [PodView]
    var podObjects: [String: Pod]
    var identities: [UInt32: LabelSet]
    var nodes: [NodePolicyStatus]

    static func load(_ context: MeridianContext) async throws -> PolicyClusterView {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            try await load(client: client, settings: try await ClusterAccessInfo.load(context, client: client).settings)
        }
    }

    static func load(client: any KeyValueStore, settings: ClusterSettings) async throws -> PolicyClusterView {
        do {
            let store = ResourceStore(client: client)
            var objects: [KubernetesObject] = []
            for kind in [ResourceKind.networkPolicy, .ciliumNetworkPolicy, .ciliumClusterwideNetworkPolicy] {
                objects += try await store.list(kind, namespace: nil)
            }
            let policySettings = PolicySettings(clusterName: settings.name, policyDefaultLocalCluster: settings.policyDefaultLocalCluster ?? true)
            var identities: [UInt32: LabelSet] = [:]
            let prefix = MeshKind.identities.statePrefix(cluster: settings.name)
            for item in try await client.list(prefix: prefix).items {
                if let id = UInt32(item.key.dropFirst(prefix.count)), let labels = try? LabelSet(ciliumString: item.stringValue) {
                    identities[id] = labels
                }
            }
            var podObjects: [String: Pod] = [:]
            for object in try await store.list(.pod, namespace: nil) {
                if case let .pod(pod) = object { podObjects["\(object.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"] = pod }
            }
            // The published ipcache record is authoritative for a pod's identity (the status can lag a label change).
            var pods = try await PodView.load(client: client, namespace: nil)
            let endpointPrefix = MeshKind.endpoints.statePrefix(cluster: settings.name)
            var identityByIP: [String: UInt32] = [:]
            for item in try await client.list(prefix: endpointPrefix).items {
                if let pair = try? StoreCoding.decode(IPIdentityPair.self, from: item.value, key: item.key) { identityByIP[pair.ip] = pair.id }
            }
            for index in pods.indices {
                if let ip = pods[index].ip, let identity = identityByIP[ip] { pods[index].identity = identity }
            }
            let nodes = try await client.list(prefix: KeyLayout.nodeStatusPrefix).items.compactMap {
                try? StoreCoding.decode(NodePolicyStatus.self, from: $0.value, key: $0.key)
            }
            return PolicyClusterView(cluster: settings.name, serviceCIDR: settings.serviceCIDR, policySettings: policySettings, objects: objects,
                                     rules: PolicyCompiler.rules(for: objects, settings: policySettings),
                                     pods: pods, podObjects: podObjects,
                                     identities: identities, nodes: nodes)
        }
    }

    /// `get policies`: every policy object with the directions it governs, the running pods it
    /// selects, and on how many of them the nodes report the policy programmed.
    func rows() -> Listing {
        struct Row: Encodable {
            var kind: String
            var namespace: String?
            var name: String
            var directions: [String]
            var selects: [String]
            var programmed: Int
        }
        var rows: [Row] = []
        let realized = Dictionary(nodes.flatMap(\.endpoints).map { ("\($0.namespace)/\($0.pod)", $0) }, uniquingKeysWith: { a, _ in a })
        for object in objects {
            let rules = object.policyRules(settings: policySettings)
            let directions = Set(rules.map { $0.action == .deny ? "\($0.direction.rawValue)-deny" : $0.direction.rawValue }).sorted()
            let selected = selectedPods(by: object)
            let programmed = selected.filter { pod in
                guard let status = realized[pod] else { return false }
                return rules.allSatisfy { rule in
                    guard rule.enablesDefaultDeny || rule.action == .deny else { return true }
                    return rule.direction == .ingress ? status.ingressEnforced : status.egressEnforced
                }
            }.count
            rows.append(Row(kind: object.kind.rawValue, namespace: object.namespace, name: object.name, directions: directions,
                            selects: selected, programmed: programmed))
        }
        let table = Table(headers: ["KIND", "NAMESPACE", "NAME", "DIRECTIONS", "PROGRAMMED", "SELECTS"], rows: rows.map { row in
            [row.kind, row.namespace ?? "-", row.name, row.directions.joined(separator: ","), "\(row.programmed)/\(row.selects.count)",
             row.selects.isEmpty ? "<none>" : row.selects.joined(separator: ",")]
        })
        return Listing(table: table, json: Listing.encode(rows))
    }

    /// A pod as a policy endpoint; fails when it has no identity yet.
    func endpoint(_ reference: (namespace: String, name: String)) throws -> PolicyEndpoint {
        guard let pod = pods.first(where: { $0.namespace == reference.namespace && $0.name == reference.name }) else {
            throw AdminError.podNotFound(namespace: reference.namespace, name: reference.name, cluster: cluster)
        }
        guard let identity = pod.identity, let labels = identities[identity] else {
            throw AdminError.podWithoutIdentity(namespace: reference.namespace, name: reference.name, cluster: cluster)
        }
        return PolicyEndpoint(identity: identity, labels: labels, ip: pod.ip.flatMap(IPAddress.init),
                              namedPorts: namedPorts(of: "\(pod.namespace)/\(pod.name)"))
    }

    /// The pod that has `ip`, if any.
    func endpoint(ip: IPAddress) -> PolicyEndpoint? {
        guard let pod = pods.first(where: { $0.ip == ip.description }) else { return nil }
        return try? endpoint((pod.namespace, pod.name))
    }

    func namedPorts(of pod: String) -> [NamedPort] {
        (podObjects[pod]?.spec.containers.flatMap(\.ports) ?? []).compactMap { port in
            guard let name = port.name, let number = UInt16(exactly: port.containerPort),
                  let l4 = L4Protocol(rawValue: port.protocol.rawValue) else { return nil }
            return NamedPort(name: name, port: number, protocol: l4)
        }
    }

    /// The running pods a policy object's rules select, as NAMESPACE/NAME.
    func selectedPods(by object: KubernetesObject) -> [String] {
        let subjects = object.policyRules(settings: policySettings).map(\.subject)
        return pods.compactMap { pod in
            guard let identity = pod.identity, let labels = identities[identity], subjects.contains(where: { $0.matches(labels) }) else { return nil }
            return "\(pod.namespace)/\(pod.name)"
        }.sorted()
    }
}
