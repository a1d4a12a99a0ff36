import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianFlows
import MeridianPKI
import MeridianStore
import Synchronization

/// A cluster's control plane: optionally supervises a managed etcd, bootstraps RBAC and the
/// cluster's published settings, and runs the clustermesh controllers (export while enabled,
/// import of every configured peer, status publication) until cancelled.
public struct ControlPlane: Sendable {
    public let configuration: ControlPlaneConfiguration
    public let logger: Logger
    public let board = StatusBoard()

    public init(configuration: ControlPlaneConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        try configuration.validate()
        let paths = configuration.paths
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try? FileManager.default.removeItem(atPath: paths.readyMarker)
        try "\(getpid())\n".write(toFile: paths.pidFile, atomically: true, encoding: .utf8)
        defer {
            try? FileManager.default.removeItem(atPath: paths.readyMarker)
            try? FileManager.default.removeItem(atPath: paths.pidFile)
        }
        let authorities = try ClusterPKI.ensure(configuration)
        try await withThrowingDiscardingTaskGroup { group in
            if configuration.externalEtcd == nil {
                let etcd = ManagedEtcd(configuration: ManagedEtcdConfiguration(
                    name: configuration.clusterName, dataDirectory: paths.etcdData, listenHost: configuration.listenHost,
                    clientPort: configuration.etcdClientPort, peerPort: configuration.etcdPeerPort,
                    serverCertificatePath: paths.serverCertificate, serverKeyPath: paths.serverKey,
                    caPath: paths.caCertificate, logPath: paths.etcdLog, quotaBytes: configuration.etcdQuotaBytes),
                    executable: configuration.etcdExecutable, logger: logger)
                group.addTask { try await etcd.run() }
            }
            group.addTask {
                let clientConfiguration = try ClusterPKI.adminClientConfiguration(configuration)
                try await EtcdClient.withClient(clientConfiguration) { client in
                    try await waitUntilReachable(client)
                    try await ClusterBootstrap.run(client, configuration: configuration, meshCA: authorities.mesh)
                    let authorizer = PeerAuthorizer()
                    let meshSettings = Shared(ClusterMeshSettings(enabled: false))
                    try await withThrowingDiscardingTaskGroup { group in
                        let exportFilter = Shared(ExportFilter?.none)
                        group.addTask { try await followExportScope(client, meshSettings: meshSettings, into: exportFilter) }
                        group.addTask {
                            try await serveMeshEndpoint(publishingTo: client, authorizer: authorizer, meshSettings: meshSettings, exportFilter: exportFilter)
                        }
                        group.addTask { try await PeerCredentialFeed(client: client, authorizer: authorizer, logger: logger).run() }
                        group.addTask { try await PeerCredentialIssuer(client: client, meshCA: authorities.mesh, logger: logger).run() }
                        if configuration.externalEtcd == nil || configuration.maintainExternalStore {
                            group.addTask {
                                try await StoreSpaceGuard(client: client, quotaBytes: configuration.etcdQuotaBytes, interval: .seconds(10), logger: logger,
                                                          dataDirectory: configuration.externalEtcd == nil ? paths.etcdData : nil).run()
                            }
                        }
                        group.addTask { try await runControllers(client, meshSettings: meshSettings) }
                        if let address = configuration.observerListen {
                            group.addTask { try await serveFlowRelay(at: address, nodesFrom: client) }
                        }
                    }
                }
            }
        }
    }

