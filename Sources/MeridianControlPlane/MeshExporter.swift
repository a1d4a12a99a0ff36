import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore

/// The exporting half of clustermesh, active while it is enabled: publishes
/// `cilium/cluster-config/<name>`, writes the heartbeat, mirrors global and shared Services into
/// `cilium/state/services/v1/<name>/...` as ClusterService records, and writes sync canaries once
/// each kind's initial export is complete. Nodes, endpoints and identities are written to
/// `cilium/state` directly by their owners (agents, identity allocation), so their canaries are
/// written as soon as exporting starts.
struct MeshExporter: Sendable {
    let client: any KeyValueStore
    let cluster: ClusterSettings
    let settings: ClusterMeshSettings
    let logger: Logger

    /// Exports until cancelled, starting over after a backoff when a write of the start fails.
    func runRetrying() async {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while !Task.isCancelled {
            do {
                try await run()
            } catch where !Task.isCancelled {
                logger.warning("clustermesh export failed; restarting it", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            } catch {}
        }
    }

    func run() async throws {
        let config = CiliumClusterConfig(id: cluster.id, capabilities: .init(
            syncedCanaries: true, maxConnectedClusters: cluster.maxConnectedClusters, serviceExportsEnabled: true))
        try await client.put(KeyLayout.clusterConfig(cluster.name), jsonData(config))
        for kind in [MeshKind.nodes, .endpoints, .identities] {
            try await client.put(KeyLayout.syncCanary(cluster: cluster.name, prefix: kind.stateCanaryPrefix), iso8601Now())
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await heartbeat() }
            group.addTask { try await exportServices() }
        }
    }

    /// Writes the heartbeat every interval, counted from the start of each write. A failed write
    /// is tried again after a quarter of the interval (at most 250 ms), not a whole one: while the
    /// store elects a new leader, peers see a gap of the outage, not of the outage plus an interval.
    private func heartbeat() async throws {
        let interval = Duration.milliseconds(Int64(settings.heartbeatIntervalSeconds * 1000))
        let retry = min(interval / 4, .milliseconds(250))
        var failures = 0
        while true {
            let started = ContinuousClock.now
            do {
                try await client.put(KeyLayout.heartbeat, iso8601Now())
                if failures > 0 { logger.info("heartbeat written again", metadata: ["failedWrites": "\(failures)"]) }
                failures = 0
                try await Task.sleep(until: started + interval)
            } catch let error as EtcdError where error.code != .cancelled {
                failures += 1
                if failures & (failures - 1) == 0 {
                    logger.warning("heartbeat write failed; retrying", metadata: ["error": "\(error)", "failedWrites": "\(failures)"])
                }
                try await Task.sleep(for: retry)
            }
        }
    }

