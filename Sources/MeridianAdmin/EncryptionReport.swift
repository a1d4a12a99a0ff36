import Foundation
import MeridianCore
import MeridianEtcd
import MeridianStore

/// `meridian encryption status`: each node of a cluster with its transparent encryption as its
/// agent published it (`NodeEncryptionStatus`), handshake ages computed against this clock.
///
/// It exists because whether traffic between nodes is really encrypted is a per-node fact (a
/// node may run no encryption, a peer may lack a key, a tunnel may never have shaken hands),
/// which only the nodes know; the report puts it side by side for the whole cluster.
public struct EncryptionReport: Codable, Sendable, Hashable {
    public var cluster: String
    public var nodes: [Node]
    /// Registered nodes of the cluster that publish no encryption status (encryption off).
    public var nodesWithoutEncryption: [String]

    /// One node's device and peers.
    public struct Node: Codable, Sendable, Hashable {
        public var node: String
        public var type: String
        public var mode: String
        public var interface: String
        public var publicKey: String
        public var listenPort: Int
        public var mtu: Int
        /// Seconds since the agent last read its device.
        public var statusAgeSeconds: Int64
        public var peers: [Peer]
        /// Nodes without a usable key: traffic to them goes in the clear, or is dropped in strict mode.
        public var unencryptedNodes: [String]
        /// Strict mode: pod traffic to a node without a tunnel is dropped (`UNENCRYPTED_TRAFFIC`).
        public var strict: Bool
        /// Seconds since the node's key pair was last replaced; nil from agents that do not say.
        public var lastKeyRotationAgeSeconds: Int64?
        /// The node's rotation interval in seconds; nil: the key is replaced only on request.
        public var keyRotationIntervalSeconds: Int64?
        /// Seconds since 1970 of the next scheduled rotation, and how far off it is (0 when due).
        public var nextKeyRotation: Int64?
        public var nextKeyRotationInSeconds: Int64?
        public var lastError: String?
    }

    /// One peer: a node of this cluster or of a connected one.
    public struct Peer: Codable, Sendable, Hashable {
        public var node: String
        public var publicKey: String
        public var endpoint: String
        public var allowedIPs: [String]
        /// Seconds since the last handshake; nil when there has been none.
        public var latestHandshakeAgeSeconds: Int64?
        public var receivedBytes: UInt64
        public var sentBytes: UInt64
    }

