import Foundation
import MeridianCore
import MeridianStore

/// One backend of a frontend as `service list` shows it and the datapath programs it.
public struct FrontendBackend: Sendable, Hashable, Codable {
    public var ip: String
    public var port: UInt16
    public var cluster: String
    public var clusterID: UInt32
    public var state: String
    /// Whether the service's affinity prefers this backend's side.
    public var preferred: Bool
}

/// One service frontend (ClusterIP, port, protocol) with the backends it balances over.
public struct ServiceFrontend: Sendable, Hashable, Codable {
    public var namespace: String
    public var name: String
    public var address: String
    public var port: UInt16
    public var proto: String
    public var global: Bool
    public var affinity: String
    public var backends: [FrontendBackend]
}

/// Works out every local Service's frontends and their backends: the cluster's own ready pods,
/// merged for global Services with the backends remote clusters export for the same namespace
/// and name (the global × shared rules and the affinity of `MeridianCore`). The agent programs
/// the result; `service list` prints it. A remote Service without a local Service of the same
/// name gets no frontend, as in Cilium.
public enum ServiceFrontends {
    public static func compute(
        cluster: String, clusterID: UInt32, services: [Service], pods: [ObservedPod], remote: [ClusterService]
    ) -> [ServiceFrontend] {
        var remoteByName: [String: [ClusterService]] = [:]
        for exported in remote where exported.cluster != cluster {
            remoteByName[exported.namespacedName, default: []].append(exported)
        }
        var result: [ServiceFrontend] = []
        for service in services {
            guard let clusterIP = service.spec.clusterIP, IPAddress(clusterIP) != nil else { continue }
            let namespace = service.metadata.namespace ?? KubernetesObject.defaultNamespace
            let mesh = (try? ServiceMeshAnnotations.parse(service.metadata.annotations)) ?? .notGlobal
            let imported = (remoteByName["\(namespace)/\(service.metadata.name)"] ?? [])
                .filter { GlobalServicePolicy.importsRemoteBackends(local: mesh, remote: $0) }
                .sorted { $0.cluster < $1.cluster }
            for resolved in ServiceBackendResolver.resolve(service, pods: pods) {
                guard let proto = L4Protocol(rawValue: resolved.servicePort.protocol.rawValue) else { continue }
                let portName = resolved.servicePort.name ?? ""
                let local = resolved.backends.map { backend in
                    MeshBackend(ip: backend.podIP, ports: [portName: L4Addr(protocol: proto, port: UInt16(backend.port))],
                                cluster: cluster, clusterID: ClusterID(clusterID), isLocal: true)
                }
                var remoteBackends: [MeshBackend] = []
                for exported in imported {
                    for (ip, ports) in exported.backends.sorted(by: { $0.key < $1.key }) {
                        guard let target = ports[portName], target.protocol == proto else { continue }
                        remoteBackends.append(MeshBackend(ip: ip, ports: [portName: target], cluster: exported.cluster,
                                                          clusterID: ClusterID(exported.clusterID), isLocal: false))
                    }
                }
                let selection = BackendSelection.select(local: local, remote: mesh.global ? remoteBackends : [], affinity: mesh.affinity)
                let backends = selection.selected.compactMap { backend -> FrontendBackend? in
                    guard let target = backend.ports[portName] else { return nil }
                    return FrontendBackend(ip: backend.ip, port: target.port, cluster: backend.cluster,
                                           clusterID: backend.clusterID?.rawValue ?? clusterID, state: backend.state.rawValue,
                                           preferred: selection.preferred.contains(backend.key))
                }
                result.append(ServiceFrontend(namespace: namespace, name: service.metadata.name, address: clusterIP,
                                              port: UInt16(resolved.servicePort.port), proto: proto.rawValue, global: mesh.global,
                                              affinity: mesh.affinity.rawValue, backends: backends))
            }
        }
        return result.sorted { ($0.namespace, $0.name, $0.port) < ($1.namespace, $1.name, $1.port) }
    }

    /// Decodes the store records the computation needs (keys and values as listed).
    public static func compute(cluster: String, clusterID: UInt32, serviceRecords: [String: Data], podRecords: [String: Data],
                               statusRecords: [String: Data], remoteRecords: [String: Data]) -> [ServiceFrontend] {
        let services = serviceRecords.compactMap { key, value -> Service? in
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            return service
        }
        let pods = ObservedPods.decode(pods: podRecords.map { ($0.key, $0.value) }, statuses: statusRecords.map { ($0.key, $0.value) })
        let remote = remoteRecords.compactMap { key, value in try? StoreCoding.decode(ClusterService.self, from: value, key: key) }
        return compute(cluster: cluster, clusterID: clusterID, services: services, pods: pods, remote: remote)
    }
}
