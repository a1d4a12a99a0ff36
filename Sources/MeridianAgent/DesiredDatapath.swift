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

/// The ipcache as records claim its prefixes, kept up to date one record at a time. Local
/// claims always beat imported ones; among local claims an endpoint's beats a node's, which
/// beats the gateway's (the later kind of record is the more specific one), and between imported
/// claims the record whose key sorts first wins, whatever order they come in, so every node of
/// the cluster picks the same. An imported claim overlapping one of this cluster's own ranges is
/// refused outright. Only conflicts that refuse an imported record are reported: local records
/// are the cluster's own to sort out.
struct IPCacheClaims: Sendable {
    /// What kind of local record a claim comes from; a higher rank holds a prefix against a lower.
    enum Rank: Int, Sendable, Comparable {
        case gateway, node, endpoint

        static func < (lhs: Rank, rhs: Rank) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private struct Claim: Sendable {
        var entry: IPCacheEntry
        var local: Bool
        var rank: Rank
    }

    /// The claims on one prefix: almost always one, kept without a dictionary of its own (at
    /// 250,000 imported endpoints a dictionary per prefix was a quarter of the agent's memory).
    private enum Claimants: Sendable {
        case one(String, Claim)
        case many([String: Claim])

        var all: [(key: String, claim: Claim)] {
            switch self {
            case let .one(key, claim): [(key, claim)]
            case let .many(claims): claims.map { ($0.key, $0.value) }
            }
        }

        func adding(_ key: String, _ claim: Claim) -> Claimants {
            switch self {
            case let .one(existing, _) where existing == key:
                return .one(key, claim)
            case let .one(existing, other):
                return .many([existing: other, key: claim])
            case var .many(claims):
                claims[key] = claim
                return .many(claims)
            }
        }

        /// Without `key`; nil when no claim is left.
        func removing(_ key: String) -> Claimants? {
            switch self {
            case let .one(existing, _):
                return existing == key ? nil : self
            case var .many(claims):
                claims[key] = nil
                if claims.count == 1, let last = claims.first { return .one(last.key, last.value) }
                return claims.isEmpty ? nil : .many(claims)
            }
        }
    }

    /// The prefixes one record claims: one for an endpoint, two for a node.
    private enum ClaimedPrefixes: Sendable {
        case one(IPCIDR)
        case several([IPCIDR])

        init?(_ prefixes: [IPCIDR]) {
            switch prefixes.count {
            case 0: return nil
            case 1: self = .one(prefixes[0])
            default: self = .several(prefixes)
            }
        }

        var all: [IPCIDR] {
            switch self {
            case let .one(prefix): [prefix]
            case let .several(prefixes): prefixes
            }
        }
    }

    /// This cluster's own ranges (pod and service CIDRs): no imported prefix may overlap them,
    /// whether it equals, holds or lies inside a local one.
    let localRanges: [IPCIDR]
    private(set) var entries: [IPCIDR: IPCacheEntry] = [:]
    private(set) var conflicts: [IPCIDR: AddressConflict] = [:]
    private var claimants: [IPCIDR: Claimants] = [:]
    private var refused: [IPCIDR: Set<String>] = [:]
    private var prefixesOf: [String: ClaimedPrefixes] = [:]
    /// Prefixes whose entry or holder changed since `takeChanged()`.
    private var changed: Set<IPCIDR> = []

    init(localRanges: [IPCIDR] = []) {
        self.localRanges = localRanges
    }

    /// Replaces every claim `key` made with `claims` (none: the record is gone).
    mutating func set(_ key: String, claims: [(prefix: IPCIDR, entry: IPCacheEntry)], local: Bool, rank: Rank) {
        let previous = prefixesOf.removeValue(forKey: key)?.all ?? []
        for prefix in previous {
            claimants[prefix] = claimants[prefix]?.removing(key)
            refused[prefix]?.remove(key)
            if refused[prefix]?.isEmpty == true { refused[prefix] = nil }
        }
        var now: [IPCIDR] = []
        for (prefix, entry) in claims {
            now.append(prefix)
            if !local, localRanges.contains(where: { $0.overlaps(prefix) }) {
                refused[prefix, default: []].insert(key)
            } else {
                let claim = Claim(entry: entry, local: local, rank: rank)
                claimants[prefix] = claimants[prefix]?.adding(key, claim) ?? .one(key, claim)
            }
        }
        prefixesOf[key] = ClaimedPrefixes(now)
        for prefix in Set(previous).union(now) { settle(prefix) }
    }