    /// Reconciles the exported services from the Service, ServiceExport, Namespace and Pod
    /// resources and the pods' statuses (backends are the ready pods a Service selects), then
    /// again on every change of them, re-deriving only the services a change touched; a
    /// reconcile that fails is retried with backoff, from a fresh listing of what is exported.
    private func exportServices() async throws {
        let mirror = PrefixMirror(prefixes: ServiceExportState.prefixes)
        let canaryWritten = Shared(false)
        let state = Shared(ServiceExportState())
        let tracker = await mirror.trackChanges()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await mirror.run(store: client) }
            await mirror.reconcile(every: ServiceExportState.relistInterval, onFailure: { error in
                logger.warning("service export failed; retrying", metadata: ["error": "\(error)"])
            }) {
                var current = state.take(leaving: ServiceExportState())
                do {
                    try await reconcileServices(mirror, tracker: tracker, state: &current)
                    state.withLock { $0 = current }
                } catch {
                    current.listed = false
                    state.withLock { $0 = current }
                    throw error
                }
                if !canaryWritten.value {
                    try await client.put(KeyLayout.syncCanary(cluster: cluster.name, prefix: MeshKind.services.stateCanaryPrefix), iso8601Now())
                    try await client.put(KeyLayout.syncCanary(cluster: cluster.name, prefix: MeshKind.serviceExports.stateCanaryPrefix), iso8601Now())
                    try await client.put(KeyLayout.syncCanary(cluster: cluster.name, prefix: MeshKind.serviceSlices.stateCanaryPrefix), iso8601Now())
                    canaryWritten.withLock { $0 = true }
                }
            }
            group.cancelAll()
        }
    }

    /// Takes in the mirror's changes, re-derives the records of the services they touched and
    /// writes what differs from what the store holds. The first time (and after a failure) it
    /// lists what is exported and re-derives every service, so stale records go too.
    private func reconcileServices(_ mirror: PrefixMirror, tracker: MirrorChangeTracker, state: inout ServiceExportState) async throws {
        let started = ContinuousClock.now
        for prefix in ServiceExportState.prefixes {
            state.apply(await mirror.takeChanges(tracker, prefix: prefix), of: prefix)
        }
        var touched = state.takeTouched()
        let kinds = [MeshKind.serviceSlices, .services, .serviceExports]
        if let listedAt = state.listedAt, ContinuousClock.now - listedAt >= ServiceExportState.relistInterval { state.listed = false }
        if !state.listed {
            state.listedAt = .now
            state.written = [:]
            for kind in kinds {
                for item in try await client.list(prefix: kind.statePrefix(cluster: cluster.name)).items { state.written[item.key] = item.value }
            }
            touched = state.allNames
            state.exported = [:]
            state.slices = [:]
        }
        var desired: [String: Data?] = [:]
        for name in touched {
            let records = exportedRecords(of: name, in: &state)
            for key in (state.exported[name] ?? [:]).keys where records[key] == nil { desired[key] = .some(nil) }
            for (key, value) in records { desired[key] = value }
            state.exported[name] = records.isEmpty ? nil : records
        }
        if !state.listed {
            // What no service exports any more goes.
            let exportedKeys = Set(state.exported.values.flatMap(\.keys))
            for key in state.written.keys where !exportedKeys.contains(key) { desired[key] = .some(nil) }
            state.listed = true
        }
        let derived = ContinuousClock.now
        // Slices before the records that announce them, so a receiver that sees a new count
        // finds its slices.
        for kind in kinds {
            let prefix = kind.statePrefix(cluster: cluster.name)
            var diff = CacheDiff(puts: [:], deletes: [])
            for (key, value) in desired where key.hasPrefix(prefix) && state.written[key] != value {
                if let value { diff.puts[key] = value } else { diff.deletes.insert(key) }
            }
            guard !diff.isEmpty else { continue }
            try await MeshCache.apply(diff, to: client)
            for (key, value) in diff.puts { state.written[key] = value }
            for key in diff.deletes { state.written[key] = nil }
            logger.info("\(kind) exported", metadata: [
                "changed": "\(diff.puts.count)", "removed": "\(diff.deletes.count)", "services": "\(touched.count)",
                "deriveMs": "\(Int((derived - started).inMilliseconds))", "totalMs": "\(Int((ContinuousClock.now - started).inMilliseconds))",
            ])
        }
    }

    /// The records one service exports (by key): its ServiceExport's spec, its ClusterService
    /// record and the record's slices; none when it is not exported.
    private func exportedRecords(of name: String, in state: inout ServiceExportState) -> [String: Data] {
        let previous = state.slices.removeValue(forKey: name) ?? []
        guard let service = state.index.service(name), !state.excludes(namespace: service.metadata.namespace ?? KubernetesObject.defaultNamespace,
                                                                      scope: settings.scope) else { return [:] }
        var records: [String: Data] = [:]
        let export = state.exports[name]
        if let export {
            records[MeshKind.serviceExports.stateKey(cluster: cluster.name, name: name)] =
                jsonData(ExportedServiceSpec(exporting: service, export: export, cluster: cluster.name))
        }
        // Whether it is exported at all is known before its backends are looked at.
        guard var exported = ClusterServiceExport.clusterService(for: service, cluster: cluster, exportedByMCS: export != nil) else { return records }
        let pods = state.index.records(of: name).pods
        let backends = ClusterServiceExport.backends(of: service, pods: pods)
        exported.backends = backends.ports
        exported.backendStates = backends.states.isEmpty ? nil : backends.states
        if service.spec.isHeadless { exported.hostnames = ClusterServiceExport.hostnames(of: service, pods: pods) }
        let (record, slices) = ServiceSlicing.split(exported)
        records[MeshKind.services.stateKey(cluster: cluster.name, name: name)] = jsonData(record)
        // A slice equal to the one exported last keeps its bytes: one backend's change encodes one slice.
        for (index, slice) in slices.enumerated() {
            let key = MeshKind.serviceSlices.stateKey(cluster: cluster.name, name: ServiceSlicing.keyName(of: slice))
            if index < previous.count, previous[index] == slice, let bytes = state.exported[name]?[key] {
                records[key] = bytes
            } else {
                records[key] = jsonData(slice)
            }
        }
        state.slices[name] = slices.isEmpty ? nil : slices
        return records
    }
}

