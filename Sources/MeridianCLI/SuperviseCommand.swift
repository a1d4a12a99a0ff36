import ArgumentParser
import Foundation
import Logging
import MeridianHost
import UnixSignals

/// `meridian supervise`: keeps one daemon running as a service manager would (`Restart=always`).
/// The lab runs each of its daemons under one; on real hosts systemd does this job.
struct SuperviseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervise",
        abstract: "Run a daemon, restart it whenever it exits, stop it on SIGTERM (the lab's service manager).",
        shouldDisplay: false)

    @Option(help: "The service's name, for logs and status.") var name: String
    @Option(help: "Where the service record (supervisor pid, child pid, starts, last exit) is kept.") var record: String
    @Option(help: "Where the daemon's output is appended.") var log: String
    @Option(help: "Seconds the daemon has to exit after SIGTERM before SIGKILL.") var stopGrace: Double = 5
    @Option(help: "cgroup v2 directory the supervisor (and so the daemon) joins first.") var cgroup: String?
    @Option(help: "The daemon's working directory.") var workingDirectory: String?
    @Option(help: "A file removed before every start (a unix socket a killed daemon left behind); repeatable.") var staleFile: [String] = []
    @Argument(parsing: .captureForPassthrough, help: "The daemon's command line (an absolute path, or a name on PATH).") var command: [String]

    func validate() throws {
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        guard !arguments.isEmpty else { throw ValidationError("no command to supervise") }
        guard stopGrace >= 0, stopGrace <= 600 else { throw ValidationError("--stop-grace must be 0...600 seconds, got \(stopGrace)") }
    }

    func run() async throws {
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        let logger = {
            var logger = Logger(label: "meridian.supervise")
            logger[metadataKey: "service"] = "\(name)"
            return logger
        }()
        let executable = try Self.resolve(arguments[0])
        if let cgroup {
            do {
                try "\(getpid())\n".write(toFile: cgroup + "/cgroup.procs", atomically: false, encoding: .utf8)
            } catch {
                throw ValidationError("cannot join cgroup \(cgroup): \(error)")
            }
        }
        let supervisor = ServiceSupervisor(
            name: name, command: SupervisedCommand(executable: executable, arguments: Array(arguments.dropFirst()),
                                                   workingDirectory: workingDirectory, logPath: log, staleFiles: staleFile),
            recordPath: URL(fileURLWithPath: record).standardizedFileURL.path,
            stopGrace: .milliseconds(Int64(stopGrace * 1000)), logger: logger)
        try await reportingErrors {
            try await withThrowingTaskGroup { group in
                group.addTask { try await supervisor.run() }
                group.addTask {
                    for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                        logger.info("stopping the service", metadata: ["signal": "\(signal)"])
                        return
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }

    /// `name` itself when it is a path, else the first executable of that name on PATH.
    static func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        throw ValidationError("\(name): not found on PATH")
    }
}
