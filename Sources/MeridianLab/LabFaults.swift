import Foundation
import Glibc
import MeridianControlPlane
import MeridianEtcd
import MeridianHost

/// A process of a lab cluster a fault can be aimed at.
public enum LabProcess: Sendable, Hashable, CustomStringConvertible {
    case agent(cluster: String, node: String)
    case controlPlane(cluster: String)
    /// The store's etcd: the one the control plane runs (`member` nil), or one member of several
    /// by name (`m0`), or whichever member leads (`leader`).
    case etcd(cluster: String, member: String? = nil)
    /// A pod's container processes (its node's agent starts them again, as a kubelet would).
    case pod(cluster: String, namespace: String, name: String)

    /// Parses `agent CLUSTER/NODE`, `control-plane CLUSTER`, `etcd CLUSTER` or `etcd CLUSTER/MEMBER`
    /// (a member's name, or `leader`).
    public init(kind: String, target: String) throws(LabFaultError) {
        switch kind {
        case "agent":
            let parts = target.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw .badTarget(kind: kind, target: target, expected: "CLUSTER/NODE, e.g. cluster1/node1")
            }
            self = .agent(cluster: String(parts[0]), node: String(parts[1]))
        case "control-plane": self = .controlPlane(cluster: target)
        case "etcd":
            let parts = target.split(separator: "/", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
                throw .badTarget(kind: kind, target: target, expected: "CLUSTER, or CLUSTER/MEMBER (m0, m1, ... or leader)")
            }
            self = .etcd(cluster: String(parts[0]), member: parts.count == 2 ? String(parts[1]) : nil)
        case "pod":
            let parts = target.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
                throw .badTarget(kind: kind, target: target, expected: "CLUSTER/POD or CLUSTER/NAMESPACE/POD")
            }
            self = .pod(cluster: parts[0], namespace: parts.count == 3 ? parts[1] : "default", name: parts.last!)
        default: throw .badTarget(kind: kind, target: target, expected: "a kind of agent, control-plane, etcd or pod")
        }
    }

    public var description: String {
        switch self {
        case let .agent(cluster, node): "agent \(cluster)/\(node)"
        case let .controlPlane(cluster): "control-plane \(cluster)"
        case let .etcd(cluster, member): "etcd \(cluster)" + (member.map { "/\($0)" } ?? "")
        case let .pod(cluster, namespace, name): "pod \(cluster)/\(namespace)/\(name)"
        }
    }
}

/// A fault that could not be injected or undone, saying what to give instead.
public enum LabFaultError: Error, Sendable, CustomStringConvertible {
    case badTarget(kind: String, target: String, expected: String)
    case noLab(directory: String)
    case unknownCluster(String, known: [String])
    case unknownNode(cluster: String, node: String, known: [String])
    case notRunning(String)
    case notSupported(String)
    case samePair(String)
    case needsNodes(String)

    public var description: String {
        switch self {
        case let .badTarget(kind, target, expected): "\(kind) \(target): expected \(expected)"
        case let .noLab(directory): "no lab in \(directory); run `meridian lab up` first"
        case let .unknownCluster(name, known): "no cluster \(name) in the lab (clusters: \(known.joined(separator: ", ")))"
        case let .unknownNode(cluster, node, known): "no node \(node) in \(cluster) (nodes: \(known.joined(separator: ", ")))"
        case let .notRunning(what): "\(what) is not running"
        case let .notSupported(what): what
        case let .samePair(cluster): "a cluster cannot be partitioned from itself (\(cluster))"
        case let .needsNodes(what): "\(what) needs a lab with nodes (`lab up --nodes N`): the underlay router is where the traffic is dropped"
        }
    }
}

/// What a fault did and how to undo it, printed by `meridian lab fault`.
public struct LabFaultReport: Sendable, Hashable {
    public var did: String
    public var undo: String?
}

/// The faults a user rehearses on a lab: partitions between clusters, stopped, killed,
/// restarted and stalled processes. Partitions are nftables rules the lab owns: in the underlay
/// router's namespace for the clusters' traffic, and in a table of the lab's own for the
/// control planes' mesh connections on loopback (told apart by each control plane's cgroup).
/// `lab down` undoes every one of them.
extension Lab {
    /// The nftables table (in the root namespace and in the underlay router's) holding partitions.
    static func faultTable(prefix: String) -> String { "\(prefix)-faults" }

    func requireState() throws(LabFaultError) -> LabState {
        guard let state = loadState() else { throw .noLab(directory: directory) }
        return state
    }

