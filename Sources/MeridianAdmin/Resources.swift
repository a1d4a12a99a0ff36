import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// What `apply`, `delete` and `scale` do to a cluster's Kubernetes resources.
public enum Resources {
    /// A manifest file's text and the name errors give it (`-` reads standard input).
    public static func readManifest(_ path: String) throws(AdminError) -> (text: String, source: String) {
        if path == "-" {
            return (String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self), "<stdin>")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw .fileUnreadable(path: path) }
        return (String(decoding: data, as: UTF8.self), path)
    }

    /// Applies every object of the manifest in one transaction: all of them or none.
    public static func apply(_ text: String, source: String, context: MeridianContext) async throws -> [(KubernetesObject, ApplyOutcome)] {
        let objects = try ManifestDecoder.decode(text, source: source)
        guard !objects.isEmpty else { throw AdminError.noObjects(source: source) }
        return try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            try await ResourceStore(client: client).apply(objects, source: source)
        }
    }

    /// Waits until every node of the cluster has programmed the objects `apply` returned
    /// (`waitUntilProgrammed` from their newest revision: an unchanged object was programmed from
    /// its last change); throws `notProgrammed` when `timeout` runs out.
    public static func waitUntilProgrammed(_ applied: [(KubernetesObject, ApplyOutcome)], context: MeridianContext,
                                           timeout: Duration) async throws {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let deadline = ContinuousClock.now + timeout
            var revision: Int64 = 0
            for (object, _) in applied {
                revision = max(revision, try await client.get(ResourceStore.key(for: object))?.modRevision ?? 0)
                if case .serviceExport = object {
                    revision = max(revision, try await importRevision(of: object, cluster: context.cluster, client: client, until: deadline))
                }
            }
            try await waitUntilProgrammed(revision, cluster: context.cluster, client: client, timeout: max(.zero, deadline - ContinuousClock.now))
        }
    }

    /// What a ServiceExport is programmed from is the ServiceImport the control plane makes of
    /// it: the import's revision once it lists this cluster (0 when the export's Service does
    /// not exist, so there is nothing to wait for). Throws `notImported` at `deadline`.
    static func importRevision(of export: KubernetesObject, cluster: String, client: some KeyValueStore,
                               until deadline: ContinuousClock.Instant) async throws -> Int64 {
        let namespace = export.namespace ?? KubernetesObject.defaultNamespace
        let service = KeyLayout.resource(plural: ResourceKind.service.plural, namespace: namespace, name: export.name)
        guard try await client.get(service) != nil else { return 0 }
        let key = KeyLayout.resource(plural: ResourceKind.serviceImport.plural, namespace: namespace, name: export.name)
        while true {
            if let record = try await client.get(key),
               case let .serviceImport(imported) = try StoreCoding.decode(KubernetesObject.self, from: record.value, key: key),
               imported.clusters.contains(cluster) {
                return record.modRevision
            }
            guard ContinuousClock.now < deadline else { throw AdminError.notImported(namespace: namespace, name: export.name, cluster: cluster) }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// `meridian wait --for programmed KIND/NAME`: waits until every node has programmed the
    /// object as it is now; throws `resourceNotFound` when there is no such object.
    public static func waitUntilProgrammed(_ kind: ResourceKind, namespace: String, name: String, context: MeridianContext,
                                           timeout: Duration) async throws {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let key = KeyLayout.resource(plural: kind.plural, namespace: kind.isNamespaced ? namespace : nil, name: name)
            guard let record = try await client.get(key) else {
                throw AdminError.resourceNotFound(kind: kind.plural, name: kind.isNamespaced ? "\(namespace)/\(name)" : name, cluster: context.cluster)
            }
            let deadline = ContinuousClock.now + timeout
            var revision = record.modRevision
            if kind == .serviceExport {
                let object = try StoreCoding.decode(KubernetesObject.self, from: record.value, key: key)
                revision = max(revision, try await importRevision(of: object, cluster: context.cluster, client: client, until: deadline))
            }
            try await waitUntilProgrammed(revision, cluster: context.cluster, client: client, timeout: max(.zero, deadline - ContinuousClock.now))
        }
    }

    /// Returns once every node registered in `cluster` reports a policy pass computed from store
    /// revision `revision` or later (its `NodePolicyStatus`): one pass programs services,
    /// addresses and policy from all resources together, so the node enforces everything written
    /// up to that revision. A node whose agent is away holds the wait until `timeout`.
    public static func waitUntilProgrammed(_ revision: Int64, cluster: String, client: some KeyValueStore,
                                           timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let nodePrefix = MeshKind.nodes.statePrefix(cluster: cluster)
            let nodes = try await client.list(prefix: nodePrefix).items.map { String($0.key.dropFirst(nodePrefix.count)) }
            var lagging: [String: Int64?] = [:]
            for node in nodes {
                let status = try await client.get(KeyLayout.nodeStatus(node))
                    .flatMap { try? StoreCoding.decode(NodePolicyStatus.self, from: $0.value, key: $0.key) }
                if (status?.revision ?? 0) < revision { lagging[node] = status?.revision }
            }
            if lagging.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw AdminError.notProgrammed(cluster: cluster, revision: revision, lagging: lagging, waited: timeout)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// What a manifest names, for `delete -f`.
    public static func objects(in text: String, source: String) throws -> [(kind: ResourceKind, namespace: String?, name: String)] {
        try ManifestDecoder.decode(text, source: source).map { ($0.kind, $0.namespace, $0.name) }
    }

    /// Removes a node from its cluster as `kubectl delete node` does: its record goes at once
    /// (its lease is revoked, so peers and other clusters stop routing to it now rather than when
    /// its grace period runs out) and its pod CIDR is released. An agent still running on the
    /// node registers it again, as a kubelet would. Returns false if the cluster has no such node.
    public static func deleteNode(_ name: String, context: MeridianContext) async throws -> Bool {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let key = MeshKind.nodes.stateKey(cluster: context.cluster, name: name)
            let record = try await client.get(key)
            if let lease = record?.lease, lease != 0 {
                do { try await client.revokeLease(lease) } catch let error as EtcdError where error.code == .leaseExpired {}
            }
            let removed = try await client.delete(key)
            var released = false
            for claim in try await client.list(prefix: KeyLayout.podCIDRPrefix).items where claim.stringValue == name {
                released = try await client.delete(claim.key) || released
            }
            return record != nil || removed || released
        }
    }

    /// Deletes each object (a namespace with its contents); returns the ones that were not there.
    /// Pods on nodes are deleted gracefully (`ResourceStore.delete`), with `gracePeriodSeconds`
    /// instead of their own when given, or at once with `force`.
    public static func delete(_ targets: [(kind: ResourceKind, namespace: String?, name: String)],
                              context: MeridianContext, gracePeriodSeconds: Int? = nil,
                              force: Bool = false) async throws -> (deleted: [String], missing: [String]) {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let store = ResourceStore(client: client)
            var result: (deleted: [String], missing: [String]) = ([], [])
            for (kind, namespace, name) in targets {
                if try await store.delete(kind, namespace: namespace, name: name, gracePeriodSeconds: gracePeriodSeconds, force: force) {
                    result.deleted.append("\(kind.rawValue.lowercased())/\(name)")
                } else {
                    result.missing.append("\(kind.plural) \"\(name)\" not found" + (namespace.map { " in namespace \($0)" } ?? ""))
                }
            }
            return result
        }
    }

    /// Sets a Deployment's replica count; its controller does the rest.
    public static func scaleDeployment(_ name: String, namespace: String, replicas: Int, context: MeridianContext) async throws {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let store = ResourceStore(client: client)
            guard case var .deployment(deployment)? = try await store.get(.deployment, namespace: namespace, name: name) else {
                throw AdminError.deploymentNotFound(namespace: namespace, name: name, cluster: context.cluster)
            }
            deployment.spec.replicas = replicas
            let object = KubernetesObject.deployment(deployment)
            try await client.put(ResourceStore.key(for: object), StoreCoding.encode(object))
        }
    }
}

/// Parses Go-style durations as the cilium CLI takes them: `90s`, `5m`, `1h30m`, `250ms`.
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("h", 3600), ("m", 60), ("s", 1)]
        var rest = Substring(text)
        var seconds = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.0.count)
            seconds += value * unit.1
        }
        // Far beyond any wait a command takes, and within what Int64 milliseconds hold.
        guard seconds <= maximumSeconds else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }

    /// The longest duration accepted: 100 days.
    public static let maximumSeconds = 100.0 * 86_400
}
