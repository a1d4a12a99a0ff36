import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore

/// The Multi-Cluster Services controller of one cluster (KEP-1645), the part Cilium's operator
/// plays: from this cluster's ServiceExports and the exports imported from every connected
/// cluster (`cilium/cache/serviceexports/v1/<peer>/...`) it keeps one ServiceImport per exported
/// service in each namespace this cluster has, with a ClusterSetIP of its own service CIDR, and
/// the status of each local ServiceExport (`Valid`, `Conflict`).
///
/// It runs whether or not clustermesh is enabled: a service exported by this cluster alone is
/// imported by it too. What other clusters see is published by `MeshExporter`.
struct ServiceImportController: Sendable {
    let client: any KeyValueStore
    let cluster: ClusterSettings
    let logger: Logger

    /// The owner a ClusterSetIP's claim under `meridian/ipam/services/` names.
    static func claimOwner(namespace: String, name: String) -> String { "\(claimOwnerPrefix)\(namespace)/\(name)" }
    static let claimOwnerPrefix = "ServiceImport "

    func run() async throws {
        try await ensureClusterProperties()
        let mirror = PrefixMirror(prefixes: [
            KeyLayout.resources(plural: ResourceKind.serviceExport.plural),
            KeyLayout.resources(plural: ResourceKind.service.plural),
            KeyLayout.resources(plural: ResourceKind.namespace.plural),
            KeyLayout.resources(plural: ResourceKind.serviceImport.plural),
            KeyLayout.serviceExportStatusPrefix,
            MeshKind.serviceExports.cacheRoot,
        ])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await mirror.run(store: client) }
            await mirror.reconcile(onFailure: { error in
                logger.warning("service import reconcile failed; retrying", metadata: ["error": "\(error)"])
            }) {
                try await reconcile(mirror)
            }
            group.cancelAll()
        }
    }

    private func reconcile(_ mirror: PrefixMirror) async throws {
        let inputs = ServiceImportInputs(
            cluster: cluster.name,
            exports: await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.serviceExport.plural)),
            services: await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.service.plural)),
            namespaces: await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.namespace.plural)),
            remoteExports: await mirror.snapshot(MeshKind.serviceExports.cacheRoot))
        let plan = inputs.plan(now: ISO8601DateFormatter().string(from: Date()))

        // Imports and claims are read from the store, not the mirror: only this controller writes
        // them, and the mirror's watches could show a claim before the import written with it,
        // which would give the import a second address.
        var existingImports: [String: ServiceImport] = [:]
        for item in try await client.list(prefix: KeyLayout.resources(plural: ResourceKind.serviceImport.plural)).items {
            if case let .serviceImport(imported)? = try? StoreCoding.decode(KubernetesObject.self, from: item.value, key: item.key) {
                existingImports[item.key] = imported
            }
        }
        let claims = try await client.list(prefix: KeyLayout.serviceIPPrefix).items
        var heldAddresses: Set<String> = []
        var allocator: ServiceIPAllocator?
        var puts: [(key: String, value: Data)] = []
        var deletes: [String] = []
        for var imported in plan.imports {
            let namespace = imported.metadata.namespace ?? KubernetesObject.defaultNamespace
            let key = KeyLayout.resource(plural: ResourceKind.serviceImport.plural, namespace: namespace, name: imported.metadata.name)
            let previous = existingImports.removeValue(forKey: key)
            let owner = Self.claimOwner(namespace: namespace, name: imported.metadata.name)
            let previousIP = previous?.spec.ips?.first
            if imported.spec.type == .clusterSetIP {
                if let previousIP {
                    imported.spec.ips = [previousIP]
                } else {
                    if allocator == nil { allocator = try await ServiceIPAllocator.load(client, serviceCIDR: cluster.serviceCIDR) }
                    imported.spec.ips = [try await claim(owner: owner, allocator: &allocator!)]
                }
            } else if let previousIP {
                deletes.append(KeyLayout.serviceIP(previousIP))
            }
            heldAddresses.formUnion(imported.spec.ips ?? [])
            imported.metadata.creationTimestamp = previous?.metadata.creationTimestamp ?? imported.metadata.creationTimestamp
            if previous != imported { puts.append((key, StoreCoding.encode(KubernetesObject.serviceImport(imported)))) }
        }
        for (key, gone) in existingImports {
            deletes.append(key)
            if let ip = gone.spec.ips?.first { deletes.append(KeyLayout.serviceIP(ip)) }
        }

        // A ClusterSetIP whose import is gone another way (its namespace deleted, the import
        // deleted by hand) is released.
        for claim in claims where claim.value.starts(with: Data(Self.claimOwnerPrefix.utf8)) {
            let address = String(claim.key.dropFirst(KeyLayout.serviceIPPrefix.count))
            if !heldAddresses.contains(address) { deletes.append(claim.key) }
        }

        let currentStatuses = await mirror.snapshot(KeyLayout.serviceExportStatusPrefix)
        var wantedStatusKeys: Set<String> = []
        for (name, status) in plan.exportStatuses {
            let key = KeyLayout.serviceExportStatusPrefix + name
            wantedStatusKeys.insert(key)
            let previous = currentStatuses[key].flatMap { try? StoreCoding.decode(ServiceExportStatus.self, from: $0, key: key) }
            let kept = status.keepingTransitionTimes(of: previous)
            if kept != previous { puts.append((key, StoreCoding.encode(kept))) }
        }
        deletes += currentStatuses.keys.filter { !wantedStatusKeys.contains($0) }
        guard !puts.isEmpty || !deletes.isEmpty else { return }
        try await MeshCache.apply(CacheDiff(puts: Dictionary(puts, uniquingKeysWith: { _, last in last }), deletes: Set(deletes)), to: client)
        logger.info("service imports reconciled", metadata: [
            "imports": "\(plan.imports.count)", "written": "\(puts.count)", "removed": "\(deletes.count)",
        ])
    }

    /// Writes `cluster.clusterset.k8s.io` (the cluster's name) and, when absent,
    /// `clusterset.k8s.io` (`default`), retrying until the store takes them.
    private func ensureClusterProperties() async throws {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                let store = ResourceStore(client: client)
                let own = ClusterProperty(metadata: ObjectMeta(name: ClusterProperty.clusterID), spec: .init(value: cluster.name))
                if try await store.get(.clusterProperty, namespace: nil, name: ClusterProperty.clusterID) != .clusterProperty(own) {
                    try await client.put(ResourceStore.key(for: .clusterProperty(own)), StoreCoding.encode(KubernetesObject.clusterProperty(own)))
                }
                let set = ClusterProperty(metadata: ObjectMeta(name: ClusterProperty.clusterSet), spec: .init(value: ClusterProperty.defaultClusterSet))
                _ = try await client.create(ResourceStore.key(for: .clusterProperty(set)), StoreCoding.encode(KubernetesObject.clusterProperty(set)), lease: 0)
                return
            } catch let error as CancellationError {
                throw error
            } catch {
                logger.warning("writing the cluster properties failed; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    /// Claims a free address of the service CIDR for `owner`, skipping any that another writer
    /// (an apply, another control plane) claimed since the allocator was loaded.
    private func claim(owner: String, allocator: inout ServiceIPAllocator) async throws -> String {
        while true {
            let address = try allocator.allocate(owner: owner)
            if try await client.create(KeyLayout.serviceIP(address), Data(owner.utf8), lease: 0) { return address }
            allocator.markUsed(address, by: "another writer")
        }
    }
}

/// What `ServiceImportController` decides from the store's records, without the store: the
/// ServiceImports (without ClusterSetIPs) and each local ServiceExport's status.
struct ServiceImportInputs: Sendable {
    var cluster: String
    /// `meridian/resources/serviceexports/...`
    var exports: [String: Data]
    /// `meridian/resources/services/...`
    var services: [String: Data]
    /// `meridian/resources/namespaces/...`
    var namespaces: [String: Data]
    /// `cilium/cache/serviceexports/v1/<peer>/<ns>/<name>`, validated on import.
    var remoteExports: [String: Data]

    struct Plan: Sendable {
        var imports: [ServiceImport]
        /// `namespace/name` → status, for every local ServiceExport.
        var exportStatuses: [String: ServiceExportStatus]
    }

    func plan(now: String) -> Plan {
        var services: [String: Service] = [:]
        for (key, value) in self.services {
            if case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) {
                services["\(service.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(service.metadata.name)"] = service
            }
        }
        let namespaceNames = Set(namespaces.compactMap { key, value -> String? in
            guard case let .namespace(namespace)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            return namespace.metadata.name
        })
        var localExports: [String: ServiceExport] = [:]
        for (key, value) in exports {
            if case let .serviceExport(export)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) {
                localExports["\(export.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(export.metadata.name)"] = export
            }
        }
        var specs: [ExportedServiceSpec] = []
        for (name, export) in localExports {
            if let service = services[name] { specs.append(ExportedServiceSpec(exporting: service, export: export, cluster: cluster)) }
        }
        for (key, value) in remoteExports {
            guard let peer = MeshKind.serviceExports.cacheCluster(ofKey: key), peer != cluster,
                  let spec = try? StoreCoding.decode(ExportedServiceSpec.self, from: value, key: key), spec.cluster == peer else { continue }
            specs.append(spec)
        }
        let decisions = ServiceImportResolver.resolve(specs)
        var imports: [ServiceImport] = []
        var byName: [String: ServiceImportDecision] = [:]
        for decision in decisions {
            let name = "\(decision.namespace)/\(decision.name)"
            byName[name] = decision
            guard namespaceNames.contains(decision.namespace) else { continue }
            // Where this cluster's clients go is this cluster's say: its own export's preference
            // and affinity, when it exports the service, over the oldest export's.
            let annotations = specs.first { $0.cluster == cluster && $0.namespacedName == name }?.annotations ?? decision.annotations
            imports.append(ServiceImport(
                metadata: ObjectMeta(name: decision.name, namespace: decision.namespace, annotations: annotations, creationTimestamp: now),
                spec: decision.spec, status: ServiceImportStatus(clusters: decision.clusters.map(ServiceImportStatus.ClusterStatus.init))))
        }
        var statuses: [String: ServiceExportStatus] = [:]
        for (name, _) in localExports {
            let valid = services[name] == nil
                ? ServiceExportCondition(type: ServiceExportCondition.valid, status: "False", reason: "NoService",
                                         message: "Service \(name) does not exist", lastTransitionTime: now)
                : ServiceExportCondition(type: ServiceExportCondition.valid, status: "True", reason: "Exported",
                                         message: "Service \(name) is exported", lastTransitionTime: now)
            var conditions = [valid]
            if let decision = byName[name], services[name] != nil {
                conditions.append(decision.conflicts.isEmpty
                    ? ServiceExportCondition(type: ServiceExportCondition.conflict, status: "False", reason: "NoConflicts",
                                             message: "exported by \(decision.clusters.joined(separator: ", ")) without conflicts", lastTransitionTime: now)
                    : ServiceExportCondition(type: ServiceExportCondition.conflict, status: "True", reason: decision.conflictReason ?? "Conflict",
                                             message: decision.conflicts.joined(separator: "; "), lastTransitionTime: now))
            }
            statuses[name] = ServiceExportStatus(conditions: conditions)
        }
        return Plan(imports: imports, exportStatuses: statuses)
    }
}
