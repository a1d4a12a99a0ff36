import Foundation
import MeridianCore
import MeridianEtcd
import MeridianPKI
import MeridianStore

/// Creates (once) and reloads the certificates of a managed cluster: its CA (or the shared one),
/// the etcd server certificate and the administrator's client certificate (CN `root`).
public enum ClusterPKI {
    public static func ensure(_ configuration: ControlPlaneConfiguration) throws -> CertificateAuthority {
        let paths = configuration.paths
        let fm = FileManager.default
        let ca: CertificateAuthority
        if let certPath = configuration.sharedCACertificatePath, let keyPath = configuration.sharedCAKeyPath {
            ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: certPath, encoding: .utf8),
                                          privateKeyPEM: String(contentsOfFile: keyPath, encoding: .utf8))
            try PEMFiles.write(certificatePEM: ca.certificatePEM, to: paths.caCertificate, privateKeyPEM: ca.privateKeyPEM, to: paths.caKey)
        } else if fm.fileExists(atPath: paths.caCertificate), fm.fileExists(atPath: paths.caKey) {
            ca = try CertificateAuthority(certificatePEM: String(contentsOfFile: paths.caCertificate, encoding: .utf8),
                                          privateKeyPEM: String(contentsOfFile: paths.caKey, encoding: .utf8))
        } else {
            ca = try CertificateAuthority.create(commonName: "meridian-ca-\(configuration.clusterName)")
            try PEMFiles.write(certificatePEM: ca.certificatePEM, to: paths.caCertificate, privateKeyPEM: ca.privateKeyPEM, to: paths.caKey)
        }
        if !isCurrent(paths.serverCertificate, issuedBy: ca) {
            let server = try ca.issue(CertificateRequest(
                commonName: configuration.etcdServerName, usage: .serverAndClient,
                dnsNames: [configuration.etcdServerName, "localhost"],
                ipAddresses: ["127.0.0.1", "::1"] + (configuration.listenHost == "127.0.0.1" ? [] : [configuration.listenHost]),
                validity: .days(825)))
            try PEMFiles.write(certificatePEM: server.certificatePEM, to: paths.serverCertificate, privateKeyPEM: server.privateKeyPEM, to: paths.serverKey)
        }
        if !isCurrent(paths.agentCertificate, issuedBy: ca) {
            let agent = try ca.issue(CertificateRequest(commonName: ClusterAccess.agentUser, usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: agent.certificatePEM, to: paths.agentCertificate, privateKeyPEM: agent.privateKeyPEM, to: paths.agentKey)
        }
        if !isCurrent(paths.adminCertificate, issuedBy: ca) {
            let admin = try ca.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: admin.certificatePEM, to: paths.adminCertificate, privateKeyPEM: admin.privateKeyPEM, to: paths.adminKey)
        }
        return ca
    }

    private static func isCurrent(_ path: String, issuedBy ca: CertificateAuthority) -> Bool {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return CertificateInspection.verify(certificatePEM: pem, issuedBy: ca.certificatePEM, at: Date().addingTimeInterval(86400))
    }

    /// Client configuration for the administrator of a managed cluster.
    public static func adminClientConfiguration(_ configuration: ControlPlaneConfiguration) throws -> EtcdClientConfiguration {
        if let external = configuration.externalEtcd {
            return try EtcdClientConfiguration(
                endpoint: EtcdEndpoint(url: external.endpoints.first ?? ""),
                tls: EtcdTLS(caPEM: String(contentsOfFile: external.caPath, encoding: .utf8),
                             certificatePEM: String(contentsOfFile: external.certificatePath, encoding: .utf8),
                             privateKeyPEM: String(contentsOfFile: external.keyPath, encoding: .utf8),
                             serverName: external.serverName))
        }
        let paths = configuration.paths
        return EtcdClientConfiguration(
            endpoint: .tcp(host: configuration.listenHost, port: configuration.etcdClientPort),
            tls: EtcdTLS(caPEM: try String(contentsOfFile: paths.caCertificate, encoding: .utf8),
                         certificatePEM: try String(contentsOfFile: paths.adminCertificate, encoding: .utf8),
                         privateKeyPEM: try String(contentsOfFile: paths.adminKey, encoding: .utf8),
                         serverName: configuration.etcdServerName))
    }
}

/// The etcd RBAC that makes a cluster safe to mesh: `root` for administrators (authenticated by
/// certificate CN), and the read-only `remote` role a peer's certificate is bound to.
public enum ClusterAccess {
    public static let remoteRole = "remote"

