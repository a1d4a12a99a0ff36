import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianPKI
import MeridianStore
import MeridianTestSupport
import Testing

/// What a remote cluster's certificate can and cannot do, refusals of bad connects, and bad
/// input to `apply`, all against real etcd with RBAC.
@Suite(.serialized)
struct SecurityAndValidationTests {
    /// The client cluster1's control plane uses to read cluster2, taken from its peer record.
    func remoteClient(_ lab: LabFixture, reader: String, of exporter: String) async throws -> EtcdClientConfiguration {
        let record = try await lab.withAdmin(reader) { client in
            try #require(try await client.get(KeyLayout.peer(exporter)))
        }
        let peer = try StoreCoding.decode(PeerRecord.self, from: record.value, key: record.key)
        return EtcdClientConfiguration(
            endpoint: try EtcdEndpoint(url: peer.endpoints[0]),
            tls: EtcdTLS(caPEM: peer.caPEM, certificatePEM: peer.certificatePEM, privateKeyPEM: peer.privateKeyPEM, serverName: peer.serverName),
            requestTimeout: .seconds(3), maxReconnectBackoff: .milliseconds(300))
    }

    @Test func remoteCertificateReadsOnlyExportedPrefixesAndWritesNothing() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
            }
            let config = try await remoteClient(lab, reader: "cluster1", of: "cluster2")
            try await EtcdClient.withClient(config) { remote in
                // Allowed: exported state, heartbeat, own cluster config, canaries.
                #expect(try await remote.list(prefix: "cilium/state/").items.count >= 1)
                #expect(try await remote.get("cilium/.heartbeat") != nil)
                #expect(try await remote.get("cilium/cluster-config/cluster2") != nil)
                #expect(try await remote.list(prefix: "cilium/synced/cluster2/").items.count == MeshKind.allCases.count)
                // Refused: Meridian's own keys (settings, the CA and its key, peer certificates).
                for key in [KeyLayout.meshCertificateAuthority, KeyLayout.clusterSettings] {
                    await #expect(throws: EtcdError.self) { _ = try await remote.get(key) }
                }
                await #expect(throws: EtcdError.self) { _ = try await remote.list(prefix: "meridian/") }
                await #expect(throws: EtcdError.self) { _ = try await remote.list(prefix: "cilium/cache/") }
                // Refused: every write, including to the exported prefixes.
                do {
                    try await remote.put("cilium/state/ip/v1/default/10.2.0.99", "{}")
                    Issue.record("a remote certificate could write into cilium/state")
                } catch let error as EtcdError {
                    #expect(error.code == .permissionDenied, "\(error)")
                }
                await #expect(throws: EtcdError.self) { try await remote.put("cilium/.heartbeat", "forged") }
                await #expect(throws: EtcdError.self) { try await remote.delete(prefix: "cilium/state/") }
                await #expect(throws: EtcdError.self) {
                    try await remote.watch(prefix: "meridian/", startRevision: 0) { _, _ in }
                }
            }
            try await lab.withAdmin("cluster2") { c2 in
                try Task.checkCancellation()
                #expect(try await c2.get("cilium/state/ip/v1/default/10.2.0.1") != nil)
                #expect(try await c2.get("cilium/state/ip/v1/default/10.2.0.99") == nil)
            }
        }
    }

    @Test func foreignAndExpiredCertificatesAreRefused() async throws {
        try await LabFixture.with(clusters: 1, enable: false) { lab in
            let good = try lab.admin("cluster1")
            let foreignCA = try CertificateAuthority.create(commonName: "someone-else")
            let foreign = try foreignCA.issue(CertificateRequest(commonName: "root", usage: .client))
            let labCA = try CertificateAuthority(
                certificatePEM: String(contentsOfFile: lab.lab.caCertificatePath, encoding: .utf8),
                privateKeyPEM: String(contentsOfFile: lab.lab.caKeyPath, encoding: .utf8))
            let expired = try labCA.issue(CertificateRequest(
                commonName: "root", usage: .client, validity: .seconds(60), notBefore: Date().addingTimeInterval(-3600)))
            for (label, certificate) in [("foreign CA", foreign), ("expired", expired)] {
                var config = good
                config.tls?.certificatePEM = certificate.certificatePEM
                config.tls?.privateKeyPEM = certificate.privateKeyPEM
                config.requestTimeout = .seconds(2)
                await #expect(throws: EtcdError.self, "\(label) certificate must be refused") {
                    try await EtcdClient.withClient(config) { client in _ = try await client.get(KeyLayout.clusterSettings) }
                }
            }
            // A client that does not trust the server's CA refuses to talk to it.
            var wrongTrust = good
            wrongTrust.tls?.caPEM = foreignCA.certificatePEM
            wrongTrust.requestTimeout = .seconds(2)
            await #expect(throws: EtcdError.self) {
                try await EtcdClient.withClient(wrongTrust) { client in _ = try await client.get(KeyLayout.clusterSettings) }
            }
            // And the genuine administrator still works.
            try await EtcdClient.withClient(good) { client in
                try Task.checkCancellation()
                #expect(try await client.get(KeyLayout.clusterSettings) != nil)
            }
        }
    }

    @Test func privateKeysAreWrittenOwnerOnly() async throws {
        try await LabFixture.with(clusters: 1, enable: false) { lab in
            let paths = try lab.cluster("cluster1").paths
            for key in [paths.adminKey, paths.serverKey, paths.caKey, lab.lab.caKeyPath] {
                let mode = try #require(try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int)
                #expect(mode == 0o600, "\(key) has mode \(String(mode, radix: 8))")
            }
        }
    }

    @Test func badConnectsAreRefusedAndChangeNothing() async throws {
        try await LabFixture.with(clusters: 2, enable: false) { lab in
            // Not enabled yet.
            var result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("clustermesh is not enabled"))
            for name in ["cluster1", "cluster2"] {
                #expect(try await lab.meridian(["clustermesh", "enable", "--context", name, "--heartbeat-interval", "1"]).status == 0)
            }
            // Connecting a cluster to itself.
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster1"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("given twice"))
            // Bad mode.
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2", "--connection-mode", "sideways"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("--connection-mode"))

            // A third cluster with the same ID as cluster2, an overlapping pod CIDR, and its own CA.
            let ports = try FreePorts.reserve(3)
            let impostor = LabCluster(name: "impostor", id: 2, podCIDR: "10.1.128.0/17", serviceCIDR: "10.200.0.0/16",
                                      dataDirectory: lab.labDirectory + "/impostor", clientPort: ports[0], peerPort: ports[1], meshPort: ports[2])
            try await lab.lab.startControlPlane(impostor, sharedCA: false)
            try await lab.lab.waitUntilReady(impostor, timeout: .seconds(30))
            try await lab.addContext(impostor)
            #expect(try await lab.meridian(["clustermesh", "enable", "--context", "impostor"]).status == 0)
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "impostor", "--allow-mismatching-ca"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("pod CIDRs"))
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster2", "--destination-context", "impostor", "--allow-mismatching-ca"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("cluster ID 2"))
            // A cluster whose pods would live in cluster1's service CIDR (10.101.0.0/16).
            let shadowPorts = try FreePorts.reserve(3)
            let shadow = LabCluster(name: "shadow", id: 3, podCIDR: "10.101.128.0/17", serviceCIDR: "10.210.0.0/16",
                                    dataDirectory: lab.labDirectory + "/shadow", clientPort: shadowPorts[0], peerPort: shadowPorts[1], meshPort: shadowPorts[2])
            try await lab.lab.startControlPlane(shadow)
            try await lab.lab.waitUntilReady(shadow, timeout: .seconds(30))
            try await lab.addContext(shadow)
            #expect(try await lab.meridian(["clustermesh", "enable", "--context", "shadow"]).status == 0)
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "shadow"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("shadow's pod CIDR 10.101.128.0/17 overlaps cluster1's service CIDR 10.101.0.0/16"), "\(result.stderr)")
            await lab.lab.stopControlPlane(shadow)
            try await lab.withAdmin("cluster1") { c1 in
                try Task.checkCancellation()
                #expect(try await c1.count(prefix: KeyLayout.peersPrefix) == 0)
            }
            await lab.lab.stopControlPlane(impostor)
        }
    }

    @Test func mismatchingCAsNeedTheFlagAndThenWork() async throws {
        try await LabFixture.with(clusters: 1) { lab in
            let ports = try FreePorts.reserve(3)
            let other = LabCluster(name: "other", id: 7, podCIDR: "10.7.0.0/16", serviceCIDR: "10.107.0.0/16",
                                   dataDirectory: lab.labDirectory + "/other", clientPort: ports[0], peerPort: ports[1], meshPort: ports[2])
            try await lab.lab.startControlPlane(other, sharedCA: false)
            try await lab.lab.waitUntilReady(other, timeout: .seconds(30))
            try await lab.addContext(other)
            #expect(try await lab.meridian(["clustermesh", "enable", "--context", "other", "--heartbeat-interval", "1"]).status == 0)
            var result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "other"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("CAs differ"))
            result = try await lab.meridian(["clustermesh", "connect", "--context", "cluster1", "--destination-context", "other", "--allow-mismatching-ca"])
            #expect(result.status == 0, "\(result.stderr)")
            try await lab.waitReady("cluster1")
            try await lab.waitReady("other")
            await lab.lab.stopControlPlane(other)
        }
    }

    @Test func badManifestsAreRejectedWholeWithTheDocumentAndField() async throws {
        let aliasBomb = (1..<9).reduce("  l0: &l0 [" + Array(repeating: "lol", count: 9).joined(separator: ", ") + "]") { text, level in
            text + "\n  l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 9).joined(separator: ", ") + "]"
        }
        try await LabFixture.with(clusters: 1, enable: false) { lab in
            let cases: [(String, String)] = [
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Service\nmetadata: [oops\n", "document 2"),
                ("apiVersion: v1\nkind: Gadget\nmetadata:\n  name: a\n", "Gadget"),
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n    io.cilium/global-service: \"maybe\"\nspec:\n  ports:\n  - port: 80\n", "io.cilium/global-service"),
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\nspec:\n  ports:\n  - port: 80\n", "metadata.name"),
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: ok\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  ports:\n  - port: 70000\n", "spec.ports[0].port"),
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: c\n  namespace: nowhere\nspec:\n  ports:\n  - port: 80\n", "namespace \"nowhere\" not found"),
                ("apiVersion: v1\nkind: Service\nmetadata:\n  name: d\nspec:\n  ports:\n  - port: 80\n    targetport: 8080\n",
                 "spec.ports[0].targetport: unknown field \"targetport\" in ServicePort; did you mean \"targetPort\"?"),
                ("apiVersion: v1\nkind: Namespace\nmetadata: {name: e}\nstatus:\n" + aliasBomb, "more than 1000000 YAML nodes"),
                ((0...4096).map { "apiVersion: v1\nkind: Service\nmetadata: {name: s\($0)}\nspec: {ports: [{port: 80}]}" }.joined(separator: "\n---\n"),
                 "4097 objects are more than one apply can write"),
            ]
            for (manifest, expected) in cases {
                let result = try await lab.meridian(["apply", "--context", "cluster1", "-f", "-"], stdin: manifest)
                #expect(result.status != 0, "accepted: \(manifest)")
                #expect(result.stderr.contains(expected), "error for \(expected): \(result.stderr)")
            }
            try await lab.withAdmin("cluster1") { c1 in
                try Task.checkCancellation()
                #expect(try await c1.count(prefix: KeyLayout.resources(plural: "services")) == 0)
                #expect(try await c1.count(prefix: KeyLayout.serviceIPPrefix) == 0)
            }
            // A good multi-document apply creates a namespace and a service in it at once.
            let good = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n" + seedService.replacingOccurrences(of: "name: my-backend-service", with: "name: my-backend-service\n  namespace: shop")
            let result = try await lab.meridian(["apply", "--context", "cluster1", "-f", "-"], stdin: good)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("namespace/shop created"))
            #expect(result.stdout.contains("service/my-backend-service created"))
            let again = try await lab.meridian(["apply", "--context", "cluster1", "-f", "-"], stdin: good)
            #expect(again.stdout.contains("service/my-backend-service unchanged"))
            let get = try await lab.meridian(["get", "services", "--context", "cluster1", "-n", "shop", "-o", "json"])
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(get.stdout.utf8)) as? [[String: Any]])
            #expect(rows.count == 1)
            let ip = try #require(rows.first?["clusterIP"] as? String)
            #expect(ip.hasPrefix("10.101."))
            #expect(rows.first?["global"] as? Bool == true)
        }
    }
}

