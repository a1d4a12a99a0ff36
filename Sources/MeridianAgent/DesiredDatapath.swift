import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore

/// An ipcache entry in Swift terms (the map holds `mer_ipcache_value`).
struct IPCacheEntry: Hashable, Sendable {
    var identity: UInt32
    var tunnelEndpoint: IPAddress?
    var flags: UInt8
    var clusterID: UInt16
}

/// Two or more records claiming one ipcache prefix: which one holds it, and the others.
struct AddressConflict: Hashable, Sendable {
    var winner: String
    var losers: Set<String>
}

/// The ipcache as records claim its prefixes. Local claims replace each other as before (the
/// latest wins) and always beat imported ones; between imported claims the record whose key
/// sorts first wins, whatever order they come in, so every node of the cluster picks the same.
struct IPCacheClaims: Sendable {
    /// This cluster's own ranges (pod and service CIDRs): no imported prefix may overlap them,
    /// whether it equals, holds or lies inside a local one.
    var localRanges: [IPCIDR] = []
    private(set) var entries: [IPCIDR: IPCacheEntry] = [:]
    private var holders: [IPCIDR: (key: String, local: Bool)] = [:]
    private(set) var conflicts: [IPCIDR: AddressConflict] = [:]

    /// Returns whether the claim holds the prefix now.
    @discardableResult
    mutating func claim(_ prefix: IPCIDR, _ entry: IPCacheEntry, by key: String, local: Bool) -> Bool {
        if !local, let range = localRanges.first(where: { $0.overlaps(prefix) }) {
            var conflict = conflicts[prefix] ?? AddressConflict(winner: "local range \(range)", losers: [])
            conflict.losers.insert(key)
            conflicts[prefix] = conflict
            return false
        }
        if let holder = holders[prefix], !(local && holder.local) {
            let wins = local || (!holder.local && key < holder.key)
            var conflict = conflicts[prefix] ?? AddressConflict(winner: holder.key, losers: [])
            conflict.losers.insert(wins ? holder.key : key)
            conflict.winner = wins ? key : holder.key
            conflict.losers.remove(conflict.winner)
            conflicts[prefix] = conflict
            guard wins else { return false }
        }
        holders[prefix] = (key, local)
        entries[prefix] = entry
        return true
    }
}

/// One frontend of a service: address, port, protocol.
struct Frontend: Hashable, Sendable, Comparable {
    var address: IPAddress
    var port: UInt16
    var proto: UInt8

    static func < (lhs: Frontend, rhs: Frontend) -> Bool {
        (lhs.address, lhs.port, lhs.proto) < (rhs.address, rhs.port, rhs.proto)
    }
}

/// One backend address of a frontend.
struct BackendAddress: Hashable, Sendable {
    var address: IPAddress
    var port: UInt16
    var proto: UInt8
    var clusterID: UInt16
}

/// The decode caches one agent keeps across its passes.
struct DatapathDecodeCaches: Sendable {
    var nodes = RecordDecodeCache<NodeRecord>()
    var endpoints = RecordDecodeCache<IPIdentityPair>()
    var remoteEndpoints = RecordDecodeCache<IPIdentityPair>()
    var services = ServiceRecordCaches()
}

/// What the node's maps should hold, computed from the cluster's records. Pure: the same
/// records always give the same state, so it can be diffed against what is programmed.
struct DesiredDatapath: Sendable {
    var ipcache: [IPCIDR: IPCacheEntry] = [:]
    /// NetworkPolicy ipBlock prefixes and their numbers, for `mer_ipblock4` (set from the
    /// policy snapshot).
    var ipBlocks: [IPCIDR: UInt32] = [:]
    var services: [Frontend: [BackendAddress]] = [:]
    /// Backends that are not active (absent: active). A state is not part of a backend's
    /// address, so a backend keeps its ID, and the connections that chose it, when it changes.
    var backendStates: [BackendAddress: BackendState] = [:]
    /// ClusterIP per `service.namespace`, for DNS.
    var serviceIPs: [String: IPAddress] = [:]
    /// The `clusterset.local` names of the cluster's ServiceImports.
    var clusterSetNames = ServiceNames()
    /// The named ports of every identity, from the ipcache records (read here, in the one pass
    /// that decodes them, for policy).
    var namedPorts: [UInt32: Set<NamedPort>] = [:]
    /// The pod behind each endpoint address that holds its ipcache entry, for naming flows
    /// (filled only when `Inputs.namesPods`).
    var podNames: [IPAddress: FlowNames.Pod] = [:]

