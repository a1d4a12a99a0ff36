import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianHost

/// One member of a lab cluster's store when it has several (`lab up --etcd-members 3`): an etcd
/// of its own, under a supervisor of its own, with TLS and client-certificate auth on its client
/// and peer listeners (the cluster's store CA), and a unix socket for the cluster's agents.
public struct LabEtcdMember: Codable, Sendable, Hashable {
    public var name: String
    /// The member's working directory: its data, its socket, its log and its service record.
    public var directory: String
    public var clientPort: Int
    public var peerPort: Int

    public var clientURL: String { "https://127.0.0.1:\(clientPort)" }
    public var peerURL: String { "https://127.0.0.1:\(peerPort)" }
    public var dataDirectory: String { directory + "/data" }
    public var socket: String { directory + "/" + ManagedEtcdConfiguration.socketName }
    public var log: String { directory + "/etcd.log" }
    public var service: String { directory + "/service.json" }
}

extension Lab {
    /// The control plane's view of a lab cluster, for the certificates the lab makes before the
    /// store's members start (the control plane finds and keeps them).
    func controlPlaneConfiguration(_ cluster: LabCluster) -> ControlPlaneConfiguration {
        ControlPlaneConfiguration(
            clusterName: cluster.name, clusterID: cluster.id, podCIDR: cluster.podCIDR, serviceCIDR: cluster.serviceCIDR,
            dataDirectory: cluster.dataDirectory, etcdClientPort: cluster.clientPort, etcdPeerPort: cluster.peerPort,
            meshPort: cluster.meshPort, sharedCACertificatePath: caCertificatePath, sharedCAKeyPath: caKeyPath)
    }

    /// Starts the store's members, each under a supervisor, when the cluster's store has several;
    /// the certificates they need are made first.
    func startStore(_ cluster: LabCluster) async throws {
        guard !cluster.etcdMembers.isEmpty else { return }
        try FileManager.default.createDirectory(atPath: cluster.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        _ = try ClusterPKI.ensure(controlPlaneConfiguration(cluster))
        for member in cluster.etcdMembers { try await startMember(member, of: cluster) }
    }

    /// The etcd command line of one member: the managed etcd's, joined to its peers.
    func memberArguments(_ member: LabEtcdMember, of cluster: LabCluster) -> [String] {
        let paths = cluster.paths
        var configuration = ManagedEtcdConfiguration(
            name: member.name, dataDirectory: member.dataDirectory, listenHost: "127.0.0.1",
            clientPort: member.clientPort, peerPort: member.peerPort, serverCertificatePath: paths.serverCertificate,
            serverKeyPath: paths.serverKey, caPath: paths.caCertificate, logPath: member.log, quotaBytes: Self.etcdQuotaBytes)
        configuration.initialCluster = cluster.etcdMembers.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        return configuration.arguments
    }

    /// Starts one member under a supervisor of its own (nothing if one already supervises it).
    public func startMember(_ member: LabEtcdMember, of cluster: LabCluster) async throws {
        guard ServiceRecord.load(member.service) == nil else { return }
        try FileManager.default.createDirectory(atPath: member.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try await HostProcess.launchDetached(
            [executable, "supervise", "--name", "etcd-\(cluster.name)-\(member.name)", "--record", member.service, "--log", member.log,
             "--working-directory", member.directory, "--stale-file", member.socket, "--", "/usr/bin/etcd"]
                + memberArguments(member, of: cluster),
            logPath: member.log)
    }

    /// Stops one member and its supervisor; it stays down until started again.
    public func stopMember(_ member: LabEtcdMember) async {
        await ServiceSupervisor.stop(recordPath: member.service)
    }

    /// The administrator's client configuration of a lab cluster (every member of its store).
    public func adminConfiguration(_ cluster: LabCluster) throws -> EtcdClientConfiguration {
        try ClusterPKI.adminClientConfiguration(controlPlaneConfigurationForClients(cluster))
    }

    private func controlPlaneConfigurationForClients(_ cluster: LabCluster) -> ControlPlaneConfiguration {
        var configuration = controlPlaneConfiguration(cluster)
        if !cluster.etcdMembers.isEmpty {
            let paths = cluster.paths
            configuration.externalEtcd = .init(endpoints: cluster.etcdMembers.map(\.clientURL), caPath: paths.caCertificate,
                                               certificatePath: paths.adminCertificate, keyPath: paths.adminKey, serverName: cluster.serverName)
        }
        return configuration
    }

    /// Each member's health, asked of each on its own.
    public func storeHealth(_ cluster: LabCluster) async -> EtcdStoreHealth? {
        guard let configuration = try? adminConfiguration(cluster) else { return nil }
        return await EtcdStoreHealth.check(configuration)
    }
}
