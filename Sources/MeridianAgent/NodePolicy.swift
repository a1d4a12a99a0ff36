import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore

/// The policy the node enforces, computed from one view of the store: the cluster's policy
/// objects, every identity in the mesh (this cluster's and the imported ones), their named
/// ports, the CIDR identities and the ipBlock numbers the rules need. Endpoints ask it for
/// their map entries.
struct PolicySnapshot: Sendable {
    var resolver: PolicyResolver
    var cidrIdentities: CIDRIdentityTable
    /// NetworkPolicy ipBlock prefixes and their numbers, for `mer_ipblock4`.
    var ipBlocks: IPBlockTable
    /// The store revision of the resources the rules and labels were read from.
    var revision: Int64

    /// The records the snapshot is computed from, as the mirror holds them.
    struct Inputs: Sendable {
        var policies: [String: Data]
        var localIdentities: [String: Data]
        var remoteIdentities: [String: Data]
        /// Named ports per identity (`DesiredDatapath.namedPorts`).
        var namedPorts: [UInt32: Set<NamedPort>]
        var revision: Int64
    }

    static func compute(_ inputs: Inputs, cluster: ClusterSettings, cidrIdentities previous: CIDRIdentityTable,
                        ipBlocks previousBlocks: IPBlockTable) -> PolicySnapshot {
        let settings = PolicySettings(clusterName: cluster.name, policyDefaultLocalCluster: cluster.policyDefaultLocalCluster ?? true)
        let objects = inputs.policies.keys.sorted().compactMap { key in
            try? StoreCoding.decode(KubernetesObject.self, from: inputs.policies[key]!, key: key)
        }
        let rules = PolicyCompiler.rules(for: objects, settings: settings)
        var identities: [UInt32: LabelSet] = [:]
        for (key, value) in inputs.localIdentities.merging(inputs.remoteIdentities, uniquingKeysWith: { local, _ in local }) {
            guard let id = key.split(separator: "/").last.flatMap({ UInt32($0) }),
                  let labels = try? LabelSet(ciliumString: String(decoding: value, as: UTF8.self)) else { continue }
            identities[id] = labels
        }
        var cidrIdentities = previous
        cidrIdentities.update(wanted: CIDRIdentityTable.prefixes(in: rules))
        for identity in cidrIdentities.identities.values {
            identities[identity] = CIDRIdentityTable.labels
        }
        var ipBlocks = previousBlocks
        ipBlocks.update(wanted: IPBlockTable.prefixes(in: rules))
        let resolver = PolicyResolver(rules: rules, identities: identities,
                                      namedPorts: inputs.namedPorts.mapValues { $0.sorted { ($0.name, $0.port) < ($1.name, $1.port) } },
                                      localCluster: cluster.name)
        return PolicySnapshot(resolver: resolver, cidrIdentities: cidrIdentities, ipBlocks: ipBlocks, revision: inputs.revision)
    }

    /// The map program of a local endpoint with `identity`; `labels` stand in when the identity
    /// is too new to be in the snapshot.
    func program(identity: UInt32, labels: LabelSet?, namedPorts: [NamedPort]) -> EndpointPolicyProgram {
        var resolver = resolver
        if let labels, resolver.identities[identity] == nil { resolver.identities[identity] = labels }
        if resolver.namedPorts[identity] == nil, !namedPorts.isEmpty { resolver.namedPorts[identity] = namedPorts }
        let policy = resolver.resolve(identity: identity)
        let ingress = policy.ingress.datapathProgram(cidrIdentities: cidrIdentities, ipBlocks: ipBlocks)
        let egress = policy.egress.datapathProgram(cidrIdentities: cidrIdentities, ipBlocks: ipBlocks)
        var entries: [PolicyMapKey: Bool] = [:]
        for (direction, program) in [(UInt8(MER_POLICY_INGRESS), ingress), (UInt8(MER_POLICY_EGRESS), egress)] {
            for entry in program.entries {
                entries[PolicyMapKey(direction: direction, entry: entry)] = entry.deny
            }
        }
        var flags: UInt16 = 0
        if ingress.enforced { flags |= UInt16(MER_ENDPOINT_F_INGRESS_ENFORCED) }
        if egress.enforced { flags |= UInt16(MER_ENDPOINT_F_EGRESS_ENFORCED) }
        return EndpointPolicyProgram(flags: flags, entries: entries)
    }

    /// The ipcache entries of the CIDR identities, for prefixes the cluster's own entries do not
    /// already claim (a pod, node or pod CIDR keeps its identity: CIDR rules select only what
    /// lies outside the cluster).
    func ipcacheEntries(besides cluster: [IPCIDR: IPCacheEntry], clusterID: UInt16) -> [IPCIDR: IPCacheEntry] {
        let tunnelled = cluster.filter { $0.value.flags & UInt8(MER_IPCACHE_F_TUNNEL) != 0 }.keys
        var entries: [IPCIDR: IPCacheEntry] = [:]
        for (prefix, identity) in cidrIdentities.identities where cluster[prefix] == nil {
            if tunnelled.contains(where: { $0.contains(prefix) }) { continue }
            entries[prefix] = IPCacheEntry(identity: identity, tunnelEndpoint: nil, flags: 0, clusterID: clusterID)
        }
        return entries
    }
}

/// One policy-map key of an endpoint, minus the endpoint.
struct PolicyMapKey: Hashable, Sendable {
    var direction: UInt8
    var identity: UInt32
    var proto: UInt8
    var port: UInt16
    /// Bits of (protocol, port) that count: 0, 8, or 8 + the port prefix.
    var prefixLength: UInt8

    init(direction: UInt8, identity: UInt32, proto: UInt8, port: UInt16, prefixLength: UInt8) {
        self.direction = direction
        self.identity = identity
        self.proto = proto
        self.port = port
        self.prefixLength = prefixLength
    }

    init(direction: UInt8, entry: PolicyMapEntry) {
        self.init(direction: direction, identity: entry.remoteIdentity, proto: entry.protocol, port: entry.port,
                  prefixLength: entry.prefixLength)
    }

    init(_ key: mer_policy_key) {
        self.init(direction: key.direction, identity: UInt32(bigEndian: key.identity), proto: key.proto,
                  port: UInt16(bigEndian: key.dport), prefixLength: UInt8(clamping: Int(key.prefixlen) - Int(MER_POLICY_STATIC_PREFIX)))
    }

    func datapathKey(endpointID: UInt16) -> mer_policy_key {
        var key = mer_policy_key()
        key.prefixlen = UInt32(MER_POLICY_STATIC_PREFIX) + UInt32(prefixLength)
        key.endpoint_id = endpointID.bigEndian
        key.direction = direction
        key.identity = identity.bigEndian
        key.proto = proto
        key.dport = port.bigEndian
        return key
    }
}

/// What an endpoint's policy amounts to in the datapath: its enforcement flags and its entries
/// (key to deny).
struct EndpointPolicyProgram: Hashable, Sendable {
    var flags: UInt16 = 0
    var entries: [PolicyMapKey: Bool] = [:]

    func count(direction: UInt8) -> Int { entries.keys.filter { $0.direction == direction }.count }
}
