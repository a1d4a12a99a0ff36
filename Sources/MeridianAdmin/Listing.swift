import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// What `meridian get KIND` shows: records of one kind gathered from the local state and
/// (optionally) the import cache, with a CLUSTER column, as a table and as JSON.
public struct Listing: Sendable {
    public var table: Table
    public var json: String

    /// The kinds `get` lists, with kubectl's short names.
    public enum Kind: String, CaseIterable, Sendable {
        case nodes, endpoints, identities, services, namespaces, pods, deployments, policies, serviceExports, serviceImports, clusterProperties

        public init?(argument: String) {
            switch argument.lowercased() {
            case "node", "nodes", "no": self = .nodes
            case "endpoint", "endpoints", "ep": self = .endpoints
            case "identity", "identities", "id": self = .identities
            case "service", "services", "svc": self = .services
            case "namespace", "namespaces", "ns": self = .namespaces
            case "pod", "pods", "po": self = .pods
            case "deployment", "deployments", "deploy": self = .deployments
            case "policy", "policies", "netpol", "networkpolicies", "cnp", "ciliumnetworkpolicies": self = .policies
            case "serviceexport", "serviceexports", "svcex": self = .serviceExports
            case "serviceimport", "serviceimports", "svcim": self = .serviceImports
            case "clusterproperty", "clusterproperties": self = .clusterProperties
            default: return nil
            }
        }
    }

