import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianLab
import MeridianPKI
import MeridianStore
import Testing

/// A lab of real control planes and etcd processes for one test, driven through the real
/// `meridian` binary, with its own config file and directory; always torn down, also when the
/// test fails.
struct LabFixture: Sendable {
    let directory: String
    let lab: Lab
    /// Names every namespace of this test's lab, so tests never touch a user's lab.
    var prefix: String = "mt" + String(UUID().uuidString.prefix(6).lowercased())

    var configPath: String { directory + "/config.yaml" }
    var labDirectory: String { directory + "/lab" }

    static var executable: String {
        if let explicit = ProcessInfo.processInfo.environment["MERIDIAN_BIN"], !explicit.isEmpty { return explicit }
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("meridian").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/meridian").path
    }

    static func with(clusters: Int, nodes: Int = 0, heartbeat: Double = 1, enable: Bool = true, mtus: String = "1500",
                     nodePodPrefix: Int = 24, identityGCSeconds: Int? = nil, _ body: (LabFixture) async throws -> Void) async throws {
        let directory = "/tmp/meridian-test-\(UUID().uuidString.prefix(8).lowercased())"
        let fixture = LabFixture(directory: directory, lab: Lab(directory: directory + "/lab", executable: executable))
        do {
            let up = try await fixture.meridian(["lab", "up", "--clusters", "\(clusters)", "--nodes", "\(nodes)", "--mtu", mtus,
                                                     "--node-pod-prefix", "\(nodePodPrefix)"]
                                                    + (identityGCSeconds.map { ["--identity-gc-interval", "\($0)"] } ?? []))
            try #require(up.status == 0, "lab up failed: \(up.stderr)")
            if enable {
                for index in 1...clusters {
                    let result = try await fixture.meridian(["clustermesh", "enable", "--context", "cluster\(index)", "--heartbeat-interval", "\(heartbeat)"])
                    try #require(result.status == 0, "enable failed: \(result.stderr)")
                }
            }
            try await body(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    func tearDown() async {
        _ = try? await meridian(["lab", "down"])
        await lab.down(prefix: prefix)
        try? FileManager.default.removeItem(atPath: directory)
    }

    struct Result: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the `meridian` binary with this lab's config and directory.
    @discardableResult
    func meridian(_ arguments: [String], stdin: String? = nil) async throws -> Result {
        try await launch(Self.executable, arguments, stdin: stdin)
    }

    /// Runs a command on the host (resolved on PATH), with this lab's environment.
    func host(_ command: [String]) async throws -> Result {
        try await launch("/usr/bin/env", command, stdin: nil)
    }

    private func launch(_ executable: String, _ arguments: [String], stdin: String?) async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["MERIDIAN_CONFIG"] = configPath
        environment["MERIDIAN_LAB_DIR"] = labDirectory
        environment["MERIDIAN_LAB_PREFIX"] = prefix
        process.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        let (stdout, stderr) = await withTaskGroup(of: (Int, Data).self) { group in
            group.addTask { (0, out.fileHandleForReading.readDataToEndOfFile()) }
            group.addTask { (1, err.fileHandleForReading.readDataToEndOfFile()) }
            var result = [Data(), Data()]
            for await (index, data) in group { result[index] = data }
            return (result[0], result[1])
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func cluster(_ name: String) throws -> LabCluster {
        try #require(lab.loadState()?.cluster(name))
    }

    /// The administrator's client for a lab cluster.
    func admin(_ name: String) throws -> EtcdClientConfiguration {
        let cluster = try cluster(name)
        let paths = cluster.paths
        return EtcdClientConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: cluster.clientPort),
            tls: EtcdTLS(caPEM: try String(contentsOfFile: paths.caCertificate, encoding: .utf8),
                         certificatePEM: try String(contentsOfFile: paths.adminCertificate, encoding: .utf8),
                         privateKeyPEM: try String(contentsOfFile: paths.adminKey, encoding: .utf8),
                         serverName: cluster.serverName),
            requestTimeout: .seconds(3), maxReconnectBackoff: .milliseconds(300))
    }

    @discardableResult
    func withAdmin<R: Sendable>(_ name: String, _ body: (EtcdClient) async throws -> R) async throws -> R {
        try await EtcdClient.withClient(try admin(name), body)
    }

    func connect(_ source: String, _ destinations: [String], extra: [String] = []) async throws {
        let result = try await meridian(["clustermesh", "connect", "--context", source, "--destination-context"] + destinations + extra)
        try #require(result.status == 0, "connect failed: \(result.stderr)")
    }

    /// Registers a cluster started outside `lab up` as a context, through the CLI.
    func addContext(_ cluster: LabCluster) async throws {
        let result = try await meridian([
            "config", "set-context", cluster.name, "--endpoint", cluster.endpoint, "--server-name", cluster.serverName,
            "--certificate-authority", cluster.paths.caCertificate, "--client-certificate", cluster.paths.adminCertificate,
            "--client-key", cluster.paths.adminKey,
        ])
        try #require(result.status == 0, "set-context failed: \(result.stderr)")
    }

    func waitReady(_ cluster: String, timeout: String = "30s") async throws {
        let result = try await meridian(["clustermesh", "status", "--context", cluster, "--wait", "--wait-duration", timeout])
        try #require(result.status == 0, "status --wait failed for \(cluster): \(result.stdout) \(result.stderr)")
    }

    func status(_ cluster: String) async throws -> [String: Any] {
        let result = try await meridian(["clustermesh", "status", "--context", cluster, "-o", "json"])
        try #require(result.status == 0, "status failed: \(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }
}

/// Polls `condition` until it holds or `timeout` passes; records a failure naming `what`.
func eventually(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("timed out after \(timeout) waiting for: \(what)")
    throw CancellationError()
}