    /// The record key holding `prefix`.
    func holder(of prefix: IPCIDR) -> String? { winner(of: prefix)?.key }

    /// The prefixes whose entry or holder changed since the last call.
    mutating func takeChanged() -> Set<IPCIDR> {
        defer { changed = [] }
        return changed
    }

    private func winner(of prefix: IPCIDR) -> (key: String, claim: Claim)? {
        switch claimants[prefix] {
        case nil: nil
        case let .one(key, claim): (key, claim)
        case let .many(claims):
            claims.min { a, b in
                if a.value.local != b.value.local { return a.value.local }
                if a.value.local, a.value.rank != b.value.rank { return a.value.rank > b.value.rank }
                return a.key < b.key
            }.map { ($0.key, $0.value) }
        }
    }

    /// Settles who holds `prefix` after a claim on it changed. The prefix counts as changed
    /// whatever the outcome: its holder may have changed even where its entry reads the same.
    private mutating func settle(_ prefix: IPCIDR) {
        let winner = winner(of: prefix)
        changed.insert(prefix)
        if let winner { entries[prefix] = winner.claim.entry } else { entries[prefix] = nil }
        var losers = refused[prefix] ?? []
        for (key, claim) in claimants[prefix]?.all ?? [] where !claim.local && key != winner?.key { losers.insert(key) }
        if losers.isEmpty {
            if conflicts[prefix] != nil { conflicts[prefix] = nil }
        } else if refused[prefix] != nil, let range = localRanges.first(where: { $0.overlaps(prefix) }) {
            conflicts[prefix] = AddressConflict(winner: "local range \(range)", losers: losers)
        } else {
            conflicts[prefix] = AddressConflict(winner: winner?.key ?? "", losers: losers)
        }
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

    /// The whole desired state of `inputs`, computed at once (the agent keeps a `DatapathState`
    /// current from changes instead; both give the same state).
    static func compute(_ inputs: Inputs, context: NodeContext) -> DesiredDatapath {
        var state = DatapathState(context: context, namesPods: inputs.namesPods)
        state.load(inputs)
        _ = state.refresh()
        return state.desired
    }

    /// What the maps program for `frontends`: each frontend's backends, a backend listed once
    /// per slot it takes (cluster weights), and the backends that are not active.
    static func programmed(_ frontends: [ServiceFrontend]) -> (frontends: [Frontend: [BackendAddress]], states: [BackendAddress: BackendState]) {
        var programmed: [Frontend: [BackendAddress]] = [:]
        var states: [BackendAddress: BackendState] = [:]
        for frontend in frontends {
            guard let vip = IPAddress(frontend.address), let proto = L4Protocol(rawValue: frontend.proto).flatMap(proto) else { continue }
            var backends: [BackendAddress] = []
            backends.reserveCapacity(frontend.backends.count)
            for backend in frontend.backends {
                guard let ip = IPAddress(backend.ip) else { continue }
                let address = BackendAddress(address: ip, port: backend.port, proto: proto, clusterID: UInt16(truncatingIfNeeded: backend.clusterID))
                if let state = BackendState(rawValue: backend.state), state != .active { states[address] = state }
                for _ in 0..<max(1, backend.slots ?? 1) { backends.append(address) }
            }
            programmed[Frontend(address: vip, port: frontend.port, proto: proto)] = backends
        }
        return (programmed, states)
    }

    /// The whole service side of `records` at once: what `DatapathState` keeps per service,
    /// computed in one pass (for tests to hold the per-service upkeep to).
    static func services(_ records: ServiceRecords, cluster: String, clusterID: UInt32)
        -> (frontends: [Frontend: [BackendAddress]], states: [BackendAddress: BackendState], names: ServiceNames) {
        let programmed = programmed(records.frontends(cluster: cluster, clusterID: clusterID))
        var names = clusterSetNames(records, cluster: cluster)
        names.clusterIPs = clusterIPs(records)
        return (programmed.frontends, programmed.states, names)
    }

    /// The ClusterIP of every Service that has one, by `name.namespace`, whatever its ports.
    static func clusterIPs(_ records: ServiceRecords) -> [String: IPAddress] {
        var clusterIPs: [String: IPAddress] = [:]
        for service in records.services {
            guard let clusterIP = service.spec.clusterIP, let vip = IPAddress(clusterIP) else { continue }
            clusterIPs["\(service.metadata.name).\(service.metadata.namespace ?? KubernetesObject.defaultNamespace)"] = vip
        }
        return clusterIPs
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
