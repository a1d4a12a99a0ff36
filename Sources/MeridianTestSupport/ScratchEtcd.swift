import Foundation
import Logging
import MeridianEtcd
import MeridianHost

/// A real etcd (Debian's) for one test, on loopback ports chosen free, without TLS or auth but
/// with the transaction limits of Meridian's own etcd, in a scratch directory: started under a `ProcessSupervisor` and stopped, with its files
/// removed, when the body returns. For tests that hold the in-memory store to etcd's behaviour;
/// it needs no root.
public enum ScratchEtcd {
    public static let executable = "/usr/bin/etcd"

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `body` with a client of a fresh etcd and its client URL; `extraArguments` go on
    /// etcd's command line (a small `--quota-backend-bytes`, say). `dataDirectory` puts etcd's
    /// data elsewhere than the scratch directory (on a small filesystem, say), its log staying there;
    /// `restart` says whether an etcd that exits is started again, as a control plane's is.
    public static func with<R: Sendable>(extraArguments: [String] = [], dataDirectory: String? = nil,
                                         restart: ProcessSupervisor.Restart = .never,
                                         _ body: (EtcdClient, String) async throws -> R) async throws -> R {
        let directory = NSTemporaryDirectory() + "meridian-scratch-etcd-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try FreePorts.reserve(2)
        let client = "http://127.0.0.1:\(ports[0])"
        let peer = "http://127.0.0.1:\(ports[1])"
        let command = SupervisedCommand(
            executable: executable,
            arguments: ["--name", "scratch", "--data-dir", dataDirectory ?? directory + "/data",
                        "--listen-client-urls", client, "--advertise-client-urls", client,
                        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                        "--initial-cluster", "scratch=\(peer)", "--logger", "zap", "--log-outputs", "stderr"]
                + EtcdTransactionLimits.etcdFlags + extraArguments,
            logPath: directory + "/etcd.log", dieWithSupervisor: true)
        let supervisor = ProcessSupervisor(command, restart: restart, stopGrace: .seconds(5), logger: Logger(label: "test.etcd"))
        let configuration = EtcdClientConfiguration(endpoint: .tcp(host: "127.0.0.1", port: ports[0]), tls: nil,
                                                    requestTimeout: .seconds(5), maxReconnectBackoff: .milliseconds(200))
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            group.addTask { try await supervisor.run() }
            defer { group.cancelAll() }
            return try await EtcdClient.withClient(configuration) { etcd in
                let deadline = ContinuousClock.now + .seconds(30)
                while (try? await etcd.status()) == nil {
                    guard ContinuousClock.now < deadline else {
                        let log = (try? String(contentsOfFile: directory + "/etcd.log", encoding: .utf8)) ?? ""
                        throw Unavailable(description: "scratch etcd did not answer within 30 s: \(log.suffix(2000))")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                return try await body(etcd, client)
            }
        }
    }
}