/// What the exporter keeps between reconciles: the records exports derive from, indexed by
/// service name, the records each service exports and what the store holds under the
/// exporter's prefixes. A pod's change then costs the work of the services selecting it, not
/// a pass over every Service and pod with a listing of everything exported.
struct ServiceExportState: Sendable {
    static let prefixes = [
        KeyLayout.resources(plural: ResourceKind.service.plural), KeyLayout.resources(plural: ResourceKind.namespace.plural),
        KeyLayout.resources(plural: ResourceKind.pod.plural), KeyLayout.podStatusPrefix,
        KeyLayout.resources(plural: ResourceKind.serviceExport.plural),
    ]
    private static let indexed: [String: ServiceIndex.Kind] = [
        KeyLayout.resources(plural: ResourceKind.service.plural): .service, KeyLayout.resources(plural: ResourceKind.pod.plural): .pod,
        KeyLayout.podStatusPrefix: .podStatus,
    ]

    var index = ServiceIndex()
    /// The `clustermesh.cilium.io/global` annotation of each Namespace (lowercased; "" when absent).
    private var namespaceMarks: [String: String] = [:]
    private var namespaceKeys: [String: String] = [:]
    private(set) var exports: [String: ServiceExport] = [:]
    private var exportKeys: [String: String] = [:]
    private var touched: Set<String> = []
    /// The records each service name exports, by key, and its slices as last split.
    var exported: [String: [String: Data]] = [:]
    var slices: [String: [ClusterService]] = [:]
    /// What the store holds under the exporter's prefixes, as last listed and written.
    var written: [String: Data] = [:]
    /// Whether `written` was listed since the last failure, and when it last was: it is
    /// listed again every `relistInterval`, so a record changed behind the exporter's back is
    /// put right.
    var listed = false
    var listedAt: ContinuousClock.Instant?
    static let relistInterval: Duration = .seconds(60)

    /// Takes in what changed under one mirrored prefix.
    mutating func apply(_ changes: PrefixChanges, of prefix: String) {
        switch changes {
        case let .changed(keys):
            for (key, value) in keys { update(key, to: value, under: prefix) }
        case let .everything(all):
            let known: [String] = if let kind = Self.indexed[prefix] { index.keys(of: kind) }
                else if prefix == KeyLayout.resources(plural: ResourceKind.namespace.plural) { Array(namespaceKeys.keys) }
                else { Array(exportKeys.keys) }
            for key in known where all[key] == nil { update(key, to: nil, under: prefix) }
            for (key, value) in all { update(key, to: value, under: prefix) }
        }
    }

