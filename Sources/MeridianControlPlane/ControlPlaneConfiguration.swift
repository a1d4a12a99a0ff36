import Foundation
import MeridianFlows
import MeridianCore

/// Everything `meridian control-plane` is started with: who the cluster is, its address plan,
/// where it keeps its files, and which etcd it uses (a managed child, or an external cluster).
public struct ControlPlaneConfiguration: Sendable, Hashable {
    /// An etcd cluster run by someone else; the control plane uses it with the given admin
    /// (CN `root`) client certificate.
    public struct ExternalEtcd: Sendable, Hashable {
        public var endpoints: [String]
        public var caPath: String
        public var certificatePath: String
        public var keyPath: String
        public var serverName: String

        public init(endpoints: [String], caPath: String, certificatePath: String, keyPath: String, serverName: String) {
            self.endpoints = endpoints
            self.caPath = caPath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.serverName = serverName
        }
    }

    public var clusterName: String
    public var clusterID: UInt32
    public var podCIDR: String
    public var serviceCIDR: String
    public var maxConnectedClusters: MaxConnectedClusters
    public var dataDirectory: String
    public var listenHost: String
    public var etcdClientPort: Int
    public var etcdPeerPort: Int
    public var externalEtcd: ExternalEtcd?
    /// Port of the mesh endpoint, the read-only etcd-compatible service peers import from.
    public var meshPort: Int
    /// The mesh CA, shared by the clusters of a mesh (recommended, as in Cilium); generated when
    /// absent. It signs the mesh endpoint and peer credentials, never anything etcd accepts.
    public var sharedCACertificatePath: String?
    public var sharedCAKeyPath: String?
    /// etcd's backend quota (`--quota-backend-bytes`); a store that reaches it raises NOSPACE.
    public var etcdQuotaBytes: Int64 = 2 * 1024 * 1024 * 1024
    public var etcdExecutable: String
    /// Keep an external store under its quota as the managed one is (NOSPACE: compact,
    /// defragment each member, disarm): for stores Meridian's operator runs for it, as the lab's.
    public var maintainExternalStore = false
    /// How often unused identities are looked for; one is deleted after two scans without use.
    public var identityGCInterval: Duration = .seconds(900)
    /// Where the flow relay serves `meridian observe` (HOST:PORT or unix:PATH); nil: no relay.
    public var observerListen: ObserverAddress?

    public init(
        clusterName: String, clusterID: UInt32, podCIDR: String, serviceCIDR: String,
        maxConnectedClusters: MaxConnectedClusters = .c255, dataDirectory: String,
        listenHost: String = "127.0.0.1", etcdClientPort: Int = 2379, etcdPeerPort: Int = 2380, meshPort: Int = 2381,
        externalEtcd: ExternalEtcd? = nil, sharedCACertificatePath: String? = nil, sharedCAKeyPath: String? = nil,
        etcdExecutable: String = "/usr/bin/etcd"
    ) {
        self.clusterName = clusterName
        self.clusterID = clusterID
        self.podCIDR = podCIDR
        self.serviceCIDR = serviceCIDR
        self.maxConnectedClusters = maxConnectedClusters
        self.dataDirectory = dataDirectory
        self.listenHost = listenHost
        self.etcdClientPort = etcdClientPort
        self.etcdPeerPort = etcdPeerPort
        self.externalEtcd = externalEtcd
        self.meshPort = meshPort
        self.sharedCACertificatePath = sharedCACertificatePath
        self.sharedCAKeyPath = sharedCAKeyPath
        self.etcdExecutable = etcdExecutable
    }

    /// The DNS name in the managed etcd's server certificate, verified by every client.
    public var etcdServerName: String { "etcd.\(clusterName).meridian" }

    /// The DNS name in the mesh endpoint's server certificate, verified by importing peers.
    public var meshServerName: String { "mesh.\(clusterName).meridian" }

    /// Where peers reach the mesh endpoint.
    public var meshEndpoint: String { "https://\(listenHost):\(meshPort)" }

    /// Files of the managed mode, all under the data directory.
    public var paths: ControlPlanePaths { ControlPlanePaths(dataDirectory: dataDirectory) }

    /// Rejects a configuration that could never form a valid cluster, naming the flag at fault.
    public func validate() throws(ControlPlaneError) {
        do {
            try ClusterValidation.validate(name: clusterName, id: clusterID, max: maxConnectedClusters)
        } catch {
            throw .invalidCluster(error)
        }
        for (flag, value) in [("--pod-cidr", podCIDR), ("--service-cidr", serviceCIDR)] {
            guard IPCIDR(value) != nil else { throw .invalidCIDR(flag: flag, value: value) }
        }
        if let pods = IPCIDR(podCIDR), let services = IPCIDR(serviceCIDR), pods.overlaps(services) {
            throw .podCIDROverlapsServiceCIDR(podCIDR: podCIDR, serviceCIDR: serviceCIDR)
        }
    }
}

