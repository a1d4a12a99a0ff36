import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore

/// The records a node's datapath derives from, as the mirror's changes bring them, and what
/// they derive: the ipcache claims, named ports and pod names, the services. It exists so a
/// change costs work in proportion to the change: one imported endpoint moving re-decodes one
/// record and re-settles its prefixes, where rebuilding the whole state cost a pass over every
/// record in the mesh (hundreds of thousands at 250 clusters). Service-side records are kept
/// too, and their frontends recomputed only when one of them changed.
struct DatapathState: Sendable {
    /// Where a record came from, by the mirrored prefix (and, for resources, the kind) it is under.
    enum Source: Sendable, Hashable {
        case localNodes, remoteNodes, localEndpoints, remoteEndpoints
        case services, pods, podStatuses, namespaces, policies, serviceImports, remoteServices, remoteServiceSlices
        case localIdentities, remoteIdentities
    }

    /// What moved since the last `refresh()`, for the agent to act on.
    struct Changes: Sendable {
        /// ipcache prefixes whose entry (or holder) changed.
        var ipcache: Set<IPCIDR> = []
        /// Service frontends whose backends changed, and backends whose state did.
        var frontends: Set<Frontend> = []
        var backendStates: Set<BackendAddress> = []
        /// Anything service-side moved: frontends, states, or the names DNS answers.
        var services = false
        /// Policies or identities changed, or an identity's named ports did.
        var policyInputs = false
        var podsOrNamespaces = false
        var localEndpoints = false
    }

    let context: NodeContext
    let namesPods: Bool
    private(set) var claims: IPCacheClaims
    /// Every record as last seen, per source (the values share their bytes with the mirror's).
    private(set) var records: [Source: [String: Data]] = [:]
    /// The named ports and pod name of the endpoint records that have either.
    private var endpointInfo: [String: EndpointInfo] = [:]
    /// What a prefix's holder contributes in named ports and pod name, as counted.
    private var counted: [IPCIDR: EndpointInfo] = [:]
    /// Named ports per identity, per prefix whose holder contributes them.
    private var namedPortsByIdentity: [UInt32: [IPCIDR: Set<NamedPort>]] = [:]
    private(set) var namedPorts: [UInt32: Set<NamedPort>] = [:]
    private(set) var podNames: [IPAddress: FlowNames.Pod] = [:]
    private var serviceIndex = ServiceIndex()
    private var frontendTable = OwnedValues<Frontend, [BackendAddress]>()
    private var stateTable = OwnedValues<BackendAddress, BackendState>()
    private var serviceIPTable = OwnedValues<String, IPAddress>()
    private var clusterSetTable = OwnedValues<String, [IPAddress]>()
    private var clusterSetBackendTable = OwnedValues<String, IPAddress>()
    var services: [Frontend: [BackendAddress]] { frontendTable.values }
    var backendStates: [BackendAddress: BackendState] { stateTable.values }
    var serviceIPs: [String: IPAddress] { serviceIPTable.values }
    var clusterSetNames: ServiceNames {
        var names = ServiceNames()
        names.clusterSet = clusterSetTable.values
        names.clusterSetBackends = clusterSetBackendTable.values
        return names
    }
    private var pending = Changes()
    private var touchedIdentities: Set<UInt32> = []

    /// The part of an endpoint record that is not its ipcache entry.
    private struct EndpointInfo: Sendable, Equatable {
        var prefix: IPCIDR
        var identity: UInt32
        var namedPorts: Set<NamedPort>
        var pod: FlowNames.Pod?
    }