    private mutating func update(_ key: String, to value: Data?, under prefix: String) {
        if let kind = Self.indexed[prefix] {
            index.update(kind, key: key, value: value)
            return
        }
        let object = value.flatMap { try? StoreCoding.decode(KubernetesObject.self, from: $0, key: key) }
        if prefix == KeyLayout.resources(plural: ResourceKind.namespace.plural) {
            if let old = namespaceKeys.removeValue(forKey: key) {
                namespaceMarks[old] = nil
                touched.formUnion(index.serviceNames(in: old))
            }
            guard case let .namespace(namespace)? = object else { return }
            namespaceKeys[key] = namespace.metadata.name
            namespaceMarks[namespace.metadata.name] = namespace.metadata.annotations[ClusterServiceExport.namespaceGlobalAnnotation]?.lowercased() ?? ""
            touched.formUnion(index.serviceNames(in: namespace.metadata.name))
        } else {
            if let old = exportKeys.removeValue(forKey: key) {
                exports[old] = nil
                touched.insert(old)
            }
            guard case let .serviceExport(export)? = object else { return }
            let name = "\(export.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(export.metadata.name)"
            exportKeys[key] = name
            exports[name] = export
            touched.insert(name)
        }
    }

    /// The names touched since the last call.
    mutating func takeTouched() -> Set<String> {
        defer { touched = [] }
        return touched.union(index.takeTouched())
    }

    /// Every name with a Service or a ServiceExport.
    var allNames: Set<String> { index.allNames.union(exports.keys) }

    /// Cilium's rule: namespaces annotated "false" are never exported; under the
    /// global-namespaces scope, only those annotated "true" are (a Service whose Namespace
    /// record is missing is judged by nothing and exported).
    func excludes(namespace: String, scope: ExportScope) -> Bool {
        guard let marked = namespaceMarks[namespace] else { return false }
        return marked == "false" || (scope == .globalNamespaces && marked != "true")
    }
}

/// Runs the exporter exactly while clustermesh is enabled, following
/// `meridian/clustermesh/settings`: a change of the settings stops the running exporter and,
/// once it has exited, starts one with the new settings, or withdraws the export when
/// clustermesh was disabled.
struct MeshExportSwitch: Sendable {
    let client: any KeyValueStore
    let cluster: ClusterSettings
    let logger: Logger

