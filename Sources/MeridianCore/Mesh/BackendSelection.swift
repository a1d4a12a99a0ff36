/// The lifecycle state of a service backend, which decides whether it may receive new traffic.
public enum BackendState: String, Codable, Sendable, CaseIterable {
    case active
    /// Shutting down; still served until it is gone.
    case terminating
    /// Marked unhealthy by health checking.
    case quarantined
    /// Taken out of rotation by an operator.
    case maintenance

    /// Active or terminating: the states that count as healthy for selection.
    public var isHealthy: Bool {
        self == .active || self == .terminating
    }

    /// May take new connections whatever the other backends' states.
    public var isActive: Bool { self == .active }
}

/// One backend of a global service as the load balancer sees it, local or imported.
public struct MeshBackend: Sendable, Hashable, Codable {
    public var ip: String
    /// Port name → protocol and port.
    public var ports: [String: L4Addr]
    public var cluster: String
    /// The owning cluster's ID; nil when not known (e.g. a local backend of a standalone cluster).
    public var clusterID: ClusterID?
    public var isLocal: Bool
    public var state: BackendState

    public init(
        ip: String,
        ports: [String: L4Addr],
        cluster: String,
        clusterID: ClusterID? = nil,
        isLocal: Bool,
        state: BackendState = .active
    ) {
        self.ip = ip
        self.ports = ports
        self.cluster = cluster
        self.clusterID = clusterID
        self.isLocal = isLocal
        self.state = state
    }

    /// `cluster/ip`, which identifies a backend across the mesh.
    public var key: String { "\(cluster)/\(ip)" }
}

/// The backends a global service load-balances to, and which of them the affinity prefers.
public struct BackendSelectionResult: Sendable, Hashable {
    /// Healthy backends that receive traffic, sorted by cluster then IP.
    public var selected: [MeshBackend]
    /// `cluster/ip` of the selected backends on the side the affinity prefers; empty for
    /// affinity `none` and while the preferred side has fallen back to the other one.
    public var preferred: Set<String>
    /// Slots a backend takes among the frontend's slots, by `cluster/ip`, where a cluster weight
    /// makes it more than one; new connections pick a slot uniformly.
    public var slots: [String: Int]

    public init(selected: [MeshBackend], preferred: Set<String>, slots: [String: Int] = [:]) {
        self.selected = selected
        self.preferred = preferred
        self.slots = slots
    }
}

/// Picks the backends of a global service from its local and remote backends by affinity.
///
/// Only healthy backends (`active`, `terminating`) are ever selected.
/// - `none`: healthy local and remote backends in one pool.
/// - `local`: healthy local backends; healthy remote backends too when no local one is active
///   (Cilium: "zero active healthy local backends"), so that local pods terminating in a
///   rollout keep their connections while new ones go to the other side.
/// - `remote`: the same with the sides swapped.
/// Which of the selected backends take new connections is the datapath's choice: the active
/// ones, or the terminating ones when none is active (the agent's `MapSynchronizer`).
///
/// Which side a backend is on comes from the list it is passed in, not from `isLocal`. The
/// output is sorted by cluster, then IP (numerically when both IPs parse), and a backend whose
/// `cluster/ip` already appeared earlier in the input is dropped.
///
/// With a `ClusterPreference`, which replaces the affinity: the first entry of its order that has
/// an active backend gives the selection (its healthy backends), together with the terminating
/// backends of the entries before it, which keep their connections but take no new ones (with
/// none active anywhere, every listed entry's healthy backends). Clusters the order does not
/// cover are never selected. Weights then give each selected active backend its number of slots.
public enum BackendSelection {
    /// Slots a frontend has at most (`MapSynchronizer` numbers them in 16 bits).
    public static let maximumSlots = 16_384

    public static func select(
        local: [MeshBackend], remote: [MeshBackend], affinity: ServiceAffinity, preference: ClusterPreference? = nil
    ) -> BackendSelectionResult {
        if let preference { return select(local + remote, preference: preference) }
        let healthyLocal = local.filter(\.state.isHealthy)
        let healthyRemote = remote.filter(\.state.isHealthy)
        let chosen: [MeshBackend]
        let preferred: [MeshBackend]
        switch affinity {
        case .none:
            chosen = healthyLocal + healthyRemote
            preferred = []
        case .local:
            chosen = healthyLocal.contains(where: \.state.isActive) ? healthyLocal : healthyLocal + healthyRemote
            preferred = healthyLocal
        case .remote:
            chosen = healthyRemote.contains(where: \.state.isActive) ? healthyRemote : healthyRemote + healthyLocal
            preferred = healthyRemote
        }
        var seen = Set<String>()
        let unique = chosen.filter { seen.insert($0.key).inserted }
        let preferredKeys = Set(preferred.map(\.key)).intersection(seen)
        return BackendSelectionResult(selected: ordered(unique), preferred: preferredKeys)
    }

    private static func select(_ backends: [MeshBackend], preference: ClusterPreference) -> BackendSelectionResult {
        var seen = Set<String>()
        let healthy = backends.filter { $0.state.isHealthy && seen.insert($0.key).inserted }
        let clusters = Set(healthy.map(\.cluster))
        var chosen: [MeshBackend]?
        // Backends of the entries before the chosen one (all terminating): kept for their connections.
        var passed: [MeshBackend] = []
        for entry in preference.order ?? [.others] where chosen == nil {
            let members = preference.clusters(of: entry, among: clusters)
            let tier = healthy.filter { members.contains($0.cluster) }
            if tier.contains(where: \.state.isActive) { chosen = tier } else { passed += tier }
        }
        let selected = ordered(passed + (chosen ?? []))
        let active = selected.filter(\.state.isActive)
        let slots = preference.slots(for: active.isEmpty ? selected : active, maximumSlots: maximumSlots)
        let preferred = preference.order == nil ? [] : Set((chosen ?? []).map(\.key))
        return BackendSelectionResult(selected: selected, preferred: preferred, slots: slots)
    }

    /// Sorted by cluster, then address (numerically when both parse, parsed once per backend:
    /// a comparator that parsed was most of an agent's pass at 10,000 backends), then text.
    private static func ordered(_ backends: [MeshBackend]) -> [MeshBackend] {
        backends.map { ($0, IPAddress($0.ip)) }.sorted { lhs, rhs in
            if lhs.0.cluster != rhs.0.cluster { return lhs.0.cluster.utf8.lexicographicallyPrecedes(rhs.0.cluster.utf8) }
            switch (lhs.1, rhs.1) {
            case let (left?, right?) where left != right:
                return left < right
            case (.some, nil):
                return true
            case (nil, .some):
                return false
            default:
                return lhs.0.ip.utf8.lexicographicallyPrecedes(rhs.0.ip.utf8)
            }
        }.map(\.0)
    }
}