    /// The mesh endpoint, relaying peers' reads over a connection of its own as a store user that
    /// may read the export only; its refusals are published through `client`. The control plane
    /// is ready once the endpoint listens.
    private func serveMeshEndpoint(publishingTo client: EtcdClient, authorizer: PeerAuthorizer,
                                   meshSettings: Shared<ClusterMeshSettings>, exportFilter: Shared<ExportFilter?>) async throws {
        let paths = configuration.paths
        let endpointConfiguration = MeshEndpointConfiguration(
            host: configuration.listenHost, port: configuration.meshPort,
            serverCertificatePath: paths.meshServerCertificate, serverKeyPath: paths.meshServerKey, caPath: paths.meshCACertificate)
        try await EtcdClient.withClient(try ClusterPKI.meshRelayClientConfiguration(configuration)) { relay in
            let endpoint = MeshEndpoint(
                configuration: endpointConfiguration, cluster: configuration.clusterName, authorizer: authorizer,
                upstream: relay, isEnabled: { meshSettings.withLock { $0.enabled } }, exportFilter: { exportFilter.value }, logger: logger)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await endpoint.publishRefusals(to: client, logger: logger) }
                try await endpoint.run { port in
                    _ = FileManager.default.createFile(atPath: paths.readyMarker, contents: Data("\(getpid())\n".utf8))
                    logger.info("control plane ready", metadata: [
                        "cluster": "\(configuration.clusterName)", "id": "\(configuration.clusterID)", "mesh-port": "\(port)",
                    ])
                }
            }
        }
    }

    /// Keeps `filter` at what the export scope says peers may read: nil (everything) unless
    /// clustermesh's settings ask for global namespaces only, then the namespaces annotated
    /// global, followed every second.
    private func followExportScope(_ client: EtcdClient, meshSettings: Shared<ClusterMeshSettings>,
                                   into filter: Shared<ExportFilter?>) async throws {
        let mirror = PrefixMirror(prefixes: [KeyLayout.resources(plural: ResourceKind.namespace.plural)])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await mirror.run(store: client) }
            await mirror.reconcile(every: .seconds(1), onFailure: { error in
                logger.warning("following the export scope failed; retrying", metadata: ["error": "\(error)"])
            }) {
                let scoped = meshSettings.withLock { $0.scope } == .globalNamespaces
                let next = scoped
                    ? ExportFilter(globalNamespaces: ExportFilter.globalNamespaces(in: await mirror.snapshot(KeyLayout.resources(plural: ResourceKind.namespace.plural))))
                    : nil
                if filter.value != next {
                    logger.info("export scope", metadata: ["globalNamespaces": "\(next.map { $0.globalNamespaces.sorted().joined(separator: ",") } ?? "all")"])
                    filter.withLock { $0 = next }
                }
            }
            group.cancelAll()
        }
    }

    /// The cluster's flow relay: `meridian observe` reads every node's flows through it. The
    /// nodes' observers are found in their status records.
    private func serveFlowRelay(at address: ObserverAddress, nodesFrom client: EtcdClient) async throws {
        let paths = configuration.paths
        let tls = try ObserverTLS(caPath: paths.caCertificate, certificatePath: paths.flowsCertificate, keyPath: paths.flowsKey)
        let relay = FlowRelay(tls: tls) {
            try await client.list(prefix: KeyLayout.nodeStatusPrefix).items.compactMap { item -> FlowRelay.Node? in
                guard let status = try? StoreCoding.decode(NodePolicyStatus.self, from: item.value, key: item.key),
                      let text = status.observer, let observer = try? ObserverAddress(parsing: text) else { return nil }
                return FlowRelay.Node(name: "\(status.cluster)/\(status.node)", address: observer)
            }
        }
        let server = ObserverServer(address: address, tls: tls,
                                    admittedNames: [ObserverCredentials.readerName, ObserverCredentials.administratorName],
                                    source: relay, logger: logger)
        try await server.run { bound in logger.info("serving the flow relay", metadata: ["address": "\(bound)"]) }
    }

    private func waitUntilReachable(_ client: EtcdClient) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                _ = try await client.status()
                return
            } catch {
                guard ContinuousClock.now < deadline else {
                    throw ControlPlaneError.etcdUnreachable(endpoint: "\(client.configuration.endpoint)", waited: .seconds(60), detail: "\(error)")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    private var localSettings: ClusterSettings {
        ClusterSettings(
            name: configuration.clusterName, id: configuration.clusterID, podCIDR: configuration.podCIDR,
            serviceCIDR: configuration.serviceCIDR, maxConnectedClusters: configuration.maxConnectedClusters.rawValue,
            clientEndpoints: [configuration.meshEndpoint], serverName: configuration.meshServerName)
    }

    private func runControllers(_ client: any KeyValueStore, meshSettings: Shared<ClusterMeshSettings>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await MeshExportSwitch(client: client, cluster: localSettings, logger: logger).run { settings in
                    meshSettings.withLock { $0 = settings }
                }
            }
            group.addTask {
                let manager = ImportManager(local: client, localCluster: localSettings, board: board, timing: {
                    let settings = meshSettings.withLock { $0 }
                    var timing = ImportTiming(heartbeatTimeout: .milliseconds(Int64(settings.heartbeatIntervalSeconds * 2000)))
                    if settings.cacheTTLSeconds > 0 { timing.cacheTTL = .milliseconds(Int64(settings.cacheTTLSeconds * 1000)) }
                    return timing
                }, connector: .etcd, logger: logger)
                await manager.run()
            }
            group.addTask { try await StatusPublisher(client: client, board: board, logger: logger).run() }
            group.addTask { try await WorkloadController(client: client, cluster: localSettings, logger: logger).run() }
            group.addTask { try await ServiceImportController(client: client, cluster: localSettings, logger: logger).run() }
            group.addTask { try await IdentityCollector(client: client, interval: configuration.identityGCInterval, logger: logger).run() }
        }
    }
}

