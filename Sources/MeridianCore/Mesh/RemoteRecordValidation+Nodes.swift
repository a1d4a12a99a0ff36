import Foundation

extension RemoteRecordValidation {
    /// A node must be named with a DNS-1123 subdomain, belong to the remote by name and ID, sit
    /// under `<cluster>/<name>`, carry addresses that can be tunnelled to, health IPs inside the
    /// peer's pod CIDRs, pod CIDRs (`IPv4AllocCIDR`, `IPv6AllocCIDR`) inside them too, and a
    /// WireGuard public key (`WireguardPubKey`), when it has one, of exactly 32 bytes.
    public func validate(node: NodeRecord, keyName: String) throws(RemoteRecordRejection) {
        let reject = Self.rejecter(.node, keyName)
        guard !node.name.isEmpty else { throw reject(.malformed, "node has no Name") }
        try checkCluster(name: node.cluster, id: node.clusterID, field: ("Cluster", "ClusterID"), reject)
        try checkName(node.name, field: "Name", NameSyntax.dns1123SubdomainProblem, reject)
        guard keyName == node.keyName else {
            throw reject(.keyMismatch, "key should be \(Self.quoted(node.keyName)) for node \(node.name) of cluster \(node.cluster)")
        }
        for address in node.ipAddresses {
            guard let ip = IPAddress(address.ip) else {
                throw reject(.malformed, "address \(Self.quoted(address.ip)) of type \(Self.quoted(address.type.rawValue)) is not an IP address")
            }
            try checkUsable(ip, field: "address of type \(Self.quoted(address.type.rawValue))", reject)
        }
        for (field, text) in [("IPv4HealthIP", node.ipv4HealthIP), ("IPv6HealthIP", node.ipv6HealthIP)] where !text.isEmpty {
            guard let ip = IPAddress(text) else {
                throw reject(.malformed, "\(field) \(Self.quoted(text)) is not an IP address")
            }
            try checkPodAddress(ip, field: field, reject)
        }
        for (field, cidr) in [("IPv4AllocCIDR", node.ipv4AllocCIDR), ("IPv6AllocCIDR", node.ipv6AllocCIDR)] {
            if let cidr { try checkPodPrefix(cidr, field: field, reject) }
        }
        if !node.wireguardPublicKey.isEmpty, let problem = WireGuardPublicKey.problem(node.wireguardPublicKey) {
            throw reject(.invalidWireGuardKey, "WireguardPubKey \(Self.quoted(node.wireguardPublicKey)) \(problem)")
        }
        if let mtu = node.mtu, !Self.nodeMTUs.contains(mtu) {
            throw reject(.malformed, "MTU \(mtu) is outside \(Self.nodeMTUs.lowerBound)...\(Self.nodeMTUs.upperBound)")
        }
    }

    /// Underlay MTUs a node may announce: from IPv4's minimum datagram to the largest IP
    /// packet. Agents subtract the tunnel overhead from a peer's MTU to size routes, which
    /// must neither overflow nor go negative.
    public static let nodeMTUs: ClosedRange<Int> = 576...65_535

    public func decodeNode(keyName: String, value: Data) throws(RemoteRecordRejection) -> NodeRecord {
        let node: NodeRecord = try decode(value, kind: .node, keyName: keyName)
        try validate(node: node, keyName: keyName)
        return node
    }
}
