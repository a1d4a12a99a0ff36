import Foundation
import MeridianControlPlane
import MeridianCore
import MeridianEtcd
import MeridianPKI
import MeridianStore

/// What an administrator knows of one cluster when meshing it: its context, settings and the
/// certificate of its mesh CA.
public struct ClusterAccessInfo: Sendable {
    public var context: MeridianContext
    public var settings: ClusterSettings
    public var ca: MeshCertificateAuthorityRecord
    public var meshEnabled: Bool

    public init(context: MeridianContext, settings: ClusterSettings, ca: MeshCertificateAuthorityRecord, meshEnabled: Bool) {
        self.context = context
        self.settings = settings
        self.ca = ca
        self.meshEnabled = meshEnabled
    }

    public static func load(_ context: MeridianContext, client: any KeyValueStore) async throws -> ClusterAccessInfo {
        guard let settingsKV = try await client.get(KeyLayout.clusterSettings) else {
            throw AdminError.notBootstrapped(context: context.name, missing: "settings")
        }
        let settings = try StoreCoding.decode(ClusterSettings.self, from: settingsKV.value, key: settingsKV.key)
        guard let caKV = try await client.get(KeyLayout.meshCertificateAuthority) else {
            throw AdminError.notBootstrapped(context: context.name, missing: "mesh CA")
        }
        let ca = try StoreCoding.decode(MeshCertificateAuthorityRecord.self, from: caKV.value, key: caKV.key)
        let mesh = try await client.get(KeyLayout.clusterMeshSettings)
            .map { try StoreCoding.decode(ClusterMeshSettings.self, from: $0.value, key: $0.key) }
        return ClusterAccessInfo(context: context, settings: settings, ca: ca, meshEnabled: mesh?.enabled ?? false)
    }
}

/// How `connect` pairs the clusters it is given.
public enum ConnectionMode: String, CaseIterable, Sendable {
    case bidirectional, unicast, mesh