/// Where a control plane keeps its files; the lab and the CLI find certificates here.
public struct ControlPlanePaths: Sendable, Hashable {
    public var dataDirectory: String

    public init(dataDirectory: String) { self.dataDirectory = dataDirectory }
    public var pki: String { dataDirectory + "/pki" }
    /// The store CA: this cluster's alone, never shared. etcd trusts nothing else, so no
    /// certificate issued for another cluster (or for a peer) is accepted by this cluster's etcd.
    public var caCertificate: String { pki + "/ca.crt" }
    public var caKey: String { pki + "/ca.key" }
    /// The mesh CA (possibly shared between clusters): the mesh endpoint's server certificate and
    /// peer credentials.
    public var meshCACertificate: String { pki + "/mesh-ca.crt" }
    public var meshCAKey: String { pki + "/mesh-ca.key" }
    public var meshServerCertificate: String { pki + "/mesh-server.crt" }
    public var meshServerKey: String { pki + "/mesh-server.key" }
    /// The store user the mesh endpoint relays peers' reads as (CN `mesh-relay`, store CA): it
    /// may read the exported keys and nothing else.
    public var meshRelayCertificate: String { pki + "/mesh-relay.crt" }
    public var meshRelayKey: String { pki + "/mesh-relay.key" }
    public var serverCertificate: String { pki + "/etcd-server.crt" }
    public var serverKey: String { pki + "/etcd-server.key" }
    /// The flow relay's certificate (CN `meridian-flows-relay`, store CA), which nodes' flow
    /// observers also serve with: the relay reads every node's flows with it.
    public var flowsCertificate: String { pki + "/flows.crt" }
    public var flowsKey: String { pki + "/flows.key" }
    /// A credential that reads flows through the relay and nothing else (CN
    /// `meridian-flows-reader`: no etcd user, not a mesh peer).
    public var flowsReaderCertificate: String { pki + "/flows-reader.crt" }
    public var flowsReaderKey: String { pki + "/flows-reader.key" }
    public var agentCertificate: String { pki + "/agent.crt" }
    public var agentKey: String { pki + "/agent.key" }
    /// etcd's unix socket for node agents (they run in network namespaces without loopback access
    /// to the host). etcd creates it as `NAME:PORT` in its working directory, the data directory.
    public var etcdSocket: String { dataDirectory + "/" + ManagedEtcdConfiguration.socketName }
    public var adminCertificate: String { pki + "/admin.crt" }
    public var adminKey: String { pki + "/admin.key" }
    public var etcdData: String { dataDirectory + "/etcd" }
    public var etcdLog: String { dataDirectory + "/etcd.log" }
    /// The running control plane's pid, written at start.
    public var pidFile: String { dataDirectory + "/control-plane.pid" }
    /// Exists while the control plane has finished bootstrapping and is running.
    public var readyMarker: String { dataDirectory + "/control-plane.ready" }
}

/// Why a control plane could not start or had to stop.
public enum ControlPlaneError: Error, Sendable, CustomStringConvertible {
    case invalidCluster(ClusterConfigError)
    case invalidCIDR(flag: String, value: String)
    case podCIDROverlapsServiceCIDR(podCIDR: String, serviceCIDR: String)
    case etcdUnreachable(endpoint: String, waited: Duration, detail: String)
    /// The store was bootstrapped for another cluster.
    case foreignStore(name: String, id: UInt32, wanted: String, wantedID: UInt32)
    /// The store CA is the mesh CA (a data directory from before the two were separated, or the
    /// shared CA passed as both): every meshed cluster could then sign for this etcd.
    case storeCAIsMeshCA(path: String)

    public var description: String {
        switch self {
        case let .invalidCluster(error): "invalid control-plane configuration: \(error)"
        case let .invalidCIDR(flag, value): "invalid control-plane configuration: \(flag) \(value): expected an IPv4 CIDR such as 10.1.0.0/16"
        case let .podCIDROverlapsServiceCIDR(pods, services):
            "invalid control-plane configuration: --pod-cidr \(pods) overlaps --service-cidr \(services)"
        case let .etcdUnreachable(endpoint, waited, detail): "bootstrap failed: etcd at \(endpoint) not reachable after \(waited): \(detail)"
        case let .storeCAIsMeshCA(path):
            "refusing to start: the store CA \(path) is the mesh CA, which other clusters hold too, so any of them could sign for this etcd; "
                + "move the data directory's pki/ca.*, etcd-server.*, admin.* and agent.* files aside and start again to create a store CA of this cluster's own"
        case let .foreignStore(name, id, wanted, wantedID):
            "bootstrap failed: this etcd belongs to cluster \(name) (ID \(id)); refusing to run it as \(wanted) (ID \(wantedID)): identities would be re-allocated"
        }
    }
}
