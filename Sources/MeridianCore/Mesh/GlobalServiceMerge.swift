import Foundation

/// One backend of a frontend as `service list` shows it and the datapath programs it.
public struct FrontendBackend: Sendable, Hashable, Codable {
    public var ip: String
    public var port: UInt16
    public var cluster: String
    public var clusterID: UInt32
    public var state: String
    /// Whether the service's affinity (or cluster preference) prefers this backend's side.
    public var preferred: Bool
    /// The frontend's slots this backend takes (more than one under cluster weights); nil for one.
    public var slots: Int?

    public init(ip: String, port: UInt16, cluster: String, clusterID: UInt32, state: String, preferred: Bool, slots: Int? = nil) {
        self.ip = ip
        self.port = port
        self.cluster = cluster
        self.clusterID = clusterID
        self.state = state
        self.preferred = preferred
        self.slots = slots
    }
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
    /// The cluster preference (`ClusterPreference.description`), when the service gives one.
    public var preference: String?
    public var backends: [FrontendBackend]
    /// True for a ServiceImport's ClusterSetIP; nil for a Service's frontend.
    public var serviceImport: Bool?

    public init(namespace: String, name: String, address: String, port: UInt16, proto: String, global: Bool, affinity: String,
                preference: String? = nil, backends: [FrontendBackend], serviceImport: Bool? = nil) {
        self.serviceImport = serviceImport
        self.namespace = namespace
        self.name = name
        self.address = address
        self.port = port
        self.proto = proto
        self.global = global
        self.affinity = affinity
        self.preference = preference
        self.backends = backends
    }
}

/// The global-service merge: every local Service's frontends with their backends, the
/// cluster's own ready pods merged, for global Services, with the backends remote clusters
/// export for the same namespace and name (the global × shared rules, then the affinity). Pure:
/// the agent programs the result and `service list` prints it. A remote Service without a local
/// Service of the same name gets no frontend, as in Cilium.
public enum GlobalServiceMerge {
    public static func frontends(
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
                                cluster: cluster, clusterID: ClusterID(clusterID), isLocal: true, state: backend.state)
                }
                var remoteBackends: [MeshBackend] = []
                for exported in imported {
                    for (ip, ports) in exported.backends {
                        guard let target = ports[portName], target.protocol == proto else { continue }
                        remoteBackends.append(MeshBackend(ip: ip, ports: [portName: target], cluster: exported.cluster,
                                                          clusterID: ClusterID(exported.clusterID), isLocal: false,
                                                          state: exported.state(of: ip)))
                    }
                }
                let selection = BackendSelection.select(local: local, remote: mesh.global ? remoteBackends : [], affinity: mesh.affinity,
                                                        preference: mesh.preference)
                let backends = selection.selected.compactMap { backend -> FrontendBackend? in
                    guard let target = backend.ports[portName] else { return nil }
                    // The key is made once, and only when there is something to look up.
                    let key = selection.preferred.isEmpty && selection.slots.isEmpty ? nil : backend.key
                    return FrontendBackend(ip: backend.ip, port: target.port, cluster: backend.cluster,
                                           clusterID: backend.clusterID?.rawValue ?? clusterID, state: backend.state.rawValue,
                                           preferred: key.map(selection.preferred.contains) ?? false, slots: key.flatMap { selection.slots[$0] })
                }
                result.append(ServiceFrontend(namespace: namespace, name: service.metadata.name, address: clusterIP,
                                              port: UInt16(resolved.servicePort.port), proto: proto.rawValue, global: mesh.global,
                                              affinity: mesh.affinity.rawValue, preference: mesh.preference?.description, backends: backends))
            }
        }
        return result.sorted { ($0.namespace, $0.name, $0.port) < ($1.namespace, $1.name, $1.port) }
    }
}
