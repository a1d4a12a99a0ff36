import Foundation

/// Where a global service sends new connections when several clusters have backends, beyond
/// Cilium's local/remote affinity: an ordered list of clusters, and weights between clusters.
///
/// - `service.meridian.io/cluster-preference: "cluster1,cluster2,*"`: the first entry with an
///   active backend takes every new connection; when its backends go, the next one does, and
///   traffic comes back when they return. `*` stands for every cluster the list does not name;
///   without it, clusters the list does not name get no traffic.
/// - `service.meridian.io/cluster-weights: "cluster1=3,cluster2=1"`: new connections are split
///   between the clusters that take them (all of them, or those of the chosen preference entry)
///   in proportion to their weights, whatever their number of backends; `*=N` sets the weight of
///   clusters the list does not name (default 1). Weights are 1...100.
///
/// Either replaces `service.cilium.io/affinity`, which must then be `none` (or absent).
public struct ClusterPreference: Sendable, Hashable, CustomStringConvertible {
    /// One entry of the ordered list.
    public enum Entry: Sendable, Hashable, CustomStringConvertible {
        case cluster(String)
        /// Every cluster the list does not name.
        case others

        public var description: String {
            switch self {
            case let .cluster(name): name
            case .others: "*"
            }
        }
    }

    /// The ordered list; nil when the service gives none (every cluster is one entry).
    public var order: [Entry]?
    /// Named clusters' weights; nil when the service gives none (every backend counts the same).
    public var weights: [String: Int]?
    /// The weight of clusters `weights` does not name.
    public var otherWeight: Int

    public init(order: [Entry]? = nil, weights: [String: Int]? = nil, otherWeight: Int = 1) {
        self.order = order
        self.weights = weights
        self.otherWeight = otherWeight
    }

    public static let weightRange = 1...100

    /// `order cluster3,cluster2,*; weights cluster2=3,*=1`, as `service list` shows it.
    public var description: String {
        var parts: [String] = []
        if let order { parts.append("order " + order.map(\.description).joined(separator: ",")) }
        if let weights {
            parts.append("weights " + (weights.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + ["*=\(otherWeight)"]).joined(separator: ","))
        }
        return parts.joined(separator: "; ")
    }

    public func weight(of cluster: String) -> Int {
        weights?[cluster] ?? otherWeight
    }

    /// Slots per backend that split new connections between clusters by weight: cluster c gets
    /// about `u · w_c` slots, spread evenly over its backends (each at least one), with `u` large
    /// enough that the smallest per-backend share rounds well and the total stays within
    /// `maximumSlots`. Keyed by `cluster/ip`; empty without weights, or with more backends than
    /// slots (each then has one).
    func slots(for backends: [MeshBackend], maximumSlots: Int) -> [String: Int] {
        guard weights != nil, !backends.isEmpty, backends.count < maximumSlots else { return [:] }
        let byCluster = Dictionary(grouping: backends, by: \.cluster)
        let weightTotal = Double(byCluster.keys.map(weight(of:)).reduce(0, +))
        let precise = 20 * byCluster.map { Double($0.value.count) / Double(weight(of: $0.key)) }.max()!
        let unit = min(precise, Double(maximumSlots - backends.count) / weightTotal)
        var result: [String: Int] = [:]
        for (cluster, members) in byCluster {
            let share = max(members.count, Int((unit * Double(weight(of: cluster))).rounded(.down)))
            for (index, backend) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                result[backend.key] = share / members.count + (index < share % members.count ? 1 : 0)
            }
        }
        return result
    }

    /// Which of `clusters` an entry stands for.
    func clusters(of entry: Entry, among clusters: Set<String>) -> Set<String> {
        switch entry {
        case let .cluster(name):
            return clusters.contains(name) ? [name] : []
        case .others:
            let named = Set((order ?? []).compactMap { if case let .cluster(name) = $0 { name } else { nil } })
            return clusters.subtracting(named)
        }
    }

    /// Entries a list or a weight annotation may hold: every cluster of the largest mesh, and `*`.
    public static let maximumEntries = 512

    /// Parses the list: cluster names and at most one `*`, comma-separated, each once.
    static func parseOrder(_ annotation: String, _ raw: String) throws(ServiceMeshAnnotationError) -> [Entry] {
        let expectation = "a comma-separated list of at most \(maximumEntries) cluster names, each once, and at most one \"*\" (e.g. \"cluster1,cluster2,*\")"
        let parts = raw.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count <= maximumEntries else { throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation) }
        var entries: [Entry] = []
        var seen: Set<Entry> = []
        for part in parts {
            let name = part.trimmingCharacters(in: .whitespaces)
            let entry: Entry = name == "*" ? .others : .cluster(name)
            guard name == "*" || ClusterPreference.isClusterName(name), seen.insert(entry).inserted else {
                throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation)
            }
            entries.append(entry)
        }
        return entries
    }

    /// Parses `name=weight` pairs (and `*=weight`), comma-separated, each name once.
    static func parseWeights(_ annotation: String, _ raw: String) throws(ServiceMeshAnnotationError) -> (named: [String: Int], other: Int) {
        let expectation = "comma-separated CLUSTER=WEIGHT pairs (and *=WEIGHT for the others), each once, weights \(weightRange.lowerBound)...\(weightRange.upperBound) (e.g. \"cluster1=3,cluster2=1\")"
        var named: [String: Int] = [:]
        var other: Int?
        let parts = raw.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count <= maximumEntries else { throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation) }
        for part in parts {
            let pair = part.split(separator: "=", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, let weight = Int(pair[1]), weightRange.contains(weight) else {
                throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation)
            }
            if pair[0] == "*" {
                guard other == nil else { throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation) }
                other = weight
            } else {
                guard isClusterName(pair[0]), named[pair[0]] == nil else {
                    throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: expectation)
                }
                named[pair[0]] = weight
            }
        }
        return (named, other ?? 1)
    }

    /// A name `clustermesh` accepts for a cluster.
    static func isClusterName(_ text: String) -> Bool {
        (try? ClusterValidation.validateName(text)) != nil
    }
}
