import Foundation

/// One cluster's export of one service under the Multi-Cluster Services API: what a ServiceExport
/// and its Service say, as every other cluster needs it to build its ServiceImport. Cilium's
/// `MCSAPIServiceSpec`, stored at `cilium/state/serviceexports/v1/<cluster>/<namespace>/<name>`.
/// The backends travel separately, in the ClusterService record of the same name.
public struct ExportedServiceSpec: Codable, Sendable, Hashable {
    public var cluster: String
    public var name: String
    public var namespace: String
    /// The ServiceExport's annotations that steer load balancing between clusters
    /// (`ExportedServiceSpec.carriedAnnotation(_:)`), as the oldest export passes them on.
    public var annotations: [String: String]
    public var labels: [String: String]
    /// RFC 3339; the oldest export decides what clusters disagree on.
    public var exportCreationTimestamp: String
    public var ports: [ServiceImportPort]
    public var type: ServiceImportType
    /// `ClientIP` or `None`.
    public var sessionAffinity: String

    public init(cluster: String, name: String, namespace: String, annotations: [String: String] = [:], labels: [String: String] = [:],
                exportCreationTimestamp: String, ports: [ServiceImportPort], type: ServiceImportType, sessionAffinity: String = "None") {
        self.cluster = cluster
        self.name = name
        self.namespace = namespace
        self.annotations = annotations
        self.labels = labels
        self.exportCreationTimestamp = exportCreationTimestamp
        self.ports = ports
        self.type = type
        self.sessionAffinity = sessionAffinity
    }

    private enum CodingKeys: String, CodingKey {
        case cluster, name, namespace, annotations, labels, exportCreationTimestamp, ports, type, sessionAffinity
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        cluster = try container.decode(String.self, forKey: .cluster)
        name = try container.decode(String.self, forKey: .name)
        namespace = try container.decode(String.self, forKey: .namespace)
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        exportCreationTimestamp = try container.decode(String.self, forKey: .exportCreationTimestamp)
        ports = try container.decodeIfPresent([ServiceImportPort].self, forKey: .ports) ?? []
        type = try container.decode(ServiceImportType.self, forKey: .type)
        sessionAffinity = try container.decodeIfPresent(String.self, forKey: .sessionAffinity) ?? "None"
    }

    /// `namespace/name`.
    public var namespacedName: String { "\(namespace)/\(name)" }

    /// The export of `service` that `export` asks for, made by `cluster`.
    public init(exporting service: Service, export: ServiceExport, cluster: String) {
        self.init(
            cluster: cluster, name: service.metadata.name, namespace: service.metadata.namespace ?? KubernetesObject.defaultNamespace,
            annotations: export.metadata.annotations.filter { Self.carriedAnnotation($0.key) }, labels: [:],
            exportCreationTimestamp: export.metadata.creationTimestamp ?? "",
            ports: service.spec.ports.map {
                ServiceImportPort(name: $0.name, protocol: $0.protocol, port: $0.port)
            },
            type: service.spec.isHeadless ? .headless : .clusterSetIP,
            sessionAffinity: service.spec.sessionAffinity ?? "None")
    }

    /// Whether an annotation of a ServiceExport is passed on to the ServiceImports: the cluster
    /// preference and weights, and the affinity.
    public static func carriedAnnotation(_ key: String) -> Bool {
        [ServiceMeshAnnotations.Key.clusterPreference, ServiceMeshAnnotations.Key.clusterWeights,
         ServiceMeshAnnotations.Key.affinity].contains(key)
    }
}

/// What the clusters' exports of one service make: the ServiceImport every cluster with the
/// namespace gets, and what the exports disagree on.
public struct ServiceImportDecision: Sendable, Hashable {
    public var namespace: String
    public var name: String
    /// The import's spec without its ClusterSetIP (each cluster gives its own).
    public var spec: ServiceImportSpec
    /// Exporting clusters, in name order.
    public var clusters: [String]
    /// Annotations of the oldest export (`ExportedServiceSpec.carriedAnnotation`).
    public var annotations: [String: String]
    /// One line per disagreement, naming the clusters and which export was kept; empty when
    /// the exports agree. Every exporting cluster reports them as a `Conflict` condition.
    public var conflicts: [String]
    /// The `Conflict` reason: `PortConflict`, `TypeConflict` or `SessionAffinityConflict` (the
    /// first kind found), nil without conflicts.
    public var conflictReason: String?
}

/// KEP-1645's merge of exports: the union of the ports, the type and session affinity of the
/// oldest export (by `exportCreationTimestamp`, then cluster name), and a conflict for every
/// export that disagrees with what was kept. Pure, so every cluster decides the same.
public enum ServiceImportResolver {
    public static func resolve(_ exports: [ExportedServiceSpec]) -> [ServiceImportDecision] {
        let grouped = Dictionary(grouping: exports, by: \.namespacedName)
        return grouped.keys.sorted().compactMap { key in
            guard let group = grouped[key] else { return nil }
            return decide(group)
        }
    }

    static func decide(_ group: [ExportedServiceSpec]) -> ServiceImportDecision? {
        // A timestamp that does not parse sorts last: a well-formed export is never displaced by it.
        let formatter = ISO8601DateFormatter()
        let dated: [(export: ExportedServiceSpec, created: Date)] = group.map { export in
            (export, formatter.date(from: export.exportCreationTimestamp) ?? Date.distantFuture)
        }
        let ordered = dated.sorted { lhs, rhs in
            lhs.created != rhs.created ? lhs.created < rhs.created : lhs.export.cluster < rhs.export.cluster
        }.map(\.export)
        guard let oldest = ordered.first else { return nil }
        var ports = oldest.ports
        var conflicts: [String] = []
        var reason: String?
        func conflict(_ kind: String, _ message: String) {
            conflicts.append(message)
            if reason == nil { reason = kind }
        }
        for export in ordered.dropFirst() {
            if export.type != oldest.type {
                conflict("TypeConflict", "\(export.cluster) exports it as \(export.type.rawValue), the oldest export (\(oldest.cluster)) as \(oldest.type.rawValue), which is kept")
            }
            if export.sessionAffinity != oldest.sessionAffinity {
                conflict("SessionAffinityConflict", "\(export.cluster) exports session affinity \(export.sessionAffinity), the oldest export (\(oldest.cluster)) \(oldest.sessionAffinity), which is kept")
            }
            for port in export.ports {
                if let kept = ports.first(where: { $0.name == port.name }) {
                    if kept.port != port.port || kept.protocol != port.protocol {
                        conflict("PortConflict", "\(export.cluster) exports port \(portName(port)) as \(port.port)/\(port.protocol.rawValue), an older export as \(kept.port)/\(kept.protocol.rawValue), which is kept")
                    }
                } else if let kept = ports.first(where: { $0.port == port.port && $0.protocol == port.protocol }) {
                    conflict("PortConflict", "\(export.cluster) names port \(port.port)/\(port.protocol.rawValue) \(portName(port)), an older export \(portName(kept)), which is kept")
                } else {
                    ports.append(port)
                }
            }
        }
        let spec = ServiceImportSpec(type: oldest.type, ports: ports.sorted(), ips: nil, sessionAffinity: oldest.sessionAffinity)
        return ServiceImportDecision(namespace: oldest.namespace, name: oldest.name, spec: spec,
                                     clusters: Set(group.map(\.cluster)).sorted(), annotations: oldest.annotations,
                                     conflicts: conflicts, conflictReason: reason)
    }

    private static func portName(_ port: ServiceImportPort) -> String {
        port.name.map { "\"\($0)\"" } ?? "(unnamed)"
    }
}
