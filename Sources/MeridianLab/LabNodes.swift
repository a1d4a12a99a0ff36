import Foundation
import Glibc
import MeridianControlPlane
import MeridianHost

/// One node of a lab cluster: a network namespace on the cluster's underlay segment, running
/// a `meridian agent`.
public struct LabNode: Codable, Sendable, Hashable {
    public var name: String
    public var namespace: String
    public var underlayIP: String
    public var stateDirectory: String
    public var pinDirectory: String
    /// The loopback port (in the host's namespace) of the agent's `/metrics`.
    public var metricsPort: Int?

    public var logPath: String { stateDirectory + "/agent.log" }
    /// The node's flow observer's socket (read by the cluster's relay).
    public var observerSocket: String { stateDirectory + "/observer.sock" }
    /// Written by the agent itself once it runs (setsid may fork, so the launcher's pid is not it).
    public var pidFile: String { stateDirectory + "/agent.pid" }
    /// The service record of the supervisor running the agent.
    public var agentService: String { stateDirectory + "/agent.service.json" }
}

/// The lab's underlay: namespace `<prefix>-underlay` routes between one bridge per cluster
/// (`br-c<ID>`, the cluster's underlay MTU), reaching each through its leg `rt-c<ID>` at
/// 172.30.<ID>.254/24. Node N of cluster C is
/// namespace `<prefix>-c<C>-n<N>` with `ul0` at 172.30.<C>.<N>, reaching other clusters through
/// the underlay router only. The router also routes each node's pod CIDR to the node, as a
/// routed fabric would, so an address in the underlay (a server standing for the world outside
/// the clusters) talks to pods without NAT. Nothing is added to the root namespace and nothing
/// routes out.
extension Lab {
    public static var defaultPrefix: String {
        if let explicit = ProcessInfo.processInfo.environment["MERIDIAN_LAB_PREFIX"], !explicit.isEmpty { return explicit }
        return "meridian"
    }

    static func underlayNamespace(_ prefix: String) -> String { "\(prefix)-underlay" }
    public static let underlayDevice = "ul0"
    var bpffsDirectory: String { directory + "/bpffs" }
    /// Where the lab mounts the cgroup v2 hierarchy (the system's one hierarchy, seen from the
    /// lab directory), to make one cgroup per node for its pods.
    var cgroupDirectory: String { directory + "/cgroup" }

    /// The cgroup the node's pods run in; its agent puts the socket programs on it.
    public func cgroup(of node: LabNode) -> String { cgroupDirectory + "/" + node.namespace }

    func createUnderlay(_ state: inout LabState) async throws {
        let underlay = Self.underlayNamespace(state.prefix)
        try await HostCommand.ip("netns", "add", underlay)
        try await HostCommand.run(["ip", "-n", underlay, "link", "set", "lo", "up"])
        try await HostCommand.sysctl("net.ipv4.ip_forward", "1", namespace: underlay)
        for cluster in state.clusters {
            let bridge = "br-c\(cluster.id)"
            try await HostCommand.run(["ip", "-n", underlay, "link", "add", bridge, "type", "bridge"])
            try await HostCommand.run(["ip", "-n", underlay, "link", "set", bridge, "mtu", "\(cluster.underlayMTU)", "up"])
            // The router's leg is a veth port of the bridge, like a router's NIC on the segment.
            // Routing out of the bridge device itself would segment every tunnelled GSO packet
            // in software (a bridge offers no segmentation offload for encapsulated packets),
            // which no real fabric does and which would cap every cross-segment path.
            let (leg, legPort) = ("rt-c\(cluster.id)", "rt-c\(cluster.id)-br")
            try await HostCommand.run(["ip", "-n", underlay, "link", "add", leg, "mtu", "\(cluster.underlayMTU)", "type", "veth", "peer", "name", legPort])
            try await HostCommand.run(["ip", "-n", underlay, "link", "set", legPort, "master", bridge, "mtu", "\(cluster.underlayMTU)", "up"])
            try await HostCommand.run(["ip", "-n", underlay, "addr", "add", "172.30.\(cluster.id).254/24", "dev", leg])
            try await HostCommand.run(["ip", "-n", underlay, "link", "set", leg, "up"])
        }
        try FileManager.default.createDirectory(atPath: bpffsDirectory, withIntermediateDirectories: true)
        if !Self.isBPFFS(bpffsDirectory) {
            guard mount("bpf", bpffsDirectory, "bpf", 0, nil) == 0 else {
                throw LabError.mountFailed(type: "a bpf filesystem", path: bpffsDirectory, reason: String(cString: strerror(errno)))
            }
        }
        try mountCgroupHierarchy()
    }

