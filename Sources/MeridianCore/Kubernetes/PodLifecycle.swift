/// The bounds and defaults of a pod's termination, in one place for the manifest checks, the
/// store (which stamps a deletion) and the node (which carries it out).
public enum PodTermination {
    /// Kubernetes' default `terminationGracePeriodSeconds`.
    public static let defaultGracePeriodSeconds = 30
    /// The grace periods a manifest may ask for. Kubernetes takes any non-negative number; a lab
    /// pod that could hold its node's reconcile of it for days is refused instead: an hour is
    /// well beyond any drain a test or demo needs.
    public static let gracePeriodSeconds = 0...3600
    /// The `reason` a terminating pod shows in `get pods`, as kubectl shows it.
    public static let displayStatus = "Terminating"
}

/// A readiness probe: what the node checks before a container's pod may receive Service
/// traffic, and keeps checking while it runs. Kubernetes' `Probe`, with the TCP and HTTP
/// actions (the node has no container runtime to run `exec` in, and no gRPC client).
///
/// Without a probe a pod is ready once its containers run, as in Kubernetes; a server that
/// needs a moment to listen then takes connections it refuses. With one, the pod becomes a
/// backend only after the probe passed, which is what a rolling update waits for.
public struct Probe: Codable, Sendable, Hashable {
    /// Open a TCP connection to the port.
    public var tcpSocket: TCPSocketAction?
    /// `GET path` on the port; a status from 200 to 399 passes.
    public var httpGet: HTTPGetAction?
    public var initialDelaySeconds: Int?
    public var periodSeconds: Int?
    public var timeoutSeconds: Int?
    public var successThreshold: Int?
    public var failureThreshold: Int?

    public init(tcpSocket: TCPSocketAction? = nil, httpGet: HTTPGetAction? = nil, initialDelaySeconds: Int? = nil,
                periodSeconds: Int? = nil, timeoutSeconds: Int? = nil, successThreshold: Int? = nil, failureThreshold: Int? = nil) {
        self.tcpSocket = tcpSocket
        self.httpGet = httpGet
        self.initialDelaySeconds = initialDelaySeconds
        self.periodSeconds = periodSeconds
        self.timeoutSeconds = timeoutSeconds
        self.successThreshold = successThreshold
        self.failureThreshold = failureThreshold
    }

    /// Kubernetes' defaults.
    public var effectiveInitialDelaySeconds: Int { initialDelaySeconds ?? 0 }
    public var effectivePeriodSeconds: Int { periodSeconds ?? 10 }
    public var effectiveTimeoutSeconds: Int { timeoutSeconds ?? 1 }
    public var effectiveSuccessThreshold: Int { successThreshold ?? 1 }
    public var effectiveFailureThreshold: Int { failureThreshold ?? 3 }

    /// The port the probe connects to, with a named port resolved among `ports`.
    public func port(among ports: [ContainerPort]) -> Int? {
        guard let port = tcpSocket?.port ?? httpGet?.port else { return nil }
        switch port {
        case let .int(number): return number
        case let .string(name): return ports.first { $0.name == name && $0.protocol == .tcp }?.containerPort
        }
    }

    /// Every duration and threshold must be in `1...timingLimit` (delays may be 0).
    static let timingLimit = 3600
}

/// The TCP action of a probe.
public struct TCPSocketAction: Codable, Sendable, Hashable {
    /// A port number, or the name of a container port of the pod.
    public var port: IntOrString

    public init(port: IntOrString) {
        self.port = port
    }
}

/// The HTTP action of a probe (plain HTTP, to the pod's own address).
public struct HTTPGetAction: Codable, Sendable, Hashable {
    public var path: String?
    public var port: IntOrString

    public init(path: String? = nil, port: IntOrString) {
        self.path = path
        self.port = port
    }

    /// The request path; `/` when none is given.
    public var effectivePath: String { path.flatMap { $0.isEmpty ? nil : $0 } ?? "/" }
}

/// A container's lifecycle hooks, of which Meridian runs the one that shapes termination.
public struct Lifecycle: Codable, Sendable, Hashable {
    /// Runs when the pod is deleted, before SIGTERM; the grace period counts it.
    public var preStop: LifecycleHandler?

    public init(preStop: LifecycleHandler? = nil) {
        self.preStop = preStop
    }
}

/// A hook. Meridian runs the `sleep` action (Kubernetes 1.30+): the pod keeps serving the
/// connections it has while the deletion reaches every load balancer of the mesh, and only
/// then gets SIGTERM.
public struct LifecycleHandler: Codable, Sendable, Hashable {
    public var sleep: SleepAction?

    public init(sleep: SleepAction? = nil) {
        self.sleep = sleep
    }
}

/// Waits, and does nothing else.
public struct SleepAction: Codable, Sendable, Hashable {
    public var seconds: Int

    public init(seconds: Int) {
        self.seconds = seconds
    }
}

// MARK: - Manifest decoding

