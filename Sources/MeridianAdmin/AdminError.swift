import Foundation

/// Why an administrator's operation on a cluster (what `meridian` commands do) could not be
/// done, naming the context, cluster, file or field it concerns.
public enum AdminError: Error, Sendable, Hashable, CustomStringConvertible {
    case configUnreadable(path: String, detail: String)
    case noCurrentContext(configPath: String)
    case contextNotFound(String, configPath: String, known: [String])
    case credentialUnreadable(context: String, what: String, path: String)
    /// The cluster's control plane has not published its settings (or CA) yet.
    case notBootstrapped(context: String, missing: String)
    case exportNotPublished(cluster: String, waited: Duration)
    case credentialNotIssued(cluster: String, peer: String, waited: Duration)
    case clusterGivenTwice(cluster: String, context: String)
    case meshNotEnabled(cluster: String, context: String)
    case invalidCluster(cluster: String, detail: String)
    case cannotConnect(String, String, ConnectConflict)
    case fileUnreadable(path: String)
    case noObjects(source: String)
    case invalidPort(String, reason: String)
    case podNotFound(namespace: String, name: String, cluster: String)
    case podWithoutIdentity(namespace: String, name: String, cluster: String)
    case traceToServiceAddress(address: String, serviceCIDR: String, cluster: String)
    case deploymentNotFound(namespace: String, name: String, cluster: String)
    case nodeNotFound(node: String, cluster: String)
    case resourceNotFound(kind: String, name: String, cluster: String)
    /// `apply --wait`: nodes that had not programmed the applied revision when the wait ran out
    /// (`lagging`: node and the revision it reports, nil when it reports none).
    case notProgrammed(cluster: String, revision: Int64, lagging: [String: Int64?], waited: Duration)
    /// `apply --wait` of a ServiceExport: the control plane made no ServiceImport listing this
    /// cluster before the wait ran out.
    case notImported(namespace: String, name: String, cluster: String)
    /// A store of several members of which too few answer, or agree on a leader, to serve reads.
    case storeWithoutQuorum(cluster: String, health: String, members: [String])

    /// Why two clusters cannot be meshed.
    public enum ConnectConflict: Sendable, Hashable {
        case sameName(String)
        case sameID(UInt32)
        case maxConnectedClustersDiffer(UInt32, UInt32)
        case podCIDRsOverlap(String, String)
        case podCIDRInServiceCIDR(podCluster: String, podCIDR: String, serviceCluster: String, serviceCIDR: String)
        case differentCAs
        /// One cluster encrypts traffic between nodes (its nodes publish WireGuard keys) and the
        /// other does not, on some or all of its nodes: traffic between them would be in the clear.
        case mixedEncryption(encrypting: String, plain: String, plainNodes: [String])
        /// A pod CIDR outside the private ranges, or wider than a /8: its records could claim
        /// the world's addresses here.
        case podCIDRNotPrivate(cluster: String, podCIDR: String)
        /// The exporter's pod CIDR holds an address of one of the importer's nodes.
        case podCIDRCoversNode(podCluster: String, podCIDR: String, node: String, address: String)
        /// The exporter clashes with a cluster the importer already imports.
        case clashesWithPeer(peer: String, detail: String)
    }

