import Foundation
import Glibc
import Logging
import MeridianEtcd
import MeridianHost
import Synchronization

/// A real etcd cluster of several members (Debian's etcd, real Raft) for one test, on loopback
/// ports chosen free, without TLS, in a scratch directory. Each member can be killed and started
/// again while the cluster runs; all are stopped and their files removed when the body returns.
public final class ScratchEtcdCluster: Sendable {
    public let directory: String
    public let clientPorts: [Int]
    let peerPorts: [Int]
    private let wanted: Mutex<[Bool]>
    private let pids: Mutex<[Int32?]>

    let extraArguments: [String]

    init(directory: String, clientPorts: [Int], peerPorts: [Int], extraArguments: [String]) {
        self.extraArguments = extraArguments
        self.directory = directory
        self.clientPorts = clientPorts
        self.peerPorts = peerPorts
        wanted = Mutex(Array(repeating: true, count: clientPorts.count))
        pids = Mutex(Array(repeating: nil, count: clientPorts.count))
    }

    public var endpoints: [EtcdEndpoint] { clientPorts.map { .tcp(host: "127.0.0.1", port: $0) } }

    /// A client configuration listing every member, with short timeouts.
    public var configuration: EtcdClientConfiguration {
        EtcdClientConfiguration(endpoints: endpoints, tls: nil, requestTimeout: .seconds(2), maxReconnectBackoff: .milliseconds(200))
    }

    public func pid(_ member: Int) -> Int32? { pids.withLock { $0[member] } }

    /// SIGKILLs the member; it stays down until `start`.
    public func kill(_ member: Int) {
        wanted.withLock { $0[member] = false }
        if let pid = pid(member) { Glibc.kill(pid, SIGKILL) }
    }

    /// Starts a killed member again on its data.
    public func start(_ member: Int) {
        wanted.withLock { $0[member] = true }
    }

    /// The index of the member on `port`.
    public func member(onPort port: Int) -> Int? { clientPorts.firstIndex(of: port) }

    /// Runs `body` with a cluster of `members` members that has elected a leader; `extraArguments`
    /// go on every member's command line.
    public static func with<R: Sendable>(members: Int = 3, extraArguments: [String] = [],
                                         _ body: (ScratchEtcdCluster) async throws -> R) async throws -> R {
        let directory = NSTemporaryDirectory() + "meridian-scratch-etcd-cluster-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try FreePorts.reserve(members * 2)
        let cluster = ScratchEtcdCluster(directory: directory, clientPorts: Array(ports.prefix(members)), peerPorts: Array(ports.suffix(members)),
                                         extraArguments: extraArguments)
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            for member in 0..<members { group.addTask { try await cluster.keep(member) } }
            defer { group.cancelAll() }
            let deadline = ContinuousClock.now + .seconds(30)
            while !(await EtcdStoreHealth.check(cluster.configuration).hasQuorum) {
                guard ContinuousClock.now < deadline else {
                    throw ScratchEtcd.Unavailable(description: "scratch etcd cluster elected no leader within 30 s; logs in \(directory)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            return try await body(cluster)
        }
    }

    /// Runs member `index` whenever it is wanted, until cancelled.
    private func keep(_ index: Int) async throws {
        let name = "m\(index)"
        let initialCluster = peerPorts.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element)" }.joined(separator: ",")
        let client = "http://127.0.0.1:\(clientPorts[index])"
        let peer = "http://127.0.0.1:\(peerPorts[index])"
        let command = SupervisedCommand(
            executable: ScratchEtcd.executable,
            arguments: ["--name", name, "--data-dir", "\(directory)/\(name)",
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
                        "--logger", "zap", "--log-outputs", "stderr"] + EtcdTransactionLimits.etcdFlags + extraArguments,
            logPath: "\(directory)/\(name).log", dieWithSupervisor: true)
        let supervisor = ProcessSupervisor(command, restart: .never, stopGrace: .seconds(5), logger: Logger(label: "test.etcd.\(name)"))
        while !Task.isCancelled {
            guard wanted.withLock({ $0[index] }) else {
                try await Task.sleep(for: .milliseconds(50))
                continue
            }
            try await supervisor.run(onStart: { pid in self.pids.withLock { $0[index] = pid } })
            pids.withLock { $0[index] = nil }
        }
    }
}
