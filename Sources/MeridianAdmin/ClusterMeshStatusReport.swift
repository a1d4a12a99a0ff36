import Foundation
import MeridianCore
import MeridianEtcd
import MeridianPKI
import MeridianStore

/// The result of `clustermesh status`, computed from the peers configured in a cluster and the
/// statuses its control plane publishes. Its JSON form (`-o json`) is the stable, documented
/// status format (see docs/clustermesh-status.md).
public struct ClusterMeshStatusReport: Codable, Sendable, Hashable {
    /// A status older than this means the control plane stopped reporting.
    public static let staleAfter: TimeInterval = 10

    public struct LocalCluster: Codable, Sendable, Hashable {
        public var name: String
        public var id: UInt32
        public var clustermeshEnabled: Bool
        public var maxConnectedClusters: UInt32
        /// The smallest underlay MTU among the cluster's registered nodes.
        public var mtu: Int?
        /// How many of the cluster's registered nodes publish a WireGuard key (encrypt); nil
        /// while no node is registered.
        public var wireguardNodes: Int?
        /// How many nodes are registered (the denominator of `wireguardNodes`).
        public var nodes: Int?
    }

    public struct Summary: Codable, Sendable, Hashable {
        public var configured: Int
        public var connected: Int
        public var ready: Int
    }

    /// One remote cluster: `RemoteClusterStatus` plus what the report derived from it.
    public struct Remote: Codable, Sendable, Hashable {
        public var name: String
        public var configured: Bool
        public var connected: Bool
        public var ready: Bool
        public var phase: String
        public var clusterID: UInt32?
        public var configRetrieved: Bool
        public var syncCanaries: Bool
        public var synced: RemoteClusterStatus.PerKind<Bool>
        public var counts: RemoteClusterStatus.PerKind<Int>
        public var rejected: RemoteClusterStatus.PerKind<Int>
        /// Rejected records per rule broken.
        public var rejectedByReason: [String: Int]?
        /// The latest rejected records; their keys and messages come from the remote.
        public var recentRejections: [RemoteClusterStatus.RejectedRecord]?
        public var numFailures: Int
        public var lastFailure: Date?
        public var lastError: String?
        public var lastHeartbeat: Date?
        /// Writes into this cluster's store that failed and were retried.
        public var localStoreRetries: Int?
        public var errors: [String]
        /// The smallest underlay MTU among the remote cluster's nodes, as imported.
        public var mtu: Int?
        /// How many of the remote's imported nodes publish a WireGuard key; nil while none is imported.
        public var wireguardNodes: Int?
        /// When the credential this cluster reads the remote with expires.
        public var credentialExpires: Date?
    }

    public var cluster: LocalCluster
    public var summary: Summary
    public var remoteClusters: [Remote]
    /// Clusters that are no longer peers whose imported data is still being removed (a drain
    /// that failed is retried; `lastError` says why it failed).
    public var drainingClusters: [Draining] = []

    /// A former peer whose data is being drained.
    public struct Draining: Codable, Sendable, Hashable {
        public var name: String
        public var lastError: String?
    }
    /// Conditions that do not stop the mesh but will bite: MTU mismatches, global services
    /// whose backends carry different labels in different clusters.
    public var warnings: [String] = []

    /// The peers this cluster exports to, each with when its credential expires.
    public var exportedTo: [ExportGrant] = []

    /// A peer allowed to read this cluster's export.
    public struct ExportGrant: Codable, Sendable, Hashable {
        public var peer: String
        /// Nil until the control plane has issued the credential.
        public var credentialExpires: Date?
    }

    /// Addresses several records claim, as this cluster's nodes programmed them (one entry a
    /// prefix: every node decides alike).
    public var addressConflicts: [AddressConflictReport] = []

