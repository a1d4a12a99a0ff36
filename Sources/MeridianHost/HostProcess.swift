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
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM, let stat = status(pid) else { return false }
        guard stat.state == "Z" else { return true }
        var status: Int32 = 0
        waitpid(pid, &status, WNOHANG)
        return false
    }

    /// True while any process of the group `group` has not exited (its leader may have).
    public static func isGroupAlive(_ group: Int32) -> Bool {
        guard group > 1, kill(-group, 0) == 0 || errno == EPERM else { return false }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return false }
        return entries.lazy.compactMap(Int32.init).contains { status($0)?.group == group && isAlive($0) }
    }

    /// The parent of `pid`, from `/proc/PID/stat`.
    public static func parent(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The state letter and process group of `pid`, from `/proc/PID/stat` (`pid (comm) S ppid pgrp ...`).
    private static func status(_ pid: Int32) -> (state: Character, group: Int32)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let group = Int32(fields[2]) else { return nil }
        return (state, group)
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
    /// skipped, so it is safe to call on processes that already exited. With `wholeGroup`, a
    /// group counts as running while any member does, even after its leader has exited.
    public static func terminate(_ pids: [Int32], _ stop: Stop = Stop()) async {
        let running: @Sendable (Int32) -> Bool = stop.wholeGroup ? isGroupAlive : isAlive
        let targets = pids.filter { $0 > 1 && running($0) }
        guard !targets.isEmpty else { return }
        func send(_ signal: Int32) {
            for pid in targets where running(pid) { kill(stop.wholeGroup ? -pid : pid, signal) }
        }
        send(stop.signal)
        // A stalled (SIGSTOPped) process acts on SIGTERM only once resumed.
        if stop.signal != SIGKILL { send(SIGCONT) }
        let deadline = ContinuousClock.now + stop.grace
        while targets.contains(where: running), ContinuousClock.now < deadline { await pause() }
        guard targets.contains(where: running) else { return }
        send(SIGKILL)
        for _ in 0..<40 where targets.contains(where: running) { await pause() }
    }

    /// 50 ms between looks at a stopping process. A task being cancelled (a supervisor shutting
    /// down) still waits: its sleep would return at once and turn the wait into a busy loop.
    private static func pause() async {
        if Task.isCancelled {
            usleep(50_000)
        } else {
            try? await Task.sleep(for: .milliseconds(50))
        }
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
        let log = try openLog(logPath ?? "/dev/null", for: arguments)
        defer { try? log.close() }
        do {
            let result = try await Subprocess.run(
                .name("setsid"), arguments: Arguments(["-f"] + arguments), environment: .inheriting(environment),
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

    /// `path` opened for appending a child's output (created if absent).
    static func openLog(_ path: String, for command: [String]) throws(HostProcessError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .append, .closeOnExec],
                                           permissions: [.ownerReadWrite, .groupRead])
        } catch {
            throw HostProcessError(command: command, reason: "cannot open log \(path): \(error)")
        }
    }

    /// The pid recorded in `path` (a pid file), if it holds one.
    public static func pid(inFile path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The pid recorded in `path`, only while that process is still the one that wrote it: its
    /// command line contains `marker` (a path only that process is given). A stale pid file
    /// whose number the kernel has since given to another process yields nil, so that process
    /// is never signalled.
    public static func pid(inFile path: String, commandContaining marker: String) -> Int32? {
        guard let pid = pid(inFile: path) else { return nil }
        return isOwned(pid, commandContaining: marker) ? pid : nil
    }

    /// True when `pid` runs and its command line contains `marker`.
    public static func isOwned(_ pid: Int32, commandContaining marker: String) -> Bool {
        pid > 1 && commandLine(pid)?.contains(marker) == true
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

extension Environment {
    /// This process's environment with `overrides` set (a nil value unsets the variable).
    public static func inheriting(_ overrides: [String: String?]) -> Environment {
        var updates: [Environment.Key: String?] = [:]
        for (key, value) in overrides { updates[Environment.Key(stringLiteral: key)] = value }
        return .inherit.updating(updates)
    }
}

/// A process that could not be started or stopped, with its command line.
public struct HostProcessError: Error, Sendable, CustomStringConvertible {
    public var command: [String]
    public var reason: String

    public var description: String { "`\(command.joined(separator: " "))`: \(reason)" }
}
