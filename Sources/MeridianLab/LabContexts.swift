import Foundation
import MeridianAdmin
import MeridianAgent
import MeridianControlPlane
import MeridianCore
import MeridianEtcd
import MeridianHost

extension MeridianContext {
    /// The administrator's context for a lab cluster.
    public init(labCluster cluster: LabCluster, lab: String?) {
        self.init(name: cluster.name, cluster: cluster.name, endpoint: cluster.endpoint, serverName: cluster.serverName,
                  certificateAuthority: cluster.paths.caCertificate, clientCertificate: cluster.paths.adminCertificate,
                  clientKey: cluster.paths.adminKey, lab: lab)
        flowsEndpoint = "unix:\(cluster.observerSocket)"
    }
}

/// The path of the running `meridian` binary, so the lab starts the same build.
public func currentExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

extension Lab {
    /// Brings the lab up and records a context per cluster in `config` (the user's config file
    /// unless given).
    public func up(clusters: Int, nodes: Int, mtus: [Int], nodePodPrefixLength: Int, identityGCSeconds: Int?, etcdMembers: Int = 1,
                   storeDiskMiB: Int? = nil, nodeGraceSeconds: Int? = nil, prometheus: Bool = false, encryption: String? = nil,
                   wireguardRotationInterval: String? = nil,
                   recordingContextsIn configPath: String) async throws -> LabState {
        let state = try await up(clusters: clusters, nodes: nodes, mtus: mtus, nodePodPrefixLength: nodePodPrefixLength,
                                 identityGCSeconds: identityGCSeconds, etcdMembers: etcdMembers, storeDiskMiB: storeDiskMiB,
                                 nodeGraceSeconds: nodeGraceSeconds, prometheus: prometheus, encryption: encryption,
                                 wireguardRotationInterval: wireguardRotationInterval)
        var config = try MeridianConfig.load(from: configPath)
        for cluster in state.clusters { config.upsert(MeridianContext(labCluster: cluster, lab: directory)) }
        try config.save(to: configPath)
        return state
    }

    /// Takes the lab down and removes its contexts from `config`; returns how many went.
    public func down(configPath: String) async throws -> Int {
        await down()
        var config = try MeridianConfig.load(from: configPath)
        let before = config.contexts.count
        config.contexts.removeAll { $0.lab == directory }
        if let current = config.currentContext, !config.contexts.contains(where: { $0.name == current }) {
            config.currentContext = config.contexts.first?.name
        }
        if config.contexts.count != before { try config.save(to: configPath) }
        return before - config.contexts.count
    }

    /// Where `meridian exec` runs a command for a running pod of a lab cluster: the pod's network
    /// namespace and its node's pod cgroup.
    public func execPlace(context: MeridianContext, namespace: String, pod: String) async throws -> ToolPlace {
        guard context.lab == directory, let state = loadState(), let cluster = state.cluster(context.cluster) else {
            throw LabError.notALabCluster(context: context.name)
        }
        let views = try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            try await PodView.load(client: client, namespace: namespace)
        }
        guard let view = views.first(where: { $0.name == pod }) else {
            throw LabError.podNotFound(namespace: namespace, pod: pod, cluster: context.cluster)
        }
        guard view.status == PodPhase.running.rawValue else {
            throw LabError.podNotRunning(namespace: namespace, pod: pod, status: view.status, message: view.message)
        }
        guard let node = cluster.nodes.first(where: { $0.name == view.node }) else {
            throw LabError.podOnUnknownNode(namespace: namespace, pod: pod, node: view.node)
        }
        return ToolPlace(namespace: PodNaming.networkNamespace(prefix: "\(state.prefix)-c\(cluster.id)", namespace: namespace, pod: pod),
                         cgroup: cgroup(of: node))
    }

    /// Stops a node's agent, waits `downFor`, and starts it again; its pods keep running.
    public func restartAgent(cluster name: String, node nodeName: String, downFor: Duration) async throws {
        guard let state = loadState(), let cluster = state.cluster(name), let node = cluster.nodes.first(where: { $0.name == nodeName }) else {
            throw LabError.nodeNotFound(cluster: name, node: nodeName, lab: directory)
        }
        await stopAgent(node)
        if downFor > .zero { try await Task.sleep(for: downFor) }
        let previous = registrations(of: node)
        try await startAgent(node, cluster: cluster, prefix: state.prefix)
        try await waitForNode(node, cluster: cluster, timeout: .seconds(30), previous: previous)
    }
}

/// Runs a command where a pod's processes run, with the terminal's input and output, and
/// returns its exit status (`meridian exec`).
public func runInForeground(_ commandLine: [String], environment: [String: String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = commandLine
    process.environment = ProcessInfo.processInfo.environment.merging(environment, uniquingKeysWith: { _, new in new })
    try process.run()
    process.waitUntilExit()
    // A shell's convention for a command ended by a signal: 128 plus the signal.
    return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
}
