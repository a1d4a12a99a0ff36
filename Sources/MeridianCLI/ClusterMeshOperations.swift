import Foundation
import MeridianControlPlane
import MeridianCore
import MeridianEtcd
import MeridianPKI
import MeridianStore

/// What the CLI knows of one cluster when meshing it: its context, settings and CA.
struct ClusterAccessInfo: Sendable {
    var context: MeridianContext
    var settings: ClusterSettings
    var ca: CertificateAuthorityRecord
    var meshEnabled: Bool

    static func load(_ context: MeridianContext, client: EtcdClient) async throws -> ClusterAccessInfo {
        guard let settingsKV = try await client.get(KeyLayout.clusterSettings) else {
            throw CLIError("context \(context.name): cluster has no published settings; is its control plane running?")
        }
        let settings = try StoreCoding.decode(ClusterSettings.self, from: settingsKV.value, key: settingsKV.key)
        guard let caKV = try await client.get(KeyLayout.certificateAuthority) else {
            throw CLIError("context \(context.name): cluster CA not published; is its control plane running?")
        }
        let ca = try StoreCoding.decode(CertificateAuthorityRecord.self, from: caKV.value, key: caKV.key)
        let mesh = try await client.get(KeyLayout.clusterMeshSettings)
            .map { try StoreCoding.decode(ClusterMeshSettings.self, from: $0.value, key: $0.key) }
        return ClusterAccessInfo(context: context, settings: settings, ca: ca, meshEnabled: mesh?.enabled ?? false)
    }
}

/// How `connect` pairs the clusters it is given.
enum ConnectionMode: String, CaseIterable, Sendable {
    case bidirectional, unicast, mesh

    /// Ordered (importer, exporter) pairs: the importer reads the exporter's state.
    func pairs(source: String, destinations: [String]) -> [(importer: String, exporter: String)] {
        switch self {
        case .unicast:
            return destinations.map { (source, $0) }
        case .bidirectional:
            return destinations.flatMap { [(source, $0), ($0, source)] }
        case .mesh:
            let all = [source] + destinations
            return all.flatMap { a in all.filter { $0 != a }.map { (a, $0) } }
        }
    }
}

/// The checks `clustermesh connect` makes before touching anything, with the reason each
/// failure matters.
enum ConnectValidation {
    static func validate(_ a: ClusterAccessInfo, _ b: ClusterAccessInfo, allowMismatchingCA: Bool) throws {
        for info in [a, b] where !info.meshEnabled {
            throw CLIError("clustermesh is not enabled on \(info.settings.name); run `meridian clustermesh enable --context \(info.context.name)` first")
        }
        for info in [a, b] {
            guard let max = MaxConnectedClusters(rawValue: info.settings.maxConnectedClusters) else {
                throw CLIError("\(info.settings.name): unsupported maxConnectedClusters \(info.settings.maxConnectedClusters)")
            }
            do {
                try ClusterValidation.validate(name: info.settings.name, id: info.settings.id, max: max)
            } catch {
                throw CLIError("\(info.settings.name): \(error)")
            }
        }
        guard a.settings.name != b.settings.name else {
            throw CLIError("cannot connect \(a.context.name) and \(b.context.name): both clusters are named \(a.settings.name); cluster names must be unique in a mesh")
        }
        guard a.settings.id != b.settings.id else {
            throw CLIError("cannot connect \(a.settings.name) and \(b.settings.name): both have cluster ID \(a.settings.id); identities would collide")
        }
        guard a.settings.maxConnectedClusters == b.settings.maxConnectedClusters else {
            throw CLIError("cannot connect \(a.settings.name) (maxConnectedClusters \(a.settings.maxConnectedClusters)) and \(b.settings.name) (\(b.settings.maxConnectedClusters)): the value must be equal across the mesh")
        }
        if let podsA = IPCIDR(a.settings.podCIDR), let podsB = IPCIDR(b.settings.podCIDR), podsA.overlaps(podsB) {
            throw CLIError("cannot connect \(a.settings.name) and \(b.settings.name): pod CIDRs \(a.settings.podCIDR) and \(b.settings.podCIDR) overlap; pod IPs must be unique across the mesh")
        }
        // Services are looked up before anything else, so a pod address inside the other
        // cluster's service CIDR could be shadowed there by a service on the same address.
        for (pods, services) in [(a, b), (b, a)] {
            if let podCIDR = IPCIDR(pods.settings.podCIDR), let serviceCIDR = IPCIDR(services.settings.serviceCIDR), podCIDR.overlaps(serviceCIDR) {
                throw CLIError("cannot connect \(a.settings.name) and \(b.settings.name): \(pods.settings.name)'s pod CIDR \(pods.settings.podCIDR) overlaps \(services.settings.name)'s service CIDR \(services.settings.serviceCIDR); \(services.settings.name) would take those pod addresses for its services")
            }
        }
        let skiA = try CertificateInspection.subjectKeyIdentifier(ofCertificatePEM: a.ca.certificatePEM)
        let skiB = try CertificateInspection.subjectKeyIdentifier(ofCertificatePEM: b.ca.certificatePEM)
        if skiA != skiB && !allowMismatchingCA {
            throw CLIError("cannot connect \(a.settings.name) and \(b.settings.name): their CAs differ; use a shared CA or pass --allow-mismatching-ca")
        }
    }
}

enum ClusterMeshOperations {
    /// Lets `importer` read `exporter`: a read-only user and certificate in the exporter, and a
    /// peer record (with that certificate) in the importer.
    static func grantImport(importer: ClusterAccessInfo, importerClient: EtcdClient,
                            exporter: ClusterAccessInfo, exporterClient: EtcdClient) async throws {
        let ca = try CertificateAuthority(certificatePEM: exporter.ca.certificatePEM, privateKeyPEM: exporter.ca.privateKeyPEM)
        let user = ClusterAccess.remoteUser(peer: importer.settings.name)
        let certificate = try ca.issue(CertificateRequest(commonName: user, usage: .client, validity: .days(1095)))
        try await ClusterAccess.createRemoteRole(exporterClient, cluster: exporter.settings.name)
        try await ClusterAccess.addRemoteUser(exporterClient, peer: importer.settings.name)
        let peer = PeerRecord(
            name: exporter.settings.name, id: exporter.settings.id, endpoints: exporter.settings.clientEndpoints,
            serverName: exporter.settings.serverName, caPEM: exporter.ca.certificatePEM,
            certificatePEM: certificate.certificatePEM, privateKeyPEM: certificate.privateKeyPEM)
        try await importerClient.put(KeyLayout.peer(exporter.settings.name), StoreCoding.encode(peer))
    }

    /// Stops `importer` reading `exporter`: removes the peer record (the importer's control plane
    /// drains the data) and the exporter's user for it.
    static func revokeImport(importer: ClusterAccessInfo, importerClient: EtcdClient,
                             exporter: ClusterAccessInfo, exporterClient: EtcdClient) async throws {
        try await importerClient.delete(KeyLayout.peer(exporter.settings.name))
        try await exporterClient.deleteUser(ClusterAccess.remoteUser(peer: importer.settings.name))
    }
}

/// Runs `body` with a connected client for each context, all open at once.
func withClients<R: Sendable>(_ contexts: [MeridianContext], _ body: ([EtcdClient]) async throws -> R) async throws -> R {
    func open(_ index: Int, _ acc: [EtcdClient]) async throws -> R {
        guard index < contexts.count else { return try await body(acc) }
        return try await EtcdClient.withClient(try contexts[index].clientConfiguration()) { client in
            try await open(index + 1, acc + [client])
        }
    }
    return try await open(0, [])
}
