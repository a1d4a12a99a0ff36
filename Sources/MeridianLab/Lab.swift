import Foundation
import MeridianControlPlane
import MeridianHost
import MeridianCore
import MeridianPKI

/// One cluster of a lab: what it was started with and where its files are.
public struct LabCluster: Codable, Sendable, Hashable {
    public var name: String
    public var id: UInt32
    public var podCIDR: String
    public var serviceCIDR: String
    public var dataDirectory: String
    public var clientPort: Int
    public var peerPort: Int
    /// The control plane's mesh endpoint, which peers import from.
    public var meshPort: Int
    public var underlayMTU: Int = 1500
    /// The prefix length of each node's pod CIDR.
    public var nodePodPrefixLength: Int = 24
    /// `--identity-gc-interval` of the control plane, in seconds (nil: the control plane's default).
    public var identityGCSeconds: Int?
    public var nodes: [LabNode] = []
    /// The store's members when it has several, each an etcd of its own under a supervisor;
    /// empty: the control plane runs the one etcd itself.
    public var etcdMembers: [LabEtcdMember] = []
    /// MiB of the filesystem of its own each etcd's data is on (a tmpfs), so that filling it is a
    /// fault one can rehearse without filling the host's disk; nil: the data is on the host's disk.
    public var storeDiskMiB: Int?
    /// The agents' `--node-grace-period` in seconds (nil: theirs, 15 minutes).
    public var nodeGraceSeconds: Int?
    /// The loopback port of the control plane's `/metrics` (nil: a lab made before metrics).
    public var metricsPort: Int?
    /// The agents' encryption: `wireguard`, or `wireguard-strict` (`--encryption wireguard
    /// --encryption-strict`); nil: traffic between nodes is not encrypted.
    public var encryption: String?
    /// The agents' `--wireguard-rotation-interval` (e.g. `20s`), for clusters that encrypt; nil:
    /// keys are replaced only on request.
    public var wireguardRotationInterval: String?

    public init(name: String, id: UInt32, podCIDR: String, serviceCIDR: String, dataDirectory: String,
                clientPort: Int, peerPort: Int, meshPort: Int) {
        self.name = name
        self.id = id
        self.podCIDR = podCIDR
        self.serviceCIDR = serviceCIDR
        self.dataDirectory = dataDirectory
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.meshPort = meshPort
    }

    /// The store's client endpoints, comma-separated (one per member).
    public var endpoint: String {
        etcdMembers.isEmpty ? "https://127.0.0.1:\(clientPort)" : etcdMembers.map(\.clientURL).joined(separator: ",")
    }
    /// The service record of the supervisor running the cluster's control plane.
    public var controlPlaneService: String { dataDirectory + "/control-plane.service.json" }
    public var controlPlaneLog: String { dataDirectory + "/control-plane.log" }
    public var serverName: String { "etcd.\(name).meridian" }
    public var paths: ControlPlanePaths { ControlPlanePaths(dataDirectory: dataDirectory) }
    /// The flow relay's socket, which `meridian observe` reads the cluster's flows from.
    public var observerSocket: String { dataDirectory + "/observer.sock" }
}

/// What `lab up` made, persisted in `<lab dir>/lab.json` so `lab down` (or a test's teardown)
/// can remove all of it.
public struct LabState: Codable, Sendable, Hashable {
    public var directory: String
    /// Every namespace, link and pin of the lab starts with this.
    public var prefix: String = Lab.defaultPrefix
    public var clusters: [LabCluster]
    /// The loopback port of the lab's Prometheus, when `lab up --prometheus` started one.
    public var prometheusPort: Int?

    public func cluster(_ name: String) -> LabCluster? { clusters.first { $0.name == name } }
}

