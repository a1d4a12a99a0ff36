/// What the node running a pod last reported about it. It is stored apart from the pod:
/// users and controllers write the spec, only the node writes the status, so neither
/// can overwrite the other's changes. The JSON keys are those of Kubernetes' `PodStatus`
/// where Kubernetes has the field.
public struct PodStatus: Codable, Sendable, Hashable {
    public var phase: PodPhase
    /// A short CamelCase word for what the phase alone does not say, shown in place of the
    /// phase the way `kubectl get pods` does: `ContainerCreating` while Pending,
    /// `CrashLoopBackOff` while Running but waiting to restart a crashed container,
    /// `Error` or `Completed` once Failed or Succeeded. `nil` while all is well.
    public var reason: String?
    /// A human-readable detail for `reason`, such as the last lines a crashed command printed.
    public var message: String?
    public var podIP: String?
    public var hostIP: String?
    public var nodeName: String?
    /// The numeric security identity the node allocated for the pod's labels.
    public var identity: UInt32?
    /// When the containers last started, as an RFC 3339 timestamp.
    public var startedAt: String?
    /// How often the node restarted the pod's containers.
    public var restartCount: Int
    /// The exit status of the last container process that ended.
    public var exitCode: Int32?
    /// What the readiness probes last found: `false` until every container with a probe has
    /// passed it. `nil` (a pod without probes, or a status from before probes) is ready.
    public var ready: Bool?

    public init(
        phase: PodPhase,
        reason: String? = nil,
        message: String? = nil,
        podIP: String? = nil,
        hostIP: String? = nil,
        nodeName: String? = nil,
        identity: UInt32? = nil,
        startedAt: String? = nil,
        restartCount: Int = 0,
        exitCode: Int32? = nil,
        ready: Bool? = nil
    ) {
        self.phase = phase
        self.reason = reason
        self.message = message
        self.podIP = podIP
        self.hostIP = hostIP
        self.nodeName = nodeName
        self.identity = identity
        self.startedAt = startedAt
        self.restartCount = restartCount
        self.exitCode = exitCode
        self.ready = ready
    }

    /// Whether the pod may receive Service traffic: Running with an address, no `reason`
    /// saying that its process is not actually up (such as `CrashLoopBackOff`), and its
    /// readiness probes passed.
    public var isReady: Bool {
        guard phase == .running, let podIP, !podIP.isEmpty else { return false }
        return reason == nil && ready != false
    }

    /// The word `meridian get pods` shows: the reason when there is one, else the phase.
    public var displayStatus: String { reason ?? phase.rawValue }

    private enum CodingKeys: String, CodingKey {
        case phase, reason, message, podIP, hostIP, nodeName, identity, startedAt, restartCount, exitCode, ready
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        phase = try container.decode(PodPhase.self, forKey: .phase)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        podIP = try container.decodeIfPresent(String.self, forKey: .podIP)
        hostIP = try container.decodeIfPresent(String.self, forKey: .hostIP)
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        identity = try container.decodeIfPresent(UInt32.self, forKey: .identity)
        startedAt = try container.decodeIfPresent(String.self, forKey: .startedAt)
        restartCount = try container.decodeIfPresent(Int.self, forKey: .restartCount) ?? 0
        exitCode = try container.decodeIfPresent(Int32.self, forKey: .exitCode)
        ready = try container.decodeIfPresent(Bool.self, forKey: .ready)
    }
}

/// The coarse lifecycle stage of a pod, with Kubernetes' names and meanings.
public enum PodPhase: String, Codable, Sendable, Hashable, CaseIterable {
    /// Accepted, but not all containers are running yet: unscheduled, or being set up.
    case pending = "Pending"
    /// Bound to a node and started; includes waiting to restart a crashed container.
    case running = "Running"
    /// Every container exited with status 0 and will not be restarted.
    case succeeded = "Succeeded"
    /// Every container has exited and at least one failed, with no restart to come.
    case failed = "Failed"
    /// The node stopped reporting, so the pod's state cannot be known.
    case unknown = "Unknown"

    /// Succeeded and Failed are final: the pod will not run again.
    public var isFinished: Bool { self == .succeeded || self == .failed }
}

/// The `reason` words nodes write, spelled as `kubectl` shows them so that users
/// recognise them.
public enum PodStatusReason {
    public static let unschedulable = "Unschedulable"
    public static let containerCreating = "ContainerCreating"
    public static let crashLoopBackOff = "CrashLoopBackOff"
    public static let error = "Error"
    public static let completed = "Completed"
}

/// A pod as controllers see it: the spec from the store, paired with the status its node
/// last wrote (`nil` until a node has reported).
///
/// Its value is held in one shared box: controllers and agents filter, sort and pass around
/// arrays of tens of thousands of these, and copying the pod's many fields on each step was
/// most of an agent's work on a large service.
public struct ObservedPod: Sendable, Hashable {
    private final class Storage: Sendable {
        let pod: Pod
        let status: PodStatus?

        init(pod: Pod, status: PodStatus?) {
            self.pod = pod
            self.status = status
        }
    }

    private var storage: Storage

    public var pod: Pod {
        get { storage.pod }
        set { storage = Storage(pod: newValue, status: storage.status) }
    }

    public var status: PodStatus? {
        get { storage.status }
        set { storage = Storage(pod: storage.pod, status: newValue) }
    }

    public init(pod: Pod, status: PodStatus? = nil) {
        storage = Storage(pod: pod, status: status)
    }

    public static func == (a: ObservedPod, b: ObservedPod) -> Bool {
        a.storage === b.storage || (a.pod == b.pod && a.status == b.status)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(pod)
        hasher.combine(status)
    }

    public var isReady: Bool { status?.isReady ?? false }

    /// Deleted, and winding down on its node.
    public var isTerminating: Bool { pod.metadata.isBeingDeleted }

    /// The node the pod runs on: as reported, else as pinned or scheduled in the spec.
    public var nodeName: String? { status?.nodeName ?? pod.spec.nodeName }
}
