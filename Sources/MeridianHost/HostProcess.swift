import Foundation
import Glibc
import Subprocess
import SystemPackage

/// Processes of this host that Meridian started but does not wait on as children: the lab's
/// daemons and the containers of lab pods, which run in sessions of their own so that they
/// outlive the command or agent that started them. Their liveness, their stop (SIGTERM, a grace
/// period, then SIGKILL) and their launch are here, once; children a caller does wait on are
/// run by `ProcessSupervisor`.
public enum HostProcess {
    /// True while the process exists and has not exited. A zombie has exited; if it is our
    /// own child it is reaped here, otherwise only its parent can remove it.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        guard stat[stat.index(close, offsetBy: 2)...].prefix(1) == "Z" else { return true }
        var status: Int32 = 0
        waitpid(pid, &status, WNOHANG)
        return false
    }

    /// How a process (or its whole process group) is asked to stop.
    public struct Stop: Sendable, Hashable {
        /// The first signal; SIGKILL follows after `grace`.
        public var signal: Int32
        public var grace: Duration
        /// Signal the process group the pid leads (a container and everything it started).
        public var wholeGroup: Bool

        public init(signal: Int32 = SIGTERM, grace: Duration = .seconds(5), wholeGroup: Bool = false) {
            self.signal = signal
            self.grace = grace
            self.wholeGroup = wholeGroup
        }
    }

    /// Sends `stop.signal` to every pid, waits up to `stop.grace` for all of them to exit, sends
    /// SIGKILL to those left, and waits for them to be gone. Pids that are not running are
    /// skipped, so it is safe to call on processes that already exited.
    public static func terminate(_ pids: [Int32], _ stop: Stop = Stop()) async {
        let targets = pids.filter { $0 > 1 && isAlive($0) }
        guard !targets.isEmpty else { return }
        func send(_ signal: Int32) {
            for pid in targets where isAlive(pid) { kill(stop.wholeGroup ? -pid : pid, signal) }
        }
        send(stop.signal)
        let deadline = ContinuousClock.now + stop.grace
        while targets.contains(where: isAlive), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        guard targets.contains(where: isAlive) else { return }
        send(SIGKILL)
        for _ in 0..<40 where targets.contains(where: isAlive) { try? await Task.sleep(for: .milliseconds(50)) }
    }

    public static func terminate(_ pid: Int32, _ stop: Stop = Stop()) async {
        await terminate([pid], stop)
    }

    /// Starts `arguments` (the first found on PATH) in a session of its own, detached from this
    /// process (`setsid -f`), with standard input from /dev/null and both outputs appended to
    /// `logPath` (nil: discarded). Returns once it is launched; the process records its own pid
    /// where its owner looks for it.
    public static func launchDetached(_ arguments: [String], logPath: String?,
                                      environment: [String: String] = [:]) async throws(HostProcessError) {
        precondition(!arguments.isEmpty)
        let log: FileDescriptor
        do {
            log = try FileDescriptor.open(FilePath(logPath ?? "/dev/null"), .writeOnly, options: [.create, .append, .closeOnExec],
                                          permissions: [.ownerReadWrite, .groupRead])
        } catch {
            throw HostProcessError(command: arguments, reason: "cannot open log \(logPath ?? "/dev/null"): \(error)")
        }
        defer { try? log.close() }
        var overrides: [Environment.Key: String?] = [:]
        for (key, value) in environment { overrides[Environment.Key(stringLiteral: key)] = value }
        do {
            let result = try await Subprocess.run(
                .name("setsid"), arguments: Arguments(["-f"] + arguments), environment: .inherit.updating(overrides),
                input: .none, output: .fileDescriptor(log, closeAfterSpawningProcess: false),
                error: .fileDescriptor(log, closeAfterSpawningProcess: false))
            guard case .exited(0) = result.terminationStatus else {
                throw HostProcessError(command: arguments, reason: "setsid ended with \(result.terminationStatus)")
            }
        } catch let error as HostProcessError {
            throw error
        } catch {
            throw HostProcessError(command: arguments, reason: "\(error)")
        }
    }

    /// The pid recorded in `path` (a pid file), if it holds one.
    public static func pid(inFile path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The command line of `pid`, its arguments joined by spaces.
    public static func commandLine(_ pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    /// Every process of this host but this one and its parent (so a command run by one of a
    /// lab's own processes never counts itself or its caller).
    public static func others() -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let spared: Set<Int32> = [getpid(), getppid()]
        return entries.compactMap(Int32.init).filter { !spared.contains($0) }
    }
}

/// A process that could not be started or stopped, with its command line.
public struct HostProcessError: Error, Sendable, CustomStringConvertible {
    public var command: [String]
    public var reason: String

    public var description: String { "`\(command.joined(separator: " "))`: \(reason)" }
}