/// Errors of the lab, each saying what it concerns and what to do about it.
public enum LabError: Error, Sendable, CustomStringConvertible {
    /// An option of `lab up` out of its range.
    case outOfRange(option: String, allowed: String, got: String)
    case alreadyUp(directory: String, clusters: [String])
    case controlPlaneExited(cluster: String, log: String)
    case controlPlaneNotReady(cluster: String, waited: Duration, log: String)
    case mountFailed(type: String, path: String, reason: String)
    case cgroupFailed(path: String, reason: String)
    case agentExited(cluster: String, node: String, log: String, tail: String)
    case agentNotRegistered(cluster: String, node: String, waited: Duration, log: String)
    case nodeNotFound(cluster: String, node: String, lab: String)
    case notALabCluster(context: String)
    case podNotFound(namespace: String, pod: String, cluster: String)
    case podNotRunning(namespace: String, pod: String, status: String, message: String?)
    case podOnUnknownNode(namespace: String, pod: String, node: String?)
    /// A `meridian` (or host) command a driver ran failed.
    case commandFailed(command: [String], status: String, output: String)
    case timedOut(waitingFor: String, after: Duration)
    case missing(String)

    public var description: String {
        switch self {
        case let .outOfRange(option, allowed, got): "\(option) must be \(allowed), got \(got)"
        case let .alreadyUp(directory, clusters):
            "a lab is already up in \(directory) (\(clusters.joined(separator: ", "))); run `meridian lab down` first"
        case let .controlPlaneExited(cluster, log): "control plane of \(cluster) exited during start-up; see \(log)"
        case let .controlPlaneNotReady(cluster, waited, log): "control plane of \(cluster) not ready after \(waited); see \(log)"
        case let .mountFailed(type, path, reason): "cannot mount \(type) at \(path): \(reason)"
        case let .cgroupFailed(path, reason): "cannot create cgroup \(path): \(reason)"
        case let .agentExited(cluster, node, log, tail): "agent of \(cluster)/\(node) exited during start-up; see \(log):\n\(tail)"
        case let .agentNotRegistered(cluster, node, waited, log): "agent of \(cluster)/\(node) not registered after \(waited); see \(log)"
        case let .nodeNotFound(cluster, node, lab): "no node \(node) in cluster \(cluster) of the lab in \(lab)"
        case let .notALabCluster(context): "context \(context) is not a lab cluster; exec runs commands in lab pods on this machine"
        case let .podNotFound(namespace, pod, cluster): "pod \(namespace)/\(pod) not found in \(cluster)"
        case let .podNotRunning(namespace, pod, status, message): "pod \(namespace)/\(pod) is \(status), not Running" + (message.map { ": \($0)" } ?? "")
        case let .podOnUnknownNode(namespace, pod, node): "pod \(namespace)/\(pod) runs on node \(node ?? "?"), which the lab does not have"
        case let .commandFailed(command, status, output): "`\(command.joined(separator: " "))` failed (\(status)): \(output.suffix(2000))"
        case let .timedOut(what, after): "timed out after \(after) waiting for \(what)"
        case let .missing(what): "the lab has no \(what)"
        }
    }
}

/// Brings up several clusters' control planes on this machine, each a `meridian control-plane`
/// process supervising its own etcd on 127.0.0.1 (no lab address in the root namespace), all
/// sharing one CA as Cilium recommends for meshed clusters.
public struct Lab: Sendable {
    public let directory: String
    /// The `meridian` executable the control planes run.
    public let executable: String

    public init(directory: String, executable: String) {
        self.directory = directory
        self.executable = executable
    }

    public static var defaultDirectory: String {
        if let explicit = ProcessInfo.processInfo.environment["MERIDIAN_LAB_DIR"], !explicit.isEmpty { return explicit }
        let base = ProcessInfo.processInfo.environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? NSHomeDirectory() + "/.local/state"
        return base + "/meridian/lab"
    }

    private var statePath: String { directory + "/lab.json" }
    public var caCertificatePath: String { directory + "/ca.crt" }
    public var caKeyPath: String { directory + "/ca.key" }

    public func loadState() -> LabState? {
        guard let data = FileManager.default.contents(atPath: statePath) else { return nil }
        return try? JSONDecoder().decode(LabState.self, from: data)
    }

    func save(_ state: LabState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(to: URL(fileURLWithPath: statePath), options: .atomic)
    }

