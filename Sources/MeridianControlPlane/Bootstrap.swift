import Foundation
import MeridianCore
import MeridianEtcd
import MeridianFlows
import MeridianPKI
import MeridianStore

/// The two certificate authorities of a cluster. The store CA is the cluster's alone and is the
/// only one its etcd trusts; the mesh CA (shared between clusters, as Cilium recommends) signs
/// only what peers see: the mesh endpoint's server certificate and their read-only credentials.
/// Keeping them apart is what stops a credential of one cluster from being accepted by another
/// cluster's etcd, whatever CN it carries.
public struct ClusterAuthorities: Sendable {
    public let store: CertificateAuthority
    public let mesh: CertificateAuthority
}

/// Creates (once) and reloads the certificates of a managed cluster: its store CA, the etcd
/// server certificate, the agents' and administrator's client certificates, the mesh CA (or the
/// shared one) and the mesh endpoint's server certificate.
public enum ClusterPKI {
    public static func ensure(_ configuration: ControlPlaneConfiguration) throws -> ClusterAuthorities {
        let paths = configuration.paths
        let store = try loadOrCreate(certificate: paths.caCertificate, key: paths.caKey,
                                     commonName: "meridian-store-ca-\(configuration.clusterName)")
        let mesh: CertificateAuthority
        if let certPath = configuration.sharedCACertificatePath, let keyPath = configuration.sharedCAKeyPath {
            mesh = try CertificateAuthority(certificatePEM: String(contentsOfFile: certPath, encoding: .utf8),
                                            privateKeyPEM: String(contentsOfFile: keyPath, encoding: .utf8))
            try PEMFiles.write(certificatePEM: mesh.certificatePEM, to: paths.meshCACertificate, privateKeyPEM: mesh.privateKeyPEM, to: paths.meshCAKey)
        } else {
            mesh = try loadOrCreate(certificate: paths.meshCACertificate, key: paths.meshCAKey,
                                    commonName: "meridian-mesh-ca-\(configuration.clusterName)")
        }
        let addresses = ["127.0.0.1", "::1"] + (configuration.listenHost == "127.0.0.1" ? [] : [configuration.listenHost])
        if !isCurrent(paths.serverCertificate, issuedBy: store) {
            let server = try store.issue(CertificateRequest(
                commonName: configuration.etcdServerName, usage: .serverAndClient,
                dnsNames: [configuration.etcdServerName, "localhost"], ipAddresses: addresses, validity: .days(825)))
            try PEMFiles.write(certificatePEM: server.certificatePEM, to: paths.serverCertificate, privateKeyPEM: server.privateKeyPEM, to: paths.serverKey)
        }
        if !isCurrent(paths.agentCertificate, issuedBy: store) {
            let agent = try store.issue(CertificateRequest(commonName: ClusterAccess.agentUser, usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: agent.certificatePEM, to: paths.agentCertificate, privateKeyPEM: agent.privateKeyPEM, to: paths.agentKey)
        }
        if !isCurrent(paths.adminCertificate, issuedBy: store) {
            let admin = try store.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: admin.certificatePEM, to: paths.adminCertificate, privateKeyPEM: admin.privateKeyPEM, to: paths.adminKey)
        }
        if !isCurrent(paths.meshRelayCertificate, issuedBy: store) {
            let relay = try store.issue(CertificateRequest(commonName: ClusterAccess.meshRelayUser, usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: relay.certificatePEM, to: paths.meshRelayCertificate, privateKeyPEM: relay.privateKeyPEM, to: paths.meshRelayKey)
        }
        if !isCurrent(paths.flowsCertificate, issuedBy: store) {
            let flows = try store.issue(CertificateRequest(
                commonName: ObserverCredentials.relayName, usage: .serverAndClient, dnsNames: [ObserverTLS.serverName], validity: .days(825)))
            try PEMFiles.write(certificatePEM: flows.certificatePEM, to: paths.flowsCertificate, privateKeyPEM: flows.privateKeyPEM, to: paths.flowsKey)
        }
        if !isCurrent(paths.flowsReaderCertificate, issuedBy: store) {
            let reader = try store.issue(CertificateRequest(commonName: ObserverCredentials.readerName, usage: .client, validity: .days(825)))
            try PEMFiles.write(certificatePEM: reader.certificatePEM, to: paths.flowsReaderCertificate,
                               privateKeyPEM: reader.privateKeyPEM, to: paths.flowsReaderKey)
        }
        if !isCurrent(paths.meshServerCertificate, issuedBy: mesh) {
            let server = try mesh.issue(CertificateRequest(
                commonName: configuration.meshServerName, usage: .server,
                dnsNames: [configuration.meshServerName, "localhost"], ipAddresses: addresses, validity: .days(825)))
            try PEMFiles.write(certificatePEM: server.certificatePEM, to: paths.meshServerCertificate, privateKeyPEM: server.privateKeyPEM, to: paths.meshServerKey)
        }
        guard store.subjectKeyIdentifier != mesh.subjectKeyIdentifier else {
            throw ControlPlaneError.storeCAIsMeshCA(path: paths.caCertificate)
        }
        return ClusterAuthorities(store: store, mesh: mesh)
    }

    private static func loadOrCreate(certificate: String, key: String, commonName: String) throws -> CertificateAuthority {
        if FileManager.default.fileExists(atPath: certificate), FileManager.default.fileExists(atPath: key) {
            return try CertificateAuthority(certificatePEM: String(contentsOfFile: certificate, encoding: .utf8),
                                            privateKeyPEM: String(contentsOfFile: key, encoding: .utf8))
        }
        let ca = try CertificateAuthority.create(commonName: commonName)
        try PEMFiles.write(certificatePEM: ca.certificatePEM, to: certificate, privateKeyPEM: ca.privateKeyPEM, to: key)
        return ca
    }

    private static func isCurrent(_ path: String, issuedBy ca: CertificateAuthority) -> Bool {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return CertificateInspection.verify(certificatePEM: pem, issuedBy: ca.certificatePEM, at: Date().addingTimeInterval(86400))
    }

    /// Client configuration of the mesh endpoint's relay: the store as the `mesh-relay` user;
    /// with an external etcd whose CA is not this cluster's store CA (so the relay's
    /// certificate means nothing to it), the administrator's.
    public static func meshRelayClientConfiguration(_ configuration: ControlPlaneConfiguration) throws -> EtcdClientConfiguration {
        var relay = try adminClientConfiguration(configuration)
        let paths = configuration.paths
        if let external = configuration.externalEtcd,
           (try? String(contentsOfFile: external.caPath, encoding: .utf8)) != (try? String(contentsOfFile: paths.caCertificate, encoding: .utf8)) {
            return relay
        }
        relay.tls?.certificatePEM = try String(contentsOfFile: paths.meshRelayCertificate, encoding: .utf8)
        relay.tls?.privateKeyPEM = try String(contentsOfFile: paths.meshRelayKey, encoding: .utf8)
        return relay
    }

    /// Client configuration for the administrator of a managed cluster.
    public static func adminClientConfiguration(_ configuration: ControlPlaneConfiguration) throws -> EtcdClientConfiguration {
        if let external = configuration.externalEtcd {
            return try EtcdClientConfiguration(
                endpoints: external.endpoints.map { url throws(EtcdError) in try EtcdEndpoint(url: url) },
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

/// The etcd RBAC of a cluster's own components: `root` for administrators and the `agent` role
/// of node agents, both authenticated by certificate CN (certificates of the store CA only).
/// Peers get no etcd user at all: they read through the mesh endpoint.
public enum ClusterAccess {
    /// The etcd role earlier versions gave peers' users; deleted at every start.
    static let retiredRemoteRole = "remote"

    /// The CN of peer credentials: names the peer in logs; authorization is by fingerprint.
    public static func remoteUser(peer: String) -> String { "remote-\(peer)" }

    /// Turns on authentication with `root` as the only administrator. Idempotent.
    public static func enableAuthentication(_ client: EtcdClient) async throws(EtcdError) {
        try await client.addRole("root")
        try await client.addCertificateUser("root")
        try await client.grantRole(user: "root", role: "root")
        try await client.enableAuth()
    }

    /// The etcd user the mesh endpoint relays peers' reads as.
    public static let meshRelayUser = "mesh-relay"
    static let meshRelayRole = "mesh-relay"

    /// Creates the `mesh-relay` role: read on exactly what peers may read
    /// (`KeyLayout.meshReadable`), so that even a flaw in the endpoint's own range check could
    /// not expose anything else.
    public static func createMeshRelayRole(_ client: EtcdClient, cluster: String) async throws(EtcdError) {
        try await client.addRole(meshRelayRole)
        for range in KeyLayout.meshReadable(cluster: cluster) {
            try await client.grant(role: meshRelayRole, .read, key: range.key, prefix: range.isPrefix)
        }
        try await client.addCertificateUser(meshRelayUser)
        try await client.grantRole(user: meshRelayUser, role: meshRelayRole)
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
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.encryptionStatusPrefix, prefix: true)
        try await client.grant(role: agentRole, .read, key: KeyLayout.encryptionRotationPrefix, prefix: true)
        try await client.grant(role: agentRole, .readWrite, key: KeyLayout.identityIndexPrefix, prefix: true)
        try await client.addCertificateUser(agentUser)
        try await client.grantRole(user: agentUser, role: agentRole)
    }
}

/// First-start and every-start duties of a control plane against its etcd: RBAC, the published
/// settings and mesh CA certificate, and the `default` namespace.
enum ClusterBootstrap {
    static func run(_ client: EtcdClient, configuration: ControlPlaneConfiguration, meshCA: CertificateAuthority) async throws {
        try await ClusterAccess.enableAuthentication(client)
        try await ClusterAccess.createAgentRole(client)
        // Peers read through the mesh endpoint only: the role earlier versions gave their etcd
        // users goes, and with it whatever those users could read.
        try await client.deleteRole(ClusterAccess.retiredRemoteRole)
        try await ClusterAccess.createMeshRelayRole(client, cluster: configuration.clusterName)
        let settings = ClusterSettings(
            name: configuration.clusterName, id: configuration.clusterID,
            podCIDR: configuration.podCIDR, serviceCIDR: configuration.serviceCIDR,
            maxConnectedClusters: configuration.maxConnectedClusters.rawValue,
            clientEndpoints: [configuration.meshEndpoint],
            serverName: configuration.meshServerName)
        if let existing = try await client.get(KeyLayout.clusterSettings),
           let old = try? StoreCoding.decode(ClusterSettings.self, from: existing.value, key: existing.key),
           old.name != settings.name || old.id != settings.id {
            throw ControlPlaneError.foreignStore(name: old.name, id: old.id, wanted: settings.name, wantedID: settings.id)
        }
        try await client.put(KeyLayout.clusterSettings, StoreCoding.encode(settings))
        try await client.put(KeyLayout.meshCertificateAuthority, StoreCoding.encode(
            MeshCertificateAuthorityRecord(certificatePEM: meshCA.certificatePEM)))
        try await client.delete(KeyLayout.retiredCertificateAuthority)
        let defaultNamespace = KubernetesObject.namespace(Namespace(metadata: ObjectMeta(name: "default")))
        _ = try await client.create(KeyLayout.resource(plural: ResourceKind.namespace.plural, namespace: nil, name: "default"),
                                    StoreCoding.encode(defaultNamespace))
    }
}
