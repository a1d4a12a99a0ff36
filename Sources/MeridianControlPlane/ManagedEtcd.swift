import Foundation
import Glibc
import Logging
import MeridianEtcd
import MeridianHost

/// Settings of the etcd child process a control plane starts when no external etcd is given.
public struct ManagedEtcdConfiguration: Sendable, Hashable {
    public var name: String
    public var dataDirectory: String
    public var listenHost: String
    public var clientPort: Int
    public var peerPort: Int
    public var serverCertificatePath: String
    public var serverKeyPath: String
    public var caPath: String
    public var logPath: String
    /// `--quota-backend-bytes`: past it etcd raises the NOSPACE alarm and refuses writes.
    public var quotaBytes: Int64
    /// Every member as `NAME=PEER-URL,...` when this is one member of several (nil: the only one).
    public var initialCluster: String?

    public init(name: String, dataDirectory: String, listenHost: String, clientPort: Int, peerPort: Int, serverCertificatePath: String,
                serverKeyPath: String, caPath: String, logPath: String, quotaBytes: Int64 = 2 * 1024 * 1024 * 1024) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.listenHost = listenHost
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.serverCertificatePath = serverCertificatePath
        self.serverKeyPath = serverKeyPath
        self.caPath = caPath
        self.logPath = logPath
        self.quotaBytes = quotaBytes
    }

    public var clientURL: String { "https://\(listenHost):\(clientPort)" }

    /// The unix socket etcd also listens on, relative to its working directory (etcd 3.4 takes
    /// `unixs://NAME:PORT` and names the socket file `NAME:PORT`).
    public static let socketName = "etcd.sock:0"
    /// etcd's working directory, where the socket appears.
    public var socketDirectory: String { (dataDirectory as NSString).deletingLastPathComponent }

    /// The etcd command line: TLS with client-certificate auth on both listeners (the client CN
    /// is the RBAC user; the peer listener answers nothing, not even `/version`, without a
    /// certificate of the store CA), a backend quota, compaction so the history does not grow
    /// without bound, and room for Meridian's all-or-nothing applies in one transaction.
    public var arguments: [String] {
        let peerURL = "https://\(listenHost):\(peerPort)"
        return [
            "--name", name,
            "--data-dir", dataDirectory,
            "--listen-client-urls", "\(clientURL),unixs://\(Self.socketName)",
            "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL,
            "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", initialCluster ?? "\(name)=\(peerURL)",
            "--initial-cluster-state", "new",
            "--cert-file", serverCertificatePath,
            "--key-file", serverKeyPath,
            "--trusted-ca-file", caPath,
            "--client-cert-auth",
            "--peer-cert-file", serverCertificatePath,
            "--peer-key-file", serverKeyPath,
            "--peer-trusted-ca-file", caPath,
            "--peer-client-cert-auth",
            "--quota-backend-bytes", "\(quotaBytes)",
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", "1h",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ] + EtcdTransactionLimits.etcdFlags
    }
}

/// The cluster's etcd as a child of its control plane: run under a `ProcessSupervisor` that
/// restarts it with a doubling delay when it dies (removing the unix socket a killed etcd leaves
/// behind, which would fail every restart with "address already in use") and stops it (SIGTERM,
/// then SIGKILL) when the control plane stops. A control plane that is killed leaves its etcd
/// serving the cluster's agents and administrators; the next control plane on the same data
/// directory adopts that etcd if it runs with the same command line (so a control plane restart
/// costs the store nothing), or stops it and starts its own.
public struct ManagedEtcd: Sendable {
    public let configuration: ManagedEtcdConfiguration
    public let executable: String
    private let logger: Logger

    public init(configuration: ManagedEtcdConfiguration, executable: String = "/usr/bin/etcd", logger: Logger) {
        self.configuration = configuration
        self.executable = executable
        self.logger = logger
    }