    /// What `--encryption` takes per cluster.
    public static let encryptionKinds = ["wireguard", "wireguard-strict", "none"]

    /// Starts `count` clusters named `cluster1...` with IDs 1..., pod CIDRs `10.<id>.0.0/16` and
    /// service CIDRs `10.<100+id>.0.0/16`, and waits until each control plane is ready.
    /// `mtus` are the clusters' underlay MTUs in order (the last repeats; default 1500).
    public func up(clusters count: Int, nodes nodeCount: Int = 0, mtus: [Int] = [], nodePodPrefixLength: Int = 24,
                   identityGCSeconds: Int? = nil, etcdMembers: Int = 1, storeDiskMiB: Int? = nil, nodeGraceSeconds: Int? = nil,
                   prometheus: Bool = false, encryption: String? = nil, wireguardRotationInterval: String? = nil,
                   readyTimeout: Duration = .seconds(60)) async throws -> LabState {
        let encryptions = (encryption ?? "none").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if let bad = encryptions.first(where: { !Self.encryptionKinds.contains($0) }) {
            throw LabError.outOfRange(option: "--encryption", allowed: "wireguard, wireguard-strict or none, per cluster comma-separated (the last repeats)",
                                      got: bad)
        }
        if let nodeGraceSeconds, !(10...86_400).contains(nodeGraceSeconds) {
            throw LabError.outOfRange(option: "--node-grace-period", allowed: "10...86400 seconds", got: "\(nodeGraceSeconds)")
        }
        if let storeDiskMiB, !(160...65_536).contains(storeDiskMiB) {
            throw LabError.outOfRange(option: "--store-disk", allowed: "160...65536 MiB (etcd's log alone takes 64 MiB)", got: "\(storeDiskMiB)")
        }
        guard [1, 3, 5].contains(etcdMembers) else {
            throw LabError.outOfRange(option: "--etcd-members", allowed: "1, 3 or 5", got: "\(etcdMembers)")
        }
        if let identityGCSeconds, identityGCSeconds < 1 {
            throw LabError.outOfRange(option: "--identity-gc-interval", allowed: "at least 1 second", got: "\(identityGCSeconds)")
        }
        guard (17...29).contains(nodePodPrefixLength) else {
            throw LabError.outOfRange(option: "--node-pod-prefix", allowed: "between 17 and 29 (the clusters' pod CIDRs are /16)", got: "\(nodePodPrefixLength)")
        }
        guard (0...20).contains(nodeCount) else { throw LabError.outOfRange(option: "--nodes", allowed: "between 0 and 20", got: "\(nodeCount)") }
        if let bad = mtus.first(where: { !(1280...9000).contains($0) }) {
            throw LabError.outOfRange(option: "--mtu values", allowed: "between 1280 and 9000", got: "\(bad)")
        }
        guard (1...250).contains(count) else { throw LabError.outOfRange(option: "--clusters", allowed: "between 1 and 250", got: "\(count)") }
        if let existing = loadState(), !existing.clusters.isEmpty {
            throw LabError.alreadyUp(directory: directory, clusters: existing.clusters.map(\.name))
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let ca = try CertificateAuthority.create(commonName: "meridian-lab-ca")
        try PEMFiles.write(certificatePEM: ca.certificatePEM, to: caCertificatePath, privateKeyPEM: ca.privateKeyPEM, to: caKeyPath)
        var state = LabState(directory: directory, prefix: Self.defaultPrefix, clusters: [])
        let memberCount = etcdMembers > 1 ? etcdMembers : 0
        var ports = try FreePorts.reserve(count * (4 + 2 * memberCount) + 1)
        if prometheus { state.prometheusPort = ports.removeFirst() }
        for index in 1...count {
            let id = UInt32(index)
            state.clusters.append(LabCluster(
                name: "cluster\(index)", id: id, podCIDR: "10.\(id).0.0/16", serviceCIDR: "10.\(100 + id).0.0/16",
                dataDirectory: "\(directory)/cluster\(index)", clientPort: ports.removeFirst(), peerPort: ports.removeFirst(),
                meshPort: ports.removeFirst()))
            state.clusters[index - 1].underlayMTU = mtus.isEmpty ? 1500 : mtus[min(index - 1, mtus.count - 1)]
            state.clusters[index - 1].nodePodPrefixLength = nodePodPrefixLength
            state.clusters[index - 1].identityGCSeconds = identityGCSeconds
            state.clusters[index - 1].storeDiskMiB = storeDiskMiB
            state.clusters[index - 1].nodeGraceSeconds = nodeGraceSeconds
            let kind = encryptions[min(index - 1, encryptions.count - 1)]
            state.clusters[index - 1].encryption = kind == "none" ? nil : kind
            state.clusters[index - 1].wireguardRotationInterval = kind == "none" ? nil : wireguardRotationInterval
            state.clusters[index - 1].metricsPort = ports.removeFirst()
            state.clusters[index - 1].etcdMembers = (0..<memberCount).map { member in
                LabEtcdMember(name: "m\(member)", directory: "\(directory)/cluster\(index)/members/m\(member)",
                              clientPort: ports.removeFirst(), peerPort: ports.removeFirst())
            }
        }
        try save(state)
        do {
            for index in state.clusters.indices {
                try mountStoreDisks(state.clusters[index])
                try await startStore(state.clusters[index])
                try await startControlPlane(state.clusters[index])
            }
            for cluster in state.clusters { try await waitUntilReady(cluster, timeout: readyTimeout) }
            if nodeCount > 0 {
                try await createUnderlay(&state)
                for index in state.clusters.indices {
                    for node in 1...nodeCount {
                        try await addNode(&state, cluster: index, number: node)
                        try save(state)
                    }
                }
                for cluster in state.clusters {
                    for node in cluster.nodes { try await waitForNode(node, cluster: cluster, timeout: readyTimeout) }
                }
            }
            if prometheus { try await startPrometheus(state) }
        } catch {
            await down()
            throw error
        }
        return state
    }

    /// A lab store's backend quota: small, so that filling it is a fault one can rehearse.
    public static let etcdQuotaBytes: Int64 = 256 * 1024 * 1024

    /// The command line of a cluster's control plane.
    public func controlPlaneArguments(_ cluster: LabCluster, sharedCA: Bool = true) -> [String] {
        ["control-plane",
         "--cluster-name", cluster.name, "--cluster-id", "\(cluster.id)",
         "--pod-cidr", cluster.podCIDR, "--service-cidr", cluster.serviceCIDR,
         "--data-dir", cluster.dataDirectory,
         "--etcd-client-port", "\(cluster.clientPort)", "--etcd-peer-port", "\(cluster.peerPort)",
         "--mesh-port", "\(cluster.meshPort)", "--etcd-quota-bytes", "\(Self.etcdQuotaBytes)"]
            + (cluster.etcdMembers.isEmpty ? [] : ["--etcd-endpoints"] + cluster.etcdMembers.map(\.clientURL)
                + ["--etcd-ca", cluster.paths.caCertificate, "--etcd-cert", cluster.paths.adminCertificate,
                   "--etcd-key", cluster.paths.adminKey, "--etcd-server-name", cluster.serverName, "--maintain-store"])
            + (sharedCA ? ["--mesh-ca-cert", caCertificatePath, "--mesh-ca-key", caKeyPath] : [])
            + (cluster.identityGCSeconds.map { ["--identity-gc-interval", "\($0)"] } ?? [])
            + (cluster.metricsPort.map { ["--metrics-listen", "127.0.0.1:\($0)"] } ?? [])
            + ["--observer-listen", "unix:\(cluster.observerSocket)"]
    }

    /// Starts a cluster's control plane under a supervisor of its own (`meridian supervise`, in its
    /// own session, detached from the caller's terminal) that restarts it whenever it exits,
    /// logging to its data directory. Does nothing if one already supervises it.
    public func startControlPlane(_ cluster: LabCluster, sharedCA: Bool = true) async throws {
        try FileManager.default.createDirectory(atPath: cluster.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard ServiceRecord.load(cluster.controlPlaneService) == nil else { return }
        // A cgroup of its own needs root (the lab mounts the hierarchy); without, a lab of control
        // planes alone still runs, and only partitions (root too) are out of reach.
        let cgroup = geteuid() == 0 ? try controlPlaneCgroup(cluster) : nil
        try await launchSupervised(name: "control-plane-\(cluster.name)", record: cluster.controlPlaneService, log: cluster.controlPlaneLog,
                                   cgroup: cgroup, command: [executable] + controlPlaneArguments(cluster, sharedCA: sharedCA))
    }

    /// Launches `meridian supervise` for one daemon; its own output and the daemon's go to `log`.
    /// With `cgroup`, supervisor and daemon run in it (a fault can then tell its sockets apart).
    func launchSupervised(name: String, record: String, log: String, cgroup: String? = nil, command: [String]) async throws {
        try? FileManager.default.removeItem(atPath: record)
        try await HostProcess.launchDetached([executable, "supervise", "--name", name, "--record", record, "--log", log]
                                             + (cgroup.map { ["--cgroup", $0] } ?? []) + ["--"] + command,
                                             logPath: log)
    }

    /// Stops a cluster's control plane and its supervisor (and so its etcd) and waits for all to be gone.
    public func stopControlPlane(_ cluster: LabCluster) async {
        await ServiceSupervisor.stop(recordPath: cluster.controlPlaneService)
        if let pid = HostProcess.pid(inFile: cluster.paths.pidFile, commandContaining: cluster.dataDirectory) {
            await HostProcess.terminate(pid)
        }
        await ManagedEtcd.stopOrphan(dataDirectory: cluster.paths.etcdData)
        try? FileManager.default.removeItem(atPath: cluster.paths.readyMarker)
        try? FileManager.default.removeItem(atPath: cluster.paths.pidFile)
    }

    /// Waits for the control plane's ready marker. Fails early if it keeps exiting while it
    /// starts (its supervisor restarted it twice since the wait began) or runs unsupervised and is gone.
    public func waitUntilReady(_ cluster: LabCluster, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        let startsBefore = ServiceRecord.load(cluster.controlPlaneService)?.starts ?? 0
        while !FileManager.default.fileExists(atPath: cluster.paths.readyMarker) {
            if Self.keepsExiting(service: cluster.controlPlaneService, pidFile: cluster.paths.pidFile, startsBefore: startsBefore) {
                throw LabError.controlPlaneExited(cluster: cluster.name, log: cluster.controlPlaneLog)
            }
            guard ContinuousClock.now < deadline else {
                throw LabError.controlPlaneNotReady(cluster: cluster.name, waited: timeout, log: cluster.controlPlaneLog)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Stops every process the lab started and removes its directory. Safe to call on a
    /// half-made or already removed lab.
    /// `prefix` names the lab's namespaces when its state file is gone (a crash mid-`up`).
    public func down(prefix: String? = nil) async {
        let state = loadState()
        // Supervisors first, all at once, so nothing the teardown stops is started again.
        let supervisors = HostProcess.others().filter {
            guard let line = HostProcess.commandLine($0) else { return false }
            return line.contains(" supervise ") && line.contains(directory)
        }
        await HostProcess.terminate(supervisors, .init(grace: .seconds(10)))
        await removeFaultTables(prefix: state?.prefix ?? prefix ?? Self.defaultPrefix)
        await removeNodes(prefix: state?.prefix ?? prefix ?? Self.defaultPrefix)
        if let state {
            for cluster in state.clusters {
                await stopControlPlane(cluster)
                unmountStoreDisks(cluster)
            }
        }
        // Anything still running from this directory (for example after a crash mid-`up`).
        await HostProcess.terminate(HostProcess.others().filter { HostProcess.commandLine($0)?.contains(directory) == true })
        // Store disks the state file no longer lists (a crash mid-`up`).
        for path in Self.mountPoints(under: directory, type: "tmpfs") { umount2(path, Int32(MNT_DETACH)) }
        releaseHostNetworkNamespace()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
