import Foundation
import MeridianControlPlane
import MeridianEtcd
import Glibc
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

/// How full the filesystem under one etcd's data is.
public struct LabStoreDisk: Sendable, Hashable {
    public var path: String
    public var totalBytes: Int64
    public var freeBytes: Int64
    /// Bytes a `fill-disk` fault holds, if one does.
    public var fillerBytes: Int64?

    public var usedPercent: Int { totalBytes > 0 ? Int((totalBytes - freeBytes) * 100 / totalBytes) : 0 }
    public var summary: String {
        "disk \(usedPercent)% used, \(freeBytes / 1_048_576) MiB free of \(totalBytes / 1_048_576) MiB"
            + (fillerBytes.map { ", \($0 / 1_048_576) MiB held by a fill-disk fault" } ?? "")
    }
}

extension Lab {
    /// Where each etcd of the cluster keeps its data: the managed one's, or each member's.
    func storeDataDirectories(_ cluster: LabCluster) -> [String] {
        cluster.etcdMembers.isEmpty ? [cluster.paths.etcdData] : cluster.etcdMembers.map(\.dataDirectory)
    }

    /// Mounts a tmpfs of `storeDiskMiB` under each etcd data directory of the cluster (when asked).
    func mountStoreDisks(_ cluster: LabCluster) throws {
        guard let size = cluster.storeDiskMiB else { return }
        for path in storeDataDirectories(cluster) where !Self.isMounted(path, type: "tmpfs") {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            guard mount("tmpfs", path, "tmpfs", 0, "size=\(size)m,mode=0700") == 0 else {
                throw LabError.mountFailed(type: "a tmpfs of \(size) MiB for etcd's data", path: path, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// Unmounts the cluster's store filesystems (their data goes with them).
    func unmountStoreDisks(_ cluster: LabCluster) {
        for path in storeDataDirectories(cluster) where Self.isMounted(path, type: "tmpfs") {
            umount2(path, Int32(MNT_DETACH))
        }
    }

    static let fillerName = "meridian-fault-filler"

    /// The disk under an etcd's data.
    public static func disk(_ path: String) -> LabStoreDisk? {
        guard let space = try? FilesystemSpace.of(path) else { return nil }
        let filler = (try? FileManager.default.attributesOfItem(atPath: path + "/" + fillerName))?[.size] as? Int64
        return LabStoreDisk(path: path, totalBytes: space.totalBytes, freeBytes: space.availableBytes, fillerBytes: filler)
    }

    /// The data directory of the etcd `process` names, on a filesystem of its own.
    func storeDisk(of process: LabProcess) async throws -> String {
        let state = try requireState()
        guard case let .etcd(clusterName, memberName) = process else {
            throw LabFaultError.notSupported("fill-disk and free-disk take an etcd: etcd CLUSTER, or etcd CLUSTER/MEMBER")
        }
        let cluster = try requireCluster(clusterName, in: state)
        guard cluster.storeDiskMiB != nil else {
            throw LabFaultError.notSupported("\(clusterName)'s store is on the host's disk, which a fault must not fill; `lab up --store-disk MiB` puts each store on a filesystem of its own")
        }
        if let memberName { return try await member(memberName, of: cluster).dataDirectory }
        guard cluster.etcdMembers.isEmpty else {
            throw LabFaultError.badTarget(kind: "etcd", target: clusterName, expected: "a member of its store: \(clusterName)/m0 ... or \(clusterName)/leader")
        }
        return cluster.paths.etcdData
    }

    /// Fills the filesystem under an etcd's data, leaving `leaveBytes`, with one file the fault owns.
    public func fillDisk(_ process: LabProcess, leaveBytes: Int64 = 256 * 1024) async throws -> LabFaultReport {
        let path = try await storeDisk(of: process)
        guard let disk = Self.disk(path) else { throw LabFaultError.notRunning("a filesystem at \(path)") }
        // etcd keeps writing meanwhile and tmpfs counts in pages: what was free a moment ago may not
        // all be allocatable, so the filler shrinks a MiB at a time until it fits.
        var size = max(0, disk.freeBytes + (disk.fillerBytes ?? 0) - leaveBytes) / 4096 * 4096
        while size > 0, !(await HostCommand.attempt(["fallocate", "-l", "\(size)", path + "/" + Self.fillerName])) {
            size -= min(size, 1_048_576)
        }
        return LabFaultReport(did: "the disk under \(process) filled (\(size / 1_048_576) MiB held, \(leaveBytes / 1024) KiB left)",
                              undo: "meridian lab fault free-disk \(process)")
    }

    /// Removes what `fillDisk` wrote.
    public func freeDisk(_ process: LabProcess) async throws -> LabFaultReport {
        let path = try await storeDisk(of: process)
        let filler = path + "/" + Self.fillerName
        guard FileManager.default.fileExists(atPath: filler) else { return LabFaultReport(did: "the disk under \(process) holds no filler", undo: nil) }
        try FileManager.default.removeItem(atPath: filler)
        return LabFaultReport(did: "the disk under \(process) freed", undo: nil)
    }
}