    public static func addressConflicts(_ client: any KeyValueStore) async throws -> [AddressConflictReport] {
        var byPrefix: [String: AddressConflictReport] = [:]
        for item in try await client.list(prefix: KeyLayout.nodeStatusPrefix).items {
            guard let status = try? StoreCoding.decode(NodePolicyStatus.self, from: item.value, key: item.key) else { continue }
            for conflict in status.addressConflicts ?? [] { byPrefix[conflict.prefix] = conflict }
        }
        return byPrefix.values.sorted { $0.prefix < $1.prefix }
    }

    /// The store's space as the control plane last saw it.
    public var store: StoreSpaceRecord?

    /// Each member of a store of several, as the command saw them (nil with one member).
    public var storeMembers: EtcdStoreHealth?

    /// Calls the mesh endpoint refused, per peer and reason.
    public var meshEndpoint: MeshEndpointStatusRecord?

    /// Credentials expiring sooner than this are warned about.
    public static let credentialWarning: TimeInterval = 7 * 86_400

    public var allReady: Bool { remoteClusters.allSatisfy(\.ready) }

    /// `reportedAt` is the control plane's latest liveness stamp (`StatusReporterRecord`); the
    /// statuses are taken as current only while it is fresh.
    public init(settings: ClusterSettings, meshEnabled: Bool, peers: [String], statuses: [String: RemoteClusterStatus],
                reportedAt: Date?, now: Date = Date()) {
        cluster = LocalCluster(name: settings.name, id: settings.id, clustermeshEnabled: meshEnabled, maxConnectedClusters: settings.maxConnectedClusters)
        var remotes: [Remote] = []
        for name in peers.sorted() {
            let stored = statuses[name]
            let status = stored ?? RemoteClusterStatus(name: name)
            let stale = reportedAt.map { now.timeIntervalSince($0) > Self.staleAfter } ?? true
            var errors: [String] = []
            if stored == nil || stale {
                errors.append("the control plane of \(settings.name) is not reporting on \(name); is it running?")
            } else if !status.connected {
                errors.append("not connected: \(status.lastError ?? "connecting")")
            } else if !status.configRetrieved {
                errors.append("remote cluster configuration required but not found")
            } else if !status.ready {
                errors.append("synchronization in progress for " + status.pendingKinds.map(\.rawValue).joined(separator: ", "))
            }
            let live = !stale && stored != nil
            remotes.append(Remote(
                name: name, configured: true, connected: live && status.connected, ready: live && status.ready,
                phase: live ? status.phase.rawValue : "unknown", clusterID: status.remoteClusterID,
                configRetrieved: status.configRetrieved, syncCanaries: status.syncCanaries, synced: status.synced,
                counts: status.counts, rejected: status.rejected, rejectedByReason: status.rejectedByReason,
                recentRejections: status.recentRejections, numFailures: status.numFailures,
                lastFailure: status.lastFailure, lastError: status.lastError, lastHeartbeat: status.lastHeartbeat,
                localStoreRetries: status.localStoreRetries, errors: errors))
        }
        remoteClusters = remotes
        summary = Summary(configured: remotes.count, connected: remotes.filter(\.connected).count, ready: remotes.filter(\.ready).count)
        let configured = Set(peers)
        drainingClusters = statuses.values.filter { !configured.contains($0.name) && $0.phase == .draining }
            .sorted { $0.name < $1.name }.map { Draining(name: $0.name, lastError: $0.lastError) }
    }