extension Probe {
    static let unsupportedActionMessage = "is not supported: Meridian has no container runtime to run it in; "
        + "use tcpSocket or httpGet"

    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.probe)
        for field in ["exec", "grpc"] {
            if let unsupported = map.optional(field) { throw FieldError(unsupported.path, Self.unsupportedActionMessage) }
        }
        var tcpSocket: TCPSocketAction?
        if let socket = map.optional("tcpSocket") {
            let action = try socket.mapping(.tcpSocketAction)
            if let host = action.optional("host") {
                throw FieldError(host.path, "is not supported: the node probes the pod's own address")
            }
            tcpSocket = TCPSocketAction(port: try action.required("port").intOrString())
        }
        var httpGet: HTTPGetAction?
        if let get = map.optional("httpGet") {
            let action = try get.mapping(.httpGetAction)
            if let host = action.optional("host") {
                throw FieldError(host.path, "is not supported: the node probes the pod's own address")
            }
            if let scheme = action.optional("scheme"), try scheme.string() != "HTTP" {
                throw FieldError(scheme.path, "only HTTP is supported")
            }
            httpGet = HTTPGetAction(path: try action.optional("path")?.string(), port: try action.required("port").intOrString())
        }
        self.init(
            tcpSocket: tcpSocket, httpGet: httpGet,
            initialDelaySeconds: try map.optional("initialDelaySeconds")?.integer(),
            periodSeconds: try map.optional("periodSeconds")?.integer(),
            timeoutSeconds: try map.optional("timeoutSeconds")?.integer(),
            successThreshold: try map.optional("successThreshold")?.integer(),
            failureThreshold: try map.optional("failureThreshold")?.integer())
        if tcpSocket == nil && httpGet == nil {
            throw FieldError(value.path, "one of tcpSocket or httpGet is required")
        }
        if tcpSocket != nil && httpGet != nil {
            throw FieldError(value.path, "give exactly one of tcpSocket or httpGet")
        }
    }
}

extension Lifecycle {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.lifecycle)
        self.init(preStop: try map.optional("preStop").map { handler throws(FieldError) in try LifecycleHandler(manifest: handler) })
    }
}

extension LifecycleHandler {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.lifecycleHandler)
        for field in ["exec", "httpGet", "tcpSocket"] {
            if let unsupported = map.optional(field) {
                throw FieldError(unsupported.path, "is not supported as a preStop hook: Meridian runs the sleep action only")
            }
        }
        guard let sleep = map.optional("sleep") else { throw FieldError(value.path, "sleep is required") }
        self.init(sleep: SleepAction(seconds: try sleep.mapping(.sleepAction).required("seconds").integer()))
    }
}

// MARK: - Validation

extension Probe {
    func validate(at path: FieldPath, ports: [ContainerPort]) throws(FieldError) {
        let timings: [(String, Int?, ClosedRange<Int>)] = [
            ("initialDelaySeconds", initialDelaySeconds, 0...Self.timingLimit),
            ("periodSeconds", periodSeconds, 1...Self.timingLimit),
            ("timeoutSeconds", timeoutSeconds, 1...Self.timingLimit),
            ("successThreshold", successThreshold, 1...Self.timingLimit),
            ("failureThreshold", failureThreshold, 1...Self.timingLimit),
        ]
        for (field, value, range) in timings {
            if let value, !range.contains(value) {
                throw FieldError(path.field(field), "must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            }
        }
        let action = tcpSocket != nil ? "tcpSocket" : "httpGet"
        let portPath = path.field(action).field("port")
        switch tcpSocket?.port ?? httpGet?.port {
        case let .int(number)?:
            guard ServicePort.validPortNumbers.contains(number) else {
                throw FieldError(portPath, "must be between 1 and 65535, got \(number)")
            }
        case let .string(name)?:
            guard port(among: ports) != nil else {
                throw FieldError(portPath, "names no TCP port of the pod: \(name.debugDescription)")
            }
        case nil:
            break
        }
        if let requestPath = httpGet?.path, !requestPath.isEmpty,
           !requestPath.hasPrefix("/") || requestPath.contains(where: { $0.isWhitespace || $0.isNewline }) {
            throw FieldError(path.field("httpGet").field("path"), "must start with / and contain no spaces, got \(requestPath.debugDescription)")
        }
    }
}

extension SleepAction {
    func validate(at path: FieldPath, gracePeriod: Int) throws(FieldError) {
        guard (0...gracePeriod).contains(seconds) else {
            throw FieldError(path, "must be between 0 and the pod's terminationGracePeriodSeconds (\(gracePeriod)), got \(seconds)")
        }
    }
}

extension Pod {
    /// The pod as a deletion leaves it when a node runs it: stamped with the moment of the
    /// delete (RFC 3339 UTC) and its grace period, for the node to wind it down and then remove
    /// it. A pod no node runs has nothing to wind down and is removed at once instead.
    public func markedForDeletion(at timestamp: String) -> Pod {
        guard !metadata.isBeingDeleted else { return self }
        var pod = self
        pod.metadata.deletionTimestamp = timestamp
        pod.metadata.deletionGracePeriodSeconds = spec.effectiveTerminationGracePeriodSeconds
        return pod
    }
}
