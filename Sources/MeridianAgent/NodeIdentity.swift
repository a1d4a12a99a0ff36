import MeridianCore
import MeridianStore

/// Who and where this node is: fixed when the agent starts, shared by its components.
public struct NodeContext: Sendable {
    public var nodeName: String
    public var cluster: ClusterSettings
    public var nodeIP: IPAddress
    public var podCIDR: IPCIDR
    public var gateway: IPAddress
    public var podMTU: Int
    public var clusterDomain: String

    public var identityLayout: IdentityLayout {
        IdentityLayout(maxConnectedClusters: MaxConnectedClusters(rawValue: cluster.maxConnectedClusters) ?? .c255)
    }

    /// The search path pods of `namespace` resolve short names with.
    public func dnsSearch(namespace: String) -> [String] {
        ["\(namespace).svc.\(clusterDomain)", "svc.\(clusterDomain)", clusterDomain]
    }
}
