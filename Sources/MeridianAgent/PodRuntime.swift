import Foundation
import Glibc
import Logging
import MeridianCore
import MeridianDatapath
import MeridianHost
import MeridianEtcd
import MeridianStore
import Subprocess
import SystemPackage

/// The kubelet's part of the agent: runs the pods scheduled to this node. For each pod it makes
/// a network namespace, calls the CNI plugin (`meridian cni`, with the CNI environment and
/// network configuration on stdin, exactly as a kubelet calls a plugin), then starts each
/// container's command inside the namespace in its own session, so pods outlive an agent
/// restart. Crashed containers restart with backoff as Kubernetes does; the node reports every
/// pod's status to the store.
///
/// Readiness: containers with a readiness probe (`ReadinessProbe`) are probed every
/// `periodSeconds`; the pod's status says `ready: false` until each has passed, so it becomes
/// a Service backend only then. Termination, as a kubelet does it and without holding up the
/// other pods: a pod stamped with a `deletionTimestamp` (or whose record is gone) runs its
/// containers' preStop sleeps, then each container's process group gets SIGTERM, and whatever
/// still runs when the grace period is over gets SIGKILL; then the pod's network goes and the
/// node removes its status, which tells the workload controller to remove the record (nodes
/// write statuses, not resources). The steps advance on every pass and are saved, so an agent
/// restart carries on where it was.
actor PodRuntime {
    /// The pods bound to this node (namespace/name), kept from the mirror's changes to pod
    /// records, so a pass costs the pods that changed, not every pod of the cluster.
    private var boundPods: [String: Pod] = [:]
    /// The store key of each bound pod's record, to its namespace/name.
    private var boundPodKeys: [String: String] = [:]
    private var podChanges: MirrorChangeTracker?
    /// What `pods.json` holds, so a pass that changed nothing writes nothing.
    private var saved: Data?
    struct ContainerProcess: Codable, Sendable {
        var name: String
        var pid: Int32
        var restartCount: Int
        var lastExitCode: Int32?
        var restartAt: Double?
        var finished: Bool
        /// When the current process started (seconds since 1970), for the probe's initial delay.
        var launchedAt: Double?
        /// The readiness probe's state: its verdict and the streaks that change it.
        var ready: Bool?
        var probeSuccesses: Int?
        var probeFailures: Int?
        var lastProbeAt: Double?
        /// From the spec at start, so that a pod whose record is gone still gets its preStop.
        var preStopSleepSeconds: Int?
        /// When SIGTERM was sent, during termination.
        var signalledAt: Double?
    }

    /// A deletion being carried out.
    struct Termination: Codable, Sendable {
        /// The record's stamp; nil when the record itself is gone (nothing to remove then).
        var deletionTimestamp: String?
        var startedAt: Double
        /// SIGKILL for what still runs.
        var deadline: Double
    }

    struct RunningPod: Codable, Sendable {
        var namespace: String
        var name: String
        var containerID: String
        var networkNamespace: String
        var address: String?
        var identity: UInt32?
        var startedAt: String
        var containers: [ContainerProcess]
        var specDigest: String
        /// Routes to pod CIDRs behind a smaller underlay MTU, as programmed: CIDR → MTU.
        var routes: [String: Int]?
        /// Set from before the CNI ADD until the containers run: a pod found so after a restart
        /// was interrupted mid-start and is cleaned up and started again.
        var launching: Bool?
        /// The spec's grace period, for a pod whose record is gone.
        var gracePeriodSeconds: Int?
        var termination: Termination?
    }

    private let context: NodeContext
    private let client: any KeyValueStore
    private let mirror: PrefixMirror
    private let endpoints: EndpointManager
    private let stateDirectory: String
    private let netnsPrefix: String
    private let cgroup: String?
    private let executable: String
    private let agentSocket: String
    private let logger: Logger
    private var pods: [String: RunningPod] = [:]
    private var reported: [String: PodStatus] = [:]
    private var reconciling = false
    private var rerunRequested = false
    private var mtuRoutes: (revisions: [Int64], routes: [String: Int])?

    init(context: NodeContext, client: any KeyValueStore, mirror: PrefixMirror, endpoints: EndpointManager, stateDirectory: String,
         netnsPrefix: String, cgroup: String?, executable: String, agentSocket: String, logger: Logger) {
        self.context = context
        self.client = client
        self.mirror = mirror
        self.endpoints = endpoints
        self.stateDirectory = stateDirectory + "/pods"
        self.netnsPrefix = netnsPrefix
        self.cgroup = cgroup
        self.executable = executable
        self.agentSocket = agentSocket
        self.logger = logger
        try? FileManager.default.createDirectory(atPath: self.stateDirectory, withIntermediateDirectories: true)
        if let data = FileManager.default.contents(atPath: self.stateDirectory + "/pods.json"),
           let saved = try? JSONDecoder().decode([String: RunningPod].self, from: data) {
            // A saved pid whose process is gone (after a reboot) may since name another process.
            let directory = self.stateDirectory
            pods = saved.mapValues { pod in
                var pod = pod
                for index in pod.containers.indices
                where !HostProcess.isOwned(pod.containers[index].pid, commandContaining: Self.files(in: directory, pod, pod.containers[index].name).pid) {
                    pod.containers[index].pid = 0
                }
                return pod
            }
        }
    }

    /// Reconciles on every store change and once a second (to notice exits and due restarts).
    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Only the records a pass reads wake it: pods, their statuses and the nodes (for MTU routes).
                await self.mirror.onChanges(under: [KeyLayout.resourcesPrefix, KeyLayout.podStatusPrefix,
                                                    MeshKind.nodes.statePrefix(cluster: self.context.cluster.name), MeshKind.nodes.cacheRoot]) {
                    await self.reconcile()
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: .seconds(1))
                    await self.reconcile()
                }
            }
        }
    }

    /// Runs one pass at a time: the actor is reentrant at every await, and two passes at once
    /// would both start the same new pod. A request during a pass triggers one more pass.
    private func reconcile() async {
        guard !reconciling else {
            rerunRequested = true
            return
        }
        reconciling = true
        defer { reconciling = false }
        repeat {
            rerunRequested = false
            await reconcilePass()
        } while rerunRequested
    }

    private func reconcilePass() async {
        guard await mirror.isSynced else { return }
        await followPodRecords()
        let desired = boundPods
        for (key, running) in pods where running.termination == nil {
            if running.launching == true {
                await stop(key, running)
            } else if let pod = desired[key], pod.metadata.isBeingDeleted {
                beginTermination(key, running, pod: pod)
            } else if desired[key] == nil {
                beginTermination(key, running, pod: nil)
            } else if desired[key].map({ Self.digest($0.spec) }) != running.specDigest {
                await stop(key, running)
            }
        }
        for (key, pod) in desired.sorted(by: { $0.key < $1.key }) {
            if pod.metadata.isBeingDeleted {
                // Deleted before this node ran it, or stopped already: nothing to wind down; the
                // missing status tells the workload controller to remove the record.
                if pods[key] == nil { await removeStatus(key) }
            } else if pods[key] == nil {
                await start(key, pod)
            } else if pods[key]?.termination == nil {
                await supervise(key, pod)
            }
        }
        await probe(desired)
        await advanceTerminations()
        await applyRoutes(await smallerMTURoutes())
        save()
    }

    /// Takes in the pod records that changed since the last pass (all of them the first time,
    /// or after the mirror listed again).
    private func followPodRecords() async {
        let tracker: MirrorChangeTracker
        if let podChanges {
            tracker = podChanges
        } else {
            tracker = await mirror.trackChanges()
            podChanges = tracker
        }
        let podsPrefix = KeyLayout.resources(plural: ResourceKind.pod.plural)
        switch await mirror.takeChanges(tracker, prefix: KeyLayout.resourcesPrefix) {
        case let .everything(all):
            boundPods = [:]
            boundPodKeys = [:]
            for (key, value) in all where key.hasPrefix(podsPrefix) { bind(key, value) }
        case let .changed(changed):
            for (key, value) in changed where key.hasPrefix(podsPrefix) {
                if let name = boundPodKeys.removeValue(forKey: key) { boundPods[name] = nil }
                if let value { bind(key, value) }
            }
        }
    }

    private func bind(_ key: String, _ value: Data) {
        guard case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key),
              pod.spec.nodeName == context.nodeName else { return }
        let name = "\(pod.metadata.namespace ?? KubernetesObject.defaultNamespace)/\(pod.metadata.name)"
        boundPods[name] = pod
        boundPodKeys[key] = name
    }

    /// Pod CIDRs of nodes (usually in other clusters) whose underlay MTU is smaller than this
    /// node's, with the pod MTU that fits them: traffic to them is sized at the source instead
    /// of being fragmented on the way.
    /// Computed again only when a node record moved (the mirror's revisions of the two node
    /// prefixes): with thousands of remote nodes, decoding them all on every pass cost most of
    /// the agent's CPU.
    private func smallerMTURoutes() async -> [String: Int] {
        let prefixes = [MeshKind.nodes.statePrefix(cluster: context.cluster.name), MeshKind.nodes.cacheRoot]
        var revisions: [Int64] = []
        for prefix in prefixes { revisions.append(await mirror.revision(of: prefix)) }
        if let cached = mtuRoutes, cached.revisions == revisions { return cached.routes }
        let localMTU = context.underlayMTU
        var routes: [String: Int] = [:]
        for prefix in prefixes {
            for (key, value) in await mirror.snapshot(prefix) {
                guard let node = try? StoreCoding.decode(NodeRecord.self, from: value, key: key), let mtu = node.mtu, mtu < localMTU,
                      let cidr = node.ipv4AllocCIDR else { continue }
                routes[cidr.description] = min(routes[cidr.description] ?? Int.max, mtu - context.tunnelOverhead)
            }
        }
        mtuRoutes = (revisions, routes)
        return routes
    }

    private func applyRoutes(_ desired: [String: Int]) async {
        for (key, running) in pods where running.address != nil {
            let current = running.routes ?? [:]
            guard current != desired else { continue }
            var applied = current
            let n = ["ip", "-n", running.networkNamespace, "route"]
            for (cidr, mtu) in desired where current[cidr] != mtu {
                if (try? await HostCommand.run(n + ["replace", cidr, "via", context.gateway.description, "dev", "eth0", "mtu", "\(mtu)"])) != nil {
                    applied[cidr] = mtu
                }
            }
            for cidr in current.keys where desired[cidr] == nil {
                await HostCommand.attempt(n + ["del", cidr])
                applied[cidr] = nil
            }
            pods[key]?.routes = applied
            logger.info("pod routes sized for smaller MTUs", metadata: ["pod": "\(key)", "routes": "\(applied)"])
        }
    }

    // MARK: Start

    private func start(_ key: String, _ pod: Pod) async {
        let namespace = pod.metadata.namespace ?? KubernetesObject.defaultNamespace
        let containerID = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let netns = PodNaming.networkNamespace(prefix: netnsPrefix, namespace: namespace, pod: pod.metadata.name)
        await report(key, PodStatus(phase: .pending, reason: PodStatusReason.containerCreating, nodeName: context.nodeName))
        var running = RunningPod(namespace: namespace, name: pod.metadata.name, containerID: containerID, networkNamespace: netns,
                                 startedAt: Self.timestamp(), containers: [], specDigest: Self.digest(pod.spec), launching: true,
                                 gracePeriodSeconds: pod.spec.effectiveTerminationGracePeriodSeconds)
        pods[key] = running
        save()
        do {
            await HostCommand.attempt(["ip", "netns", "del", netns])
            try await HostCommand.ip("netns", "add", netns)
            let result = try await cni(command: "ADD", containerID: containerID, netns: netns, namespace: namespace, pod: pod.metadata.name)
            running.address = result.address
            running.identity = result.identity
            try writeResolvConf(netns: netns, namespace: namespace)
            for container in pod.spec.containers {
                let pid = try await launch(container, pod: pod, running: running)
                running.containers.append(ContainerProcess(
                    name: container.name, pid: pid, restartCount: 0, finished: false, launchedAt: Date().timeIntervalSince1970,
                    ready: container.readinessProbe == nil ? nil : false, preStopSleepSeconds: container.lifecycle?.preStop?.sleep?.seconds))
            }
            running.launching = nil
            pods[key] = running
            save()
            logger.info("pod started", metadata: ["pod": "\(key)", "ip": "\(result.address ?? "-")", "netns": "\(netns)"])
            await reportRunning(key, running, pod: pod)
        } catch {
            logger.error("pod could not start", metadata: ["pod": "\(key)", "error": "\(error)"])
            await HostProcess.terminate(running.containers.map(\.pid), .init(wholeGroup: true))
            _ = try? await cni(command: "DEL", containerID: containerID, netns: netns, namespace: namespace, pod: pod.metadata.name)
            await HostCommand.attempt(["ip", "netns", "del", netns])
            removeResolvConf(netns: netns)
            await report(key, PodStatus(phase: .failed, reason: PodStatusReason.error, message: "\(error)", nodeName: context.nodeName))
            // Remember the failure so it is not retried in a tight loop; a changed spec retries.
            running.containers = pod.spec.containers.map { ContainerProcess(name: $0.name, pid: 0, restartCount: 0, finished: true) }
            running.address = nil
            running.launching = nil
            pods[key] = running
        }
    }

    struct CNIResult: Decodable {
        struct IP: Decodable { var address: String }
        var ips: [IP]?
        var identity: UInt32?
        var code: Int?
        var msg: String?
        var details: String?

        var address: String? { ips?.first.map { String($0.address.split(separator: "/").first ?? "") } }
    }

    /// Calls the CNI plugin as a kubelet does: CNI_* variables, the network configuration on stdin.
    private func cni(command: String, containerID: String, netns: String, namespace: String, pod: String) async throws -> CNIResult {
        let config = """
            {"cniVersion":"1.0.0","name":"meridian","type":"meridian-cni","agentSocket":"\(agentSocket)"}
            """
        let environment: Environment = .inherit.updating([
            "CNI_COMMAND": command, "CNI_CONTAINERID": containerID, "CNI_NETNS": "/var/run/netns/\(netns)",
            "CNI_IFNAME": "eth0", "CNI_PATH": (executable as NSString).deletingLastPathComponent,
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=\(namespace);K8S_POD_NAME=\(pod);K8S_POD_INFRA_CONTAINER_ID=\(containerID)",
        ])
        let result = try await Subprocess.run(.path(FilePath(executable)), arguments: ["cni"], environment: environment,
                                              input: .string(config), output: .string(limit: 1 << 20), error: .string(limit: 1 << 16))
        let output = result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        // DEL and CHECK print nothing when they succeed.
        let decoded = output.isEmpty ? CNIResult() : try? JSONDecoder().decode(CNIResult.self, from: Data(output.utf8))
        guard case .exited(0) = result.terminationStatus, let decoded else {
            var message = result.standardError + result.standardOutput
            if let msg = decoded?.msg {
                message = msg + (decoded?.details.map { ": \($0)" } ?? "")
            }
            throw AgentError.cniFailed(command: command, message: message)
        }
        return decoded
    }

    private func writeResolvConf(netns: String, namespace: String) throws {
        let directory = "/etc/netns/\(netns)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let search = context.dnsSearch(namespace: namespace).joined(separator: " ")
        try "nameserver \(context.gateway)\nsearch \(search)\noptions ndots:5\n".write(toFile: directory + "/resolv.conf", atomically: true, encoding: .utf8)
    }

    private func removeResolvConf(netns: String) {
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(netns)")
    }

    private func files(_ running: RunningPod, _ container: String) -> (pid: String, exit: String, log: String) {
        Self.files(in: stateDirectory, running, container)
    }

    private static func files(in stateDirectory: String, _ running: RunningPod, _ container: String) -> (pid: String, exit: String, log: String) {
        let base = "\(stateDirectory)/\(running.namespace)_\(running.name)_\(container)"
        return (base + ".pid", base + ".exit", base + ".log")
    }

    /// Starts one container: `ip netns exec` (which also bind-mounts the pod's resolv.conf) in a
    /// new session, wrapped by a shell that records its pid and, when it ends, its exit status.
    private func launch(_ container: Container, pod: Pod, running: RunningPod) async throws -> Int32 {
        let paths = files(running, container.name)
        try? FileManager.default.removeItem(atPath: paths.exit)
        try? FileManager.default.removeItem(atPath: paths.pid)
        // The wrapper joins the node's pod cgroup first (when there is one), so the container
        // and everything it starts are under the node's socket programs.
        // A failed join is reported like a failed container (its log and exit status 126).
        let wrapper = "cgroup=\"$1\"; pid_file=\"$2\"; exit_file=\"$3\"; log=\"$4\"; shift 4; echo $$ > \"$pid_file\"; "
            + "if [ -n \"$cgroup\" ] && ! echo $$ 2>> \"$log\" > \"$cgroup/cgroup.procs\"; then "
            + "echo \"cannot join the node's pod cgroup $cgroup\" >> \"$log\"; echo 126 > \"$exit_file\"; exit 126; fi; "
            + "\"$@\" >> \"$log\" 2>&1 < /dev/null; echo $? > \"$exit_file\""
        var variables = [
            "POD_NAME": running.name, "POD_NAMESPACE": running.namespace, "NODE_NAME": context.nodeName,
            "CLUSTER_NAME": context.cluster.name, "POD_IP": running.address ?? "",
        ]
        for variable in container.env { variables[variable.name] = variable.value }
        // The built-in workloads (`meridian tool ...`) run from the node's own binary.
        var commandLine = container.commandLine
        if commandLine.first == "meridian" { commandLine[0] = executable }
        let arguments = ["/bin/sh", "-c", wrapper, "pod", cgroup ?? "", paths.pid, paths.exit, paths.log,
                         "ip", "netns", "exec", running.networkNamespace] + commandLine
        do {
            try await HostProcess.launchDetached(arguments, logPath: paths.log, environment: variables)
        } catch {
            throw AgentError.containerStartFailed(container: container.name, reason: "\(error)")
        }
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: paths.pid, encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) { return pid }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw AgentError.containerPIDMissing(container: container.name)
    }

    // MARK: Supervise

    private func supervise(_ key: String, _ pod: Pod) async {
        guard var running = pods[key], running.address != nil else { return }
        let now = Date().timeIntervalSince1970
        let policy = pod.spec.effectiveRestartPolicy
        var changed = false
        // A label change gives the endpoint a new identity; the status follows.
        if let identity = await endpoints.endpoint(namespace: running.namespace, pod: running.name)?.identity, identity != running.identity {
            running.identity = identity
            changed = true
        }
        for index in running.containers.indices {
            var process = running.containers[index]
            guard !process.finished else { continue }
            if let due = process.restartAt {
                guard now >= due, let container = pod.spec.containers.first(where: { $0.name == process.name }) else { continue }
                if let pid = try? await launch(container, pod: pod, running: running) {
                    process.pid = pid
                    process.restartAt = nil
                    process.restartCount += 1
                    process.launchedAt = now
                    // A restarted container is probed afresh, as Kubernetes does.
                    if container.readinessProbe != nil { (process.ready, process.probeSuccesses, process.probeFailures) = (false, 0, 0) }
                    changed = true
                }
            } else if !HostProcess.isAlive(process.pid) {
                let paths = files(running, process.name)
                let code = (try? String(contentsOfFile: paths.exit, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 137
                process.lastExitCode = code
                let restart = policy == .always || (policy == .onFailure && code != 0)
                if restart {
                    let delay = min(60.0, 2.0 * pow(2.0, Double(min(process.restartCount, 5))))
                    process.restartAt = now + delay
                } else {
                    process.finished = true
                }
                logger.info("container exited", metadata: ["pod": "\(key)", "container": "\(process.name)", "code": "\(code)", "restart": "\(restart)"])
                changed = true
            }
            running.containers[index] = process
        }
        pods[key] = running
        if changed || reported[key] == nil { await reportRunning(key, running, pod: pod) }
    }

    private func reportRunning(_ key: String, _ running: RunningPod, pod: Pod) async {
        let restarts = running.containers.reduce(0) { $0 + $1.restartCount }
        let lastExit = running.containers.compactMap(\.lastExitCode).last
        let probed = running.containers.compactMap(\.ready)
        var status = PodStatus(phase: .running, podIP: running.address, hostIP: context.nodeIP.description, nodeName: context.nodeName,
                               identity: running.identity, startedAt: running.startedAt, restartCount: restarts, exitCode: lastExit,
                               ready: probed.isEmpty ? nil : probed.allSatisfy { $0 })
        if running.containers.contains(where: { $0.restartAt != nil }) {
            status.reason = PodStatusReason.crashLoopBackOff
            status.message = lastLogLines(running)
        } else if !running.containers.isEmpty && running.containers.allSatisfy(\.finished) {
            let failed = running.containers.contains { ($0.lastExitCode ?? 0) != 0 }
            status.phase = failed ? .failed : .succeeded
            status.reason = failed ? PodStatusReason.error : PodStatusReason.completed
            status.message = failed ? lastLogLines(running) : nil
        }
        await report(key, status)
    }

    private func lastLogLines(_ running: RunningPod) -> String? {
        guard let container = running.containers.last(where: { $0.lastExitCode != nil }),
              let log = try? String(contentsOfFile: files(running, container.name).log, encoding: .utf8) else { return nil }
        let lines = log.split(separator: "\n").suffix(3).joined(separator: "\n")
        return "container \(container.name) exited with \(container.lastExitCode ?? -1)" + (lines.isEmpty ? "" : ": \(lines)")
    }

    // MARK: Readiness

    /// A probe due now: which pod and container, and what to check.
    private struct DueProbe: Sendable {
        var key: String
        var container: String
        var networkNamespace: String
        var address: String
        var port: Int
        var httpPath: String?
        var timeout: Double
    }

    /// Runs every readiness probe that is due, all at once, and reports pods whose readiness
    /// changed. A probe's verdict flips after `successThreshold` passes or `failureThreshold`
    /// failures in a row. Terminating pods are not probed: they keep the readiness they had
    /// (a terminating backend serves the connections it has until the pod is gone).
    private func probe(_ desired: [String: Pod]) async {
        let now = Date().timeIntervalSince1970
        var due: [DueProbe] = []
        for (key, running) in pods where running.termination == nil && running.launching != true {
            guard let pod = desired[key], let address = running.address else { continue }
            let ports = pod.spec.containers.flatMap(\.ports)
            for process in running.containers where !process.finished && process.restartAt == nil {
                guard let probe = pod.spec.containers.first(where: { $0.name == process.name })?.readinessProbe,
                      let port = probe.port(among: ports) else { continue }
                let startedAt = process.launchedAt ?? 0
                guard now >= startedAt + Double(probe.effectiveInitialDelaySeconds),
                      now >= (process.lastProbeAt ?? 0) + Double(probe.effectivePeriodSeconds) else { continue }
                due.append(DueProbe(key: key, container: process.name, networkNamespace: running.networkNamespace, address: address,
                                    port: port, httpPath: probe.httpGet.map(\.effectivePath), timeout: Double(probe.effectiveTimeoutSeconds)))
            }
        }
        guard !due.isEmpty else { return }
        let outcomes = await withTaskGroup(of: (DueProbe, ReadinessProbe.Outcome).self) { group in
            for probe in due {
                group.addTask {
                    (probe, await ReadinessProbe.run(networkNamespace: probe.networkNamespace, address: probe.address, port: probe.port,
                                                     httpPath: probe.httpPath, timeout: probe.timeout))
                }
            }
            var outcomes: [(DueProbe, ReadinessProbe.Outcome)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        var changed: Set<String> = []
        for (due, outcome) in outcomes {
            guard var running = pods[due.key], running.termination == nil,
                  let index = running.containers.firstIndex(where: { $0.name == due.container }),
                  let probe = desired[due.key]?.spec.containers.first(where: { $0.name == due.container })?.readinessProbe else { continue }
            var process = running.containers[index]
            process.lastProbeAt = now
            let wasReady = process.ready ?? false
            switch outcome {
            case .passed:
                process.probeSuccesses = (process.probeSuccesses ?? 0) + 1
                process.probeFailures = 0
                if !wasReady && process.probeSuccesses ?? 0 >= probe.effectiveSuccessThreshold { process.ready = true }
            case let .failed(reason):
                process.probeFailures = (process.probeFailures ?? 0) + 1
                process.probeSuccesses = 0
                if wasReady && process.probeFailures ?? 0 >= probe.effectiveFailureThreshold {
                    process.ready = false
                    logger.info("readiness probe failed", metadata: ["pod": "\(due.key)", "container": "\(due.container)", "reason": "\(reason)"])
                }
            }
            if (process.ready ?? false) != wasReady {
                changed.insert(due.key)
                logger.info("readiness changed", metadata: ["pod": "\(due.key)", "container": "\(due.container)", "ready": "\(process.ready ?? false)"])
            }
            running.containers[index] = process
            pods[due.key] = running
        }
        for key in changed.sorted() {
            if let running = pods[key], let pod = desired[key] { await reportRunning(key, running, pod: pod) }
        }
    }

    // MARK: Stop

    /// Stops a pod at once (SIGTERM, 5 s, SIGKILL) and releases it: for a pod whose spec
    /// changed or whose start was interrupted, which is started again right after.
    private func stop(_ key: String, _ running: RunningPod) async {
        await HostProcess.terminate(running.containers.map(\.pid), .init(wholeGroup: true))
        await release(key, running)
    }

    /// Starts winding a pod down; `advanceTerminations` carries it on.
    private func beginTermination(_ key: String, _ running: RunningPod, pod: Pod?) {
        let now = Date().timeIntervalSince1970
        let grace = pod?.metadata.deletionGracePeriodSeconds ?? pod?.spec.effectiveTerminationGracePeriodSeconds
            ?? running.gracePeriodSeconds ?? PodTermination.defaultGracePeriodSeconds
        var running = running
        running.termination = Termination(deletionTimestamp: pod?.metadata.deletionTimestamp, startedAt: now, deadline: now + Double(grace))
        pods[key] = running
        save()
        logger.info("pod terminating", metadata: ["pod": "\(key)", "grace": "\(grace)s", "recordRemoved": "\(pod == nil)"])
    }

    /// One step of every termination: SIGTERM to each container whose preStop sleep is over,
    /// SIGKILL past the deadline, and once nothing runs, the pod's release.
    private func advanceTerminations() async {
        let now = Date().timeIntervalSince1970
        for (key, original) in pods.sorted(by: { $0.key < $1.key }) {
            guard let termination = original.termination else { continue }
            var running = original
            for index in running.containers.indices where running.containers[index].signalledAt == nil {
                let container = running.containers[index]
                let preStopOver = now >= termination.startedAt + Double(container.preStopSleepSeconds ?? 0)
                if preStopOver || now >= termination.deadline {
                    if HostProcess.isGroupAlive(container.pid) { kill(-container.pid, SIGTERM) }
                    running.containers[index].signalledAt = now
                }
            }
            pods[key] = running
            let alive = running.containers.map(\.pid).filter(HostProcess.isGroupAlive)
            if !alive.isEmpty {
                guard now >= termination.deadline else { continue }
                logger.info("grace period over; killing", metadata: ["pod": "\(key)"])
                await HostProcess.terminate(alive, .init(signal: SIGKILL, grace: .seconds(2), wholeGroup: true))
            }
            await release(key, running)
            logger.info("pod terminated", metadata: ["pod": "\(key)", "seconds": "\(String(format: "%.1f", now - termination.startedAt))"])
        }
    }

    /// The status of a deleted pod this node does not run (any more), if the mirror still shows one.
    private func removeStatus(_ key: String) async {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        let statusKey = KeyLayout.podStatus(namespace: parts[0], name: parts[1])
        guard await mirror.value(statusKey) != nil else { return }
        do {
            _ = try await client.delete(statusKey)
            reported[key] = nil
        } catch {
            logger.warning("removing a stopped pod's status failed; retrying", metadata: ["pod": "\(key)", "error": "\(error)"])
        }
    }

    /// Takes down what a stopped pod leaves: its endpoint (CNI DEL), namespace, files and status.
    private func release(_ key: String, _ running: RunningPod) async {
        if running.address != nil || running.launching == true {
            do {
                _ = try await cni(command: "DEL", containerID: running.containerID, netns: running.networkNamespace,
                                  namespace: running.namespace, pod: running.name)
            } catch {
                logger.warning("CNI DEL failed; removing the endpoint directly", metadata: ["pod": "\(key)", "error": "\(error)"])
                await endpoints.delete(containerID: running.containerID)
            }
        }
        await HostCommand.attempt(["ip", "netns", "del", running.networkNamespace])
        removeResolvConf(netns: running.networkNamespace)
        for container in running.containers {
            let paths = files(running, container.name)
            for path in [paths.pid, paths.exit, paths.log] { try? FileManager.default.removeItem(atPath: path) }
        }
        pods[key] = nil
        reported[key] = nil
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        _ = try? await client.delete(KeyLayout.podStatus(namespace: parts[0], name: parts[1]))
        logger.info("pod stopped", metadata: ["pod": "\(key)"])
    }

    // MARK: Helpers

    private func report(_ key: String, _ status: PodStatus) async {
        guard reported[key] != status else { return }
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        do {
            try await client.put(KeyLayout.podStatus(namespace: parts[0], name: parts[1]), StoreCoding.encode(status))
            reported[key] = status
        } catch {
            logger.warning("pod status write failed", metadata: ["pod": "\(key)", "error": "\(error)"])
        }
    }

    private func save() {
        guard let data = try? JSONEncoder().encode(pods), data != saved else { return }
        do {
            try data.write(to: URL(fileURLWithPath: stateDirectory + "/pods.json"), options: .atomic)
            saved = data
        } catch {
            logger.warning("could not save the node's pods; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// The containers of every pod this runtime knows, running or being started.
    var knownContainers: Set<String> { Set(pods.values.map(\.containerID)) }

    /// A digest of the spec that is stable across agent restarts (unlike `hashValue`), so a
    /// restarted agent recognises the pods it started.
    static func digest(_ spec: PodSpec) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in (try? encoder.encode(spec)) ?? Data() {
            hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211
        }
        return String(hash, radix: 16)
    }

    static func timestamp() -> String {
        ISO8601DateFormatter().string(from: Date())
    }
}

/// How a pod's network namespace is named, for the runtime that creates it and the tools that
/// enter it (`meridian exec`).
public enum PodNaming {
    /// `<prefix>-<namespace>.<pod>`: a namespace name has no dot, so two pods never share a name.
    public static func networkNamespace(prefix: String, namespace: String, pod: String) -> String {
        "\(prefix)-\(namespace).\(pod)"
    }
}