    func run(onSettings: @Sendable (ClusterMeshSettings) -> Void = { _ in }) async throws {
        let (changes, publish) = AsyncStream.makeStream(of: ClusterMeshSettings.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                defer { publish.finish() }
                try await ListWatch(client, .key(KeyLayout.clusterMeshSettings), restart: .after(ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))))
                    .follow(onStoreFailure: { error in logger.warning("clustermesh settings watch failed", metadata: ["error": "\(error)"]) }) { state, _ in
                        let settings = state[KeyLayout.clusterMeshSettings].flatMap {
                            try? StoreCoding.decode(ClusterMeshSettings.self, from: $0.value, key: $0.key)
                        } ?? ClusterMeshSettings(enabled: false)
                        publish.yield(settings)
                    }
            }
            var settings = changes.makeAsyncIterator()
            var current = await settings.next()
            // Disabled while this control plane was down (or while it withdrew): withdraw again.
            if let first = current, !first.enabled { await withdrawExport() }
            while let running = current {
                onSettings(running)
                // The exporter of these settings runs until they change; it has exited when the
                // group returns, before anything is withdrawn or another one starts.
                let next = await withTaskGroup(of: Void.self) { group -> ClusterMeshSettings? in
                    if running.enabled {
                        let exporter = MeshExporter(client: client, cluster: cluster, settings: running, logger: logger)
                        group.addTask { await exporter.runRetrying() }
                    }
                    var next = await settings.next()
                    while next == running { next = await settings.next() }
                    group.cancelAll()
                    return next
                }
                if running.enabled, let next, !next.enabled { await withdrawExport() }
                current = next
            }
        }
    }

    /// Removes what this cluster exported when clustermesh is disabled, retrying until it is done.
    private func withdrawExport() async {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while !Task.isCancelled {
            do {
                try await client.delete(KeyLayout.clusterConfig(cluster.name))
                try await client.delete(KeyLayout.heartbeat)
                try await client.delete(prefix: MeshKind.services.statePrefix(cluster: cluster.name))
                try await client.delete(prefix: MeshKind.serviceExports.statePrefix(cluster: cluster.name))
                try await client.delete(prefix: MeshKind.serviceSlices.statePrefix(cluster: cluster.name))
                try await client.delete(prefix: KeyLayout.syncCanaries(of: cluster.name))
                return
            } catch {
                logger.warning("withdrawing the export failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }
}

/// How a Service becomes the ClusterService its cluster exports.
public enum ClusterServiceExport {
    /// Namespaces annotated `"false"` are not exported (Cilium 1.19's global-namespace filter).
    public static let namespaceGlobalAnnotation = "clustermesh.cilium.io/global"

    /// The backends of `service` by address and port name, as a ClusterService carries them,
    /// with the state of each one that is not active (a deleted pod, still serving, is
    /// `terminating`; the record carries it in `backendStates`).
    public static func backends(of service: Service, pods: [ObservedPod])
        -> (ports: [String: [String: L4Addr]], states: [String: String]) {
        var result: (ports: [String: [String: L4Addr]], states: [String: String]) = ([:], [:])
        for resolved in ServiceBackendResolver.resolve(service, pods: pods) {
            guard let proto = L4Protocol(rawValue: resolved.servicePort.protocol.rawValue) else { continue }
            for backend in resolved.backends {
                result.ports[backend.podIP, default: [:]][resolved.servicePort.name ?? ""] = L4Addr(protocol: proto, port: UInt16(backend.port))
                if backend.state != .active { result.states[backend.podIP] = backend.state.rawValue }
            }
        }
        return result
    }

    /// The pod hostnames of a headless service's backends: pods whose `subdomain` is the
    /// service's name and that set a `hostname`, as Kubernetes publishes them in DNS.
    public static func hostnames(of service: Service, pods: [ObservedPod]) -> [String: String]? {
        var names: [String: String] = [:]
        for pod in ServiceBackendResolver.selectedPods(of: service, among: pods) {
            guard pod.pod.spec.subdomain == service.metadata.name, let hostname = pod.pod.spec.hostname,
                  let ip = pod.status?.podIP else { continue }
            names[ip] = hostname
        }
        return names.isEmpty ? nil : names
    }

    /// The exported record, or nil when the service is neither global and shared nor exported
    /// by a ServiceExport (`exportedByMCS`). Frontends are the service's cluster IPs; backends
    /// come from the cluster's ready endpoints (none until the datapath places pods).
    public static func clusterService(for service: Service, cluster: ClusterSettings,
                                      backends: [String: [String: L4Addr]] = [:],
                                      backendStates: [String: String] = [:], exportedByMCS: Bool = false) -> ClusterService? {
        let mesh = try? ServiceMeshAnnotations.parse(service.metadata.annotations)
        guard exportedByMCS || mesh.map(GlobalServicePolicy.exportsBackends) == true else { return nil }
        var ports: [String: L4Addr] = [:]
        for port in service.spec.ports {
            ports[port.name ?? ""] = L4Addr(protocol: L4Protocol(rawValue: port.protocol.rawValue) ?? .tcp, port: UInt16(port.port))
        }
        var frontends: [String: [String: L4Addr]] = [:]
        let ips = service.spec.clusterIPs ?? service.spec.clusterIP.map { [$0] } ?? []
        for ip in ips where !ip.isEmpty && ip != ServiceSpec.headlessClusterIP {
            frontends[ip] = ports
        }
        return ClusterService(
            cluster: cluster.name, namespace: service.metadata.namespace ?? "default", name: service.metadata.name,
            frontends: frontends, backends: backends, labels: service.metadata.labels, selector: service.spec.selector,
            includeExternal: true, shared: true, clusterID: cluster.id, backendStates: backendStates.isEmpty ? nil : backendStates)
    }
}

