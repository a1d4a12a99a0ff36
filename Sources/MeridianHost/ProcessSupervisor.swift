import Foundation
import Glibc
import Logging
import Subprocess
import SystemPackage

/// What a supervised child runs, and where its output goes.
public struct SupervisedCommand: Sendable, Hashable {
    public var executable: String
    public var arguments: [String]
    /// Variables set (or, with nil, removed) on top of this process's environment.
    public var environment: [String: String?]
    public var workingDirectory: String?
    /// Standard output and error are appended here.
    public var logPath: String
    /// Where the child's pid is written on every start (and removed when it is stopped).
    public var pidFile: String?
    /// Start the child through `setpriv --pdeathsig TERM`, so it cannot outlive a supervisor
    /// that was killed without a chance to stop it.
    public var dieWithSupervisor: Bool
    /// Files a run of the child leaves behind that keep the next one from starting (a unix
    /// socket a killed server never unlinked): removed before every start.
    public var staleFiles: [String]

    public init(executable: String, arguments: [String], environment: [String: String?] = [:], workingDirectory: String? = nil,
                logPath: String, pidFile: String? = nil, dieWithSupervisor: Bool = false, staleFiles: [String] = []) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.logPath = logPath
        self.pidFile = pidFile
        self.dieWithSupervisor = dieWithSupervisor
        self.staleFiles = staleFiles
    }
}

/// Runs one child process for as long as the calling task runs: starts it with its output
/// appended to a log, restarts it with a doubling delay when it exits (if asked to), and when
/// the task is cancelled stops it (SIGTERM, a grace period, then SIGKILL) and reaps it before
/// returning, so no child outlives its supervisor. The managed etcd of a control plane and the
/// etcd processes of the scale benchmark's mock clusters run under one.
public struct ProcessSupervisor: Sendable {
    /// Whether an exited child is started again.
    public enum Restart: Sendable, Hashable {
        /// `run` returns the exit status of the first run.
        case never
        /// Restarted after `initial`, doubling per restart up to `maximum`; a run that lasted
        /// `maximum` or longer starts the doubling again.
        case always(initial: Duration, maximum: Duration)
    }

    public let command: SupervisedCommand
    public let restart: Restart
    /// Time the child has to exit after SIGTERM before SIGKILL.
    public let stopGrace: Duration
    private let logger: Logger

    public init(_ command: SupervisedCommand, restart: Restart, stopGrace: Duration = .seconds(5), logger: Logger) {
        self.command = command
        self.restart = restart
        self.stopGrace = stopGrace
        self.logger = logger
    }

    /// Supervises until cancelled (or, with `.never`, until the child exits). `onStart` is
    /// called with the pid of every (re)start, `onExit` with how each run ended. Returns the
    /// last exit status.
    @discardableResult
    public func run(onStart: @Sendable (Int32) -> Void = { _ in },
                    onExit: @Sendable (TerminationStatus) -> Void = { _ in }) async throws(HostProcessError) -> TerminationStatus? {
        var restarts = 0
        var last: TerminationStatus?
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let status = try await runOnce(onStart: onStart)
            last = status
            onExit(status)
            defer { if let pidFile = command.pidFile { try? FileManager.default.removeItem(atPath: pidFile) } }
            guard case let .always(initial, maximum) = restart, !Task.isCancelled else { return last }
            if ContinuousClock.now - started >= maximum { restarts = 0 }
            let delay = min(maximum, initial * (1 << min(restarts, 20)))
            restarts += 1
            logger.warning("supervised process exited; restarting", metadata: [
                "command": "\(command.executable)", "status": "\(last.map { "\($0)" } ?? "-")",
                "restarts": "\(restarts)", "delay": "\(delay)",
            ])
            try? await Task.sleep(for: delay)
        }
        return last
    }

    private func runOnce(onStart: @Sendable (Int32) -> Void) async throws(HostProcessError) -> TerminationStatus {
        let log = try HostProcess.openLog(command.logPath, for: [command.executable])
        defer { try? log.close() }
        for path in command.staleFiles { unlink(path) }
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: stopGrace)]
        let (executable, arguments) = command.dieWithSupervisor
            ? ("/usr/bin/setpriv", ["--pdeathsig", "TERM", "--", command.executable] + command.arguments)
            : (command.executable, command.arguments)
        let pidFile = command.pidFile
        let name = command.executable
        let logger = logger
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), environment: .inheriting(command.environment),
                workingDirectory: command.workingDirectory.map { FilePath($0) }, platformOptions: options,
                input: .none, output: .fileDescriptor(log, closeAfterSpawningProcess: false),
                error: .fileDescriptor(log, closeAfterSpawningProcess: false)
            ) { execution in
                let pid = execution.processIdentifier.value
                if let pidFile { try? "\(pid)\n".write(toFile: pidFile, atomically: true, encoding: .utf8) }
                logger.info("supervised process started", metadata: ["command": "\(name)", "pid": "\(pid)"])
                onStart(pid)
            }
            return result.terminationStatus
        } catch {
            throw HostProcessError(command: [executable] + arguments, reason: "\(error)")
        }
    }
}