/// Copies the status board into `meridian/clustermesh/status/<remote>` whenever a status changes,
/// and stamps `meridian/clustermesh/status/.reporter` every two seconds so readers can tell a
/// live control plane from a dead one. A heartbeat alone rewrites a remote's status only when
/// the published one is 30 s old: with hundreds of remotes, rewriting every status on every
/// beat or refresh is hundreds of puts per second into the local store for nothing.
struct StatusPublisher: Sendable {
    static let refresh: Duration = .seconds(2)
    static let heartbeatRepublish: TimeInterval = 30
    /// Status writes in flight at once.
    static let publishLanes = 16

    let client: any KeyValueStore
    let board: StatusBoard
    let logger: Logger

    func run() async throws {
        // What an earlier control plane published is not this one's: it is removed before the
        // first liveness stamp, so a fresh stamp never vouches for a status nobody computed
        // (a restarted control plane would otherwise look ready before its importers are).
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                for item in try await client.list(prefix: KeyLayout.remoteStatusPrefix).items where item.key != KeyLayout.statusReporter {
                    try await client.delete(item.key)
                }
                break
            } catch {
                logger.warning("earlier statuses not cleared; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: backoff.next())
            }
        }
        var published: [String: RemoteClusterStatus] = [:]
        var lastVersion = -1
        var lastReport = ContinuousClock.now - Self.refresh
        while true {
            let (version, statuses) = board.snapshot()
            let reportDue = ContinuousClock.now - lastReport >= Self.refresh
            if version != lastVersion || reportDue {
                do {
                    let now = Date()
                    // The liveness stamp goes first: with hundreds of remotes a round of status
                    // writes can outlast the stamp's freshness, and the stamp says the reporter
                    // runs, which it does.
                    if reportDue {
                        try await client.put(KeyLayout.statusReporter, jsonData(StatusReporterRecord(reportedAt: now)))
                        lastReport = .now
                    }
                    let due = statuses.filter { Self.needsPublishing($0.value, over: published[$0.key]) }.sorted { $0.key < $1.key }
                    for lane in stride(from: 0, to: due.count, by: Self.publishLanes) {
                        let written = await withTaskGroup(of: (String, RemoteClusterStatus)?.self) { group in
                            for (name, status) in due[lane..<min(lane + Self.publishLanes, due.count)] {
                                group.addTask {
                                    var report = status
                                    report.reportedAt = now
                                    do {
                                        try await client.put(KeyLayout.remoteStatus(name), jsonData(report))
                                        return (name, status)
                                    } catch {
                                        // One remote's status that cannot be written keeps no other from being written.
                                        logger.warning("status of a remote not published", metadata: ["remote": "\(name)", "error": "\(error)"])
                                        return nil
                                    }
                                }
                            }
                            return await group.reduce(into: [(String, RemoteClusterStatus)]()) { if let done = $1 { $0.append(done) } }
                        }
                        for (name, status) in written { published[name] = status }
                    }
                    for name in published.keys where statuses[name] == nil {
                        try await client.delete(KeyLayout.remoteStatus(name))
                        published[name] = nil
                    }
                    lastVersion = version
                } catch {
                    logger.warning("status publication failed", metadata: ["error": "\(error)"])
                }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Whether `status` differs from what was published in more than its heartbeat stamps, or
    /// the published heartbeat is getting old.
    static func needsPublishing(_ status: RemoteClusterStatus, over published: RemoteClusterStatus?) -> Bool {
        guard let published else { return true }
        if withoutHeartbeat(status) != withoutHeartbeat(published) { return true }
        guard let beat = status.lastHeartbeat else { return false }
        return beat.timeIntervalSince(published.lastHeartbeat ?? .distantPast) >= heartbeatRepublish
    }

    private static func withoutHeartbeat(_ status: RemoteClusterStatus) -> RemoteClusterStatus {
        var copy = status
        copy.lastHeartbeat = nil
        copy.updated = .distantPast
        return copy
    }
}