    func requireCluster(_ name: String, in state: LabState) throws(LabFaultError) -> LabCluster {
        guard let cluster = state.cluster(name) else { throw .unknownCluster(name, known: state.clusters.map(\.name)) }
        return cluster
    }

    func requireNode(_ name: String, of cluster: LabCluster) throws(LabFaultError) -> LabNode {
        guard let node = cluster.nodes.first(where: { $0.name == name }) else {
            throw .unknownNode(cluster: cluster.name, node: name, known: cluster.nodes.map(\.name))
        }
        return node
    }

    /// The pid of `process` now, if it runs.
    public func pid(of process: LabProcess) async throws(LabFaultError) -> Int32? {
        let state = try requireState()
        switch process {
        case let .agent(clusterName, nodeName):
            let node = try requireNode(nodeName, of: try requireCluster(clusterName, in: state))
            return HostProcess.pid(inFile: node.pidFile, commandContaining: node.stateDirectory)
        case let .controlPlane(clusterName):
            let cluster = try requireCluster(clusterName, in: state)
            return HostProcess.pid(inFile: cluster.paths.pidFile, commandContaining: cluster.dataDirectory)
        case let .etcd(clusterName, memberName):
            let cluster = try requireCluster(clusterName, in: state)
            guard let memberName else {
                guard cluster.etcdMembers.isEmpty else {
                    throw .badTarget(kind: "etcd", target: clusterName, expected: "a member of its store: \(clusterName)/m0 ... or \(clusterName)/leader")
                }
                return HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster.paths.etcdData), commandContaining: cluster.paths.etcdData)
            }
            return ServiceRecord.load(try await member(memberName, of: cluster).service)?.pid
        case let .pod(clusterName, namespace, name):
            let cluster = try requireCluster(clusterName, in: state)
            let netns = "\(state.prefix)-c\(cluster.id)-\(namespace).\(name)"
            guard let inode = Self.inode("/var/run/netns/\(netns)") else { return nil }
            // The container's main process: the first in the pod's network namespace whose parent
            // (the runtime's wrapper, which reports its exit) is outside it.
            let inside = Self.processes(inNetworkNamespaces: [inode])
            return inside.first { process in HostProcess.parent(of: process).map { !inside.contains($0) } ?? false }
        }
    }

    /// The member named `name` of the cluster's store (`leader`: the one leading now).
    func member(_ name: String, of cluster: LabCluster) async throws(LabFaultError) -> LabEtcdMember {
        guard !cluster.etcdMembers.isEmpty else {
            throw .notSupported("\(cluster.name)'s store is one etcd run by its control plane (lab up --etcd-members 3 for members)")
        }
        if name == "leader" {
            guard let leader = await storeHealth(cluster)?.leaderEndpoint, let member = cluster.etcdMembers.first(where: { $0.clientURL == leader }) else {
                throw .notRunning("a leader of \(cluster.name)'s store")
            }
            return member
        }
        guard let member = cluster.etcdMembers.first(where: { $0.name == name }) else {
            throw .badTarget(kind: "etcd", target: "\(cluster.name)/\(name)", expected: "a member: \(cluster.etcdMembers.map(\.name).joined(separator: ", ")) or leader")
        }
        return member
    }

    /// Sends `signal` to the process (SIGKILL: killed; SIGTERM: asked to stop); its supervisor
    /// starts it again.
    public func signal(_ process: LabProcess, _ signal: Int32) async throws(LabFaultError) -> LabFaultReport {
        guard let pid = try await pid(of: process), HostProcess.isAlive(pid) else { throw .notRunning("\(process)") }
        kill(pid, signal)
        let name = signal == SIGKILL ? "killed (SIGKILL)" : "sent SIGTERM"
        let (restarter, shows) = if case .pod = process { ("its node's agent", "`meridian get pods`") } else { ("its supervisor", "`meridian lab status`") }
        return LabFaultReport(did: "\(process) (pid \(pid)) \(name); \(restarter) starts it again",
                              undo: "nothing to undo; \(shows) shows its restarts")
    }

    /// Stalls the process with SIGSTOP for `duration`, then resumes it with SIGCONT. The process
    /// is resumed also when the wait is cancelled.
    public func stall(_ process: LabProcess, for duration: Duration) async throws -> LabFaultReport {
        guard let pid = try await pid(of: process), HostProcess.isAlive(pid) else { throw LabFaultError.notRunning("\(process)") }
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        try? await Task.sleep(for: duration)
        return LabFaultReport(did: "\(process) (pid \(pid)) stalled (SIGSTOP) for \(duration), then resumed (SIGCONT)", undo: nil)
    }

    /// Stops the process and its supervisor: it stays down until `start`. An etcd managed by
    /// its control plane cannot be stopped on its own (the control plane would start it again).
    public func stop(_ process: LabProcess) async throws -> LabFaultReport {
        let state = try requireState()
        switch process {
        case let .agent(clusterName, nodeName):
            let cluster = try requireCluster(clusterName, in: state)
            let node = try requireNode(nodeName, of: cluster)
            await stopAgent(node)
            return LabFaultReport(did: "\(process) stopped; its pods, programs and maps stay",
                                  undo: "meridian lab fault start agent \(clusterName)/\(nodeName)")
        case let .controlPlane(clusterName):
            await stopControlPlane(try requireCluster(clusterName, in: state))
            return LabFaultReport(did: "\(process) stopped, and the etcd it manages with it",
                                  undo: "meridian lab fault start control-plane \(clusterName)")
        case let .etcd(clusterName, memberName):
            let cluster = try requireCluster(clusterName, in: state)
            guard let memberName else {
                throw LabFaultError.notSupported("etcd runs under its control plane, which starts it again: kill, restart or stall it, or stop the control plane")
            }
            let member = try await member(memberName, of: cluster)
            await stopMember(member)
            return LabFaultReport(did: "etcd member \(member.name) of \(clusterName) stopped", undo: "meridian lab fault start etcd \(clusterName)/\(member.name)")

        case .pod:
            throw LabFaultError.notSupported("a pod is stopped by deleting it (`meridian delete pod NAME`); kill restarts its containers")
        }
    }

    /// Starts a stopped process under its supervisor again.
    public func start(_ process: LabProcess) async throws -> LabFaultReport {
        let state = try requireState()
        switch process {
        case let .agent(clusterName, nodeName):
            let cluster = try requireCluster(clusterName, in: state)
            let node = try requireNode(nodeName, of: cluster)
            let previous = registrations(of: node)
            try await startAgent(node, cluster: cluster, prefix: state.prefix)
            try await waitForNode(node, cluster: cluster, timeout: .seconds(60), previous: previous)
        case let .controlPlane(clusterName):
            let cluster = try requireCluster(clusterName, in: state)
            try await startControlPlane(cluster)
            try await waitUntilReady(cluster, timeout: .seconds(60))
        case let .etcd(clusterName, memberName):
            let cluster = try requireCluster(clusterName, in: state)
            guard let memberName else { throw LabFaultError.notSupported("etcd runs under its control plane: start the control plane") }
            try await startMember(try await member(memberName, of: cluster), of: cluster)

        case .pod:
            throw LabFaultError.notSupported("a pod is started by applying it (`meridian apply -f`)")
        }
        return LabFaultReport(did: "\(process) started", undo: nil)
    }

    // MARK: Partitions

    /// Cuts `a` off from `b`, both ways: the underlay router drops the traffic between their node
    /// segments and pod CIDRs, and neither control plane reaches the other's mesh endpoint (its
    /// packets are dropped, so connections hang as across a real partition, rather than fail).
    public func partition(_ a: String, _ b: String) async throws -> LabFaultReport {
        let state = try requireState()
        guard a != b else { throw LabFaultError.samePair(a) }
        let first = try requireCluster(a, in: state)
        let second = try requireCluster(b, in: state)
        let comment = Self.partitionComment(a, b)
        try await ensureFaultTables(state)
        let underlay = Self.underlayNamespace(state.prefix)
        let table = Self.faultTable(prefix: state.prefix)
        if Self.namespaces(prefix: state.prefix).contains(underlay) {
            for (from, to) in [(first, second), (second, first)] {
                try await HostCommand.run(["ip", "netns", "exec", underlay, "nft", "add", "rule", "inet", table, "forward",
                                           "ip", "saddr", "{ \(Self.underlaySegment(from)), \(from.podCIDR) }",
                                           "ip", "daddr", "{ \(Self.underlaySegment(to)), \(to.podCIDR) }",
                                           "counter", "drop", "comment", "\"\(comment)\""])
            }
        }
        for (from, to) in [(first, second), (second, first)] {
            let cgroup = Self.controlPlaneCgroupName(prefix: state.prefix, cluster: from.name)
            try await HostCommand.run(Self.nftSeeingCgroupV2 + ["add", "rule", "inet", table, "output",
                                       "socket", "cgroupv2", "level", "1", "\"\(cgroup)\"",
                                       "ip", "daddr", "127.0.0.0/8", "tcp", "dport", "\(to.meshPort)",
                                       "counter", "drop", "comment", "\"\(comment)\""])
        }
        return LabFaultReport(did: "\(a) and \(b) partitioned: their nodes' traffic and their control planes' mesh connections are dropped",
                              undo: "meridian lab fault heal \(a) \(b)")
    }

    /// Removes the partition between `a` and `b` (both nil: every partition).
    public func heal(_ a: String?, _ b: String?) async throws -> LabFaultReport {
        let state = try requireState()
        let comment = a.flatMap { a in b.map { Self.partitionComment(a, $0) } }
        let table = Self.faultTable(prefix: state.prefix)
        let underlay = Self.underlayNamespace(state.prefix)
        var removed = 0
        for namespace in [nil] + (Self.namespaces(prefix: state.prefix).contains(underlay) ? [underlay] : []) {
            let run = { (arguments: [String]) async throws -> String in
                try await HostCommand.run((namespace.map { ["ip", "netns", "exec", $0] } ?? []) + arguments)
            }
            for chain in ["forward", "output"] {
                guard let listing = try? await run(["nft", "-a", "list", "chain", "inet", table, chain]) else { continue }
                for line in listing.split(separator: "\n") where line.contains("comment \"partition ") {
                    guard comment == nil || line.contains("\"\(comment!)\""),
                          let handle = line.split(separator: " ").last.flatMap({ Int($0) }) else { continue }
                    _ = try await run(["nft", "delete", "rule", "inet", table, chain, "handle", "\(handle)"])
                    removed += 1
                }
            }
        }
        let what = comment.map { "the \($0)" } ?? "every partition"
        return LabFaultReport(did: removed == 0 ? "no partition to heal" : "\(what) healed (\(removed) rules removed)", undo: nil)
    }

    /// The partitions in place, as pairs of cluster names.
    public func partitions() async -> [[String]] {
        guard let state = loadState(),
              let listing = try? await HostCommand.run(["nft", "list", "chain", "inet", Self.faultTable(prefix: state.prefix), "output"])
        else { return [] }
        let pairs = listing.split(separator: "\n").compactMap { line -> [String]? in
            guard let range = line.range(of: "comment \"partition ") else { return nil }
            let names = line[range.upperBound...].prefix { $0 != "\"" }.split(separator: " ").filter { $0 != "<->" }.map(String.init)
            return names.count == 2 ? names : nil
        }
        return Array(Set(pairs)).sorted { $0.joined() < $1.joined() }
    }

    /// `nft` resolves a cgroup path under /sys/fs/cgroup, which on a host with v1 controllers
    /// is not the v2 hierarchy: it runs in a mount namespace of its own where it is.
    static let nftSeeingCgroupV2 = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                                    "mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec nft \"$@\"", "nft"]

    static func partitionComment(_ a: String, _ b: String) -> String {
        let pair = [a, b].sorted()
        return "partition \(pair[0]) <-> \(pair[1])"
    }

    static func underlaySegment(_ cluster: LabCluster) -> String { "172.30.\(cluster.id).0/24" }

    /// Creates the partition tables if missing: `output` in the root namespace for the control
    /// planes' mesh connections on loopback, `forward` in the underlay router for node traffic.
    func ensureFaultTables(_ state: LabState) async throws {
        let table = Self.faultTable(prefix: state.prefix)
        // The mesh rules name the control planes' cgroups, which nft refuses unless they exist.
        for cluster in state.clusters { _ = try controlPlaneCgroup(cluster) }
        try await HostCommand.run(["nft", "add", "table", "inet", table])
        try await HostCommand.run(["nft", "add", "chain", "inet", table, "output", "{ type filter hook output priority 0 ; }"])
        let underlay = Self.underlayNamespace(state.prefix)
        if Self.namespaces(prefix: state.prefix).contains(underlay) {
            try await HostCommand.run(["ip", "netns", "exec", underlay, "nft", "add", "table", "inet", table])
            try await HostCommand.run(["ip", "netns", "exec", underlay, "nft", "add", "chain", "inet", table, "forward",
                                       "{ type filter hook forward priority 0 ; }"])
        }
    }

    /// Removes the root namespace's partition table (the underlay's goes with its namespace).
    func removeFaultTables(prefix: String) async {
        await HostCommand.attempt(["nft", "delete", "table", "inet", Self.faultTable(prefix: prefix)])
    }
}
