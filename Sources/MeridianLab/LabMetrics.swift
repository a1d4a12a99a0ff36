import Foundation
import Glibc
import MeridianControlPlane
import MeridianHost

/// Where the lab's daemons serve `/metrics` and the Prometheus that `lab up --prometheus`
/// runs to scrape them. Every daemon listens on a loopback port of the host's namespace, agents
/// too: an agent runs in its node's namespace and opens its listener through a handle on the
/// host's namespace kept in the lab directory (`host-netns`, a bind mount `lab down` removes).
extension Lab {
    /// The handle on the host's network namespace that agents open their metrics listener in.
    public var hostNetworkNamespacePath: String { directory + "/host-netns" }
    public var prometheusDirectory: String { directory + "/prometheus" }
    public var prometheusConfigPath: String { prometheusDirectory + "/prometheus.yml" }
    public var prometheusService: String { prometheusDirectory + "/prometheus.service.json" }
    public var prometheusLog: String { prometheusDirectory + "/prometheus.log" }
    public static let prometheusExecutable = "/usr/bin/prometheus"

    /// Bind-mounts this process's network namespace (the host's, where the lab runs) at
    /// `hostNetworkNamespacePath`, once.
    func holdHostNetworkNamespace() throws {
        let path = hostNetworkNamespacePath
        if Self.isMounted(path, type: "nsfs") { return }
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              mount("/proc/self/ns/net", path, nil, UInt(MS_BIND), nil) == 0 else {
            throw LabError.mountFailed(type: "bind of the host's network namespace", path: path, reason: String(cString: strerror(errno)))
        }
    }

    func releaseHostNetworkNamespace() {
        umount2(hostNetworkNamespacePath, Int32(MNT_DETACH))
    }

    /// Every daemon's metrics address with the labels Prometheus gives its series.
    public func metricsTargets(_ state: LabState) -> [LabMetricsTarget] {
        state.clusters.flatMap { cluster in
            (cluster.metricsPort.map { [LabMetricsTarget(job: "meridian-control-plane", address: "127.0.0.1:\($0)", cluster: cluster.name, node: nil)] } ?? [])
                + cluster.nodes.compactMap { node in
                    node.metricsPort.map { LabMetricsTarget(job: "meridian-agent", address: "127.0.0.1:\($0)", cluster: cluster.name, node: node.name) }
                }
        }
    }

    /// The lab's scrape configuration: every target each second, grouped by job.
    public func prometheusConfiguration(_ state: LabState) -> String {
        var text = """
            # Written by `meridian lab up --prometheus`; see deploy/prometheus/prometheus.yml for real hosts.
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:

            """
        for job in ["meridian-control-plane", "meridian-agent"] {
            let targets = metricsTargets(state).filter { $0.job == job }
            guard !targets.isEmpty else { continue }
            text += "  - job_name: \(job)\n    static_configs:\n"
            for target in targets {
                text += "      - targets: ['\(target.address)']\n        labels:\n          cluster: '\(target.cluster)'\n"
                if let node = target.node { text += "          node: '\(node)'\n" }
            }
        }
        return text
    }

    /// Starts Prometheus under a supervisor of its own, its data in the lab directory, and waits
    /// until it answers ready.
    func startPrometheus(_ state: LabState, timeout: Duration = .seconds(60)) async throws {
        guard let port = state.prometheusPort else { return }
        guard FileManager.default.isExecutableFile(atPath: Self.prometheusExecutable) else {
            throw LabError.missing("Prometheus (\(Self.prometheusExecutable)); run scripts/setup.sh, which installs Debian's prometheus")
        }
        try FileManager.default.createDirectory(atPath: prometheusDirectory + "/data", withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try prometheusConfiguration(state).write(toFile: prometheusConfigPath, atomically: true, encoding: .utf8)
        try await launchSupervised(name: "prometheus", record: prometheusService, log: prometheusLog, command: [
            Self.prometheusExecutable, "--config.file=\(prometheusConfigPath)", "--storage.tsdb.path=\(prometheusDirectory)/data",
            "--storage.tsdb.retention.time=1d", "--web.listen-address=127.0.0.1:\(port)",
        ])
        let deadline = ContinuousClock.now + timeout
        while !(await HostCommand.attempt(["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:\(port)/-/ready"])) {
            guard ContinuousClock.now < deadline else {
                throw LabError.timedOut(waitingFor: "Prometheus on 127.0.0.1:\(port) (see \(prometheusLog))", after: timeout)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// What `lab status -o json` prints: the clusters, their daemons' metrics addresses and the
    /// lab's Prometheus.
    public func statusReport(_ state: LabState) -> LabStatusReport {
        LabStatusReport(
            directory: state.directory,
            clusters: state.clusters.map { cluster in
                LabStatusReport.Cluster(
                    name: cluster.name, id: cluster.id, etcd: cluster.endpoint,
                    running: FileManager.default.fileExists(atPath: cluster.paths.readyMarker),
                    controlPlane: .init(metrics: cluster.metricsPort.map { "127.0.0.1:\($0)" }, observer: "unix:\(cluster.observerSocket)"),
                    agents: cluster.nodes.map {
                        .init(node: $0.name, metrics: $0.metricsPort.map { "127.0.0.1:\($0)" }, observer: "unix:\($0.observerSocket)")
                    })
            },
            prometheus: state.prometheusPort.map { "127.0.0.1:\($0)" })
    }
}

/// One daemon Prometheus scrapes in the lab.
public struct LabMetricsTarget: Sendable, Hashable {
    public var job: String
    public var address: String
    public var cluster: String
    public var node: String?
}

/// The lab as `lab status -o json` shows it.
public struct LabStatusReport: Codable, Sendable, Hashable {
    public struct Cluster: Codable, Sendable, Hashable {
        public var name: String
        public var id: UInt32
        public var etcd: String
        public var running: Bool
        public var controlPlane: ControlPlane
        public var agents: [Agent]
    }

    public struct ControlPlane: Codable, Sendable, Hashable {
        /// `HOST:PORT` of its `/metrics`.
        public var metrics: String?
        /// The flow relay's address (`meridian observe` reads it).
        public var observer: String?
    }

    public struct Agent: Codable, Sendable, Hashable {
        public var node: String
        public var metrics: String?
        /// The node's flow observer (the relay reads it).
        public var observer: String?
    }

    public var directory: String
    public var clusters: [Cluster]
    /// `HOST:PORT` of the lab's Prometheus (its web UI and `/api/v1/query`).
    public var prometheus: String?
}