/// Invalid cluster identities are refused before anything is started or written.
@Suite struct ClusterIdentityFlagTests {
    @Test(arguments: [
        (["--cluster-name", "Bad_Name", "--cluster-id", "1"], "name"),
        (["--cluster-name", "default", "--cluster-id", "3"], "default"),
        (["--cluster-name", "c1", "--cluster-id", "0"], "ID"),
        (["--cluster-name", "c1", "--cluster-id", "256"], "256"),
        (["--cluster-name", String(repeating: "a", count: 33), "--cluster-id", "1"], "32"),
    ])
    func controlPlaneRefusesInvalidClusterIdentity(flags: [String], expected: String) async throws {
        let directory = "/tmp/meridian-test-flags-\(UUID().uuidString.prefix(8).lowercased())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = LabFixture(directory: directory)
        let result = try await fixture.meridian(["control-plane"] + flags + [
            "--pod-cidr", "10.1.0.0/16", "--service-cidr", "10.101.0.0/16", "--data-dir", directory + "/cp",
        ])
        #expect(result.status != 0)
        #expect(result.stderr.contains("invalid control-plane configuration"), "\(result.stderr)")
        #expect(result.stderr.localizedCaseInsensitiveContains(expected), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/cp/etcd"))
    }

    @Test func overlappingPodAndServiceCIDRsAreRefused() async throws {
        let directory = "/tmp/meridian-test-flags-\(UUID().uuidString.prefix(8).lowercased())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fixture = LabFixture(directory: directory)
        let result = try await fixture.meridian([
            "control-plane", "--cluster-name", "c1", "--cluster-id", "1", "--pod-cidr", "10.1.0.0/16",
            "--service-cidr", "10.1.200.0/24", "--data-dir", directory + "/cp",
        ])
        #expect(result.status != 0)
        #expect(result.stderr.contains("overlaps"))
    }
}
