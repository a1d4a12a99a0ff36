/// One pod address that traffic for one Service port may be sent to: an endpoint in
/// Kubernetes' terms.
public struct ServiceBackend: Codable, Sendable, Hashable {
    public var podName: String
    public var podIP: String
    /// The port on the pod, after resolving a named `targetPort`.
    public var port: Int
    /// The node the pod runs on, when known; lets the datapath tell local backends from others.
    public var nodeName: String?
    /// `active`, or `terminating` once the pod is deleted: an EndpointSlice endpoint with
    /// ready=false, serving=true, terminating=true.
    public var state: BackendState

    public init(podName: String, podIP: String, port: Int, nodeName: String? = nil, state: BackendState = .active) {
        self.podName = podName
        self.podIP = podIP
        self.port = port
        self.nodeName = nodeName
        self.state = state
    }
}

/// The ready backends of one port of a Service.
public struct ServicePortBackends: Sendable, Hashable {
    public var servicePort: ServicePort
    /// Sorted by pod name.
    public var backends: [ServiceBackend]

    public init(servicePort: ServicePort, backends: [ServiceBackend]) {
        self.servicePort = servicePort
        self.backends = backends
    }
}

/// Works out which pods serve a Service, port by port, as the Kubernetes endpoints
/// controller does, so that the load balancer sends traffic only where a process listens.
///
/// A pod backs a Service when it is in the Service's namespace, its labels contain every
/// pair of the Service's `selector`, and it is ready (`PodStatus.isReady`: Running, with
/// an IP, not waiting to restart, its readiness probes passed). A deleted pod that was ready
/// stays a backend, `terminating`, until its node has stopped it: load balancers send it no
/// new connections while another backend is active, and keep the ones it has. A Service without a selector, and an ExternalName
/// Service, has no backends. A named `targetPort` is looked up in each pod's container
/// ports, by name and protocol, since pods may give the same name different numbers; a
/// pod that does not declare the name is no backend for that port. A Service whose
/// selector matches no pod is valid and simply has no backends.
public enum ServiceBackendResolver {
    /// One entry per port of `service`, in the Service's order. `pods` may include pods of
    /// any namespace; only the Service's own are considered.
    public static func resolve(_ service: Service, pods: [ObservedPod]) -> [ServicePortBackends] {
        let candidates = selectedPods(of: service, among: pods).filter(\.isReady)
        return service.spec.ports.map { servicePort in
            let backends = candidates.compactMap { observed in
                backend(observed, for: servicePort)
            }
            return ServicePortBackends(servicePort: servicePort, backends: backends)
        }
    }

    /// The pods `service` selects, ready or not, sorted by name.
    public static func selectedPods(of service: Service, among pods: [ObservedPod]) -> [ObservedPod] {
        pods.filter { selects(service, $0.pod) }
            .sorted { $0.pod.metadata.name.utf8.lexicographicallyPrecedes($1.pod.metadata.name.utf8) }
    }

    /// Whether `service` selects `pod`: same namespace, every selector label matched (a
    /// Service without a selector, or an ExternalName one, selects nothing).
    public static func selects(_ service: Service, _ pod: Pod) -> Bool {
        guard service.spec.type != .externalName, !service.spec.selector.isEmpty else { return false }
        return (pod.metadata.namespace ?? KubernetesObject.defaultNamespace) == (service.metadata.namespace ?? KubernetesObject.defaultNamespace)
            && service.spec.selector.allSatisfy { pod.metadata.labels[$0.key] == $0.value }
    }

    /// The port on `pod` that `servicePort` forwards to, or `nil` when the pod does not
    /// declare a port of that name and protocol.
    public static func targetPort(of servicePort: ServicePort, on pod: Pod) -> Int? {
        switch servicePort.effectiveTargetPort {
        case let .int(number):
            return number
        case let .string(name):
            let ports = pod.spec.containers.lazy.flatMap(\.ports)
            return ports.first { $0.name == name && $0.protocol == servicePort.protocol }?.containerPort
        }
    }

    private static func backend(_ observed: ObservedPod, for servicePort: ServicePort) -> ServiceBackend? {
        guard let podIP = observed.status?.podIP, let port = targetPort(of: servicePort, on: observed.pod) else {
            return nil
        }
        return ServiceBackend(podName: observed.pod.metadata.name, podIP: podIP, port: port, nodeName: observed.nodeName,
                              state: observed.isTerminating ? .terminating : .active)
    }
}
