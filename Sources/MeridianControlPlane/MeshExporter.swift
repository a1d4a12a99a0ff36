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
    /// again on every change of them; a reconcile that fails is retried with backoff.
    private func exportServices() async throws {
        let mirror = PrefixMirror(prefixes: [
            KeyLayout.resources(plural: ResourceKind.service.plural), KeyLayout.resources(plural: ResourceKind.namespace.plural),
            KeyLayout.resources(plural: ResourceKind.pod.plural), KeyLayout.podStatusPrefix,
            KeyLayout.resources(plural: ResourceKind.serviceExport.plural),
        ])
        let canaryWritten = Shared(false)
        let caches = Shared(ServiceRecordCaches())
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await mirror.run(store: client) }
            await mirror.reconcile(onFailure: { error in
                logger.warning("service export failed; retrying", metadata: ["error": "\(error)"])
            }) {
                try await reconcileServices(mirror, caches: caches)
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

    private func reconcileServices(_ mirror: PrefixMirror, caches: Shared<ServiceRecordCaches>) async throws {
        // Cilium's rule: namespaces annotated "false" are never exported; under the
        // global-namespaces scope, only those annotated "true" are.
        var nonGlobalNamespaces: Set<String> = []
        for (key, value) in await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.namespace.plural)) {
            guard case let .namespace(ns)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { continue }
            let marked = ns.metadata.annotations[ClusterServiceExport.namespaceGlobalAnnotation]?.lowercased()
            if marked == "false" || (settings.scope == .globalNamespaces && marked != "true") {
                nonGlobalNamespaces.insert(ns.metadata.name)
            }
        }
        let serviceRecords = await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.service.plural))
        let podRecords = await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.pod.plural))
        let statusRecords = await mirror.snapshot(KeyLayout.podStatusPrefix)
        let records = caches.withLock { caches in
            ServiceRecords(services: serviceRecords, pods: podRecords, statuses: statusRecords, remote: [:], imports: [:], caches: &caches)
        }
        let pods = records.pods
        var serviceExports: [String: ServiceExport] = [:]
        for (key, value) in await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.serviceExport.plural)) {
            guard case let .serviceExport(export)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { continue }
            serviceExports["\(export.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(export.metadata.name)"] = export
        }
        var desired: [String: Data] = [:]
        var desiredSpecs: [String: Data] = [:]
        var desiredSlices: [String: Data] = [:]
        for service in records.services {
            let namespace = service.metadata.namespace ?? "default"
            let name = "\(namespace)/\(service.metadata.name)"
            guard !nonGlobalNamespaces.contains(namespace) else { continue }
            let export = serviceExports[name]
            if let export {
                desiredSpecs[MeshKind.serviceExports.stateKey(cluster: cluster.name, name: name)] =
                    jsonData(ExportedServiceSpec(exporting: service, export: export, cluster: cluster.name))
            }
            let backends = ClusterServiceExport.backends(of: service, pods: pods)
            guard var exported = ClusterServiceExport.clusterService(for: service, cluster: cluster, backends: backends.ports,
                                                                     backendStates: backends.states, exportedByMCS: export != nil) else { continue }
            if service.spec.isHeadless { exported.hostnames = ClusterServiceExport.hostnames(of: service, pods: pods) }
            let (record, slices) = ServiceSlicing.split(exported)
            desired[MeshKind.services.stateKey(cluster: cluster.name, name: name)] = jsonData(record)
            for slice in slices {
                desiredSlices[MeshKind.serviceSlices.stateKey(cluster: cluster.name, name: ServiceSlicing.keyName(of: slice))] = jsonData(slice)
            }
        }
        // Slices before the records that announce them, so a receiver that sees a new count
        // finds its slices.
        for (kind, records) in [(MeshKind.serviceSlices, desiredSlices), (.services, desired), (.serviceExports, desiredSpecs)] {
            let existing = try await client.list(prefix: kind.statePrefix(cluster: cluster.name))
            let current = Dictionary(existing.items.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let diff = CacheDiff(desired: records, current: current)
            if !diff.isEmpty {
                try await MeshCache.apply(diff, to: client)
                logger.info("\(kind) exported", metadata: ["count": "\(records.count)", "changed": "\(diff.puts.count)", "removed": "\(diff.deletes.count)"])
            }
        }
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