    init(context: NodeContext, namesPods: Bool) {
        self.context = context
        self.namesPods = namesPods
        prefixSources = Self.prefixSources(cluster: context.cluster.name)
        claims = IPCacheClaims(localRanges: [context.cluster.podCIDR, context.cluster.serviceCIDR].compactMap(IPCIDR.init))
        if let gateway = try? IPCIDR(address: context.gateway, prefixLength: 32) {
            claims.set("gateway", claims: [(gateway, IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil,
                                                                  flags: UInt8(MER_IPCACHE_F_LOCAL_NODE), clusterID: UInt16(context.cluster.id)))],
                       local: true, rank: .gateway)
        }
    }

    /// The prefixes the agent's mirror follows, for `apply(_:of:)`.
    static func mirroredPrefixes(cluster: String) -> [String] {
        [
            MeshKind.nodes.statePrefix(cluster: cluster),
            MeshKind.endpoints.statePrefix(cluster: cluster),
            // One watch for every resource kind, so its revision says how far policies, pods
            // and namespaces have all been read.
            KeyLayout.resourcesPrefix,
            KeyLayout.podStatusPrefix,
            MeshKind.identities.statePrefix(cluster: cluster),
            MeshKind.nodes.cacheRoot, MeshKind.endpoints.cacheRoot, MeshKind.services.cacheRoot, MeshKind.identities.cacheRoot,
            MeshKind.serviceSlices.cacheRoot,
        ]
    }

    /// The source of each mirrored prefix but the resources one, which holds several.
    private let prefixSources: [String: Source]
    private static let resourceSources: [String: Source] = [
        ResourceKind.service.plural: .services, ResourceKind.pod.plural: .pods, ResourceKind.namespace.plural: .namespaces,
        ResourceKind.serviceImport.plural: .serviceImports, ResourceKind.networkPolicy.plural: .policies,
        ResourceKind.ciliumNetworkPolicy.plural: .policies, ResourceKind.ciliumClusterwideNetworkPolicy.plural: .policies,
    ]

    /// The kind each service-side source holds in the `ServiceIndex`.
    private static let serviceKinds: [Source: ServiceIndex.Kind] = [
        .services: .service, .pods: .pod, .podStatuses: .podStatus, .remoteServices: .remoteService,
        .remoteServiceSlices: .remoteSlice, .serviceImports: .serviceImport,
    ]

    private static func prefixSources(cluster: String) -> [String: Source] {
        [
            MeshKind.nodes.statePrefix(cluster: cluster): .localNodes, MeshKind.endpoints.statePrefix(cluster: cluster): .localEndpoints,
            KeyLayout.podStatusPrefix: .podStatuses, MeshKind.identities.statePrefix(cluster: cluster): .localIdentities,
            MeshKind.nodes.cacheRoot: .remoteNodes, MeshKind.endpoints.cacheRoot: .remoteEndpoints, MeshKind.services.cacheRoot: .remoteServices,
            MeshKind.identities.cacheRoot: .remoteIdentities, MeshKind.serviceSlices.cacheRoot: .remoteServiceSlices,
        ]
    }

    /// The source of `key`, read from the mirrored `prefix` it came under; nil: not one the
    /// datapath uses (another resource kind).
    private func source(of key: String, under prefix: String) -> Source? {
        guard prefix == KeyLayout.resourcesPrefix else { return prefixSources[prefix] }
        return Self.resourceSources[String(key.dropFirst(prefix.count).prefix { $0 != "/" })]
    }

    /// The sources a mirrored prefix holds.
    private func sources(under prefix: String) -> Set<Source> {
        prefix == KeyLayout.resourcesPrefix ? Set(Self.resourceSources.values) : Set([prefixSources[prefix]].compactMap { $0 })
    }

    /// Takes in what changed under one mirrored prefix.
    mutating func apply(_ changes: PrefixChanges, of prefix: String) {
        switch changes {
        case let .changed(keys):
            for (key, value) in keys {
                guard let source = source(of: key, under: prefix) else { continue }
                update(key, to: value, in: source)
            }
        case let .everything(all):
            // Keys of this prefix no longer listed are gone; the rest are taken as changes.
            for source in sources(under: prefix) {
                for key in (records[source] ?? [:]).keys where all[key] == nil { update(key, to: nil, in: source) }
            }
            for (key, value) in all {
                guard let source = source(of: key, under: prefix) else { continue }
                update(key, to: value, in: source)
            }
        }
    }

    /// Loads every input at once, as a first listing would.
    mutating func load(_ inputs: DesiredDatapath.Inputs) {
        let all: [(Source, [String: Data])] = [
            (.localNodes, inputs.nodes), (.remoteNodes, inputs.remoteNodes), (.localEndpoints, inputs.endpoints),
            (.remoteEndpoints, inputs.remoteEndpoints), (.services, inputs.services), (.pods, inputs.pods),
            (.podStatuses, inputs.podStatuses), (.remoteServices, inputs.remoteServices),
            (.remoteServiceSlices, inputs.remoteServiceSlices), (.serviceImports, inputs.serviceImports),
        ]
        for (source, values) in all {
            for (key, value) in values { update(key, to: value, in: source) }
        }
    }

    /// Sets one record (nil: deleted) and re-derives what depends on it alone.
    private mutating func update(_ key: String, to value: Data?, in source: Source) {
        guard records[source]?[key] != value else { return }
        records[source, default: [:]][key] = value
        switch source {
        case .localNodes, .remoteNodes:
            claims.set(key, claims: value.map { nodeClaims(key, $0, imported: source == .remoteNodes) } ?? [], local: source == .localNodes, rank: .node)
        case .localEndpoints, .remoteEndpoints:
            let imported = source == .remoteEndpoints
            let pair = value.flatMap { try? StoreCoding.decode(IPIdentityPair.self, from: $0, key: key) }
            var entries: [(prefix: IPCIDR, entry: IPCacheEntry)] = []
            if let pair, let prefix = try? pair.prefix(), prefix.family == .ipv4 {
                let owner = imported ? UInt16(truncatingIfNeeded: context.identityLayout.clusterID(of: pair.id).rawValue) : UInt16(context.cluster.id)
                let flags = UInt8(MER_IPCACHE_F_TUNNEL) | (imported ? UInt8(MER_IPCACHE_F_REMOTE_CLUSTER) : 0)
                entries = [(prefix, IPCacheEntry(identity: pair.id, tunnelEndpoint: IPAddress(pair.hostIP), flags: flags, clusterID: owner))]
                let info = EndpointInfo(
                    prefix: prefix, identity: pair.id, namedPorts: Set(pair.namedPorts ?? []),
                    pod: namesPods && !pair.k8sPodName.isEmpty
                        ? FlowNames.Pod(cluster: imported ? MeshKind.endpoints.cacheCluster(ofKey: key) ?? "" : context.cluster.name,
                                        namespace: pair.k8sNamespace, name: pair.k8sPodName)
                        : nil)
                // Only what the holder contributes beyond its entry is kept: most records have none.
                endpointInfo[key] = info.namedPorts.isEmpty && info.pod == nil ? nil : info
            } else {
                endpointInfo[key] = nil
            }
            claims.set(key, claims: entries, local: !imported, rank: .endpoint)
            if !imported { pending.localEndpoints = true }
        case .services, .podStatuses, .remoteServices, .remoteServiceSlices, .serviceImports, .pods:
            if let kind = Self.serviceKinds[source] { serviceIndex.update(kind, key: key, value: value) }
            if source == .pods { pending.podsOrNamespaces = true }
        case .namespaces:
            pending.podsOrNamespaces = true
        case .policies, .localIdentities, .remoteIdentities:
            pending.policyInputs = true
        }
    }

    /// The claims of a node record: its pod CIDR through the node, and its own address.
    private func nodeClaims(_ key: String, _ value: Data, imported: Bool) -> [(prefix: IPCIDR, entry: IPCacheEntry)] {
        guard let node = try? StoreCoding.decode(NodeRecord.self, from: value, key: key),
              let internalAddress = node.ipAddresses.first(where: { $0.type == .internalIP }),
              let nodeIP = IPAddress(internalAddress.ip) else { return [] }
        let nodeCluster = UInt16(truncatingIfNeeded: node.clusterID)
        let remoteFlag = imported ? UInt8(MER_IPCACHE_F_REMOTE_CLUSTER) : 0
        var claims: [(prefix: IPCIDR, entry: IPCacheEntry)] = []
        if let cidr = node.ipv4AllocCIDR {
            claims.append((cidr, IPCacheEntry(identity: ReservedIdentity.world.rawValue, tunnelEndpoint: nodeIP,
                                              flags: UInt8(MER_IPCACHE_F_TUNNEL) | remoteFlag, clusterID: nodeCluster)))
        }
        if let host = try? IPCIDR(address: nodeIP, prefixLength: 32) {
            let isSelf = !imported && node.name == context.nodeName
            claims.append((host, isSelf
                ? IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil, flags: UInt8(MER_IPCACHE_F_LOCAL_NODE),
                               clusterID: UInt16(context.cluster.id))
                : IPCacheEntry(identity: ReservedIdentity.remoteNode.rawValue, tunnelEndpoint: nil, flags: remoteFlag, clusterID: nodeCluster)))
        }
        return claims
    }

    /// Settles what the changes since the last call derive (named ports, pod names, services)
    /// and says what moved.
    mutating func refresh() -> Changes {
        var changes = pending
        pending = Changes()
        changes.ipcache = claims.takeChanged()
        // The holder of a prefix is the endpoint whose named ports and pod name count.
        // Every prefix a changed record claimed or claims is in `changes.ipcache`.
        for prefix in changes.ipcache {
            if let old = counted.removeValue(forKey: prefix) {
                namedPortsByIdentity[old.identity]?[prefix] = nil
                touchedIdentities.insert(old.identity)
                if old.pod != nil { podNames[prefix.address] = nil }
            }
            guard let holder = claims.holder(of: prefix), let info = endpointInfo[holder], info.prefix == prefix else { continue }
            counted[prefix] = info
            if !info.namedPorts.isEmpty {
                namedPortsByIdentity[info.identity, default: [:]][prefix] = info.namedPorts
                touchedIdentities.insert(info.identity)
            }
            if let pod = info.pod { podNames[prefix.address] = pod }
        }
        for identity in touchedIdentities {
            let ports = (namedPortsByIdentity[identity] ?? [:]).values.reduce(into: Set<NamedPort>()) { $0.formUnion($1) }
            if ports.isEmpty { namedPortsByIdentity[identity] = nil }
            if namedPorts[identity] ?? [] != ports {
                namedPorts[identity] = ports.isEmpty ? nil : ports
                changes.policyInputs = true
            }
        }
        touchedIdentities = []
        for name in serviceIndex.takeTouched() {
            recomputeService(name, into: &changes)
        }
        return changes
    }

    /// Re-derives the frontends, backend states, ClusterIP and clusterset names of one service
    /// name from its records alone. A Service's frontends and its ServiceImport's are held
    /// under owners of their own, so where two claim one frontend the outcome is the same as
    /// computing every service at once in order (the last, by kind, namespace and name, holds).
    private mutating func recomputeService(_ name: String, into changes: inout Changes) {
        let records = serviceIndex.records(of: name)
        let cluster = context.cluster
        let parts: [(ServiceOwner, [ServiceFrontend])] = [
            (ServiceOwner(kind: .service, name: name),
             GlobalServiceMerge.frontends(cluster: cluster.name, clusterID: cluster.id, services: records.services, pods: records.pods,
                                          remote: records.remote)),
            (ServiceOwner(kind: .serviceImport, name: name),
             MultiClusterServiceMerge.frontends(cluster: cluster.name, clusterID: cluster.id, imports: records.imports,
                                                services: records.services, pods: records.pods, remote: records.remote)),
        ]
        for (owner, frontends) in parts {
            let programmed = DesiredDatapath.programmed(frontends)
            let moved = frontendTable.set(owner, programmed.frontends)
            let movedStates = stateTable.set(owner, programmed.states)
            changes.frontends.formUnion(moved)
            changes.backendStates.formUnion(movedStates)
            if !moved.isEmpty || !movedStates.isEmpty { changes.services = true }
        }
        let owner = ServiceOwner(kind: .service, name: name)
        let names = DesiredDatapath.clusterSetNames(records, cluster: cluster.name)
        let moved = [serviceIPTable.set(owner, DesiredDatapath.clusterIPs(records)).isEmpty, clusterSetTable.set(owner, names.clusterSet).isEmpty,
                     clusterSetBackendTable.set(owner, names.clusterSetBackends).isEmpty]
        if moved.contains(false) { changes.services = true }
    }

    /// The ipcache entries of the CIDR identities policy needs, for prefixes the cluster's own
    /// entries neither claim nor lie inside a tunnelled one of (a pod, node or pod CIDR keeps its
    /// identity: CIDR rules select only what lies outside the cluster). Each prefix is checked
    /// against its own covering prefixes, so the cost follows the CIDR identities, not the ipcache.
    func cidrEntries(_ identities: [IPCIDR: UInt32]) -> [IPCIDR: IPCacheEntry] {
        var entries: [IPCIDR: IPCacheEntry] = [:]
        for (prefix, identity) in identities where claims.entries[prefix] == nil {
            let covered = (0...prefix.prefixLength).contains { length in
                guard let outer = try? IPCIDR(address: prefix.address, prefixLength: length) else { return false }
                return (claims.entries[outer]?.flags ?? 0) & UInt8(MER_IPCACHE_F_TUNNEL) != 0
            }
            if !covered {
                entries[prefix] = IPCacheEntry(identity: identity, tunnelEndpoint: nil, flags: 0, clusterID: UInt16(context.cluster.id))
            }
        }
        return entries
    }

    /// The state as one value (for a full apply, and for tests).
    var desired: DesiredDatapath {
        var desired = DesiredDatapath()
        desired.ipcache = claims.entries
        desired.conflicts = claims.conflicts
        desired.services = services
        desired.backendStates = backendStates
        desired.serviceIPs = serviceIPs
        desired.clusterSetNames = clusterSetNames
        desired.namedPorts = namedPorts
        desired.podNames = podNames
        return desired
    }
}

