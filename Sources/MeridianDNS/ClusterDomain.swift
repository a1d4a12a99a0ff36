/// The Service a query name designates: the key the node agent looks up its ClusterIP by.
public struct ServiceDNSName: Sendable, Hashable, CustomStringConvertible {
    /// Lower case, as Kubernetes object names are.
    public var service: String
    /// Lower case, as Kubernetes object names are.
    public var namespace: String
    /// Which zone the name is in: the cluster's own services, or the clusterset's
    /// (Multi-Cluster Services API) imports.
    public var zone: Zone
    /// `<hostname>.<cluster>.<service>...` of the clusterset zone: one backend of a headless
    /// import, by the hostname its pod has in its cluster.
    public var backend: Backend?

    /// The zone a name is in.
    public enum Zone: Sendable, Hashable {
        case cluster, clusterSet
    }

    /// One named backend of a headless multi-cluster service.
    public struct Backend: Sendable, Hashable {
        public var hostname: String
        public var cluster: String

        public init(hostname: String, cluster: String) {
            self.hostname = hostname
            self.cluster = cluster
        }
    }

    public init(service: String, namespace: String, zone: Zone = .cluster, backend: Backend? = nil) {
        self.service = service
        self.namespace = namespace
        self.zone = zone
        self.backend = backend
    }

    /// `namespace/service`, the way Kubernetes tools name an object.
    public var description: String { "\(namespace)/\(service)" }
}

/// How a query name relates to the cluster zone, which fixes the response code before any lookup.
public enum ServiceNameResolution: Sendable, Hashable {
    /// `<service>.<namespace>.svc.<domain>`: look the Service up.
    case service(ServiceDNSName)
    /// In the cluster domain but not a Service name; the answer is NXDOMAIN.
    case nonexistent
    /// Outside the cluster domain; with no upstream resolver the answer is REFUSED.
    case notInZone
}

/// The DNS zone Services are published under (kubelet's `--cluster-domain`, `cluster.local` by
/// default), and the rule that maps names in it to Services.
///
/// Only fully qualified `<service>.<namespace>.svc.<domain>` names resolve. Short names such as
/// `web` or `web.default` never reach the server as such: the pod's stub resolver appends the
/// search domains from `resolvConf(nameserver:namespace:)` until one resolves.
public struct ClusterDomain: Sendable, Hashable, CustomStringConvertible {
    public static let `default` = ClusterDomain(name: DNSName(unchecked: [Array("cluster".utf8), Array("local".utf8)]))

    /// The zone apex, lower case.
    public let name: DNSName

    private init(name: DNSName) {
        self.name = name.lowercased()
    }

    /// Parses a domain such as `cluster.local` or `cluster.local.`; nil for the root or an invalid name.
    public init?(_ text: String) {
        guard let name = DNSName(text), !name.isRoot else { return nil }
        self.init(name: name)
    }

    /// The Multi-Cluster Services zone (KEP-1645).
    public static let clusterSet = ClusterDomain(name: DNSName(unchecked: [Array("clusterset".utf8), Array("local".utf8)]))

    /// Classifies `name`, ignoring case and whether it was written with a final dot. In the
    /// zone `zone` names, `<service>.<namespace>.svc.<domain>` is a service; in the clusterset
    /// zone, `<hostname>.<cluster>.<service>.<namespace>.svc.<domain>` is one backend too.
    public func resolve(_ name: DNSName, zone: ServiceDNSName.Zone = .cluster) -> ServiceNameResolution {
        guard name.isSubdomain(of: self.name) else { return .notInZone }
        let relative = name.labels.dropLast(self.name.labels.count).map(DNSName.lowercased)
        guard relative.count >= 3, relative[relative.count - 1] == Array("svc".utf8),
              let service = Self.objectName(relative[relative.count - 3]), let namespace = Self.objectName(relative[relative.count - 2])
        else { return .nonexistent }
        switch relative.count {
        case 3:
            return .service(ServiceDNSName(service: service, namespace: namespace, zone: zone))
        case 5 where zone == .clusterSet:
            guard let hostname = Self.objectName(relative[0]), let cluster = Self.objectName(relative[1]) else { return .nonexistent }
            return .service(ServiceDNSName(service: service, namespace: namespace, zone: zone,
                                           backend: .init(hostname: hostname, cluster: cluster)))
        default:
            return .nonexistent
        }
    }

    /// `resolve(_:)` for a name in text form; names that are not valid DNS names are `.notInZone`.
    public func resolve(_ text: String, zone: ServiceDNSName.Zone = .cluster) -> ServiceNameResolution {
        guard let name = DNSName(text) else { return .notInZone }
        return resolve(name, zone: zone)
    }

    /// The resolv.conf a pod in `namespace` gets, as kubelet writes it for `ClusterFirst` pods:
    /// search domains from most to least specific, and `ndots:5` so that `web.default` is tried
    /// with the search domains before being sent as an absolute name.
    public func resolvConf(nameserver: IPv4Address, namespace: String) -> String {
        """
        nameserver \(nameserver)
        search \(namespace).svc.\(self) svc.\(self) \(self)
        options ndots:5

        """
    }

    /// The domain without the final dot, as it appears in resolv.conf.
    public var description: String {
        String(name.description.dropLast())
    }

    /// The label as a Kubernetes object name (RFC 1123 label: lower-case letters, digits and
    /// inner hyphens), or nil when no object could have it.
    private static func objectName(_ label: [UInt8]) -> String? {
        let allowed = label.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-")
        }
        guard allowed, label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else { return nil }
        return String(decoding: label, as: UTF8.self)
    }
}
