import ArgumentParser
import Foundation
import MeridianFlows
import Logging
import MeridianControlPlane
import MeridianCore
import MeridianMetrics
import UnixSignals

/// `meridian control-plane`: the per-cluster daemon. In the lab it is started by `lab up`; in a
/// real deployment it is started with the same flags (and `--etcd-endpoints` for external etcd).
struct ControlPlaneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane", abstract: "Run a cluster's control plane (etcd, identities, clustermesh export and import).")

    @Option(help: "Cluster name (lowercase, ≤32 characters).") var clusterName: String
    @Option(help: "Cluster ID, 1...max-connected-clusters.") var clusterID: UInt32
    @Option(help: "The cluster's pod CIDR (unique across the mesh).") var podCIDR: String
    @Option(help: "The cluster's service CIDR.") var serviceCIDR: String
    @Option(help: "Directory for certificates, etcd data and logs.") var dataDir: String
    @Option(help: "255 or 511.") var maxConnectedClusters: UInt32 = 255
    @Option(help: "Address the managed etcd listens on.") var listenHost: String = "127.0.0.1"
    @Option(help: "Client port of the managed etcd.") var etcdClientPort: Int = 2379
    @Option(help: "Peer port of the managed etcd.") var etcdPeerPort: Int = 2380
    @Option(parsing: .upToNextOption, help: "Use an external etcd cluster instead of starting one.") var etcdEndpoints: [String] = []
    @Option(help: "CA of the external etcd.") var etcdCA: String?
    @Option(help: "Admin (CN root) client certificate for the external etcd.") var etcdCert: String?
    @Option(help: "Key of --etcd-cert.") var etcdKey: String?
    @Option(help: "Server name in the external etcd's certificate.") var etcdServerName: String?
    @Option(help: "Port of the mesh endpoint peers import from (read-only, etcd v3 protocol).") var meshPort: Int = 2381
    @Option(help: "Mesh CA certificate, shared by meshed clusters (recommended); generated when absent.") var meshCACert: String?
    @Option(help: "Key of the mesh CA.") var meshCAKey: String?
    @Option(help: "Backend quota of the managed etcd in bytes; past it the store raises NOSPACE.") var etcdQuotaBytes: Int64 = 2 * 1024 * 1024 * 1024
    @Option(help: "etcd executable.") var etcdBinary: String = "/usr/bin/etcd"
    @Flag(help: "With --etcd-endpoints: keep that store under its quota too (NOSPACE: compact, defragment each member, disarm).")
    var maintainStore = false
    @Option(help: "Seconds between scans for unused identities; one is deleted after two scans without use.") var identityGCInterval: Int = 900
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP: bind a loopback or management address). Off when absent.")
    var metricsListen: String?
    @Option(help: "Serve the cluster's flow relay for `meridian observe` at HOST:PORT or unix:PATH (mutual TLS, store CA). Off when absent.")
    var observerListen: String?

    func validate() throws {
        guard MaxConnectedClusters(rawValue: maxConnectedClusters) != nil else {
            throw ValidationError("--max-connected-clusters must be 255 or 511, got \(maxConnectedClusters)")
        }
        if !etcdEndpoints.isEmpty && (etcdCA == nil || etcdCert == nil || etcdKey == nil || etcdServerName == nil) {
            throw ValidationError("--etcd-endpoints needs --etcd-ca, --etcd-cert, --etcd-key and --etcd-server-name")
        }
        if (meshCACert == nil) != (meshCAKey == nil) { throw ValidationError("--mesh-ca-cert and --mesh-ca-key go together") }
        guard (1...65535).contains(meshPort) else { throw ValidationError("--mesh-port must be 1...65535, got \(meshPort)") }
        guard etcdQuotaBytes >= 16 * 1024 * 1024 else { throw ValidationError("--etcd-quota-bytes must be at least 16 MiB, got \(etcdQuotaBytes)") }
        guard identityGCInterval >= 1 else { throw ValidationError("--identity-gc-interval must be at least 1 second, got \(identityGCInterval)") }
        _ = try metricsListenAddress()
        _ = try observerListen.map { try ObserverAddress(parsing: $0) }
    }

    func run() async throws {
        let logger = {
            var logger = Logger(label: "meridian.control-plane")
            logger[metadataKey: "cluster"] = "\(clusterName)"
            return logger
        }()
        let external = etcdEndpoints.isEmpty ? nil : ControlPlaneConfiguration.ExternalEtcd(
            endpoints: etcdEndpoints, caPath: etcdCA!, certificatePath: etcdCert!, keyPath: etcdKey!, serverName: etcdServerName!)
        var configuration = ControlPlaneConfiguration(
            clusterName: clusterName, clusterID: clusterID, podCIDR: podCIDR, serviceCIDR: serviceCIDR,
            maxConnectedClusters: MaxConnectedClusters(rawValue: maxConnectedClusters)!,
            dataDirectory: URL(fileURLWithPath: dataDir).standardizedFileURL.path, listenHost: listenHost,
            etcdClientPort: etcdClientPort, etcdPeerPort: etcdPeerPort, meshPort: meshPort, externalEtcd: external,
            sharedCACertificatePath: meshCACert, sharedCAKeyPath: meshCAKey, etcdExecutable: etcdBinary)
        configuration.identityGCInterval = .seconds(identityGCInterval)
        configuration.observerListen = try observerListen.map { try ObserverAddress(parsing: $0) }
        configuration.etcdQuotaBytes = etcdQuotaBytes
        configuration.maintainExternalStore = maintainStore
        let controlPlane = ControlPlane(configuration: configuration, logger: logger)
        let metricsServer = try metricsListenAddress().map { address in
            let meshMetrics = ClusterMeshMetrics(board: controlPlane.board)
            return MetricsServer(address: address, registry: MeridianMetricsSystem.bootstrap(), logger: logger,
                                 refresh: { meshMetrics.refresh() })
        }
        try await reportingErrors {
            try await withThrowingTaskGroup { group in
                group.addTask { try await controlPlane.run() }
                if let metricsServer { group.addTask { try await metricsServer.run() } }
                group.addTask {
                    for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                        logger.info("stopping", metadata: ["signal": "\(signal)"])
                        return
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }
}

extension ControlPlaneCommand {
    func metricsListenAddress() throws -> MetricsListenAddress? {
        try metricsListen.map { try parseMetricsListen($0) }
    }
}

/// `--metrics-listen` checked, with the flag named in the error.
func parseMetricsListen(_ text: String) throws -> MetricsListenAddress {
    do {
        return try MetricsListenAddress(parsing: text)
    } catch {
        throw ValidationError("--metrics-listen: \(error)")
    }
}