    public static func load(_ kind: Kind, context: MeridianContext, allClusters: Bool, namespace: String?, wide: Bool) async throws -> Listing {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let settings = try await ClusterAccessInfo.load(context, client: client).settings
            return try await load(kind, client: client, settings: settings, allClusters: allClusters, namespace: namespace, wide: wide)
        }
    }

    static func load(_ kind: Kind, client: any KeyValueStore, settings: ClusterSettings, allClusters: Bool, namespace: String?,
                     wide: Bool) async throws -> Listing {
        let localCluster = settings.name
        switch kind {
        case .policies:
            return try await PolicyClusterView.load(client: client, settings: settings).rows()
        case .pods:
            let pods = try await PodView.load(client: client, namespace: namespace)
            let headers = wide ? ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "IP", "NODE", "IDENTITY"] : ["NAMESPACE", "NAME", "STATUS", "RESTARTS", "IP", "NODE"]
            return Listing(table: Table(headers: headers, rows: pods.map { pod in
                let row = [pod.namespace, pod.name, pod.status, "\(pod.restarts)", pod.ip ?? "<none>", pod.node ?? "<none>"]
                return wide ? row + [pod.identity.map(String.init) ?? "<none>"] : row
            }), json: encode(pods))
        case .deployments:
            let deployments = try await ResourceStore(client: client).list(.deployment, namespace: namespace)
            let pods = try await PodView.load(client: client, namespace: namespace)
            return Listing(table: Table(headers: ["NAMESPACE", "NAME", "READY", "UP-TO-DATE"], rows: deployments.compactMap { object in
                guard case let .deployment(deployment) = object else { return nil }
                let owned = pods.filter { $0.namespace == object.namespace && $0.labels[WorkloadLabels.deployment] == deployment.metadata.name }
                let ready = owned.filter { $0.status == PodPhase.running.rawValue }.count
                return [object.namespace ?? "default", deployment.metadata.name, "\(ready)/\(deployment.spec.replicas)", "\(owned.count)"]
            }), json: encode(deployments))
        case .namespaces:
            let objects = try await ResourceStore(client: client).list(.namespace, namespace: nil)
            return Listing(table: Table(headers: ["NAME", "LABELS"], rows: objects.map { [$0.name, labels($0.metadata.labels)] }),
                            json: encode(objects))
        case .services:
            return try await services(client: client, localCluster: localCluster, allClusters: allClusters, namespace: namespace)
        case .clusterProperties:
            let properties = try await ResourceStore(client: client).list(.clusterProperty, namespace: nil)
            return Listing(table: Table(headers: ["NAME", "VALUE"], rows: properties.compactMap { object in
                guard case let .clusterProperty(property) = object else { return nil }
                return [property.metadata.name, TerminalSafe.escape(property.spec.value, maxScalars: 128)]
            }), json: encode(properties))
        case .serviceExports:
            return try await serviceExports(client: client, namespace: namespace)
        case .serviceImports:
            let imports = try await ResourceStore(client: client).list(.serviceImport, namespace: namespace).compactMap { object -> ServiceImport? in
                guard case let .serviceImport(imported) = object else { return nil }
                return imported
            }
            return Listing(table: Table(headers: ["NAMESPACE", "NAME", "TYPE", "IP", "PORTS", "CLUSTERS"], rows: imports.map { imported in
                [imported.metadata.namespace ?? "default", imported.metadata.name, imported.spec.type.rawValue,
                 imported.spec.ips?.joined(separator: ",") ?? "-",
                 imported.spec.ports.map { "\($0.port)/\($0.protocol.rawValue)" }.joined(separator: ","),
                 imported.clusters.joined(separator: ",")]
            }), json: encode(imports))
        case .nodes:
            let records: [(String, NodeRecord)] = try await MeshRecords.gather(.nodes, client: client, localCluster: localCluster, allClusters: allClusters)
            return Listing(table: Table(headers: ["CLUSTER", "NAME", "INTERNAL-IP", "POD-CIDR", "MTU"], rows: records.map { cluster, node in
                [cluster, node.name, node.address(ofType: .internalIP) ?? "-", node.ipv4AllocCIDR?.description ?? "-", node.mtu.map(String.init) ?? "-"]
            }), json: encode(records.map(\.1)))
        case .endpoints:
            let records: [(String, IPIdentityPair)] = try await MeshRecords.gather(.endpoints, client: client, localCluster: localCluster, allClusters: allClusters)
            return Listing(table: Table(headers: ["CLUSTER", "IP", "IDENTITY", "NODE-IP", "NAMESPACE", "POD"], rows: records.map { cluster, pair in
                [cluster, pair.mask.map { "\(pair.ip)/\($0)" } ?? pair.ip, "\(pair.id)", pair.hostIP, pair.k8sNamespace, pair.k8sPodName]
            }), json: encode(records.map { Tagged(cluster: $0.0, record: $0.1) }))
        case .identities:
            let raw = try await MeshRecords.gatherRaw(.identities, client: client, localCluster: localCluster, allClusters: allClusters)
            let rows = raw.map { cluster, name, value in [cluster, name, String(decoding: value, as: UTF8.self)] }
            let json = raw.map { IdentityRow(cluster: $0.0, id: UInt32($0.1) ?? 0, labels: String(decoding: $0.2, as: UTF8.self)) }
            return Listing(table: Table(headers: ["CLUSTER", "ID", "LABELS"], rows: rows), json: encode(json))
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

    static func services(client: any KeyValueStore, localCluster: String, allClusters: Bool, namespace: String?) async throws -> Listing {
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
            let records: [(String, ClusterService)] = try await MeshRecords.gather(.services, client: client, localCluster: localCluster, allClusters: true)
            let slices: [(String, ClusterService)] = try await MeshRecords.gather(.serviceSlices, client: client, localCluster: localCluster, allClusters: true)
            let remote = zip(records.map(\.0), ServiceSlicing.merge(records.map(\.1), slices: slices.map(\.1)))
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
        return Listing(table: table, json: encode(rows))
    }

    /// A ServiceExport with the status the control plane keeps beside it, as `get -o json` shows it.
    struct ServiceExportRow: Encodable {
        var apiVersion: String
        var kind: String
        var metadata: ObjectMeta
        var status: ServiceExportStatus?
    }

    static func serviceExports(client: any KeyValueStore, namespace: String?) async throws -> Listing {
        var rows: [ServiceExportRow] = []
        for object in try await ResourceStore(client: client).list(.serviceExport, namespace: namespace) {
            guard case let .serviceExport(export) = object else { continue }
            let key = KeyLayout.serviceExportStatus(namespace: object.namespace ?? "default", name: export.metadata.name)
            let status = try await client.get(key).flatMap { try? StoreCoding.decode(ServiceExportStatus.self, from: $0.value, key: key) }
            rows.append(ServiceExportRow(apiVersion: export.apiVersion, kind: export.kind, metadata: export.metadata, status: status))
        }
        let table = Table(headers: ["NAMESPACE", "NAME", "VALID", "CONFLICT", "MESSAGE"], rows: rows.map { row in
            let valid = row.status?.condition(ServiceExportCondition.valid)
            let conflict = row.status?.condition(ServiceExportCondition.conflict)
            let message = conflict?.status == "True" ? conflict?.message : valid?.status == "False" ? valid?.message : nil
            return [row.metadata.namespace ?? "default", row.metadata.name, valid?.status ?? "Unknown", conflict?.status ?? "Unknown",
                    message.map { TerminalSafe.escape($0, maxScalars: 512) } ?? ""]
        })
        return Listing(table: table, json: encode(rows))
    }

    static func labels(_ labels: [String: String]) -> String {
        labels.isEmpty ? "<none>" : labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    /// Pretty, sorted JSON as the read commands print it.
    public static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(value), as: UTF8.self)
    }
}
