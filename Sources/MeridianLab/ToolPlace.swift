import MeridianHost

/// Where a command runs as if a pod ran it: inside the pod's network namespace and, for a lab
/// pod, in its node's pod cgroup, so the node's socket programs treat its connections as the
/// pod's own (as `kubectl exec` lands in the pod's cgroup). Baseline namespaces have no cgroup.
public struct ToolPlace: Sendable {
    public var namespace: String
    public var cgroup: String?

    public init(namespace: String, cgroup: String? = nil) {
        self.namespace = namespace
        self.cgroup = cgroup
    }

    /// The command line that runs `tool` here.
    public func command(_ tool: [String]) -> [String] {
        let inNamespace = ["ip", "netns", "exec", namespace] + tool
        guard let cgroup else { return inNamespace }
        return ["sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup] + inNamespace
    }

    /// Lets a load client reuse its own TIME_WAIT ports for new connections
    /// (`tcp_tw_reuse=1`, as load generators are run). At a thousand connections per second the
    /// 28,000 ephemeral ports are all in TIME_WAIT within half a minute, and every connect() then
    /// scans for a free one: that slowed both paths of `bench services` alike to 2 ms per
    /// connect in the step after 1,000 services.
    public func prepareForConnectionLoad() async throws {
        try await HostCommand.sysctl("net.ipv4.tcp_tw_reuse", "1", namespace: namespace)
    }
}
