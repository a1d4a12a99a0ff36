import Foundation
import MeridianCore
import Testing

/// How a node's frontends are built from the cluster's Services and pods and the backends other
/// clusters export: the global × shared truth table and affinity, end to end.
@Suite("Global service merge")
struct GlobalServiceMergeTests {
    static func service(_ annotations: [String: String] = [:], ports: [ServicePort] = [ServicePort(name: "http", port: 80, targetPort: .int(8080))]) -> Service {
        var service = Service(metadata: ObjectMeta(name: "web", namespace: "default", annotations: annotations),
                              spec: ServiceSpec(selector: ["app": "web"], ports: ports))
        service.spec.clusterIP = "10.101.0.10"
        return service
    }

    static func pod(_ name: String, ip: String?, ready: Bool = true) -> ObservedPod {
        let pod = Pod(metadata: ObjectMeta(name: name, namespace: "default", labels: ["app": "web"]),
                      spec: PodSpec(containers: [Container(name: "c", command: ["x"], ports: [ContainerPort(name: "http", containerPort: 8080)])]))
        return ObservedPod(pod: pod, status: PodStatus(phase: ready ? .running : .pending, podIP: ip, nodeName: "node1"))
    }

    static func remote(_ cluster: String, id: UInt32, backends: [String], shared: Bool = true, global: Bool = true, port: String = "http") -> ClusterService {
        ClusterService(cluster: cluster, namespace: "default", name: "web", frontends: ["10.102.0.10": [port: L4Addr(protocol: .tcp, port: 80)]],
                       backends: Dictionary(uniqueKeysWithValues: backends.map { ($0, [port: L4Addr(protocol: .tcp, port: 8080)]) }),
                       labels: [:], selector: ["app": "web"], includeExternal: global, shared: shared, clusterID: id)
    }

    func frontends(_ service: Service, pods: [ObservedPod], remote: [ClusterService]) -> [ServiceFrontend] {
        GlobalServiceMerge.frontends(cluster: "cluster1", clusterID: 1, services: [service], pods: pods, remote: remote)
    }

    @Test("a global service balances over local and remote backends, tagged by cluster")
    func globalMerge() {
        let result = frontends(Self.service(["service.cilium.io/global": "true"]), pods: [Self.pod("a", ip: "10.1.1.2")],
                               remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2", "10.2.1.3"])])
        #expect(result.count == 1)
        let backends = result[0].backends
        #expect(backends.map(\.ip) == ["10.1.1.2", "10.2.1.2", "10.2.1.3"])
        #expect(backends.map(\.cluster) == ["cluster1", "cluster2", "cluster2"])
        #expect(backends.map(\.clusterID) == [1, 2, 2])
        #expect(backends.allSatisfy { $0.port == 8080 && !$0.preferred })
    }

    @Test("a service that is not global ignores remote backends")
    func localOnly() {
        let result = frontends(Self.service(), pods: [Self.pod("a", ip: "10.1.1.2")], remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"])])
        #expect(result[0].backends.map(\.cluster) == ["cluster1"])
    }

    @Test("a remote service marked shared false, or not global, contributes nothing")
    func unsharedRemote() {
        let global = Self.service(["io.cilium/global-service": "true"])
        #expect(frontends(global, pods: [], remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"], shared: false)])[0].backends.isEmpty)
        #expect(frontends(global, pods: [], remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"], global: false)])[0].backends.isEmpty)
    }

    @Test("affinity local keeps traffic local while a local backend is ready, and fails over to remote ones")
    func affinityLocal() {
        let service = Self.service(["service.cilium.io/global": "true", "service.cilium.io/affinity": "local"])
        let remote = [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"])]
        let withLocal = frontends(service, pods: [Self.pod("a", ip: "10.1.1.2")], remote: remote)[0].backends
        #expect(withLocal.map(\.cluster) == ["cluster1"])
        #expect(withLocal.allSatisfy { $0.preferred })
        let failedOver = frontends(service, pods: [Self.pod("a", ip: "10.1.1.2", ready: false)], remote: remote)[0].backends
        #expect(failedOver.map(\.cluster) == ["cluster2"])
        #expect(failedOver.allSatisfy { !$0.preferred })
    }

    @Test("affinity remote prefers the other clusters")
    func affinityRemote() {
        let service = Self.service(["service.cilium.io/global": "true", "service.cilium.io/affinity": "remote"])
        let result = frontends(service, pods: [Self.pod("a", ip: "10.1.1.2")], remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"])])
        #expect(result[0].backends.map(\.cluster) == ["cluster2"])
    }

    @Test("remote backends are matched by port name and protocol")
    func portNames() {
        let service = Self.service(["service.cilium.io/global": "true"])
        let result = frontends(service, pods: [], remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"], port: "grpc")])
        #expect(result[0].backends.isEmpty)
    }

    @Test("a remote service without a local one gets no frontend")
    func noLocalService() {
        let result = GlobalServiceMerge.frontends(cluster: "cluster1", clusterID: 1, services: [], pods: [],
                                              remote: [Self.remote("cluster2", id: 2, backends: ["10.2.1.2"])])
        #expect(result.isEmpty)
    }
}
