import Foundation
import MeridianAdmin
import Logging
import MeridianControlPlane
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianPKI
import MeridianStore
import Synchronization

// MARK: - The mocks' etcd processes

/// The mocked clusters' etcds: one plain etcd 3.4 each (TLS with client-certificate auth, no
/// RBAC), on 127.0.0.1 ports chosen free, with files under `<bench dir>/mocks/<name>/`.
/// Mocks cannot share one etcd: importers read non-namespaced prefixes such as
/// `cilium/state/ip/v1/default/`.
final class MockFleet: Sendable {
    let directory: String
    let mocks: [MockCluster]
    private let ports: [(client: Int, peer: Int)]
    /// Each mock's etcd pid while it runs, and which mocks' etcd has exited.
    private let etcdStates = Mutex<(processes: [Int: Int32], exited: Set<Int>)>(([:], []))

    /// The nice value the etcds run at (through `nice`, so every thread has it).
    let niceness: Int

    init(directory: String, count: Int, niceness: Int = 0) throws {
        self.directory = directory
        self.niceness = niceness
        mocks = (0..<count).map(MockCluster.init(index:))
        let reserved = try FreePorts.reserve(count * 2)
        ports = (0..<count).map { (reserved[2 * $0], reserved[2 * $0 + 1]) }
    }

    func endpoint(_ mock: MockCluster) -> String { "https://127.0.0.1:\(ports[mock.index].client)" }
    private func home(_ mock: MockCluster) -> String { "\(directory)/\(mock.name)" }
    private var caPath: String { directory + "/ca.crt" }

    /// The administrator's context for a mock (one client certificate serves them all: auth is off).
    func context(_ mock: MockCluster) -> MeridianContext {
        MeridianContext(name: mock.name, cluster: mock.name, endpoint: endpoint(mock), serverName: mock.serverName,
                        certificateAuthority: caPath, clientCertificate: directory + "/admin.crt", clientKey: directory + "/admin.key")
    }

    /// What `clustermesh connect` would store in the importer for a mock: a mock is a bare etcd
    /// (it stands in for a mesh endpoint, which speaks the same protocol) with no control plane
    /// to issue a credential, so the bench issues one with the mocks' CA.
    static func peerRecord(for importer: ClusterAccessInfo, exporter: ClusterAccessInfo, ca: CertificateAuthority) throws -> PeerRecord {
        let credential = try ca.issue(CertificateRequest(commonName: ClusterAccess.remoteUser(peer: importer.settings.name),
                                                         usage: .client, validity: .days(2)))
        return PeerRecord(
            name: exporter.settings.name, id: exporter.settings.id, endpoints: exporter.settings.clientEndpoints,
            serverName: exporter.settings.serverName, caPEM: exporter.ca.certificatePEM,
            certificatePEM: credential.certificatePEM, privateKeyPEM: credential.privateKeyPEM, podCIDR: exporter.settings.podCIDR)
    }

    /// The CA bundle, the shared client certificate and each mock's server certificate.
    func prepare(ca: CertificateAuthority) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try PEMFiles.writeCertificate(ca.certificatePEM, to: caPath)
        let admin = try ca.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(2)))
        try PEMFiles.write(certificatePEM: admin.certificatePEM, to: directory + "/admin.crt", privateKeyPEM: admin.privateKeyPEM, to: directory + "/admin.key")
        for mock in mocks {
            let server = try ca.issue(CertificateRequest(commonName: mock.serverName, usage: .serverAndClient,
                                                         dnsNames: [mock.serverName, "localhost"], ipAddresses: ["127.0.0.1"], validity: .days(2)))
            try PEMFiles.write(certificatePEM: server.certificatePEM, to: home(mock) + "/server.crt",
                               privateKeyPEM: server.privateKeyPEM, to: home(mock) + "/server.key")
        }
    }

    /// Like a control plane's managed etcd, but without the unix socket and with a slower raft
    /// tick (500 ms, election 5 s; one member needs no faster) and one Go thread, so hundreds of
    /// idle mocks leave the machine to the processes under test.
    func arguments(_ mock: MockCluster) -> [String] {
        let client = endpoint(mock)
        let peer = "http://127.0.0.1:\(ports[mock.index].peer)"
        return [
            "--name", mock.name, "--data-dir", home(mock) + "/etcd",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "\(mock.name)=\(peer)", "--initial-cluster-state", "new",
            "--cert-file", home(mock) + "/server.crt", "--key-file", home(mock) + "/server.key",
            "--trusted-ca-file", caPath, "--client-cert-auth",
            "--heartbeat-interval", "500", "--election-timeout", "5000",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ] + EtcdTransactionLimits.etcdFlags
    }

    /// Runs every mock's etcd under a supervisor while `body` runs, and stops them all (SIGTERM,
    /// SIGKILL after 10 s) when it returns or throws; then the files go.
    func running<R: Sendable>(executable: String = "/usr/bin/etcd", _ body: () async throws -> R) async throws -> R {
        let logger = Logger(label: "meridian.bench.mocks")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await withThrowingTaskGroup(of: Void.self, returning: R.self) { group in
            for mock in mocks {
                let command = SupervisedCommand(
                    executable: niceness == 0 ? executable : "/usr/bin/nice",
                    arguments: (niceness == 0 ? [] : ["-n", "\(niceness)", executable]) + arguments(mock), environment: ["GOMAXPROCS": "1"],
                    workingDirectory: home(mock), logPath: home(mock) + "/etcd.log", dieWithSupervisor: true)
                let supervisor = ProcessSupervisor(command, restart: .never, stopGrace: .seconds(10), logger: logger)
                group.addTask {
                    try await supervisor.run { pid in self.etcdStates.withLock { $0.processes[mock.index] = pid } }
                    self.etcdStates.withLock { _ = $0.exited.insert(mock.index) }
                }
            }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    var pids: [Int32] { etcdStates.withLock { Array($0.processes.values) } }

    /// Waits until every mock answers.
    func waitReachable(_ clients: [EtcdClient], timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        for (index, client) in clients.enumerated() {
            while true {
                if (try? await client.status()) != nil { break }
                if etcdStates.withLock({ $0.exited.contains(index) }) {
                    throw BenchError.mockFailed(name: mocks[index].name, reason: "exited", log: home(mocks[index]) + "/etcd.log")
                }
                guard ContinuousClock.now < deadline else {
                    throw BenchError.mockFailed(name: mocks[index].name, reason: "not reachable after \(timeout)", log: home(mocks[index]) + "/etcd.log")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

/// Runs `body` for every item with at most `lanes` running at once.
func forEachConcurrently<T: Sendable>(_ items: [T], lanes: Int, _ body: @escaping @Sendable (T) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<max(1, lanes) {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() { group.addTask { try await body(item) } }
        }
    }
}
