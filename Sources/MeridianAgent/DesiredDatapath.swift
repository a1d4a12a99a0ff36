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
    var services: [Frontend: [BackendAddress]] = [:]
    /// Service name per frontend, for DNS and for `service list`.
    var serviceIPs: [String: IPAddress] = [:]

    struct Inputs: Sendable {
        var nodes: [String: Data]
        var endpoints: [String: Data]
        var services: [String: Data]
        var pods: [String: Data]
        var podStatuses: [String: Data]
    }

    static func compute(_ inputs: Inputs, context: NodeContext) -> DesiredDatapath {
        var desired = DesiredDatapath()
        let clusterID = UInt16(context.cluster.id)
        for (key, value) in inputs.nodes {
            guard let node = try? StoreCoding.decode(NodeRecord.self, from: value, key: key),
                  let internalAddress = node.ipAddresses.first(where: { $0.type == .internalIP }),
                  let nodeIP = IPAddress(internalAddress.ip) else { continue }
            let isSelf = node.name == context.nodeName
            if let cidr = node.ipv4AllocCIDR {
                desired.ipcache[cidr] = IPCacheEntry(identity: ReservedIdentity.world.rawValue, tunnelEndpoint: nodeIP,
                                                     flags: UInt8(MER_IPCACHE_F_TUNNEL), clusterID: clusterID)
            }
            if let host = try? IPCIDR(address: nodeIP, prefixLength: 32) {
                desired.ipcache[host] = isSelf
                    ? IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil, flags: UInt8(MER_IPCACHE_F_LOCAL_NODE), clusterID: clusterID)
                    : IPCacheEntry(identity: ReservedIdentity.remoteNode.rawValue, tunnelEndpoint: nil, flags: 0, clusterID: clusterID)
            }
        }
        if let gateway = try? IPCIDR(address: context.gateway, prefixLength: 32) {
            desired.ipcache[gateway] = IPCacheEntry(identity: ReservedIdentity.host.rawValue, tunnelEndpoint: nil,
                                                    flags: UInt8(MER_IPCACHE_F_LOCAL_NODE), clusterID: clusterID)
        }
        for (key, value) in inputs.endpoints {
            guard let pair = try? StoreCoding.decode(IPIdentityPair.self, from: value, key: key),
                  let prefix = try? pair.prefix(), prefix.family == .ipv4 else { continue }
            desired.ipcache[prefix] = IPCacheEntry(identity: pair.id, tunnelEndpoint: IPAddress(pair.hostIP),
                                                   flags: UInt8(MER_IPCACHE_F_TUNNEL), clusterID: clusterID)
        }

        var statuses: [String: PodStatus] = [:]
        for (key, value) in inputs.podStatuses {
            let name = String(key.dropFirst(KeyLayout.podStatusPrefix.count))
            statuses[name] = try? StoreCoding.decode(PodStatus.self, from: value, key: key)
        }
        var pods: [ObservedPod] = []
        for (key, value) in inputs.pods {
            guard case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { continue }
            let namespace = pod.metadata.namespace ?? KubernetesObject.defaultNamespace
            pods.append(ObservedPod(pod: pod, status: statuses["\(namespace)/\(pod.metadata.name)"]))
        }
        for (key, value) in inputs.services {
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key),
                  let clusterIP = service.spec.clusterIP, let vip = IPAddress(clusterIP), vip.family == .ipv4 else { continue }
            let namespace = service.metadata.namespace ?? KubernetesObject.defaultNamespace
            desired.serviceIPs["\(service.metadata.name).\(namespace)"] = vip
            for resolved in ServiceBackendResolver.resolve(service, pods: pods) {
                guard let proto = Self.proto(resolved.servicePort.protocol) else { continue }
                let frontend = Frontend(address: vip, port: UInt16(resolved.servicePort.port), proto: proto)
                desired.services[frontend] = resolved.backends.compactMap { backend in
                    IPAddress(backend.podIP).map { BackendAddress(address: $0, port: UInt16(backend.port), proto: proto, clusterID: clusterID) }
                }
            }
        }
        return desired
    }

    static func proto(_ transport: TransportProtocol) -> UInt8? {
        switch transport {
        case .tcp: 6
        case .udp: 17
        default: nil
        }
    }
}
