import Foundation
import Logging

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

    public init(name: String, dataDirectory: String, listenHost: String, clientPort: Int, peerPort: Int, serverCertificatePath: String, serverKeyPath: String, caPath: String, logPath: String) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.listenHost = listenHost
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.serverCertificatePath = serverCertificatePath
        self.serverKeyPath = serverKeyPath
        self.caPath = caPath
        self.logPath = logPath
    }

    public var clientURL: String { "https://\(listenHost):\(clientPort)" }

    /// The unix socket etcd also listens on, relative to its working directory (etcd 3.4 takes
    /// `unixs://NAME:PORT` and names the socket file `NAME:PORT`).
    public static let socketName = "etcd.sock:0"
    /// etcd's working directory, where the socket appears.
    public var socketDirectory: String { (dataDirectory as NSString).deletingLastPathComponent }

    /// The etcd command line: TLS with client-certificate auth (the CN is the RBAC user),
    /// compaction so the history does not grow without bound, and room for Meridian's
    /// all-or-nothing applies in one transaction.
    public var arguments: [String] {
        let peerURL = "http://\(listenHost):\(peerPort)"
        return [
            "--name", name,
            "--data-dir", dataDirectory,
            "--listen-client-urls", "\(clientURL),unixs://\(Self.socketName)",
            "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL,
            "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "\(name)=\(peerURL)",
            "--initial-cluster-state", "new",
            "--cert-file", serverCertificatePath,
            "--key-file", serverKeyPath,
            "--trusted-ca-file", caPath,
            "--client-cert-auth",
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", "1h",
            "--max-txn-ops", "4096",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
    }
}

/// Runs and supervises an etcd child process: starts it, restarts it with backoff when it dies,
/// and stops it (SIGTERM, then SIGKILL) when the supervising task is cancelled. The child is
/// started through `setpriv --pdeathsig` so it cannot outlive a control plane that was killed.
public struct ManagedEtcd: Sendable {
    public let configuration: ManagedEtcdConfiguration
    public let executable: String
    private let logger: Logger

    public init(configuration: ManagedEtcdConfiguration, executable: String = "/usr/bin/etcd", logger: Logger) {
        self.configuration = configuration
        self.executable = executable
        self.logger = logger
    }

    /// Supervises etcd until cancelled. `onStart` is called with the pid of every (re)start.
    public func run(onStart: @Sendable (Int32) -> Void = { _ in }) async throws {
        var restarts = 0
        while !Task.isCancelled {
            let process = try start()
            onStart(process.processIdentifier)
            let status = await waitForExit(process)
            if Task.isCancelled { return }
            restarts += 1
            logger.warning("etcd exited", metadata: ["status": "\(status)", "restarts": "\(restarts)"])
            try await Task.sleep(for: .milliseconds(min(5000, 200 * (1 << min(restarts, 5)))))
        }
    }

    private func start() throws -> Process {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if !FileManager.default.fileExists(atPath: configuration.logPath) { FileManager.default.createFile(atPath: configuration.logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: configuration.logPath))
        try log.seekToEnd()
        Self.reapOrphan(pidFile: pidFile)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = configuration.arguments
        process.currentDirectoryURL = URL(fileURLWithPath: configuration.socketDirectory)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? "\(process.processIdentifier)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        logger.info("etcd started", metadata: ["pid": "\(process.processIdentifier)", "url": "\(configuration.clientURL)"])
        return process
    }

    /// Waits for the process to exit; on cancellation terminates it and still waits, so no
    /// child outlives its supervisor.
    private func waitForExit(_ process: Process) async -> Int32 {
        let exited = AsyncStream<Int32> { continuation in
            process.terminationHandler = { continuation.yield($0.terminationStatus); continuation.finish() }
            if !process.isRunning { continuation.yield(process.terminationStatus); continuation.finish() }
        }
        return await withTaskCancellationHandler {
            for await status in exited { return status }
            return process.terminationStatus
        } onCancel: {
            Self.stop(process)
        }
    }

    private var pidFile: String { configuration.dataDirectory + ".pid" }

    /// Kills an etcd left behind by a previous run that used the same data directory.
    static func reapOrphan(pidFile: String) {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
              cmdline.contains("etcd"), cmdline.contains(URL(fileURLWithPath: pidFile).deletingLastPathComponent().path)
        else { return }
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    private static func stop(_ process: Process) {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        for _ in 0..<50 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(pid, SIGKILL) }
    }
}