    /// The etcd user a peer named `peer` authenticates as (its certificate's CN).
    public static func remoteUser(peer: String) -> String { "remote-\(peer)" }

    /// Turns on authentication with `root` as the only administrator. Idempotent.
    public static func enableAuthentication(_ client: EtcdClient) async throws(EtcdError) {
        try await client.addRole("root")
        try await client.addCertificateUser("root")
        try await client.grantRole(user: "root", role: "root")
        try await client.enableAuth()
    }

    /// Creates the `remote` role: read-only on the heartbeat, the exported state, this cluster's
    /// own config and its sync canaries; nothing under `meridian/` and no write anywhere.
    public static func createRemoteRole(_ client: EtcdClient, cluster: String) async throws(EtcdError) {
        try await client.addRole(remoteRole)
        try await client.grant(role: remoteRole, .read, key: KeyLayout.heartbeat, prefix: false)
        try await client.grant(role: remoteRole, .read, key: KeyLayout.statePrefix, prefix: true)
        try await client.grant(role: remoteRole, .read, key: KeyLayout.clusterConfig(cluster), prefix: false)
        try await client.grant(role: remoteRole, .read, key: KeyLayout.syncCanaries(of: cluster), prefix: true)
    }

    /// The etcd user node agents authenticate as (their certificate's CN).
    public static let agentUser = "meridian-agent"
    static let agentRole = "agent"

    /// Creates the `agent` role: what a node agent reads (settings, resources, the cluster's
    /// state) and writes (its node, endpoints, identities, pod statuses, its pod CIDR claim).
    /// The CA and other secrets stay out of reach.
    public static func createAgentRole(_ client: EtcdClient) async throws(EtcdError) {
        try await client.addRole(agentRole)
        try await client.grant(role: agentRole, .read, key: KeyLayout.clusterSettings, prefix: false)
        try await client.grant(role: agentRole, .read, key: KeyLayout.resourcesPrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.statePrefix, prefix: true)
        try await client.grant(role: agentRole, .read, key: KeyLayout.cachePrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.podStatusPrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.podCIDRPrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.nodeStatusPrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.identityIndexPrefix, prefix: true)
        try await client.addCertificateUser(agentUser)
        try await client.grantRole(user: agentUser, role: agentRole)
    }

    public static func addRemoteUser(_ client: EtcdClient, peer: String) async throws(EtcdError) {
        try await client.addCertificateUser(remoteUser(peer: peer))
        try await client.grantRole(user: remoteUser(peer: peer), role: remoteRole)
    }
}

/// First-start and every-start duties of a control plane against its etcd: RBAC, the published
/// settings and CA, and the `default` namespace.
enum ClusterBootstrap {
    static func run(_ client: EtcdClient, configuration: ControlPlaneConfiguration, ca: CertificateAuthority) async throws {
        try await ClusterAccess.enableAuthentication(client)
        try await ClusterAccess.createAgentRole(client)
        let endpoints: [String] = configuration.externalEtcd?.endpoints
            ?? ["https://\(configuration.listenHost):\(configuration.etcdClientPort)"]
        let settings = ClusterSettings(
            name: configuration.clusterName, id: configuration.clusterID,
            podCIDR: configuration.podCIDR, serviceCIDR: configuration.serviceCIDR,
            maxConnectedClusters: configuration.maxConnectedClusters.rawValue,
            clientEndpoints: endpoints,
            serverName: configuration.externalEtcd?.serverName ?? configuration.etcdServerName)
        if let existing = try await client.get(KeyLayout.clusterSettings),
           let old = try? StoreCoding.decode(ClusterSettings.self, from: existing.value, key: existing.key),
           old.name != settings.name || old.id != settings.id {
            throw ControlPlaneError.foreignStore(name: old.name, id: old.id, wanted: settings.name, wantedID: settings.id)
        }
        try await client.put(KeyLayout.clusterSettings, StoreCoding.encode(settings))
        try await client.put(KeyLayout.certificateAuthority, StoreCoding.encode(
            CertificateAuthorityRecord(certificatePEM: ca.certificatePEM, privateKeyPEM: ca.privateKeyPEM)))
        let defaultNamespace = KubernetesObject.namespace(Namespace(metadata: ObjectMeta(name: "default")))
        _ = try await client.create(KeyLayout.resource(plural: ResourceKind.namespace.plural, namespace: nil, name: "default"),
                                    StoreCoding.encode(defaultNamespace))
    }
}
