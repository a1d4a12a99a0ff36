import Foundation
import MeridianAdmin
import MeridianAgent
import MeridianEtcd
import MeridianHost
import Subprocess
import SystemPackage

/// A lab driven by a program (the demo's walkthrough, a benchmark, an integration test) through
/// the real `meridian` binary, as a user would drive it: its own directory, prefix and (unless
/// it is the user's) config file, commands run as child processes, and helpers to wait for what
/// those commands set in motion. `with` always takes the lab down afterwards, also when the
/// body fails, unless asked to keep it.
public struct LabDriver: Sendable {
    public let lab: Lab
    /// Names every namespace, link, pin and cgroup of this lab.
    public let prefix: String
    /// The config file the lab's contexts are written to.
    public let configPath: String
    /// What `meridian` commands run with.
    public let environment: [String: String]

    public init(directory: String, prefix: String, executable: String, configPath: String) {
        lab = Lab(directory: directory, executable: executable)
        self.prefix = prefix
        self.configPath = configPath
        environment = ["MERIDIAN_LAB_DIR": directory, "MERIDIAN_CONFIG": configPath, "MERIDIAN_LAB_PREFIX": prefix]
    }

    public var executable: String { lab.executable }

    /// Runs `body` with a lab brought up by `meridian lab up` with these arguments, and removes
    /// the lab afterwards (unless `keep`).
    public static func with<R: Sendable>(_ driver: LabDriver, up arguments: [String], keep: Bool = false,
                                         _ body: (LabDriver) async throws -> R) async throws -> R {
        do {
            try await driver.mustRun(["lab", "up"] + arguments)
            let result = try await body(driver)
            if !keep { await driver.tearDown() }
            return result
        } catch {
            if !keep { await driver.tearDown() }
            throw error
        }
    }

    /// Removes everything the lab made, by its directory and by its prefix (after a crash the
    /// state file may be gone), and its config file's contexts.
    public func tearDown() async {
        _ = try? await run(["lab", "down"])
        await lab.down(prefix: prefix)
    }

    /// What a command printed and how it ended.
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        /// Both outputs, as a terminal shows them.
        public var output: String { stdout + stderr }
        public var succeeded: Bool { status == 0 }
    }

    /// Runs `meridian ARGUMENTS` with this lab's environment.
    public func run(_ arguments: [String], stdin: String? = nil) async throws -> Result {
        try await launch(.path(FilePath(executable)), arguments, stdin: stdin)
    }

    /// Runs `meridian ARGUMENTS` and returns what it printed; a failure throws with its output.
    @discardableResult
    public func mustRun(_ arguments: [String], stdin: String? = nil) async throws -> String {
        let result = try await run(arguments, stdin: stdin)
        guard result.succeeded else {
            throw LabError.commandFailed(command: ["meridian"] + arguments.prefix(6), status: "exit \(result.status)", output: result.output)
        }
        return result.stdout
    }

    /// Runs a command of the host (found on PATH) with this lab's environment.
    public func host(_ command: [String]) async throws -> Result {
        try await launch(.name(command[0]), Array(command.dropFirst()), stdin: nil)
    }

    private func launch(_ program: Executable, _ arguments: [String], stdin: String?) async throws -> Result {
        let limit = 1 << 26
        let result = if let stdin {
            try await Subprocess.run(program, arguments: Arguments(arguments), environment: .inheriting(environment),
                                     input: .string(stdin), output: .string(limit: limit), error: .string(limit: limit))
        } else {
            try await Subprocess.run(program, arguments: Arguments(arguments), environment: .inheriting(environment),
                                     input: .none, output: .string(limit: limit), error: .string(limit: limit))
        }
        let status: Int32 = switch result.terminationStatus {
        case let .exited(code): code
        case let .signaled(signal): 128 + signal
        }
        return Result(status: status, stdout: result.standardOutput, stderr: result.standardError)
    }

    // MARK: What the lab holds

    public var state: LabState? { lab.loadState() }

    public func cluster(_ name: String) throws -> LabCluster {
        guard let cluster = state?.cluster(name) else { throw LabError.missing("cluster \(name)") }
        return cluster
    }

    /// The administrator's context of a lab cluster.
    public func context(_ name: String) throws -> MeridianContext {
        MeridianContext(labCluster: try cluster(name), lab: lab.directory)
    }

    /// Runs `body` with the administrator's client of a lab cluster.
    public func withClient<R: Sendable>(_ cluster: String, _ body: (EtcdClient) async throws -> R) async throws -> R {
        try await EtcdClient.withClient(try context(cluster).clientConfiguration(), body)
    }

    /// The running pods of a context and their addresses, as `get pods -o json` shows them.
    public func runningPodIPs(_ context: String) async throws -> [String: String] {
        let output = try await mustRun(["get", "pods", "--context", context, "-o", "json"])
        guard let rows = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]] else { return [:] }
        var result: [String: String] = [:]
        for row in rows where row["status"] as? String == "Running" {
            if let name = row["name"] as? String, let ip = row["ip"] as? String { result[name] = ip }
        }
        return result
    }

    /// Waits until the pods run (and their servers have had a moment to bind); their addresses.
    public func waitForPods(_ names: [String], context: String, timeout: Duration = .seconds(60)) async throws -> [String: String] {
        var ips: [String: String] = [:]
        try await Self.waitUntil("pods \(names) running in \(context)", timeout: timeout) {
            ips = try await runningPodIPs(context)
            return names.allSatisfy { ips[$0] != nil }
        }
        try await Task.sleep(for: .milliseconds(500))
        return ips
    }

    /// A Service's ClusterIP, as `get services -o json` shows it.
    public func serviceIP(_ name: String, context: String) async throws -> String {
        let output = try await mustRun(["get", "services", "--context", context, "-o", "json"])
        let rows = (try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]) ?? []
        guard let ip = rows.first(where: { $0["name"] as? String == name })?["clusterIP"] as? String else {
            throw LabError.missing("ClusterIP for service \(name) in \(context)")
        }
        return ip
    }

    /// `clustermesh status -o json` of a context, decoded.
    public func meshStatus(_ context: String) async throws -> [String: Any] {
        let output = try await mustRun(["clustermesh", "status", "--context", context, "-o", "json"])
        guard let status = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
            throw LabError.commandFailed(command: ["meridian", "clustermesh", "status"], status: "unreadable JSON", output: output)
        }
        return status
    }

    /// Where a tool runs as a process of pod `pod` on `node` of cluster `clusterID` would: in the
    /// pod's network namespace and the node's pod cgroup.
    public func podPlace(clusterID: UInt32, node: String, namespace: String = "default", pod: String) throws -> ToolPlace {
        guard let labNode = state?.clusters.first(where: { $0.id == clusterID })?.nodes.first(where: { $0.name == node }) else {
            throw LabError.missing("node \(node) in cluster \(clusterID)")
        }
        return ToolPlace(namespace: PodNaming.networkNamespace(prefix: "\(prefix)-c\(clusterID)", namespace: namespace, pod: pod),
                         cgroup: lab.cgroup(of: labNode))
    }

    /// Polls `condition` until it holds; throws naming `what` after `timeout`.
    public static func waitUntil(_ what: String, timeout: Duration = .seconds(60), interval: Duration = .milliseconds(200),
                                 _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: interval)
        }
        throw LabError.timedOut(waitingFor: what, after: timeout)
    }
}