/// Which service record derived a value: a Service's frontends (with the global merge) or a
/// ServiceImport's ClusterSetIP frontends, of one `<namespace>/<name>`. Ordered as computing
/// every service at once would write them: Services before imports, then by namespace and name.
struct ServiceOwner: Hashable, Comparable, Sendable {
    enum Kind: Int, Sendable { case service, serviceImport }
    var kind: Kind
    var namespace: Substring
    var name: Substring

    init(kind: Kind, name namespacedName: String) {
        self.kind = kind
        let parts = namespacedName.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        namespace = parts.first ?? ""
        name = parts.count > 1 ? parts[1] : ""
    }

    static func < (a: ServiceOwner, b: ServiceOwner) -> Bool {
        (a.kind.rawValue, a.namespace, a.name) < (b.kind.rawValue, b.namespace, b.name)
    }
}

/// Values by key that several owners may set, where the greatest owner's value holds. What
/// lets one service's values be replaced alone while keeping the outcome of computing every
/// service in order.
struct OwnedValues<Key: Hashable & Sendable, Value: Equatable & Sendable>: Sendable {
    private(set) var values: [Key: Value] = [:]
    private var byOwner: [ServiceOwner: [Key: Value]] = [:]
    private var owners: [Key: Set<ServiceOwner>] = [:]

    /// Replaces what `owner` sets; returns the keys whose value in force moved.
    mutating func set(_ owner: ServiceOwner, _ entries: [Key: Value]) -> Set<Key> {
        let old = byOwner[owner] ?? [:]
        guard old != entries else { return [] }
        var touched: Set<Key> = []
        for key in old.keys where entries[key] == nil {
            owners[key]?.remove(owner)
            if owners[key]?.isEmpty == true { owners[key] = nil }
            touched.insert(key)
        }
        for (key, value) in entries where old[key] != value {
            owners[key, default: []].insert(owner)
            touched.insert(key)
        }
        byOwner[owner] = entries.isEmpty ? nil : entries
        var moved: Set<Key> = []
        for key in touched {
            let value = owners[key]?.max().flatMap { byOwner[$0]?[key] }
            if values[key] != value {
                values[key] = value
                moved.insert(key)
            }
        }
        return moved
    }
}