    public static func load(_ context: MeridianContext, now: Date = Date()) async throws -> EncryptionReport {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let settings = try await ClusterAccessInfo.load(context, client: client).settings
            let statuses = try await client.list(prefix: KeyLayout.encryptionStatusPrefix).items.compactMap {
                try? StoreCoding.decode(NodeEncryptionStatus.self, from: $0.value, key: $0.key)
            }
            let registered = try await client.list(prefix: MeshKind.nodes.statePrefix(cluster: settings.name)).items.compactMap {
                try? StoreCoding.decode(NodeRecord.self, from: $0.value, key: $0.key).name
            }
            return build(cluster: settings.name, statuses: statuses, registered: registered, now: now)
        }
    }

    /// The report from published statuses; statuses of nodes no longer registered are left out.
    public static func build(cluster: String, statuses: [NodeEncryptionStatus], registered: [String], now: Date) -> EncryptionReport {
        let seconds = Int64(now.timeIntervalSince1970)
        let live = Set(registered)
        let nodes = statuses.filter { live.contains($0.node) }.sorted { $0.node < $1.node }.map { status in
            Node(node: status.node, type: status.type, mode: status.mode, interface: status.interface, publicKey: status.publicKey,
                 listenPort: status.listenPort, mtu: status.mtu, statusAgeSeconds: max(0, seconds - status.updatedAt),
                 peers: status.peers.sorted { ($0.node, $0.publicKey) < ($1.node, $1.publicKey) }.map { peer in
                     Peer(node: peer.node, publicKey: peer.publicKey, endpoint: peer.endpoint, allowedIPs: peer.allowedIPs,
                          latestHandshakeAgeSeconds: peer.latestHandshake == 0 ? nil : max(0, seconds - peer.latestHandshake),
                          receivedBytes: peer.receivedBytes, sentBytes: peer.sentBytes)
                 },
                 unencryptedNodes: status.unencryptedNodes, strict: status.strict ?? false,
                 lastKeyRotationAgeSeconds: status.lastKeyRotation.map { max(0, seconds - $0) },
                 keyRotationIntervalSeconds: status.keyRotationIntervalSeconds, nextKeyRotation: status.nextKeyRotation,
                 nextKeyRotationInSeconds: status.nextKeyRotation.map { max(0, $0 - seconds) }, lastError: status.lastError)
        }
        let reporting = Set(nodes.map(\.node))
        return EncryptionReport(cluster: cluster, nodes: nodes, nodesWithoutEncryption: registered.filter { !reporting.contains($0) }.sorted())
    }

    /// `meridian encryption rotate`: asks `node`'s agent for a new key pair and waits until the
    /// node publishes a public key other than the one it had (returned as old and new).
    public static func rotate(_ context: MeridianContext, node: String, timeout: Duration = .seconds(30)) async throws -> (old: String, new: String) {
        try await EtcdClient.withClient(try context.clientConfiguration()) { client in
            let settings = try await ClusterAccessInfo.load(context, client: client).settings
            let recordKey = MeshKind.nodes.stateKey(cluster: settings.name, name: node)
            func publicKey() async throws -> String? {
                guard let item = try await client.get(recordKey) else { return nil }
                return try StoreCoding.decode(NodeRecord.self, from: item.value, key: item.key).wireguardPublicKey
            }
            guard let old = try await publicKey() else { throw AdminError.nodeNotFound(node: node, cluster: settings.name) }
            guard !old.isEmpty else {
                throw AdminError.invalidCluster(cluster: settings.name, detail: "node \(node) does not encrypt (its record has no WireGuard key)")
            }
            _ = try await client.put(KeyLayout.encryptionRotation(node), Data(ISO8601DateFormatter().string(from: Date()).utf8))
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let new = try await publicKey(), !new.isEmpty, new != old { return (old, new) }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw AdminError.invalidCluster(cluster: settings.name, detail: "node \(node) did not publish a new key within \(timeout); is its agent running?")
        }
    }

    /// The text `encryption status` prints: a line per node, a row per peer.
    public func render() -> String {
        var lines: [String] = []
        for node in nodes {
            lines.append("\(node.node): \(node.type) (\(node.mode)\(node.strict ? ", strict" : "")) on \(node.interface), port \(node.listenPort), MTU \(node.mtu), public key \(node.publicKey), read \(node.statusAgeSeconds)s ago")
            if let error = node.lastError { lines.append("  last error: \(TerminalSafe.escape(error, maxScalars: 300))") }
            if let line = node.rotationLine { lines.append("  " + line) }
            let rows = node.peers.map { peer in
                [TerminalSafe.escape(peer.node, maxScalars: 80), peer.endpoint, peer.latestHandshakeAgeSeconds.map { "\($0)s ago" } ?? "never",
                 "\(peer.receivedBytes)", "\(peer.sentBytes)", peer.publicKey]
            }
            lines.append(Table(headers: ["  PEER", "ENDPOINT", "HANDSHAKE", "RX BYTES", "TX BYTES", "PUBLIC KEY"], rows: rows.map { ["  " + $0[0]] + $0.dropFirst() }).render())
            if !node.unencryptedNodes.isEmpty {
                let names = node.unencryptedNodes.map { TerminalSafe.escape($0, maxScalars: 80) }.joined(separator: ", ")
                lines.append(node.strict ? "  pod traffic dropped (strict mode, no usable key): \(names)" : "  not encrypted to (no usable key): \(names)")
            }
        }
        if !nodesWithoutEncryption.isEmpty {
            lines.append("nodes without encryption: \(nodesWithoutEncryption.joined(separator: ", "))")
        }
        if nodes.isEmpty && nodesWithoutEncryption.isEmpty { lines.append("cluster \(cluster) has no nodes") }
        return lines.joined(separator: "\n")
    }
}

extension EncryptionReport.Node {
    /// `key rotated 5s ago; next rotation 2026-01-01T00:00:15Z (in 15s), every 20s`, or without a
    /// schedule `key rotated 5s ago; rotation only on request`; nil when the agent says nothing.
    var rotationLine: String? {
        guard lastKeyRotationAgeSeconds != nil || nextKeyRotation != nil else { return nil }
        let last = lastKeyRotationAgeSeconds.map { "key rotated \($0)s ago" } ?? "key rotated at an unknown time"
        guard let next = nextKeyRotation, let interval = keyRotationIntervalSeconds else { return last + "; rotation only on request" }
        let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(next)))
        return last + "; next rotation \(date) (in \(nextKeyRotationInSeconds ?? 0)s), every \(interval)s"
    }
}
