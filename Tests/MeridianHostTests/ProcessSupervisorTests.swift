import Foundation
import Logging
import MeridianHost
import Subprocess
import Synchronization
import Testing

/// Real child processes (`sh`, `sleep`) under the supervisor and the detached launcher.
/// Values the supervised processes' callbacks report, read by the test.
final class Recorded<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ value: Value) { state = Mutex(value) }
    var value: Value { state.withLock { $0 } }
    func update(_ body: (inout Value) -> Void) { state.withLock { body(&$0) } }
}

private let logger = Logger(label: "test.supervisor")

@Suite("Process supervision")
struct ProcessSupervisorTests {
    func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "meridian-host-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("a child that exits is restarted with a delay; its output is appended to the log")
    func restartsAnExitedChild() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let starts = Recorded<[Int32]>([])
        let command = SupervisedCommand(executable: "/bin/sh", arguments: ["-c", "echo ran; exit 3"], logPath: directory + "/log")
        let supervisor = ProcessSupervisor(command, restart: .always(initial: .milliseconds(10), maximum: .milliseconds(20)), logger: logger)
        try await withThrowingTaskGroup { group in
            group.addTask { try await supervisor.run { pid in starts.update { $0.append(pid) } } }
            let deadline = ContinuousClock.now + .seconds(10)
            while starts.value.count < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            group.cancelAll()
        }
        #expect(Set(starts.value).count >= 3)
        let log = try String(contentsOfFile: directory + "/log", encoding: .utf8)
        #expect(log.components(separatedBy: "ran").count - 1 >= 3)
    }

    @Test("with restart never, run returns the child's exit status")
    func returnsTheExitStatus() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let command = SupervisedCommand(executable: "/bin/sh", arguments: ["-c", "exit 7"], logPath: directory + "/log")
        let status = try await ProcessSupervisor(command, restart: .never, logger: logger).run()
        #expect(status == .exited(7))
    }

    @Test("cancelling the supervising task stops the child, which is gone when run returns; the pid file goes with it")
    func cancellationStopsTheChild() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pid = Recorded<Int32>(0)
        let command = SupervisedCommand(executable: "/bin/sleep", arguments: ["60"], logPath: directory + "/log",
                                        pidFile: directory + "/pid")
        let supervisor = ProcessSupervisor(command, restart: .always(initial: .seconds(1), maximum: .seconds(1)),
                                           stopGrace: .seconds(2), logger: logger)
        try await withThrowingTaskGroup { group in
            group.addTask { try await supervisor.run { started in pid.update { $0 = started } } }
            let deadline = ContinuousClock.now + .seconds(10)
            while pid.value == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(300))
            #expect(HostProcess.isAlive(pid.value), "the child runs for as long as it is supervised")
            #expect(HostProcess.pid(inFile: directory + "/pid") == pid.value)
            group.cancelAll()
        }
        let child = pid.value
        #expect(child > 0)
        #expect(!HostProcess.isAlive(child))
        #expect(!FileManager.default.fileExists(atPath: directory + "/pid"))
    }

    @Test("a child that ignores SIGTERM is killed after the grace period")
    func stubbornChildIsKilled() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pid = Recorded<Int32>(0)
        let command = SupervisedCommand(executable: "/bin/sh", arguments: ["-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
                                        logPath: directory + "/log")
        let supervisor = ProcessSupervisor(command, restart: .never, stopGrace: .milliseconds(300), logger: logger)
        let began = ContinuousClock.now
        try await withThrowingTaskGroup { group in
            group.addTask { try await supervisor.run { started in pid.update { $0 = started } } }
            let deadline = ContinuousClock.now + .seconds(10)
            while (try? String(contentsOfFile: directory + "/log", encoding: .utf8))?.contains("ready") != true, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            group.cancelAll()
        }
        #expect(!HostProcess.isAlive(pid.value))
        #expect(ContinuousClock.now - began < .seconds(10))
    }

    @Test("a detached process runs in a session of its own and is stopped, with its group, by terminate")
    func detachedProcessesAndTheirGroups() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = "echo $$ > \(directory)/pid; sleep 60 & echo $! > \(directory)/child; wait"
        try await HostProcess.launchDetached(["/bin/sh", "-c", script], logPath: directory + "/log", environment: ["MERIDIAN_TEST": "1"])
        var leader: Int32?
        var child: Int32?
        let deadline = ContinuousClock.now + .seconds(10)
        while (leader == nil || child == nil), ContinuousClock.now < deadline {
            leader = HostProcess.pid(inFile: directory + "/pid")
            child = HostProcess.pid(inFile: directory + "/child")
            try await Task.sleep(for: .milliseconds(20))
        }
        let group = try #require(leader)
        let sleeper = try #require(child)
        #expect(getsid(group) == group, "setsid -f gives the process a session of its own")
        await HostProcess.terminate(group, .init(grace: .seconds(2), wholeGroup: true))
        #expect(!HostProcess.isAlive(group))
        #expect(!HostProcess.isAlive(sleeper), "the whole process group is stopped")
    }

    @Test("a group whose leader exits on SIGTERM while a member ignores it is killed after the grace period")
    func groupOutlivingItsLeaderIsKilled() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = "echo $$ > \(directory)/pid; (trap '' TERM; exec sleep 60) & echo $! > \(directory)/child; wait"
        try await HostProcess.launchDetached(["/bin/sh", "-c", script], logPath: directory + "/log")
        var leader: Int32?
        var child: Int32?
        let deadline = ContinuousClock.now + .seconds(10)
        while (leader == nil || child == nil), ContinuousClock.now < deadline {
            leader = HostProcess.pid(inFile: directory + "/pid")
            child = HostProcess.pid(inFile: directory + "/child")
            try await Task.sleep(for: .milliseconds(20))
        }
        let group = try #require(leader)
        let stubborn = try #require(child)
        defer { kill(-group, SIGKILL) }
        await HostProcess.terminate(group, .init(grace: .milliseconds(300), wholeGroup: true))
        #expect(!HostProcess.isAlive(stubborn), "the member that ignores SIGTERM is killed though its leader is gone")
        #expect(!HostProcess.isGroupAlive(group))
    }

    @Test("a pid file counts only while its process is the one that wrote it")
    func stalePidFilesAreIgnored() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "\(getpid())\n".write(toFile: directory + "/pid", atomically: true, encoding: .utf8)
        #expect(HostProcess.pid(inFile: directory + "/pid") == getpid())
        #expect(HostProcess.pid(inFile: directory + "/pid", commandContaining: directory) == nil,
                "this process was not started with the directory on its command line")
        let own = try #require(HostProcess.commandLine(getpid())?.split(separator: " ").first.map(String.init))
        #expect(HostProcess.pid(inFile: directory + "/pid", commandContaining: own) == getpid())
    }

    @Test("terminate skips pids that are not running")
    func terminateIgnoresTheDead() async {
        let began = ContinuousClock.now
        await HostProcess.terminate([0, 1, Int32.max - 1])
        #expect(ContinuousClock.now - began < .seconds(1))
    }

    @Test("files a killed child left behind are removed before every start")
    func staleFilesAreRemoved() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The child refuses to start while its socket file exists, as a server's bind would.
        let script = "[ -e \(directory)/sock ] && { echo in-use; exit 1; }; touch \(directory)/sock; echo started; kill -9 $$"
        let starts = Recorded<Int>(0)
        let command = SupervisedCommand(executable: "/bin/sh", arguments: ["-c", script], logPath: directory + "/log",
                                        staleFiles: [directory + "/sock"])
        let supervisor = ProcessSupervisor(command, restart: .always(initial: .milliseconds(10), maximum: .milliseconds(20)), logger: logger)
        try await withThrowingTaskGroup { group in
            group.addTask { try await supervisor.run(onStart: { _ in starts.update { $0 += 1 } }) }
            let deadline = ContinuousClock.now + .seconds(10)
            while starts.value < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            group.cancelAll()
        }
        let log = try String(contentsOfFile: directory + "/log", encoding: .utf8)
        #expect(log.components(separatedBy: "started").count - 1 >= 2)
        #expect(!log.contains("in-use"))
    }

    @Test("a service supervisor records its child, counts starts and exits, restarts a killed child, and removes its record when it stops")
    func serviceSupervisorRecordAndStop() async throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let record = directory + "/service.json"
        let supervisor = ServiceSupervisor(
            name: "sleeper", command: SupervisedCommand(executable: "/bin/sleep", arguments: ["60"], logPath: directory + "/log"),
            recordPath: record, restart: .always(initial: .milliseconds(10), maximum: .milliseconds(20)), stopGrace: .seconds(1), logger: logger)
        try await withThrowingTaskGroup { group in
            group.addTask { try await supervisor.run() }
            var first: Int32?
            let deadline = ContinuousClock.now + .seconds(10)
            while first == nil, ContinuousClock.now < deadline {
                first = Self.loadRecord(record)?.pid
                try await Task.sleep(for: .milliseconds(20))
            }
            let killed = try #require(first)
            kill(killed, SIGKILL)
            var second: (pid: Int32?, starts: Int, lastExit: String?)?
            while second?.starts != 2 || second?.pid == nil, ContinuousClock.now < deadline {
                second = Self.loadRecord(record).map { ($0.pid, $0.starts, $0.lastExit) }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(second?.starts == 2)
            #expect(second?.lastExit?.contains("9") == true, "\(String(describing: second))")
            #expect(second?.pid != killed && HostProcess.isAlive(second?.pid ?? 0))
            group.cancelAll()
        }
        #expect(!FileManager.default.fileExists(atPath: record), "the record goes with the supervisor")
    }

    /// The record as written; `ServiceRecord.load` also checks that the supervisor's command line
    /// names it, which holds for `meridian supervise` but not for this test process.
    static func loadRecord(_ path: String) -> ServiceRecord? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return FileManager.default.contents(atPath: path).flatMap { try? decoder.decode(ServiceRecord.self, from: $0) }
    }
}
