import Foundation

/// What the UI's map draws: per cluster, its pods and its services with the backends each
/// service balances to (in any cluster). Built by the CLI from each context's store.
public struct ServiceMap: Codable, Sendable, Hashable {
    /// A pod of a cluster.
    public struct Pod: Codable, Sendable, Hashable {
        public var namespace: String
        public var name: String
        public var ip: String?
        public var node: String?
        public var status: String

        public init(namespace: String, name: String, ip: String?, node: String?, status: String) {
            self.namespace = namespace
            self.name = name
            self.ip = ip
            self.node = node
            self.status = status
        }
    }

    /// A backend of a service, by address and the cluster it runs in.
    public struct Backend: Codable, Sendable, Hashable {
        public var cluster: String
        public var ip: String

        public init(cluster: String, ip: String) {
            self.cluster = cluster
            self.ip = ip
        }
    }

    /// A service of a cluster: its address and backends (a global service's include other clusters').
    public struct Service: Codable, Sendable, Hashable {
        public var namespace: String
        public var name: String
        public var address: String
        public var global: Bool
        public var backends: [Backend]

        public init(namespace: String, name: String, address: String, global: Bool, backends: [Backend]) {
            self.namespace = namespace
            self.name = name
            self.address = address
            self.global = global
            self.backends = backends
        }
    }

    /// One cluster, or why it could not be read.
    public struct Cluster: Codable, Sendable, Hashable {
        public var name: String
        public var pods: [Pod]
        public var services: [Service]
        public var error: String?

        public init(name: String, pods: [Pod] = [], services: [Service] = [], error: String? = nil) {
            self.name = name
            self.pods = pods
            self.services = services
            self.error = error
        }
    }

    public var clusters: [Cluster]

    public init(clusters: [Cluster]) {
        self.clusters = clusters
    }
}