    /// Ordered (importer, exporter) pairs: the importer reads the exporter's state.
    public func pairs(source: String, destinations: [String]) -> [(importer: String, exporter: String)] {
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
public enum ConnectValidation {
    public static func validate(_ a: ClusterAccessInfo, _ b: ClusterAccessInfo, allowMismatchingCA: Bool) throws {
        for info in [a, b] where !info.meshEnabled {
            throw AdminError.meshNotEnabled(cluster: info.settings.name, context: info.context.name)
        }
        for info in [a, b] {
            guard let max = MaxConnectedClusters(rawValue: info.settings.maxConnectedClusters) else {
                throw AdminError.invalidCluster(cluster: info.settings.name, detail: "unsupported maxConnectedClusters \(info.settings.maxConnectedClusters)")
            }
            do {
                try ClusterValidation.validate(name: info.settings.name, id: info.settings.id, max: max)
            } catch {
                throw AdminError.invalidCluster(cluster: info.settings.name, detail: "\(error)")
            }
        }
        guard a.settings.name != b.settings.name else {
            throw AdminError.cannotConnect(a.context.name, b.context.name, .sameName(a.settings.name))
        }
        let (nameA, nameB) = (a.settings.name, b.settings.name)
        guard a.settings.id != b.settings.id else { throw AdminError.cannotConnect(nameA, nameB, .sameID(a.settings.id)) }
        guard a.settings.maxConnectedClusters == b.settings.maxConnectedClusters else {
            throw AdminError.cannotConnect(nameA, nameB, .maxConnectedClustersDiffer(a.settings.maxConnectedClusters, b.settings.maxConnectedClusters))
        }
        if let podsA = IPCIDR(a.settings.podCIDR), let podsB = IPCIDR(b.settings.podCIDR), podsA.overlaps(podsB) {
            throw AdminError.cannotConnect(nameA, nameB, .podCIDRsOverlap(a.settings.podCIDR, b.settings.podCIDR))
        }
        // Services are looked up before anything else, so a pod address inside the other
        // cluster's service CIDR could be shadowed there by a service on the same address.
        for (pods, services) in [(a, b), (b, a)] {
            if let podCIDR = IPCIDR(pods.settings.podCIDR), let serviceCIDR = IPCIDR(services.settings.serviceCIDR), podCIDR.overlaps(serviceCIDR) {
                throw AdminError.cannotConnect(nameA, nameB, .podCIDRInServiceCIDR(
                    podCluster: pods.settings.name, podCIDR: pods.settings.podCIDR,
                    serviceCluster: services.settings.name, serviceCIDR: services.settings.serviceCIDR))
            }
        }
        let skiA = try CertificateInspection.subjectKeyIdentifier(ofCertificatePEM: a.ca.certificatePEM)
        let skiB = try CertificateInspection.subjectKeyIdentifier(ofCertificatePEM: b.ca.certificatePEM)
        if skiA != skiB && !allowMismatchingCA {
            throw AdminError.cannotConnect(nameA, nameB, .differentCAs)
        }
    }
}

extension ConnectValidation {
    /// Refuses to mesh a cluster whose nodes encrypt (publish a WireGuard key) with one that has
    /// nodes that do not, unless allowed: traffic between such nodes is not encrypted, which an
    /// administrator who turned encryption on would not expect. `nodes` maps each of the two
    /// clusters to its registered nodes and whether each publishes a key; clusters without
    /// nodes say nothing yet and pass.
    public static func validateEncryption(_ a: String, _ b: String, nodes: [String: [String: Bool]], allowMixed: Bool) throws {
        guard !allowMixed else { return }
        for (encrypting, plain) in [(a, b), (b, a)] {
            let keyed = nodes[encrypting]?.values.contains(true) ?? false
            let unkeyed = (nodes[plain] ?? [:]).filter { !$0.value }.keys.sorted()
            if keyed && !unkeyed.isEmpty {
                throw AdminError.cannotConnect(a, b, .mixedEncryption(encrypting: encrypting, plain: plain, plainNodes: unkeyed))
            }
        }
    }

    /// The cluster's registered nodes and whether each publishes a WireGuard key.
    static func encryptingNodes(_ cluster: String, client: any KeyValueStore) async throws -> [String: Bool] {
        var nodes: [String: Bool] = [:]
        for item in try await client.list(prefix: MeshKind.nodes.statePrefix(cluster: cluster)).items {
            guard let record = try? StoreCoding.decode(NodeRecord.self, from: item.value, key: item.key) else { continue }
            nodes[record.name] = !record.wireguardPublicKey.isEmpty
        }
        return nodes
    }

    /// The private IPv4 ranges a pod CIDR may come from (RFC 1918 and the shared range of RFC 6598).
    static let privateRanges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"].compactMap(IPCIDR.init)

    /// What the exporter's records will be allowed to claim in the importer (its pod CIDR) must
    /// not reach anything the importer already has: its nodes, and the clusters it already
    /// imports (their pod CIDRs and cluster IDs). The pod CIDR must be private and at most a /8.
    public static func validateClaims(of exporter: ClusterAccessInfo, into importer: ClusterAccessInfo,
                                      importerClient: any KeyValueStore) async throws {
        let (nameA, nameB) = (importer.settings.name, exporter.settings.name)
        guard let pods = IPCIDR(exporter.settings.podCIDR), pods.prefixLength >= 8,
              privateRanges.contains(where: { $0.contains(pods) })
        else {
            throw AdminError.cannotConnect(nameA, nameB, .podCIDRNotPrivate(cluster: nameB, podCIDR: exporter.settings.podCIDR))
        }
        for item in try await importerClient.list(prefix: MeshKind.nodes.statePrefix(cluster: nameA)).items {
            guard let node = try? CiliumJSON.decoder().decode(NodeRecord.self, from: item.value) else { continue }
            for address in node.ipAddresses {
                if let ip = IPAddress(address.ip), pods.contains(ip) {
                    throw AdminError.cannotConnect(nameA, nameB, .podCIDRCoversNode(podCluster: nameB, podCIDR: pods.description,
                                                                                     node: node.name, address: address.ip))
                }
            }
        }
        for item in try await importerClient.list(prefix: KeyLayout.peersPrefix).items {
            guard let peer = try? StoreCoding.decode(PeerRecord.self, from: item.value, key: item.key), peer.name != nameB else { continue }
            if peer.id == exporter.settings.id {
                throw AdminError.cannotConnect(nameA, nameB, .clashesWithPeer(peer: peer.name, detail: "\(nameB) has cluster ID \(peer.id)"))
            }
            if let other = peer.podCIDR.flatMap(IPCIDR.init), other.overlaps(pods) {
                throw AdminError.cannotConnect(nameA, nameB, .clashesWithPeer(
                    peer: peer.name, detail: "\(nameB)'s pod CIDR \(pods) overlaps \(peer.name)'s \(other)"))
            }
        }
    }
}

/// The clustermesh operations behind `meridian clustermesh ...`, shaped like the cilium CLI's.
public enum ClusterMesh {
    /// Turns clustermesh on with these knobs and waits until the control plane has published the
    /// cluster's config. Returns the cluster's settings.
    public static func enable(_ context: MeridianContext, heartbeatInterval: Double, cacheTTL: Double, exportScope: ExportScope = .all,
                              wait: Duration = .seconds(30)) async throws -> ClusterSettings {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let info = try await ClusterAccessInfo.load(context, client: client)
            let settings = ClusterMeshSettings(enabled: true, heartbeatIntervalSeconds: heartbeatInterval, cacheTTLSeconds: cacheTTL,
                                               exportScope: exportScope)
            try await client.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(settings))
            let deadline = ContinuousClock.now + wait
            while try await client.get(KeyLayout.clusterConfig(info.settings.name)) == nil {
                guard ContinuousClock.now < deadline else { throw AdminError.exportNotPublished(cluster: info.settings.name, waited: wait) }
                try await Task.sleep(for: .milliseconds(100))
            }
            return info.settings
        }
    }

