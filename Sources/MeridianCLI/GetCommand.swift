import ArgumentParser
import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// `meridian get KIND`: resources of the cluster, and the mesh state (nodes, endpoints,
/// identities, services) of the cluster and, with `--all-clusters`, of the clusters it imports.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "List resources and mesh state.")

    enum Kind: String, CaseIterable, ExpressibleByArgument {
        case nodes, endpoints, identities, services, namespaces, pods, deployments, policies

        init?(argument: String) {
            switch argument.lowercased() {
            case "node", "nodes", "no": self = .nodes
            case "endpoint", "endpoints", "ep": self = .endpoints
            case "identity", "identities", "id": self = .identities
            case "service", "services", "svc": self = .services
            case "namespace", "namespaces", "ns": self = .namespaces
            case "pod", "pods", "po": self = .pods
            case "deployment", "deployments", "deploy": self = .deployments
            case "policy", "policies", "netpol", "networkpolicies", "cnp", "ciliumnetworkpolicies": self = .policies
            default: return nil
            }
        }
    }

    @OptionGroup var contextOptions: ContextOptions
    @Argument(help: "nodes, endpoints, identities, services, namespaces, pods, deployments or policies.") var kind: Kind
    @Flag(help: "Include records imported from remote clusters.") var allClusters = false
    @Option(name: .shortAndLong, help: "Namespace (services).") var namespace: String?
    @Option(name: .shortAndLong, help: "text, wide or json.") var output: OutputFormat = .text

    func run() async throws {
        try await reportingErrors {
            let context = try contextOptions.resolve()
            try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                let local = try await ClusterAccessInfo.load(context, client: client).settings.name
                let rows = try await MeshRows.load(kind, client: client, localCluster: local, allClusters: allClusters, namespace: namespace,
                                                   wide: output == .wide)
                if output == .json {
                    print(rows.json)
                } else {
                    print(rows.table.render())
                }
            }
        }
    }
}

/// Records of one kind gathered from the local state and (optionally) the import cache, with a
/// CLUSTER column, ready to print as a table or JSON.
struct MeshRows {
    var table: Table
    var json: String