    struct Inputs: Sendable {
        var nodes: [String: Data]
        var endpoints: [String: Data]
        var services: [String: Data]
        var pods: [String: Data]
        var podStatuses: [String: Data]
        /// Imported from peers: `cilium/cache/{nodes,ip,services}/v1/<peer>/...`.
        var remoteNodes: [String: Data] = [:]
        var remoteEndpoints: [String: Data] = [:]
        var remoteServices: [String: Data] = [:]
        /// `cilium/cache/serviceslices/v1/<peer>/...`: the backends of large services.
        var remoteServiceSlices: [String: Data] = [:]
        /// `meridian/resources/serviceimports/...`, made by the control plane.
        var serviceImports: [String: Data] = [:]
        /// Whether to fill `podNames` (the node runs a flow observer).
        var namesPods = false
    }

    /// Addresses claimed by more than one record that could not both be programmed: the local
    /// entry, or the imported record whose key sorts first, keeps the address; the others are
    /// listed here (by record key) so the agent can report them.
    var conflicts: [IPCIDR: AddressConflict] = [:]

    static func compute(_ inputs: Inputs, context: NodeContext, caches: inout DatapathDecodeCaches) -> DesiredDatapath {
        var desired = DesiredDatapath()
        var claims = IPCacheClaims()
        claims.localRanges = [context.cluster.podCIDR, context.cluster.serviceCIDR].compactMap(IPCIDR.init)
        let clusterID = UInt16(context.cluster.id)
        let tunnel = UInt8(MER_IPCACHE_F_TUNNEL)
        let remoteFlag = UInt8(MER_IPCACHE_F_REMOTE_CLUSTER)
        if let gateway = try? IPCIDR(address: context.gateway, prefixLength: 32) {
            claims.claim(gateway, IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil,
                                               flags: UInt8(MER_IPCACHE_F_LOCAL_NODE), clusterID: clusterID),
                         by: "gateway", local: true)
        }
        // Local records first: an imported record never takes an address a local one holds. What
        // is imported is told by where it is stored, not by what it says of itself.
        let nodes = caches.nodes.decode(inputs.nodes.merging(inputs.remoteNodes, uniquingKeysWith: { a, _ in a }))
        let imported = { (key: String) in key.hasPrefix(KeyLayout.cachePrefix) }
        for (key, node) in nodes.filter({ !imported($0.key) }) + nodes.filter({ imported($0.key) }) {
            guard let internalAddress = node.ipAddresses.first(where: { $0.type == .internalIP }),
                  let nodeIP = IPAddress(internalAddress.ip) else { continue }
            let isRemote = imported(key)
            let nodeCluster = UInt16(truncatingIfNeeded: node.clusterID)
            let isSelf = !isRemote && node.name == context.nodeName
            if let cidr = node.ipv4AllocCIDR {
                claims.claim(cidr, IPCacheEntry(identity: ReservedIdentity.world.rawValue, tunnelEndpoint: nodeIP,
                                                flags: tunnel | (isRemote ? remoteFlag : 0), clusterID: nodeCluster),
                             by: key, local: !isRemote)
            }
            if let host = try? IPCIDR(address: nodeIP, prefixLength: 32) {
                claims.claim(host, isSelf
                    ? IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil, flags: UInt8(MER_IPCACHE_F_LOCAL_NODE), clusterID: clusterID)
                    : IPCacheEntry(identity: ReservedIdentity.remoteNode.rawValue, tunnelEndpoint: nil, flags: isRemote ? remoteFlag : 0,
                                   clusterID: nodeCluster),
                    by: key, local: !isRemote)
            }
        }
        let layout = context.identityLayout
        let decodedEndpoints = [(caches.endpoints.decode(inputs.endpoints), false), (caches.remoteEndpoints.decode(inputs.remoteEndpoints), true)]
        for (records, isRemote) in decodedEndpoints {
            for (key, pair) in records {
                guard let prefix = try? pair.prefix(), prefix.family == .ipv4 else { continue }
                let owner = isRemote ? UInt16(truncatingIfNeeded: layout.clusterID(of: pair.id).rawValue) : clusterID
                let won = claims.claim(prefix, IPCacheEntry(identity: pair.id, tunnelEndpoint: IPAddress(pair.hostIP),
                                                            flags: tunnel | (isRemote ? remoteFlag : 0), clusterID: owner),
                                       by: key, local: !isRemote)
                if won, let ports = pair.namedPorts { desired.namedPorts[pair.id, default: []].formUnion(ports) }
                if won, inputs.namesPods, !pair.k8sPodName.isEmpty {
                    desired.podNames[prefix.address] = FlowNames.Pod(
                        cluster: isRemote ? MeshKind.endpoints.cacheCluster(ofKey: key) ?? "" : context.cluster.name,
                        namespace: pair.k8sNamespace, name: pair.k8sPodName)
                }
            }
        }
        desired.ipcache = claims.entries
        desired.conflicts = claims.conflicts

        let records = ServiceRecords(services: inputs.services, pods: inputs.pods, statuses: inputs.podStatuses,
                                     remote: inputs.remoteServices, imports: inputs.serviceImports, remoteSlices: inputs.remoteServiceSlices,
                                     caches: &caches.services)
        let frontends = records.frontends(cluster: context.cluster.name, clusterID: context.cluster.id)
        desired.clusterSetNames = Self.clusterSetNames(records, cluster: context.cluster.name)
        for frontend in frontends {
            guard let vip = IPAddress(frontend.address), let proto = L4Protocol(rawValue: frontend.proto).flatMap(Self.proto) else { continue }
            // A backend with several slots (cluster weights) is listed once per slot.
            desired.services[Frontend(address: vip, port: frontend.port, proto: proto)] = frontend.backends.flatMap { backend -> [BackendAddress] in
                guard let ip = IPAddress(backend.ip) else { return [] }
                let address = BackendAddress(address: ip, port: backend.port, proto: proto, clusterID: UInt16(truncatingIfNeeded: backend.clusterID))
                if let state = BackendState(rawValue: backend.state), state != .active { desired.backendStates[address] = state }
                return Array(repeating: address, count: max(1, backend.slots ?? 1))
            }
        }
        // Every Service with a ClusterIP resolves by name, whatever its ports.
        for (key, value) in inputs.services {
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key),
                  let clusterIP = service.spec.clusterIP, let vip = IPAddress(clusterIP) else { continue }
            desired.serviceIPs["\(service.metadata.name).\(service.metadata.namespace ?? KubernetesObject.defaultNamespace)"] = vip
        }
        return desired
    }

    /// The `clusterset.local` names: each import's ClusterSetIP, or a headless import's healthy
    /// backends with the hostnames their clusters publish.
    static func clusterSetNames(_ records: ServiceRecords, cluster: String) -> ServiceNames {
        var names = ServiceNames()
        for imported in records.imports {
            let key = "\(imported.metadata.name).\(imported.metadata.namespace ?? KubernetesObject.defaultNamespace)"
            switch imported.spec.type {
            case .clusterSetIP:
                guard let ip = imported.spec.ips?.first.flatMap(IPAddress.init) else { continue }
                names.clusterSet[key] = [ip]
            case .headless:
                let endpoints = MultiClusterServiceMerge.endpoints(of: imported, cluster: cluster, services: records.services,
                                                                   pods: records.pods, remote: records.remote)
                names.clusterSet[key] = endpoints.compactMap { IPAddress($0.ip) }
                for endpoint in endpoints {
                    guard let hostname = endpoint.hostname, let ip = IPAddress(endpoint.ip) else { continue }
                    names.clusterSetBackends["\(hostname).\(endpoint.cluster).\(key)"] = ip
                }
            }
        }
        return names
    }

    static func proto(_ l4: L4Protocol) -> UInt8? {
        switch l4 {
        case .tcp: 6
        case .udp: 17
        default: nil
        }
    }
}
