/// The backends behind one ServiceImport, from every cluster its status lists: this cluster's
/// ready pods of the Service of the same name (when this cluster exports it) and the backends
/// in the other clusters' ClusterService records. What the agent programs at the ClusterSetIP
/// and what the node DNS answers for `clusterset.local` names. Pure.
public enum MultiClusterServiceMerge {
    /// One backend address of an import, with the pod hostname its cluster published (for
    /// `<hostname>.<cluster>.<service>.<namespace>.svc.clusterset.local`).
    public struct Endpoint: Sendable, Hashable {
        public var ip: String
        public var cluster: String
        public var hostname: String?
        public var state: BackendState
    }

    /// The ClusterSetIP frontends of `imports`, one per port, balanced over the exporting
    /// clusters' healthy backends (with the cluster preference or affinity the oldest export's
    /// annotations give). Headless imports and imports without an IP have none.
    public static func frontends(cluster: String, clusterID: UInt32, imports: [ServiceImport], services: [Service], pods: [ObservedPod],
                                 remote: [ClusterService]) -> [ServiceFrontend] {
        let sources = Sources(cluster: cluster, services: services, remote: remote)
        var result: [ServiceFrontend] = []
        for imported in imports where imported.spec.type == .clusterSetIP {
            guard let address = imported.spec.ips?.first, IPAddress(address) != nil else { continue }
            let namespace = imported.metadata.namespace ?? KubernetesObject.defaultNamespace
            let key = "\(namespace)/\(imported.metadata.name)"
            let mesh = (try? ServiceMeshAnnotations.parse(imported.metadata.annotations.merging(
                [ServiceMeshAnnotations.Key.global: "true"], uniquingKeysWith: { _, forced in forced }))) ?? ServiceMeshAnnotations(global: true)
            let localPorts = imported.clusters.contains(cluster) ? sources.local[key].map { ServiceBackendResolver.resolve($0, pods: pods) } ?? [] : []
            for port in imported.spec.ports {
                guard let proto = L4Protocol(rawValue: port.protocol.rawValue) else { continue }
                let portName = port.name ?? ""
                let local = localPorts.filter { ($0.servicePort.name ?? "") == portName && $0.servicePort.protocol == port.protocol }
                    .flatMap(\.backends).map { backend in
                        MeshBackend(ip: backend.podIP, ports: [portName: L4Addr(protocol: proto, port: UInt16(backend.port))], cluster: cluster,
                                    clusterID: ClusterID(clusterID), isLocal: true, state: backend.state)
                    }
                var remoteBackends: [MeshBackend] = []
                for exported in sources.exports(of: key, clusters: imported.clusters) {
                    for (ip, ports) in exported.backends {
                        guard let target = ports[portName], target.protocol == proto else { continue }
                        remoteBackends.append(MeshBackend(ip: ip, ports: [portName: target], cluster: exported.cluster,
                                                          clusterID: ClusterID(exported.clusterID), isLocal: false, state: exported.state(of: ip)))
                    }
                }
                let selection = BackendSelection.select(local: local, remote: remoteBackends, affinity: mesh.affinity, preference: mesh.preference)
                let backends = selection.selected.compactMap { backend -> FrontendBackend? in
                    guard let target = backend.ports[portName] else { return nil }
                    // The key is made once, and only when there is something to look up.
                    let key = selection.preferred.isEmpty && selection.slots.isEmpty ? nil : backend.key
                    return FrontendBackend(ip: backend.ip, port: target.port, cluster: backend.cluster,
                                           clusterID: backend.clusterID?.rawValue ?? clusterID, state: backend.state.rawValue,
                                           preferred: key.map(selection.preferred.contains) ?? false, slots: key.flatMap { selection.slots[$0] })
                }
                result.append(ServiceFrontend(namespace: namespace, name: imported.metadata.name, address: address, port: UInt16(port.port),
                                              proto: proto.rawValue, global: true, affinity: mesh.affinity.rawValue,
                                              preference: mesh.preference?.description, backends: backends, serviceImport: true))
            }
        }
        return result.sorted { ($0.namespace, $0.name, $0.port) < ($1.namespace, $1.name, $1.port) }
    }

    /// The healthy backend addresses of a headless import, from every exporting cluster.
    public static func endpoints(of imported: ServiceImport, cluster: String, services: [Service], pods: [ObservedPod],
                                 remote: [ClusterService]) -> [Endpoint] {
        let sources = Sources(cluster: cluster, services: services, remote: remote)
        let key = "\(imported.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(imported.metadata.name)"
        var endpoints: [Endpoint] = []
        if imported.clusters.contains(cluster), let service = sources.local[key] {
            // Backends name their pods within the Service's namespace; a pod of the same name
            // in another namespace is not theirs.
            let namespace = service.metadata.namespace ?? KubernetesObject.defaultNamespace
            let byName = Dictionary(pods.lazy.filter { ($0.pod.metadata.namespace ?? KubernetesObject.defaultNamespace) == namespace }
                .map { ($0.pod.metadata.name, $0.pod) }, uniquingKeysWith: { first, _ in first })
            for backend in ServiceBackendResolver.resolve(service, pods: pods).flatMap(\.backends) {
                let pod = byName[backend.podName]
                let hostname = pod.flatMap { $0.spec.subdomain == service.metadata.name ? $0.spec.hostname : nil }
                endpoints.append(Endpoint(ip: backend.podIP, cluster: cluster, hostname: hostname, state: backend.state))
            }
        }
        for exported in sources.exports(of: key, clusters: imported.clusters) {
            for ip in exported.backends.keys {
                endpoints.append(Endpoint(ip: ip, cluster: exported.cluster, hostname: exported.hostnames?[ip], state: exported.state(of: ip)))
            }
        }
        var seen = Set<String>()
        return endpoints.filter { $0.state.isHealthy && seen.insert("\($0.cluster)/\($0.ip)").inserted }
            .sorted { ($0.cluster, $0.ip) < ($1.cluster, $1.ip) }
    }

    private struct Sources {
        var local: [String: Service] = [:]
        var remoteByName: [String: [ClusterService]] = [:]

        init(cluster: String, services: [Service], remote: [ClusterService]) {
            for service in services {
                local["\(service.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(service.metadata.name)"] = service
            }
            for exported in remote where exported.cluster != cluster {
                remoteByName[exported.namespacedName, default: []].append(exported)
            }
        }

        /// The other clusters' ClusterService records of `key` whose clusters export it.
        func exports(of key: String, clusters: [String]) -> [ClusterService] {
            let wanted = Set(clusters)
            return (remoteByName[key] ?? []).filter { wanted.contains($0.cluster) }.sorted { $0.cluster < $1.cluster }
        }
    }
}