    /// Where the running etcd's pid is kept, beside its data directory.
    public var pidFile: String { Self.pidFile(dataDirectory: configuration.dataDirectory) }

    /// Where the pid of the etcd serving `dataDirectory` is kept.
    public static func pidFile(dataDirectory: String) -> String { dataDirectory + ".pid" }

    /// The unix socket file etcd creates in its working directory.
    public var socketPath: String { configuration.socketDirectory + "/" + ManagedEtcdConfiguration.socketName }

    /// Supervises etcd until cancelled. `onStart` is called with the pid of every (re)start and
    /// of an adopted etcd.
    public func run(onStart: @Sendable (Int32) -> Void = { _ in }) async throws {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if let pid = adoptable() {
            logger.info("adopting the etcd a previous control plane left running", metadata: ["pid": "\(pid)"])
            onStart(pid)
            while HostProcess.isAlive(pid), !Task.isCancelled { try? await Task.sleep(for: .milliseconds(250)) }
            if Task.isCancelled {
                await HostProcess.terminate(pid)
                return
            }
            logger.warning("adopted etcd exited; starting a new one", metadata: ["pid": "\(pid)"])
        } else {
            await Self.stopOrphan(dataDirectory: configuration.dataDirectory)
        }
        let command = SupervisedCommand(
            executable: executable, arguments: configuration.arguments, workingDirectory: configuration.socketDirectory,
            logPath: configuration.logPath, pidFile: pidFile, staleFiles: [socketPath])
        let supervisor = ProcessSupervisor(command, restart: .always(initial: .milliseconds(200), maximum: .seconds(5)), logger: logger)
        let configuration = configuration
        let logger = logger
        try await supervisor.run(onStart: onStart, onExit: { status in
            guard let cause = EtcdExitCause.diagnose(logPath: configuration.logPath) else { return }
            logger.error("etcd stopped: \(cause.explanation(dataDirectory: configuration.dataDirectory))", metadata: ["status": "\(status)"])
        })
    }

    /// The pid of an etcd serving this data directory with exactly this command line, left by a
    /// control plane that was killed.
    private func adoptable() -> Int32? {
        guard let pid = HostProcess.pid(inFile: pidFile, commandContaining: configuration.dataDirectory),
              let running = HostProcess.commandLine(pid) else { return nil }
        let expected = ([executable] + configuration.arguments).joined(separator: " ")
        return running.trimmingCharacters(in: .whitespaces) == expected ? pid : nil
    }

    /// Stops the etcd serving `dataDirectory`, if one runs: left behind by a control plane that
    /// was killed, or (lab teardown) by the one being stopped.
    public static func stopOrphan(dataDirectory: String) async {
        guard let pid = HostProcess.pid(inFile: pidFile(dataDirectory: dataDirectory), commandContaining: dataDirectory),
              HostProcess.commandLine(pid)?.contains("etcd") == true
        else { return }
        await HostProcess.terminate(pid)
    }
}

/// Why an etcd exited, read from the end of its log, for the causes an operator can fix.
public enum EtcdExitCause: Sendable, Hashable {
    /// A write of its data failed for lack of space: etcd stops rather than risk its data.
    case diskFull

    /// The cause in the last lines of the log at `logPath`, if it is one of these.
    public static func diagnose(logPath: String) -> EtcdExitCause? {
        guard let handle = FileHandle(forReadingAtPath: logPath) else { return nil }
        defer { try? handle.close() }
        let end = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: end > 4096 ? end - 4096 : 0)
        let tail = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        return tail.contains("no space left on device") ? .diskFull : nil
    }

    public func explanation(dataDirectory: String) -> String {
        switch self {
        case .diskFull:
            let free = (try? FilesystemSpace.of(dataDirectory)).map { "\($0.availableBytes / 1024) KiB free" } ?? "free space unknown"
            return "the disk under \(dataDirectory) is full (\(free)); free space there and it starts again by itself, with every acknowledged write"
        }
    }
}