    /// Turns clustermesh off; the control plane withdraws the export.
    public static func disable(_ context: MeridianContext) async throws {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            _ = try await client.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: false)))
        }
    }

    /// Connects `source` with every destination as `mode` pairs them, after checking every pair
    /// (nothing is written when one fails). Returns the clusters' names, source first.
    public static func connect(_ source: MeridianContext, to destinations: [MeridianContext], mode: ConnectionMode,
                               allowMismatchingCA: Bool, allowMixedEncryption: Bool = false) async throws -> [String] {
        let contexts = [source] + destinations
        return try await withClients(contexts) { clients in
            var infos: [String: (ClusterAccessInfo, EtcdClient)] = [:]
            var names: [String] = []
            for (context, client) in zip(contexts, clients) {
                let info = try await ClusterAccessInfo.load(context, client: client)
                guard infos[info.settings.name] == nil else { throw AdminError.clusterGivenTwice(cluster: info.settings.name, context: context.name) }
                infos[info.settings.name] = (info, client)
                names.append(info.settings.name)
            }
            let pairs = mode.pairs(source: names[0], destinations: Array(names.dropFirst()))
            var encryption: [String: [String: Bool]] = [:]
            for (name, (_, client)) in infos { encryption[name] = try await ConnectValidation.encryptingNodes(name, client: client) }
            for (importer, exporter) in pairs {
                try ConnectValidation.validate(infos[importer]!.0, infos[exporter]!.0, allowMismatchingCA: allowMismatchingCA)
                try ConnectValidation.validateEncryption(importer, exporter, nodes: encryption, allowMixed: allowMixedEncryption)
                try await ConnectValidation.validateClaims(of: infos[exporter]!.0, into: infos[importer]!.0, importerClient: infos[importer]!.1)
            }
            for (importer, exporter) in pairs {
                try await grantImport(importer: infos[importer]!.0, importerClient: infos[importer]!.1,
                                      exporter: infos[exporter]!.0, exporterClient: infos[exporter]!.1)
            }
            return names
        }
    }

    /// Disconnects `source` from every destination (both ways unless `unicast`); each side
    /// drains the other's data. Returns the clusters' names, source first.
    public static func disconnect(_ source: MeridianContext, from destinations: [MeridianContext], bothWays: Bool) async throws -> [String] {
        try await withClients([source] + destinations) { clients in
            let local = try await ClusterAccessInfo.load(source, client: clients[0])
            var names = [local.settings.name]
            for (target, client) in zip(destinations, clients.dropFirst()) {
                let remote = try await ClusterAccessInfo.load(target, client: client)
                try await revokeImport(importer: local, importerClient: clients[0], exporter: remote, exporterClient: client)
                if bothWays {
                    try await revokeImport(importer: remote, importerClient: client, exporter: local, exporterClient: clients[0])
                }
                names.append(remote.settings.name)
            }
            return names
        }
    }

    /// Lets `importer` read `exporter`: a credential from the exporter's control plane for a key
    /// pair generated here, and a peer record (with that credential and the exporter's pod CIDR)
    /// in the importer. A credential issued before for the same importer stops working.
    public static func grantImport(importer: ClusterAccessInfo, importerClient: EtcdClient,
                                   exporter: ClusterAccessInfo, exporterClient: EtcdClient,
                                   validity: Duration = .seconds(PeerGrant.defaultValiditySeconds)) async throws {
        let peer = try await exporterAccess(for: importer, exporter: exporter, exporterClient: exporterClient, validity: validity)
        try await importerClient.put(KeyLayout.peer(exporter.settings.name), StoreCoding.encode(peer))
    }

    /// The exporter's half of `grantImport`: a grant for a new key pair, the credential the
    /// exporter's control plane issues for it, and the peer record the importer is to store.
    public static func exporterAccess(for importer: ClusterAccessInfo, exporter: ClusterAccessInfo, exporterClient: EtcdClient,
                                      validity: Duration = .seconds(PeerGrant.defaultValiditySeconds),
                                      wait: Duration = .seconds(30)) async throws -> PeerRecord {
        let peerName = importer.settings.name
        let keys = ClientKeyPair.generate()
        let grant = PeerGrant(peer: peerName, publicKeyPEM: keys.publicKeyPEM,
                              validitySeconds: validity.components.seconds, requestedAt: Date())
        try await exporterClient.commit(puts: [(KeyLayout.peerGrant(peerName), StoreCoding.encode(grant))],
                                        deletes: [KeyLayout.peerCredential(peerName)], lease: 0)
        let deadline = ContinuousClock.now + wait
        while true {
            if let record = try await exporterClient.get(KeyLayout.peerCredential(peerName)) {
                let credential = try StoreCoding.decode(PeerCredential.self, from: record.value, key: record.key)
                if credential.publicKeyPEM == keys.publicKeyPEM {
                    return PeerRecord(
                        name: exporter.settings.name, id: exporter.settings.id, endpoints: exporter.settings.clientEndpoints,
                        serverName: exporter.settings.serverName, caPEM: exporter.ca.certificatePEM,
                        certificatePEM: credential.certificatePEM, privateKeyPEM: keys.privateKeyPEM,
                        podCIDR: exporter.settings.podCIDR)
                }
            }
            guard ContinuousClock.now < deadline else {
                throw AdminError.credentialNotIssued(cluster: exporter.settings.name, peer: peerName, waited: wait)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Stops `importer` reading `exporter`: removes the peer record (the importer's control plane
    /// drains the data) and the exporter's grant and credential (the exporter's mesh endpoint
    /// refuses the credential from then on, and ends its open watches).
    public static func revokeImport(importer: ClusterAccessInfo, importerClient: EtcdClient,
                                    exporter: ClusterAccessInfo, exporterClient: EtcdClient) async throws {
        try await importerClient.delete(KeyLayout.peer(exporter.settings.name))
        try await exporterClient.commit(puts: [], deletes: [KeyLayout.peerGrant(importer.settings.name), KeyLayout.peerCredential(importer.settings.name)], lease: 0)
    }

    /// The status of every remote cluster `context` imports; with `wait`, polls until all are
    /// ready or the wait runs out (the report then says which are not).
    /// With a store of several members, each member's health is part of the report; a store
    /// without quorum, where nothing can be read, is an error saying so rather than a timeout.
    public static func status(_ context: MeridianContext, wait: Duration? = nil) async throws -> ClusterMeshStatusReport {
        let deadline = ContinuousClock.now + (wait ?? .zero)
        let configuration = try context.clientConfiguration()
        let several = configuration.endpoints.count > 1
        return try await EtcdClient.withClient(configuration) { client in
            while true {
                let members = several ? await EtcdStoreHealth.check(configuration) : nil
                var report: ClusterMeshStatusReport
                do {
                    report = try await ClusterMeshStatusReport.load(client, context: context)
                } catch {
                    guard let members, !members.hasQuorum else { throw error }
                    if wait != nil, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(500))
                        continue
                    }
                    throw AdminError.storeWithoutQuorum(cluster: context.cluster, health: members.summary,
                                                        members: members.members.map { "\($0.endpoint): \($0.state)" })
                }
                report.storeMembers = members
                if wait == nil || report.allReady || ContinuousClock.now >= deadline { return report }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}

/// Runs `body` with a connected client for each context, all open at once.
public func withClients<R: Sendable>(_ contexts: [MeridianContext], _ body: ([EtcdClient]) async throws -> R) async throws -> R {
    func open(_ index: Int, _ acc: [EtcdClient]) async throws -> R {
        guard index < contexts.count else { return try await body(acc) }
        return try await EtcdClient.withClient(try contexts[index].clientConfiguration()) { client in
            try await open(index + 1, acc + [client])
        }
    }
    return try await open(0, [])
}