    /// The report of the cluster `client` reaches: its peers, the statuses its control plane
    /// publishes, the MTUs of its and its peers' nodes, and label warnings of global services.
    public static func load(_ client: any KeyValueStore, context: MeridianContext) async throws -> ClusterMeshStatusReport {
        let info = try await ClusterAccessInfo.load(context, client: client)
        let peerRecords = try await client.list(prefix: KeyLayout.peersPrefix).items
        let peers = peerRecords.map { String($0.key.dropFirst(KeyLayout.peersPrefix.count)) }
        var statuses: [String: RemoteClusterStatus] = [:]
        var reporter: StatusReporterRecord?
        for item in try await client.list(prefix: KeyLayout.remoteStatusPrefix).items {
            if item.key == KeyLayout.statusReporter {
                reporter = try StoreCoding.decode(StatusReporterRecord.self, from: item.value, key: item.key)
                continue
            }
            let status = try StoreCoding.decode(RemoteClusterStatus.self, from: item.value, key: item.key)
            statuses[status.name] = status
        }
        var report = ClusterMeshStatusReport(settings: info.settings, meshEnabled: info.meshEnabled, peers: peers, statuses: statuses,
                                             reportedAt: reporter?.reportedAt)
        let nodes: [(String, NodeRecord)] = try await MeshRecords.gather(.nodes, client: client, localCluster: info.settings.name, allClusters: true)
        report.addMTUs(local: nodes.filter { $0.0 == info.settings.name }.compactMap(\.1.mtu),
                       remote: Dictionary(grouping: nodes.filter { $0.0 != info.settings.name }, by: \.0).mapValues { $0.compactMap(\.1.mtu) })
        report.addEncryption(local: nodes.filter { $0.0 == info.settings.name }.map { !$0.1.wireguardPublicKey.isEmpty },
                             remote: Dictionary(grouping: nodes.filter { $0.0 != info.settings.name }, by: \.0)
                                 .mapValues { $0.map { !$0.1.wireguardPublicKey.isEmpty } })
        report.warnings += try await LabelConsistency.warnings(client, localCluster: info.settings.name)
        report.addressConflicts = try await Self.addressConflicts(client)
        report.warnings += report.addressConflicts.map { conflict in
            "\(conflict.prefix) is claimed by several records: \(conflict.holder) holds it; refused: \(conflict.refused.joined(separator: ", "))"
        }
        try await report.addExportAndStore(client)
        report.addCredentialExpiries(peerRecords.compactMap { try? StoreCoding.decode(PeerRecord.self, from: $0.value, key: $0.key) })
        return report
    }

    /// Adds when each remote's credential expires, warning a week before.
    public mutating func addCredentialExpiries(_ peers: [PeerRecord], now: Date = Date()) {
        for peer in peers {
            guard let index = remoteClusters.firstIndex(where: { $0.name == peer.name }),
                  let expires = try? CertificateInspection.notAfter(ofCertificatePEM: peer.certificatePEM) else { continue }
            remoteClusters[index].credentialExpires = expires
            if expires.timeIntervalSince(now) < Self.credentialWarning {
                warnings.append("the credential for reading \(peer.name) \(expires < now ? "expired" : "expires") at "
                                + "\(ISO8601DateFormatter().string(from: expires)); renew it with `meridian clustermesh connect` again")
            }
        }
    }

    /// Adds the peers this cluster exports to (from the grants and issued credentials) and the
    /// store's space record, with warnings for credentials about to expire and a full store.
    mutating func addExportAndStore(_ client: any KeyValueStore, now: Date = Date()) async throws {
        let credentials = try await client.list(prefix: KeyLayout.peerCredentialsPrefix).items
            .compactMap { try? StoreCoding.decode(PeerCredential.self, from: $0.value, key: $0.key) }
        let expiries = Dictionary(credentials.map { ($0.peer, $0.notAfter) }, uniquingKeysWith: { first, _ in first })
        exportedTo = try await client.list(prefix: KeyLayout.peerGrantsPrefix).items
            .map { String($0.key.dropFirst(KeyLayout.peerGrantsPrefix.count)) }.sorted()
            .map { ExportGrant(peer: $0, credentialExpires: expiries[$0]) }
        for grant in exportedTo {
            guard let expires = grant.credentialExpires else {
                warnings.append("no credential issued yet for \(grant.peer); is the control plane running?")
                continue
            }
            if expires.timeIntervalSince(now) < Self.credentialWarning {
                let state = expires < now ? "expired" : "expires"
                warnings.append("the credential of \(grant.peer) \(state) at \(ISO8601DateFormatter().string(from: expires)); "
                                + "renew it with `meridian clustermesh connect` again")
            }
        }
        store = try await client.get(KeyLayout.storeSpace).flatMap { try? StoreCoding.decode(StoreSpaceRecord.self, from: $0.value, key: $0.key) }
        meshEndpoint = try await client.get(KeyLayout.meshEndpointStatus)
            .flatMap { try? StoreCoding.decode(MeshEndpointStatusRecord.self, from: $0.value, key: $0.key) }
        if let store, let quota = store.quotaBytes, store.backendBytes * 10 >= quota * 8 {
            warnings.append("the store's backend is \(store.backendBytes / 1_048_576) MiB of its \(quota / 1_048_576) MiB quota")
        }
        if let filesystem = store?.filesystem, filesystem.isShort {
            warnings.append("the store is out of disk space (no space left on device): \(filesystem.availableBytes / 1_048_576) MiB free "
                            + "on the filesystem of \(filesystem.path), below the \(filesystem.minimumFreeBytes / 1_048_576) MiB etcd needs "
                            + "to keep writing; writes are refused until space is freed there")
        }
    }

