import Foundation
import Glibc
import Logging
import Subprocess
import Synchronization

/// What a `ServiceSupervisor` tells others about the service it runs, kept in a file beside the
/// service's state: who supervises it, which pid runs it now, how often it was started and how
/// its last run ended. `meridian lab status` shows it; the lab's start-up reads it to notice a
/// daemon that keeps failing.
public struct ServiceRecord: Codable, Sendable, Hashable {
    public var service: String
    public var supervisorPID: Int32
    /// The running child, nil between an exit and the next start.
    public var pid: Int32?
    public var starts: Int
    public var lastExit: String?
    public var lastExitAt: Date?

    public var restarts: Int { max(0, starts - 1) }

    /// The record in `path`, if one is there and its supervisor still runs it.
    public static func load(_ path: String) -> ServiceRecord? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let data = FileManager.default.contents(atPath: path),
              let record = try? decoder.decode(ServiceRecord.self, from: data),
              HostProcess.isOwned(record.supervisorPID, commandContaining: path) else { return nil }
        return record
    }
}

/// A daemon run as a service manager runs a unit with `Restart=always`: started, restarted with
/// a doubling delay whenever it exits (killed, crashed or stopped by someone else), and stopped
/// (SIGTERM, a grace period, SIGKILL) only when the supervisor itself is asked to stop. It runs
/// as `meridian supervise`, one per daemon of the lab, detached, so killing any daemon of a
/// cluster brings it back and stopping the supervisor leaves nothing behind.
public struct ServiceSupervisor: Sendable {
    public let name: String
    public let command: SupervisedCommand
    /// Where the `ServiceRecord` is written; the supervisor's command line names it, which is
    /// how a pid read from it is known to still be this supervisor.
    public let recordPath: String
    public let restart: ProcessSupervisor.Restart
    public let stopGrace: Duration
    private let logger: Logger

    public init(name: String, command: SupervisedCommand, recordPath: String,
                restart: ProcessSupervisor.Restart = .always(initial: .milliseconds(200), maximum: .seconds(5)),
                stopGrace: Duration = .seconds(5), logger: Logger) {
        self.name = name
        self.command = command
        self.recordPath = recordPath
        self.restart = restart
        self.stopGrace = stopGrace
        self.logger = logger
    }

    /// Runs the service until cancelled; the record is removed on the way out.
    public func run() async throws(HostProcessError) {
        let record = RecordFile(path: recordPath, initial: ServiceRecord(service: name, supervisorPID: getpid(), starts: 0))
        defer { try? FileManager.default.removeItem(atPath: recordPath) }
        record.update { _ in }
        let supervisor = ProcessSupervisor(command, restart: restart, stopGrace: stopGrace, logger: logger)
        try await supervisor.run(onStart: { pid in
            record.update { $0.pid = pid; $0.starts += 1 }
        }, onExit: { status in
            record.update { $0.pid = nil; $0.lastExit = "\(status)"; $0.lastExitAt = Date() }
        })
    }

    /// Asks the supervisor whose record is at `recordPath` to stop its service and waits until
    /// both are gone (the child has `childGrace` after SIGTERM). Returns false if none ran.
    @discardableResult
    public static func stop(recordPath: String, childGrace: Duration = .seconds(5)) async -> Bool {
        guard let record = ServiceRecord.load(recordPath) else { return false }
        await HostProcess.terminate(record.supervisorPID, .init(grace: childGrace + .seconds(5)))
        if let pid = record.pid { await HostProcess.terminate(pid, .init(signal: SIGKILL, grace: .zero)) }
        return true
    }
}

/// The service record, rewritten atomically on every change.
private final class RecordFile: Sendable {
    let path: String
    private let record: Mutex<ServiceRecord>

    init(path: String, initial: ServiceRecord) {
        self.path = path
        self.record = Mutex(initial)
    }

    func update(_ change: (inout ServiceRecord) -> Void) {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        record.withLock { record in
            change(&record)
            if let data = try? encoder.encode(record) { try? data.write(to: URL(fileURLWithPath: path), options: .atomic) }
        }
    }
}
