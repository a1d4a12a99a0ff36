import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianLab
import MeridianPKI
import MeridianStore
import Testing
import MeridianAdmin

/// A lab of real control planes and etcd processes for one test: a `LabDriver` (the one the
/// demo and the benchmarks use) with a directory, prefix and config file of its own, driven
/// through the real `meridian` binary, and always torn down, also when the test fails. Adds what
/// tests check with: `#require` on failures, and administrator clients with short timeouts.
struct LabFixture: Sendable {
    /// The test's own directory: the lab in `lab/`, the config file beside it.
    let directory: String
    let driver: LabDriver

    /// A fixture for `directory` (nothing is brought up).
    init(directory: String) {
        self.directory = directory
        driver = LabDriver(directory: directory + "/lab", prefix: "mt" + String(UUID().uuidString.prefix(6).lowercased()),
                           executable: Self.executable, configPath: directory + "/config.yaml")
    }

    var lab: Lab { driver.lab }
    var prefix: String { driver.prefix }
    var labDirectory: String { driver.lab.directory }

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
                     nodePodPrefix: Int = 24, identityGCSeconds: Int? = nil, etcdMembers: Int = 1, storeDiskMiB: Int? = nil,
                     nodeGraceSeconds: Int? = nil, prometheus: Bool = false, encryption: String? = nil,
                     wireguardRotationInterval: String? = nil, _ body: (LabFixture) async throws -> Void) async throws {
        let fixture = LabFixture(directory: "/tmp/meridian-test-\(UUID().uuidString.prefix(8).lowercased())")
        let driver = fixture.driver
        defer { try? FileManager.default.removeItem(atPath: fixture.directory) }
        let up = ["--clusters", "\(clusters)", "--nodes", "\(nodes)", "--mtu", mtus, "--node-pod-prefix", "\(nodePodPrefix)"]
            + (identityGCSeconds.map { ["--identity-gc-interval", "\($0)"] } ?? [])
            + (etcdMembers == 1 ? [] : ["--etcd-members", "\(etcdMembers)"])
            + (storeDiskMiB.map { ["--store-disk", "\($0)"] } ?? [])
            + (nodeGraceSeconds.map { ["--node-grace-period", "\($0)"] } ?? [])
            + (prometheus ? ["--prometheus"] : [])
            + (encryption.map { ["--encryption", $0] } ?? [])
            + (wireguardRotationInterval.map { ["--wireguard-rotation-interval", $0] } ?? [])
        try await LabDriver.with(driver, up: up) { _ in
            if enable {
                for index in 1...clusters {
                    let result = try await fixture.meridian(["clustermesh", "enable", "--context", "cluster\(index)", "--heartbeat-interval", "\(heartbeat)"])
                    try #require(result.status == 0, "enable failed: \(result.stderr)")
                }
            }
            try await body(fixture)
        }
    }

    typealias Result = LabDriver.Result

    func tearDown() async {
        await driver.tearDown()
    }

    /// Runs the `meridian` binary with this lab's config and directory.
    @discardableResult
    func meridian(_ arguments: [String], stdin: String? = nil) async throws -> Result {
        try await driver.run(arguments, stdin: stdin)
    }

    /// Runs a command on the host (resolved on PATH), with this lab's environment.
    func host(_ command: [String]) async throws -> Result {
        try await driver.host(command)
    }

    func cluster(_ name: String) throws -> LabCluster {
        try #require(lab.loadState()?.cluster(name))
    }

    /// The administrator's client for a lab cluster, with timeouts short enough for tests.
    func admin(_ name: String) throws -> EtcdClientConfiguration {
        var configuration = try driver.context(name).clientConfiguration()
        configuration.requestTimeout = .seconds(3)
        configuration.maxReconnectBackoff = .milliseconds(300)
        return configuration
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
        try await driver.meshStatus(cluster)
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
