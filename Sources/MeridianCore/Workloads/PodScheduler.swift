/// A node as the scheduler weighs it: how busy it is and how much room it has left.
/// Only ready nodes should be offered; the scheduler does not second-guess the list.
public struct NodeLoad: Sendable, Hashable {
    public var name: String
    /// The pods already bound to the node.
    public var podCount: Int
    /// How many more pods the node can take, such as the pod IPs left in its CIDR;
    /// `nil` when nothing limits it.
    public var capacity: Int?

    public init(name: String, podCount: Int = 0, capacity: Int? = nil) {
        self.name = name
        self.podCount = podCount
        self.capacity = capacity
    }

    public var hasRoom: Bool { capacity.map { $0 > 0 } ?? true }

    mutating func bind() {
        podCount += 1
        capacity = capacity.map { $0 - 1 }
    }
}

/// Chooses the node for a pod. The rule is deliberately simple and predictable, so that a
/// lab's layout can be foreseen: a pinned pod (`spec.nodeName`) stays where it is pinned,
/// even on a node that is not offered; any other pod goes to the node with the fewest pods
/// among those with room, ties broken by node name.
public enum PodScheduler {
    /// The node for `pod`, or `nil` when it is not pinned and no node has room.
    public static func node(for pod: Pod, among nodes: [NodeLoad]) -> String? {
        if let pinned = pod.spec.nodeName { return pinned }
        return leastLoaded(nodes)?.name
    }

    /// Places `pods` one after another, counting each placement against its node before the
    /// next pod is placed. Returns one node name per pod, in order; `nil` where a pod found
    /// no room. Pinned pods are counted against their node when it is among `nodes`.
    public static func schedule(_ pods: [Pod], onto nodes: [NodeLoad]) -> [String?] {
        var loads = nodes
        var placements: [String?] = []
        placements.reserveCapacity(pods.count)
        for pod in pods {
            let chosen = node(for: pod, among: loads)
            if let chosen, let index = loads.firstIndex(where: { $0.name == chosen }) {
                loads[index].bind()
            }
            placements.append(chosen)
        }
        return placements
    }

    private static func leastLoaded(_ nodes: [NodeLoad]) -> NodeLoad? {
        nodes.filter(\.hasRoom).min { lhs, rhs in
            if lhs.podCount != rhs.podCount { return lhs.podCount < rhs.podCount }
            return lhs.name.utf8.lexicographicallyPrecedes(rhs.name.utf8)
        }
    }
}