    /// Mounts the system's cgroup v2 hierarchy in the lab directory (idempotent), where the lab
    /// makes a cgroup per node for its pods and one per control plane.
    func mountCgroupHierarchy() throws {
        try FileManager.default.createDirectory(atPath: cgroupDirectory, withIntermediateDirectories: true)
        if !Self.isMounted(cgroupDirectory, type: "cgroup2") {
            guard mount("cgroup2", cgroupDirectory, "cgroup2", 0, nil) == 0 else {
                throw LabError.mountFailed(type: "cgroup2 (socket load balancing needs cgroup v2)", path: cgroupDirectory, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// The cgroup a cluster's control plane (and its managed etcd) runs in, made if missing;
    /// named `<prefix>-cp-<cluster>` at the hierarchy's top.
    func controlPlaneCgroup(_ cluster: LabCluster) throws -> String {
        try mountCgroupHierarchy()
        let path = cgroupDirectory + "/" + Self.controlPlaneCgroupName(prefix: loadState()?.prefix ?? Self.defaultPrefix, cluster: cluster.name)
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw LabError.cgroupFailed(path: path, reason: String(cString: strerror(errno)))
        }
        return path
    }

    static func controlPlaneCgroupName(prefix: String, cluster: String) -> String { "\(prefix)-cp-\(cluster)" }

    func addNode(_ state: inout LabState, cluster index: Int, number: Int) async throws {
        let cluster = state.clusters[index]
        let underlay = Self.underlayNamespace(state.prefix)
        let namespace = "\(state.prefix)-c\(cluster.id)-n\(number)"
        let port = "c\(cluster.id)n\(number)"
        let address = "172.30.\(cluster.id).\(number)"
        try await HostCommand.ip("netns", "add", namespace)
        try await HostCommand.run(["ip", "-n", underlay, "link", "add", port, "type", "veth", "peer", "name", Self.underlayDevice, "netns", namespace])
        try await HostCommand.run(["ip", "-n", underlay, "link", "set", port, "master", "br-c\(cluster.id)", "mtu", "\(cluster.underlayMTU)", "up"])
        let n = ["ip", "-n", namespace]
        try await HostCommand.run(n + ["link", "set", "lo", "up"])
        try await HostCommand.run(n + ["link", "set", Self.underlayDevice, "mtu", "\(cluster.underlayMTU)", "up"])
        try await HostCommand.run(n + ["addr", "add", "\(address)/24", "dev", Self.underlayDevice])
        try await HostCommand.run(n + ["route", "add", "172.30.0.0/16", "via", "172.30.\(cluster.id).254", "dev", Self.underlayDevice])
        if let podCIDR = Self.nodePodCIDR(clusterCIDR: cluster.podCIDR, prefixLength: cluster.nodePodPrefixLength, number: number) {
            try await HostCommand.run(["ip", "-n", underlay, "route", "replace", podCIDR, "via", address])
        }
        let node = LabNode(name: "node\(number)", namespace: namespace, underlayIP: address,
                           stateDirectory: "\(cluster.dataDirectory)/nodes/node\(number)",
                           pinDirectory: "\(bpffsDirectory)/\(cluster.name)-node\(number)",
                           metricsPort: try FreePorts.reserve(1).first)
        try holdHostNetworkNamespace()
        try FileManager.default.createDirectory(atPath: node.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard mkdir(cgroup(of: node), 0o755) == 0 || errno == EEXIST else {
            throw LabError.cgroupFailed(path: cgroup(of: node), reason: String(cString: strerror(errno)))
        }
        try await startAgent(node, cluster: cluster, prefix: state.prefix)
        state.clusters[index].nodes.append(node)
    }

    /// The pod CIDR node `number` carves (its agent asks for index `number` first), as text.
    static func nodePodCIDR(clusterCIDR: String, prefixLength: Int, number: Int) -> String? {
        let parts = clusterCIDR.split(separator: "/")
        let octets = parts.first?.split(separator: ".").compactMap { UInt32($0) } ?? []
        guard octets.count == 4, (16...30).contains(prefixLength), number > 0, number < 1 << (prefixLength - 16) else { return nil }
        let base = octets.reduce(UInt32(0)) { $0 << 8 | $1 } | UInt32(number) << UInt32(32 - prefixLength)
        return "\(base >> 24).\((base >> 16) & 0xFF).\((base >> 8) & 0xFF).\(base & 0xFF)/\(prefixLength)"
    }

    /// The agent's command line: it runs inside the node's network namespace (entered with
    /// nsenter, which unlike `ip netns exec` keeps the host's mount namespace, so the pod
    /// namespaces the agent creates are visible to `meridian exec` and to teardown) and reaches
    /// etcd over the control plane's unix socket with the agent certificate.
    public func agentArguments(_ node: LabNode, cluster: LabCluster, prefix: String) -> [String] {
        let paths = cluster.paths
        let encryption: [String] = cluster.encryption.map { kind in
            Self.encryptionArguments(kind) + ["--wireguard-device", Self.wireGuardDevice(namespace: node.namespace)]
                + (cluster.wireguardRotationInterval.map { ["--wireguard-rotation-interval", $0] } ?? [])
        } ?? []
        return ["nsenter", "--net=/var/run/netns/\(node.namespace)", executable, "agent",
                "--node", node.name,
                "--etcd-endpoint", cluster.etcdMembers.isEmpty ? "unixs://\(paths.etcdSocket)" : cluster.etcdMembers.map { "unixs://\($0.socket)" }.joined(separator: ","),
                "--ca-cert", paths.caCertificate, "--cert", paths.agentCertificate, "--key", paths.agentKey,
                "--server-name", cluster.serverName,
                "--state-dir", node.stateDirectory, "--pin-dir", node.pinDirectory,
                "--underlay-device", Self.underlayDevice, "--netns-prefix", "\(prefix)-c\(cluster.id)",
                "--pod-cidr-prefix-length", "\(cluster.nodePodPrefixLength)", "--cgroup", cgroup(of: node),
                "--observer-listen", "unix:\(node.observerSocket)", "--observer-cert", paths.flowsCertificate, "--observer-key", paths.flowsKey]
            + (cluster.nodeGraceSeconds.map { ["--node-grace-period", "\($0)"] } ?? [])
            + encryption
            // The agent lives in the node's namespace; its metrics listener is opened in the
            // host's, where the lab's Prometheus scrapes.
            + (node.metricsPort.map { ["--metrics-listen", "127.0.0.1:\($0)", "--metrics-netns", hostNetworkNamespacePath] } ?? [])
    }

    /// The agent's options for a cluster's encryption kind (`wireguard` or `wireguard-strict`).
    static func encryptionArguments(_ kind: String) -> [String] {
        kind == "wireguard-strict" ? ["--encryption", "wireguard", "--encryption-strict"] : ["--encryption", kind]
    }

    /// Starts a node's agent under a supervisor of its own that restarts it whenever it exits,
    /// logging to the node's state directory. Does nothing if one already supervises it.
    public func startAgent(_ node: LabNode, cluster: LabCluster, prefix: String) async throws {
        guard ServiceRecord.load(node.agentService) == nil else { return }
        try? FileManager.default.removeItem(atPath: node.pidFile)
        try await launchSupervised(name: "agent-\(cluster.name)-\(node.name)", record: node.agentService, log: node.logPath,
                                   command: agentArguments(node, cluster: cluster, prefix: prefix))
    }

    /// Stops a node's agent and its supervisor; its pods, programs and maps stay, as on a real node.
    public func stopAgent(_ node: LabNode) async {
        await ServiceSupervisor.stop(recordPath: node.agentService)
        if let pid = HostProcess.pid(inFile: node.pidFile, commandContaining: node.stateDirectory) {
            await HostProcess.terminate(pid)
        }
    }

    /// Restarts every agent of cluster `name`, one node after the other, with `encryption` (a
    /// kind of `Lab.encryptionKinds`; nil or `none`: off), recorded in the lab's state, and waits
    /// until each has registered its node again. Pods started before keep their MTU.
    public func restartAgents(cluster name: String, encryption: String?, timeout: Duration = .seconds(30)) async throws {
        guard var state = loadState(), let index = state.clusters.firstIndex(where: { $0.name == name }) else {
            throw LabError.missing("cluster \(name)")
        }
        state.clusters[index].encryption = encryption == "none" ? nil : encryption
        try save(state)
        let cluster = state.clusters[index]
        for node in cluster.nodes {
            let previous = registrations(of: node)
            await stopAgent(node)
            try await startAgent(node, cluster: cluster, prefix: state.prefix)
            try await waitForNode(node, cluster: cluster, timeout: timeout, previous: previous)
        }
    }

    /// How many times the node's agent has registered the node so far, per its log.
    public func registrations(of node: LabNode) -> Int {
        registrations(inLog: (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? "")
    }

    private func registrations(inLog log: String) -> Int {
        log.components(separatedBy: "node registered").count - 1
    }

    /// Waits until the node's agent has registered the node more than `previous` times (its log
    /// says so). Fails early if the agent keeps exiting while it starts (its supervisor restarted
    /// it twice since the wait began) or runs unsupervised and is gone.
    public func waitForNode(_ node: LabNode, cluster: LabCluster, timeout: Duration, previous: Int = 0) async throws {
        let deadline = ContinuousClock.now + timeout
        let startsBefore = ServiceRecord.load(node.agentService)?.starts ?? 0
        while true {
            let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
            if registrations(inLog: log) > previous { return }
            if Self.keepsExiting(service: node.agentService, pidFile: node.pidFile, startsBefore: startsBefore) {
                throw LabError.agentExited(cluster: cluster.name, node: node.name, log: node.logPath, tail: String(log.suffix(2000)))
            }
            guard ContinuousClock.now < deadline else {
                throw LabError.agentNotRegistered(cluster: cluster.name, node: node.name, waited: timeout, log: node.logPath)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Whether a daemon being waited for is failing: restarted twice by its supervisor since
    /// the wait began, or, with no supervisor, its process gone.
    static func keepsExiting(service: String, pidFile: String, startsBefore: Int) -> Bool {
        if let record = ServiceRecord.load(service) { return record.starts >= startsBefore + 2 }
        guard let pid = HostProcess.pid(inFile: pidFile) else { return false }
        return !HostProcess.isAlive(pid)
    }

    /// Removes every node-level object of the lab: processes inside its namespaces (agents and
    /// pods), the namespaces (which takes their links), pods' resolv.conf files and the bpffs
    /// with every pinned map. Works from names alone, so it also cleans up after a crash.
    func removeNodes(prefix: String) async {
        let namespaces = Self.namespaces(prefix: prefix)
        let inodes = Set(namespaces.compactMap { Self.inode("/var/run/netns/\($0)") })
        if !inodes.isEmpty {
            await HostProcess.terminate(Self.processes(inNetworkNamespaces: inodes), .init(grace: .milliseconds(300)))
        }
        for namespace in namespaces {
            // A wireguard-go killed before it could clean up leaves its control socket.
            unlink("/var/run/wireguard/\(Self.wireGuardDevice(namespace: namespace)).sock")
            await HostCommand.attempt(["ip", "netns", "del", namespace])
            try? FileManager.default.removeItem(atPath: "/etc/netns/\(namespace)")
        }
        // Devices named with the prefix (a benchmark's bare wireguard-go tunnel) whose process was killed.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/var/run/wireguard")) ?? [] where entry.hasPrefix(prefix + "-") {
            unlink("/var/run/wireguard/\(entry)")
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/etc/netns") {
            for entry in entries where entry.hasPrefix(prefix + "-") { try? FileManager.default.removeItem(atPath: "/etc/netns/\(entry)") }
        }
        if Self.isBPFFS(bpffsDirectory) { umount2(bpffsDirectory, Int32(MNT_DETACH)) }
        await removeNodeCgroups(prefix: prefix)
    }

    /// Removes the node cgroups (which detaches the socket programs) and unmounts the hierarchy.
    /// The cgroups live in the system's hierarchy, so they would outlive the lab: the hierarchy is
    /// mounted again for this if a crash left it unmounted, and a cgroup whose last processes are
    /// still exiting is retried for a while.
    func removeNodeCgroups(prefix: String) async {
        guard FileManager.default.fileExists(atPath: cgroupDirectory) else { return }
        if !Self.isMounted(cgroupDirectory, type: "cgroup2"), mount("cgroup2", cgroupDirectory, "cgroup2", 0, nil) != 0 { return }
        let nodeCgroups = ((try? FileManager.default.contentsOfDirectory(atPath: cgroupDirectory)) ?? []).filter { $0.hasPrefix(prefix + "-") }
        for entry in nodeCgroups {
            let path = cgroupDirectory + "/" + entry
            var attempts = 0
            while rmdir(path) != 0 && errno == EBUSY && attempts < 50 {
                attempts += 1
                try? await Task.sleep(for: .milliseconds(100))
            }
            if FileManager.default.fileExists(atPath: path) {
                FileHandle.standardError.write(Data("warning: could not remove cgroup \(path): \(String(cString: strerror(errno)))\n".utf8))
            }
        }
        umount2(cgroupDirectory, Int32(MNT_DETACH))
    }

    /// The WireGuard device of the node in `namespace`: `wg` and 12 hex digits of a hash of the
    /// namespace's name. wireguard-go's control sockets (`/var/run/wireguard/<device>.sock`) are
    /// shared by every namespace of the host, so each lab node's device needs a name no other
    /// node (of this lab or another) has, within the kernel's 15 characters.
    public static func wireGuardDevice(namespace: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in namespace.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash & 0xFFFF_FFFF_FFFF, radix: 16)
        return "wg" + String(repeating: "0", count: 12 - hex.count) + hex
    }

    /// Network namespaces named `<prefix>-...`.
    public static func namespaces(prefix: String) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns") else { return [] }
        return entries.filter { $0.hasPrefix(prefix + "-") }.sorted()
    }

    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }

    static func processes(inNetworkNamespaces inodes: Set<UInt64>) -> [Int32] {
        HostProcess.others().filter { Self.inode("/proc/\($0)/ns/net").map(inodes.contains) == true }
    }

    /// Whether a bpf filesystem is mounted at `path` (per /proc/self/mounts).
    static func isBPFFS(_ path: String) -> Bool { isMounted(path, type: "bpf") }

    /// Mount points of filesystems of `type` inside `directory` (per /proc/self/mounts).
    static func mountPoints(under directory: String, type: String) -> [String] {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return [] }
        return mounts.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 2, fields[2] == type, fields[1].hasPrefix(directory + "/") else { return nil }
            return String(fields[1])
        }
    }

    /// Whether a filesystem of `type` is mounted at `path` (per /proc/self/mounts).
    static func isMounted(_ path: String, type: String) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        return mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[1] == path && fields[2] == type
        }
    }
}