    public var description: String {
        switch self {
        case let .configUnreadable(path, detail): "cannot parse \(path): \(detail)"
        case let .noCurrentContext(path): "no context given and no current-context set in \(path); pass --context NAME"
        case let .contextNotFound(name, path, known):
            "context \(name) not found in \(path)" + (known.isEmpty ? " (no contexts; run `meridian lab up`)" : " (known: \(known.joined(separator: ", ")))")
        case let .credentialUnreadable(context, what, path): "context \(context): cannot read \(what) \(path)"
        case let .notBootstrapped(context, missing): "context \(context): cluster has no published \(missing); is its control plane running?"
        case let .exportNotPublished(cluster, waited):
            "clustermesh enabled, but the control plane of \(cluster) has not published its cluster config within \(waited); is it running?"
        case let .credentialNotIssued(cluster, peer, waited):
            "cannot connect: the control plane of \(cluster) issued no credential for \(peer) within \(waited); is it running? (see its control-plane.log)"
        case let .clusterGivenTwice(cluster, context): "cannot connect: cluster \(cluster) is given twice (context \(context))"
        case let .meshNotEnabled(cluster, context):
            "clustermesh is not enabled on \(cluster); run `meridian clustermesh enable --context \(context)` first"
        case let .invalidCluster(cluster, detail): "\(cluster): \(detail)"
        case let .cannotConnect(a, b, conflict):
            switch conflict {
            case let .sameName(name): "cannot connect \(a) and \(b): both clusters are named \(name); cluster names must be unique in a mesh"
            case let .sameID(id): "cannot connect \(a) and \(b): both have cluster ID \(id); identities would collide"
            case let .maxConnectedClustersDiffer(x, y):
                "cannot connect \(a) (maxConnectedClusters \(x)) and \(b) (\(y)): the value must be equal across the mesh"
            case let .podCIDRsOverlap(x, y): "cannot connect \(a) and \(b): pod CIDRs \(x) and \(y) overlap; pod IPs must be unique across the mesh"
            case let .podCIDRInServiceCIDR(podCluster, podCIDR, serviceCluster, serviceCIDR):
                "cannot connect \(a) and \(b): \(podCluster)'s pod CIDR \(podCIDR) overlaps \(serviceCluster)'s service CIDR \(serviceCIDR); \(serviceCluster) would take those pod addresses for its services"
            case .differentCAs: "cannot connect \(a) and \(b): their CAs differ; use a shared CA or pass --allow-mismatching-ca"
            case let .mixedEncryption(encrypting, plain, nodes):
                "cannot connect \(a) and \(b): \(encrypting) encrypts traffic between nodes (WireGuard) but \(plain) does not on \(nodes.count) node(s) (\(nodes.prefix(5).joined(separator: ", "))); traffic between them would cross the underlay in the clear. Turn encryption on in \(plain), or pass --allow-mixed-encryption"
            case let .podCIDRNotPrivate(cluster, cidr):
                "cannot connect \(a) and \(b): \(cluster)'s pod CIDR \(cidr) is not inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10, or is wider than a /8; its records could claim addresses outside the clusters"
            case let .podCIDRCoversNode(podCluster, cidr, node, address):
                "cannot connect \(a) and \(b): \(podCluster)'s pod CIDR \(cidr) holds \(address), the address of node \(node); its pods would shadow the node"
            case let .clashesWithPeer(peer, detail):
                "cannot connect \(a) and \(b): \(detail), as \(peer) already connected has"
            }
        case let .fileUnreadable(path): "cannot read \(path)"
        case let .noObjects(source): "\(source): no objects to apply"
        case let .invalidPort(text, reason): "--port \(text): \(reason)"
        case let .podNotFound(namespace, name, cluster): "pod \(namespace)/\(name) not found in cluster \(cluster)"
        case let .podWithoutIdentity(namespace, name, cluster): "pod \(namespace)/\(name) in cluster \(cluster) has no identity yet (is it running?)"
        case let .traceToServiceAddress(address, serviceCIDR, cluster):
            "--to \(address) is in \(cluster)'s service range \(serviceCIDR): policy judges a connection to a Service against the backend it is balanced to, so trace to a backend pod (--to NAMESPACE/POD)"
        case let .deploymentNotFound(namespace, name, cluster): "deployment \(namespace)/\(name) not found in \(cluster)"
        case let .nodeNotFound(node, cluster): "nodes \"\(node)\" not found in cluster \(cluster)"
        case let .resourceNotFound(kind, name, cluster): "\(kind) \"\(name)\" not found in cluster \(cluster)"
        case let .notProgrammed(cluster, revision, lagging, waited):
            "timed out after \(waited): \(lagging.count) node(s) of \(cluster) have not programmed store revision \(revision): "
                + lagging.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value.map { "at \($0)" } ?? "no status"))" }.joined(separator: ", ")
                + "; is their agent running? (`meridian lab status`, or the agent's log)"
        case let .notImported(namespace, name, cluster):
            "timed out: \(cluster)'s control plane has made no ServiceImport \(namespace)/\(name) listing \(cluster); "
                + "see `meridian get serviceexports -n \(namespace) --context <context>` for the export's conditions"
        case let .storeWithoutQuorum(cluster, health, members):
            "the store of \(cluster) has no quorum (\(health)): \(members.joined(separator: "; ")); start the members that are down"
        }
    }
}
