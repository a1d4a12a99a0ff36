import Foundation
import MeridianCore
import MeridianDatapath
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
    /// What lies between a pod's packet and the underlay: VXLAN (50), plus WireGuard (60) when
    /// the node encrypts. Pod routes to nodes with a smaller underlay MTU subtract it too.
    public var tunnelOverhead: Int = MeridianMTU.vxlanOverhead

    /// The node's underlay MTU, which its record publishes.
    public var underlayMTU: Int { podMTU + tunnelOverhead }

    public var identityLayout: IdentityLayout {
        IdentityLayout(maxConnectedClusters: MaxConnectedClusters(rawValue: cluster.maxConnectedClusters) ?? .c255)
    }

    /// The search path pods of `namespace` resolve short names with.
    public func dnsSearch(namespace: String) -> [String] {
        ["\(namespace).svc.\(clusterDomain)", "svc.\(clusterDomain)", clusterDomain]
    }
}

/// The id of the lease the node record is under, in a file of the agent's state directory
/// (hex, as etcdctl prints lease ids); nil when there is none or it is unreadable.
struct NodeLeaseFile {
    let path: String

    var id: Int64? {
        get {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            return Int64(text.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16)
        }
        nonmutating set {
            if let newValue {
                try? (String(newValue, radix: 16) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            } else {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }
}
