/// Where a command runs as if a pod ran it: inside the pod's network namespace and, for a lab
/// pod, in its node's pod cgroup, so the node's socket programs treat its connections as the
/// pod's own (as `kubectl exec` lands in the pod's cgroup). Baseline namespaces have no cgroup.
struct ToolPlace: Sendable {
    var namespace: String
    var cgroup: String?

    /// The command line that runs `tool` here.
    func command(_ tool: [String]) -> [String] {
        let inNamespace = ["ip", "netns", "exec", namespace] + tool
        guard let cgroup else { return inNamespace }
        return ["sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup] + inNamespace
    }
}