    static func load(_ kind: GetCommand.Kind, client: EtcdClient, localCluster: String, allClusters: Bool, namespace: String?,
                     wide: Bool = false) async throws -> MeshRows {
        switch kind {
        case .policies:
            guard let record = try await client.get(KeyLayout.clusterSettings) else { throw CLIError("cluster has no published settings") }
            return try await PolicyClusterView.load(client: client, settings: StoreCoding.decode(ClusterSettings.self, from: record.value, key: record.key)).rows()
        case .pods:
            let pods = try await PodView.load(client: client, namespace: namespace)
            let headers = wide ? ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "IP", "NODE", "IDENTITY"] : ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "IP", "NODE"]
            return MeshRows(table: Table(headers: headers, rows: pods.map { pod in
                let row = [pod.namespace, pod.name, pod.status, "\(pod.restarts)", pod.ip ?? "<none>", pod.node ?? "<none>"]
                return wide ? row + [pod.identity.map(String.init) ?? "<none>"] : row
            }), json: encode(pods))
        case .deployments:
            let deployments = try await ResourceStore(client: client).list(.deployment, namespace: namespace)
            let pods = try await PodView.load(client: client, namespace: namespace)
            return MeshRows(table: Table(headers: ["NAMESPACE", "NAME", "READY", "UP-TO-DATE"], rows: deployments.compactMap { object in
                guard case let .deployment(deployment) = object else { return nil }
                let owned = pods.filter { $0.namespace == object.namespace && $0.labels[WorkloadLabels.deployment] == deployment.metadata.name }
                let ready = owned.filter { $0.status == PodPhase.running.rawValue }.count
                return [object.namespace ?? "default", deployment.metadata.name, "\(ready)/\(deployment.spec.replicas)", "\(owned.count)"]
            }), json: encode(deployments))
        case .namespaces:
            let objects = try await ResourceStore(client: client).list(.namespace, namespace: nil)
            return MeshRows(table: Table(headers: ["NAME", "LABELS"], rows: objects.map { [$0.name, labels($0.metadata.labels)] }),
                            json: encode(objects))
        case .services:
            return try await services(client: client, localCluster: localCluster, allClusters: allClusters, namespace: namespace)
        case .nodes:
            let records: [(String, NodeRecord)] = try await gather(.nodes, client: client, localCluster: localCluster, allClusters: allClusters)
            return MeshRows(table: Table(headers: ["CLUSTER", "NAME", "INTERNAL-IP", "POD-CIDR", "MTU"], rows: records.map { cluster, node in
                [cluster, node.name, node.address(ofType: .internalIP) ?? "-", node.ipv4AllocCIDR?.description ?? "-", node.mtu.map(String.init) ?? "-"]
            }), json: encode(records.map(\.1)))
        case .endpoints:
            let records: [(String, IPIdentityPair)] = try await gather(.endpoints, client: client, localCluster: localCluster, allClusters: allClusters)
            return MeshRows(table: Table(headers: ["CLUSTER", "IP", "IDENTITY", "NODE-IP", "NAMESPACE", "POD"], rows: records.map { cluster, pair in
                [cluster, pair.mask.map { "\(pair.ip)/\($0)" } ?? pair.ip, "\(pair.id)", pair.hostIP, pair.k8sNamespace, pair.k8sPodName]
            }), json: encode(records.map { Tagged(cluster: $0.0, record: $0.1) }))
        case .identities:
            let raw = try await gatherRaw(.identities, client: client, localCluster: localCluster, allClusters: allClusters)
            let rows = raw.map { cluster, name, value in [cluster, name, String(decoding: value, as: UTF8.self)] }
            let json = raw.map { IdentityRow(cluster: $0.0, id: UInt32($0.1) ?? 0, labels: String(decoding: $0.2, as: UTF8.self)) }
            return MeshRows(table: Table(headers: ["CLUSTER", "ID", "LABELS"], rows: rows), json: encode(json))
        }
    }

    struct Tagged<Record: Encodable>: Encodable {
        var cluster: String
        var record: Record
    }

    struct IdentityRow: Encodable {
        var cluster: String
        var id: UInt32
        var labels: String
    }

    struct ServiceRow: Encodable {
        var cluster: String
        var namespace: String
        var name: String
        var clusterIP: String
        var ports: String
        var global: Bool
        var shared: Bool
        var affinity: String
        var backends: Int?
    }

    static func services(client: EtcdClient, localCluster: String, allClusters: Bool, namespace: String?) async throws -> MeshRows {
        var rows: [ServiceRow] = []
        for object in try await ResourceStore(client: client).list(.service, namespace: namespace) {
            guard case let .service(service) = object else { continue }
            let mesh = try? ServiceMeshAnnotations.parse(service.metadata.annotations)
            let ports = service.spec.ports.map { "\($0.port)/\($0.protocol.rawValue)" }.joined(separator: ",")
            rows.append(ServiceRow(cluster: localCluster, namespace: object.namespace ?? "default", name: service.metadata.name,
                                   clusterIP: service.spec.clusterIP ?? "-", ports: ports, global: mesh?.global ?? false,
                                   shared: mesh?.shared ?? false, affinity: mesh?.affinity.rawValue ?? "none", backends: nil))
        }
        if allClusters {
            let remote: [(String, ClusterService)] = try await gather(.services, client: client, localCluster: localCluster, allClusters: true)
            for (cluster, exported) in remote where cluster != localCluster {
                if let namespace, exported.namespace != namespace { continue }
                let ports = Set(exported.frontends.values.flatMap { $0.values.map { "\($0.port)/\($0.protocol.rawValue)" } }).sorted().joined(separator: ",")
                rows.append(ServiceRow(cluster: cluster, namespace: exported.namespace, name: exported.name,
                                       clusterIP: exported.frontends.keys.sorted().first ?? "-", ports: ports, global: exported.includeExternal,
                                       shared: exported.shared, affinity: "-", backends: exported.backends.count))
            }
        }
        let table = Table(headers: ["CLUSTER", "NAMESPACE", "NAME", "CLUSTER-IP", "PORTS", "GLOBAL", "SHARED", "AFFINITY"], rows: rows.map {
            [$0.cluster, $0.namespace, $0.name, $0.clusterIP, $0.ports, "\($0.global)", "\($0.shared)", $0.affinity]
        })
        return MeshRows(table: table, json: encode(rows))
    }

    /// (cluster, relative name, value) of a kind: the local cluster's `cilium/state` records, and
    /// with `allClusters` every cached remote cluster's.
    static func gatherRaw(_ kind: MeshKind, client: EtcdClient, localCluster: String, allClusters: Bool) async throws -> [(String, String, Data)] {
        var result: [(String, String, Data)] = []
        let localPrefix = kind.statePrefix(cluster: localCluster)
        for item in try await client.list(prefix: localPrefix).items {
            result.append((localCluster, String(item.key.dropFirst(localPrefix.count)), item.value))
        }
        guard allClusters else { return result }
        // Cache prefixes are `cilium/cache/<kind>/v1/<cluster>/...`; read them all at once.
        let anyCluster = kind.cachePrefix(cluster: "\u{0}")
        let cacheRoot = String(anyCluster[..<anyCluster.firstIndex(of: "\u{0}")!])
        for item in try await client.list(prefix: cacheRoot).items {
            let rest = item.key.dropFirst(cacheRoot.count)
            guard let slash = rest.firstIndex(of: "/") else { continue }
            let cluster = String(rest[..<slash])
            let prefix = kind.cachePrefix(cluster: cluster)
            guard item.key.hasPrefix(prefix) else { continue }
            result.append((cluster, String(item.key.dropFirst(prefix.count)), item.value))
        }
        return result
    }

    static func gather<T: Decodable>(_ kind: MeshKind, client: EtcdClient, localCluster: String, allClusters: Bool) async throws -> [(String, T)] {
        try await gatherRaw(kind, client: client, localCluster: localCluster, allClusters: allClusters).compactMap { cluster, _, value in
            (try? JSONDecoder().decode(T.self, from: value)).map { (cluster, $0) }
        }
    }

    static func labels(_ labels: [String: String]) -> String {
        labels.isEmpty ? "<none>" : labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }
}