    /// Adds the MTUs of the local and remote clusters' nodes and warns about mismatches: pods
    /// then need per-destination MTUs (the agents program them), and anything that assumes one
    /// MTU across the mesh breaks.
    public mutating func addMTUs(local: [Int], remote: [String: [Int]]) {
        cluster.mtu = local.min()
        for index in remoteClusters.indices {
            remoteClusters[index].mtu = remote[remoteClusters[index].name]?.min()
            if let localMTU = cluster.mtu, let remoteMTU = remoteClusters[index].mtu, localMTU != remoteMTU {
                warnings.append("MTU mismatch: \(cluster.name) has underlay MTU \(localMTU), \(remoteClusters[index].name) has \(remoteMTU); "
                                + "traffic between them is sized for \(min(localMTU, remoteMTU) - 50) bytes per packet")
            }
        }
    }

    /// Adds, per cluster, how many nodes publish a WireGuard key, and warns when this cluster and
    /// a peer do not both encrypt on every node: traffic between a node that encrypts and one
    /// that does not crosses the underlay in the clear.
    public mutating func addEncryption(local: [Bool], remote: [String: [Bool]]) {
        if !local.isEmpty {
            cluster.nodes = local.count
            cluster.wireguardNodes = local.filter { $0 }.count
        }
        func describe(_ flags: [Bool]) -> String {
            let on = flags.filter { $0 }.count
            return on == 0 ? "does not encrypt" : on == flags.count ? "encrypts (WireGuard)" : "encrypts on \(on) of \(flags.count) nodes"
        }
        for index in remoteClusters.indices {
            guard let flags = remote[remoteClusters[index].name], !flags.isEmpty else { continue }
            remoteClusters[index].wireguardNodes = flags.filter { $0 }.count
            guard !local.isEmpty, !(local.allSatisfy { $0 } && flags.allSatisfy { $0 }), local.contains(true) || flags.contains(true) else { continue }
            warnings.append("mixed encryption: \(cluster.name) \(describe(local)), \(remoteClusters[index].name) \(describe(flags)); "
                            + "traffic between nodes of which one does not encrypt is not encrypted")
        }
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// The human summary, in the spirit of `cilium clustermesh status`.
    public var text: String {
        var lines: [String] = []
        let mark = { (ok: Bool) in ok ? "✅" : "❌" }
        lines.append("Cluster: \(cluster.name) (ID \(cluster.id)), clustermesh \(cluster.clustermeshEnabled ? "enabled" : "disabled")")
        if !exportedTo.isEmpty {
            let grants = exportedTo.map { grant in
                "\(grant.peer) (credential " + (grant.credentialExpires.map { "until \(ISO8601DateFormatter().string(from: $0))" } ?? "not issued") + ")"
            }
            lines.append("Exported to: " + grants.joined(separator: ", "))
        }
        if let refused = meshEndpoint, refused.total > 0 {
            let parts = refused.refusals.sorted { $0.key < $1.key }.map { peer, reasons in
                "\(peer): " + reasons.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            }
            lines.append("Mesh endpoint: \(refused.total) calls refused (" + parts.joined(separator: "; ") + ")")
        }
        if let members = storeMembers {
            lines.append("\(mark(members.hasQuorum && members.members.allSatisfy { $0.status != nil })) Store: \(members.summary)")
            for member in members.members where member.status == nil || !members.hasQuorum {
                lines.append("    \(member.endpoint): \(member.state)" + (member.error.map { " (\(TerminalSafe.escape($0, maxScalars: 200)))" } ?? ""))
            }
        }
        if let recovery = store?.lastRecovery {
            lines.append("Store: recovered from NOSPACE at \(ISO8601DateFormatter().string(from: recovery.at)) "
                         + "(\(recovery.backendBytesBefore / 1_048_576) MiB compacted and defragmented to \(recovery.backendBytesAfter / 1_048_576) MiB)")
        }
        if remoteClusters.isEmpty {
            lines.append("No remote clusters configured; connect one with `meridian clustermesh connect`.")
            return lines.joined(separator: "\n")
        }
        lines.append("\(mark(allReady)) \(summary.ready)/\(summary.configured) remote clusters ready, \(summary.connected)/\(summary.configured) connected")
        lines.append("Cluster Connections:")
        for remote in remoteClusters {
            let id = remote.clusterID.map { " (ID \($0))" } ?? ""
            let state = remote.ready ? "ready" : remote.connected ? "connected, not ready" : "not connected"
            let last = remote.lastFailure.map { ISO8601DateFormatter().string(from: $0) } ?? "never"
            lines.append("- \(remote.name)\(id): \(state), \(remote.counts.nodes) nodes, \(remote.counts.endpoints) endpoints, \(remote.counts.identities) identities, \(remote.counts.services) services, \(remote.numFailures) failures (last: \(last))")
            let synced = MeshKind.allCases.map { "\($0.rawValue)=\(remote.synced[$0] ? "synced" : "pending")" }.joined(separator: " ")
            lines.append("    synchronization: \(synced)")
            if let mtu = remote.mtu { lines.append("    underlay MTU: \(mtu)") }
            if let encrypted = remote.wireguardNodes {
                lines.append("    encryption: " + (encrypted == 0 ? "none" : "WireGuard on \(encrypted) of \(remote.counts.nodes) nodes"))
            }
            let rejected = MeshKind.allCases.filter { remote.rejected[$0] > 0 }.map { "\($0.rawValue)=\(remote.rejected[$0])" }
            if !rejected.isEmpty {
                let reasons = (remote.rejectedByReason ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                lines.append("    rejected records: " + rejected.joined(separator: " ") + (reasons.isEmpty ? "" : " (" + reasons.joined(separator: " ") + ")"))
                for record in remote.recentRejections ?? [] {
                    lines.append("      \(record.kind) \(record.key): \(record.reason): \(record.message)")
                }
            }
            if let retries = remote.localStoreRetries { lines.append("    writes into this cluster's store retried: \(retries)") }
        }
        if !warnings.isEmpty {
            lines.append("\(warnings.count) Warnings:")
            lines.append(contentsOf: warnings.map { "  ⚠️  \($0)" })
        }
        for draining in drainingClusters {
            lines.append("Draining \(draining.name) (no longer a peer)" + (draining.lastError.map { ": \(TerminalSafe.escape($0, maxScalars: 512))" } ?? ""))
        }
        let errors = remoteClusters.flatMap { remote in remote.errors.map { "\(remote.name): \($0)" } }
        if !errors.isEmpty {
            lines.append("\(errors.count) Errors:")
            lines.append(contentsOf: errors.map { "  ❌ \(TerminalSafe.escape($0, maxScalars: 512))" })
        }
        return lines.joined(separator: "\n")
    }
}
