import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianLab
import MeridianPKI
import MeridianStore
import MeridianTestSupport
import Testing

/// What a peer cluster can reach: with the credential `clustermesh connect` issued, exactly the
/// exported keys of the cluster that issued it, read through its mesh endpoint, and no other call
/// anywhere; no certificate of one cluster is accepted by another cluster's etcd; `disconnect`
/// revokes at once. Every call is tried with real etcdctl against a real two-cluster lab.
@Suite(.serialized)
struct PeerSurfaceTests {
    /// cluster1's credential for reading cluster2, as files etcdctl can use.
    struct PeerFiles {
        var record: PeerRecord
        var directory: String
        var ca: String { directory + "/ca.crt" }
        var certificate: String { directory + "/peer.crt" }
        var key: String { directory + "/peer.key" }

        func etcdctl(endpoint: String? = nil) -> [String] {
            ["etcdctl", "--endpoints", endpoint ?? record.endpoints[0], "--cacert", ca, "--cert", certificate, "--key", key,
             "--dial-timeout", "2s", "--command-timeout", "4s"]
        }

        var configuration: EtcdClientConfiguration {
            get throws {
                EtcdClientConfiguration(
                    endpoint: try EtcdEndpoint(url: record.endpoints[0]),
                    tls: EtcdTLS(caPEM: record.caPEM, certificatePEM: record.certificatePEM, privateKeyPEM: record.privateKeyPEM,
                                 serverName: record.serverName),
                    requestTimeout: .seconds(3), maxReconnectBackoff: .milliseconds(300))
            }
        }
    }

    static func peerFiles(_ lab: LabFixture, reader: String, exporter: String, tag: String = "") async throws -> PeerFiles {
        let stored = try await lab.withAdmin(reader) { client in try #require(try await client.get(KeyLayout.peer(exporter))) }
        let record = try StoreCoding.decode(PeerRecord.self, from: stored.value, key: stored.key)
        let files = PeerFiles(record: record, directory: "\(lab.labDirectory)/peer-\(reader)-\(exporter)\(tag)")
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        try PEMFiles.writeCertificate(record.caPEM, to: files.ca)
        try PEMFiles.write(certificatePEM: record.certificatePEM, to: files.certificate, privateKeyPEM: record.privateKeyPEM, to: files.key)
        return files
    }

    /// Reads a peer may make of cluster2, through its mesh endpoint.
    static let allowedReads: [(name: String, arguments: [String])] = [
        ("get the heartbeat", ["get", "cilium/.heartbeat"]),
        ("get the exported state", ["get", "--prefix", "cilium/state/"]),
        ("get the exported state, keys only, with a limit", ["get", "--prefix", "--keys-only", "--limit", "2", "cilium/state/"]),
        ("get the exporter's cluster config", ["get", "cilium/cluster-config/cluster2"]),
        ("get the exporter's sync canaries", ["get", "--prefix", "cilium/synced/cluster2/"]),
    ]

    /// Every other call, with what the refusal must say.
    static let refusedCalls: [(name: String, arguments: [String], says: String)] = [
        ("get the cluster settings", ["get", "meridian/cluster/settings"], "outside-export"),
        ("get every meridian key", ["get", "--prefix", "meridian/"], "outside-export"),
        ("get the peer credentials", ["get", "--prefix", "meridian/clustermesh/"], "outside-export"),
        ("get the retired CA key", ["get", "meridian/secrets/ca"], "outside-export"),
        ("get the import cache", ["get", "--prefix", "cilium/cache/"], "outside-export"),
        ("get every cilium key", ["get", "--prefix", "cilium/"], "outside-export"),
        ("get every key from the first", ["get", "--from-key", "a"], "outside-export"),
        ("get a range that starts inside the export and leaves it", ["get", "cilium/state/", "meridian/"], "outside-export"),
        ("get another cluster's config", ["get", "cilium/cluster-config/cluster1"], "outside-export"),
        ("put into the exported state", ["put", "cilium/state/ip/v1/default/10.2.9.9", "{}"], "read-only"),
        ("put the heartbeat", ["put", "cilium/.heartbeat", "forged"], "read-only"),
        ("delete the exported state", ["del", "--prefix", "cilium/state/"], "read-only"),
        ("delete every key", ["del", "--from-key", "a"], "read-only"),
        ("compact", ["compaction", "1"], "read-only"),
        ("grant a lease", ["lease", "grant", "60"], "Unimplemented"),
        ("revoke a lease", ["lease", "revoke", "1234"], "Unimplemented"),
        ("list a lease's keys", ["lease", "timetolive", "1234", "--keys"], "Unimplemented"),
        ("list leases", ["lease", "list"], "Unimplemented"),
        ("keep a lease alive", ["lease", "keep-alive", "--once", "1234"], "Unimplemented"),
        ("list alarms", ["alarm", "list"], "Unimplemented"),
        ("disarm alarms", ["alarm", "disarm"], "Unimplemented"),
        ("defragment", ["defrag"], "Unimplemented"),
        ("read the endpoint status", ["endpoint", "status"], "Unimplemented"),
        ("hash the store", ["endpoint", "hashkv"], "Unimplemented"),
        ("move the leader", ["move-leader", "1"], "Unimplemented"),
        ("list members", ["member", "list"], "Unimplemented"),
        ("add a member", ["member", "add", "intruder", "--peer-urls", "https://127.0.0.1:1"], "Unimplemented"),
        ("remove a member", ["member", "remove", "1234"], "Unimplemented"),
        ("update a member", ["member", "update", "1234", "--peer-urls", "https://127.0.0.1:1"], "Unimplemented"),
        ("enable auth", ["auth", "enable"], "Unimplemented"),
        ("disable auth", ["auth", "disable"], "Unimplemented"),
        ("list users", ["user", "list"], "Unimplemented"),
        ("add a user", ["user", "add", "intruder:secret"], "Unimplemented"),
        ("grant a role", ["user", "grant-role", "intruder", "root"], "Unimplemented"),
        ("list roles", ["role", "list"], "Unimplemented"),
        ("add a role", ["role", "add", "intruder"], "Unimplemented"),
    ]

    @Test func thePeerCredentialReadsTheExportAndEveryOtherCallIsRefused() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let peer = try await Self.peerFiles(lab, reader: "cluster1", exporter: "cluster2")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
            }

            for read in Self.allowedReads {
                let result = try await lab.host(peer.etcdctl() + read.arguments)
                #expect(result.status == 0, "\(read.name): \(result.output)")
            }
            let state = try await lab.host(peer.etcdctl() + ["get", "--prefix", "cilium/state/", "--keys-only"])
            #expect(state.stdout.contains("cilium/state/"), "the export reads as keys: \(state.output)")

            for call in Self.refusedCalls {
                let result = try await lab.host(peer.etcdctl() + call.arguments)
                #expect(result.status != 0, "\(call.name) was not refused: \(result.output)")
                #expect(result.output.contains(call.says), "\(call.name) should be refused with \(call.says): \(result.output)")
            }
            for (name, prefix) in [("watch meridian/", "meridian/"), ("watch every key", "")] {
                let result = try await lab.host(["timeout", "10"] + peer.etcdctl() + ["watch", "--prefix", prefix])
                #expect(result.status != 0 && result.status != 124, "\(name) was not refused: status \(result.status) \(result.output)")
                #expect(result.output.contains("outside-export"), "\(name): \(result.output)")
            }
            // On one stream: a second watch outside the export ends the stream; past the live-watch
            // limit the stream ends too.
            let second = try await lab.host(["bash", "-c", "(printf 'watch cilium/.heartbeat\\nwatch --prefix meridian/\\n'; sleep 5) | timeout 10 "
                                                           + peer.etcdctl().joined(separator: " ") + " watch -i"])
            #expect(second.output.contains("outside-export"), "a second watch outside the export on one stream: \(second.output)")
            let many = try await lab.host(["bash", "-c", "(for i in $(seq 70); do echo 'watch cilium/.heartbeat'; done; sleep 5) | timeout 10 "
                                                         + peer.etcdctl().joined(separator: " ") + " watch -i"])
            #expect(many.output.contains("too-many-watches"), "70 watches on one stream: \(many.output.suffix(500))")
            try await EtcdClient.withClient(try peer.configuration) { remote in
                await #expect(throws: EtcdError.self, "raising the NOSPACE alarm") { try await remote.alarm(.activate, .noSpace) }
                await #expect(throws: EtcdError.self, "reads of the keys below \\0") { _ = try await remote.list(prefix: "\u{0}") }
            }

            // The refusals are counted per peer and reason and shown by the exporter's status.
            try await eventually("cluster2's status counts the refusals", timeout: .seconds(10)) {
                let status = try await lab.status("cluster2")
                let refusals = (status["meshEndpoint"] as? [String: Any])?["refusals"] as? [String: [String: Int]]
                return (refusals?["cluster1"]?["read-only"] ?? 0) >= 5 && (refusals?["cluster1"]?["outside-export"] ?? 0) >= 9
            }
            let text = try await lab.meridian(["clustermesh", "status", "--context", "cluster2"])
            #expect(text.stdout.contains("Mesh endpoint:") && text.stdout.contains("cluster1: "), "\(text.stdout)")
            #expect(text.stdout.contains("Exported to: cluster1 (credential until"), "\(text.stdout)")

            // cluster2's store is as it was: writable, no alarm, auth on, one member, nothing deleted.
            try await lab.withAdmin("cluster2") { c2 in
                try Task.checkCancellation()
                #expect(try await c2.alarms().isEmpty)
                #expect(try await c2.get("cilium/state/ip/v1/default/10.2.0.1") != nil, "the exported entry is still there")
                #expect(try await c2.get("cilium/state/ip/v1/default/10.2.9.9") == nil, "nothing was written")
                #expect(try await c2.get(KeyLayout.clusterSettings) != nil)
                #expect(try await c2.get(KeyLayout.heartbeat) != nil)
                try await c2.put("meridian/test/writable", "yes")
            }
            // Without a client certificate neither of cluster2's etcd listeners answers anything.
            let cluster2 = try lab.cluster("cluster2")
            let noCertificate = try await lab.host(["etcdctl", "--endpoints", cluster2.endpoint, "--cacert", cluster2.paths.caCertificate,
                                                    "--dial-timeout", "2s", "get", "cilium/.heartbeat"])
            #expect(noCertificate.status != 0, "client port without a certificate: \(noCertificate.output)")
            let request = "GET /version HTTP/1.0\\r\\n\\r\\n"
            let plain = try await lab.host(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/\(cluster2.peerPort); printf '\(request)' >&3; timeout 3 cat <&3"])
            let tls = try await lab.host(["bash", "-c", "printf '\(request)' | timeout 3 openssl s_client -quiet -connect 127.0.0.1:\(cluster2.peerPort) 2>&1"])
            for (name, answer) in [("plain HTTP", plain), ("TLS without a certificate", tls)] {
                #expect(!answer.output.contains("etcdserver") && !answer.output.contains("etcdcluster"),
                        "the peer port answered \(name): \(answer.output)")
            }
            #expect(tls.output.contains("alert") || tls.output.contains("error"), "the TLS handshake without a certificate: \(tls.output)")
        }
    }

    @Test func noCertificateOfOneClusterIsAcceptedByAnotherClustersStore() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            let peer = try await Self.peerFiles(lab, reader: "cluster1", exporter: "cluster2")
            let cluster1 = try lab.cluster("cluster1")
            let cluster2 = try lab.cluster("cluster2")
            // The peer credential against cluster2's etcd itself (TCP and its unix socket).
            // (Trusting cluster2's store CA, so that etcd, not the client, decides.)
            for endpoint in [cluster2.endpoint, "unixs://\(cluster2.paths.etcdSocket)"] {
                let result = try await lab.host(["etcdctl", "--endpoints", endpoint, "--cacert", cluster2.paths.caCertificate,
                                                 "--cert", peer.certificate, "--key", peer.key, "--dial-timeout", "2s", "--command-timeout", "3s",
                                                 "get", "cilium/.heartbeat"])
                #expect(result.status != 0, "the peer credential reached cluster2's etcd at \(endpoint): \(result.output)")
            }
            // cluster2's administrator and agent certificates against cluster1's etcd.
            for (role, certificate, key) in [("admin", cluster2.paths.adminCertificate, cluster2.paths.adminKey),
                                             ("agent", cluster2.paths.agentCertificate, cluster2.paths.agentKey)] {
                let result = try await lab.host(["etcdctl", "--endpoints", cluster1.endpoint, "--cacert", cluster1.paths.caCertificate,
                                                 "--cert", certificate, "--key", key, "--dial-timeout", "2s", "--command-timeout", "3s",
                                                 "get", "meridian/cluster/settings"])
                #expect(result.status != 0, "cluster2's \(role) certificate was accepted by cluster1's etcd: \(result.output)")
            }
            // The store user the mesh endpoint relays as may read the export and nothing else.
            func relayRead(_ arguments: [String]) async throws -> LabDriver.Result {
                try await lab.host(["etcdctl", "--endpoints", cluster2.endpoint, "--cacert", cluster2.paths.caCertificate,
                                    "--cert", cluster2.paths.meshRelayCertificate, "--key", cluster2.paths.meshRelayKey,
                                    "--dial-timeout", "2s", "--command-timeout", "3s"] + arguments)
            }
            #expect(try await relayRead(["get", "cilium/.heartbeat"]).status == 0)
            for refused in [["get", "meridian/cluster/settings"], ["get", "--prefix", "meridian/"], ["put", "cilium/.heartbeat", "x"]] {
                let result = try await relayRead(refused)
                #expect(result.status != 0 && result.output.contains("permission denied"), "the relay user: \(refused): \(result.output)")
            }

            // A certificate the shared mesh CA signed for the same CN, but not issued for a grant.
            let meshCA = try CertificateAuthority(
                certificatePEM: String(contentsOfFile: lab.lab.caCertificatePath, encoding: .utf8),
                privateKeyPEM: String(contentsOfFile: lab.lab.caKeyPath, encoding: .utf8))
            let forged = try meshCA.issue(CertificateRequest(commonName: ClusterAccess.remoteUser(peer: "cluster1"), usage: .client))
            try PEMFiles.write(certificatePEM: forged.certificatePEM, to: peer.directory + "/forged.crt",
                               privateKeyPEM: forged.privateKeyPEM, to: peer.directory + "/forged.key")
            let forgedRead = try await lab.host(["etcdctl", "--endpoints", peer.record.endpoints[0], "--cacert", peer.ca,
                                                 "--cert", peer.directory + "/forged.crt", "--key", peer.directory + "/forged.key",
                                                 "--dial-timeout", "2s", "--command-timeout", "3s", "get", "cilium/.heartbeat"])
            #expect(forgedRead.status != 0 && forgedRead.output.contains("unknown-credential"), "\(forgedRead.output)")
            // cluster1's own administrator still works against its own etcd.
            try await lab.withAdmin("cluster1") { c1 in
                try Task.checkCancellation()
                #expect(try await c1.get(KeyLayout.clusterSettings) != nil)
            }
        }
    }

    @Test func disconnectRevokesAtOnceAndReconnectingIssuesANewCredential() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let old = try await Self.peerFiles(lab, reader: "cluster1", exporter: "cluster2", tag: "-old")
            try await EtcdClient.withClient(try old.configuration) { remote in
                try Task.checkCancellation()
                #expect(try await remote.get(KeyLayout.heartbeat) != nil)
                // An open watch ends when the credential is revoked.
                let ended = try await withThrowingTaskGroup { group in
                    group.addTask {
                        do {
                            try await remote.watch(prefix: KeyLayout.statePrefix, startRevision: 0) { _, _ in }
                            return "ended without an error"
                        } catch {
                            return "\(error)"
                        }
                    }
                    try await Task.sleep(for: .milliseconds(500))
                    let result = try await lab.meridian(["clustermesh", "disconnect", "--context", "cluster1", "--destination-context", "cluster2"])
                    #expect(result.status == 0, "\(result.stderr)")
                    group.addTask { try await Task.sleep(for: .seconds(10)); return "still open 10 s after disconnect" }
                    defer { group.cancelAll() }
                    return try await group.next() ?? ""
                }
                #expect(ended.contains("revoked"), "the open watch: \(ended)")
                await #expect(throws: EtcdError.self, "the revoked credential still reads") { _ = try await remote.get(KeyLayout.heartbeat) }
            }
            try await lab.connect("cluster1", ["cluster2"])
            let renewed = try await Self.peerFiles(lab, reader: "cluster1", exporter: "cluster2", tag: "-new")
            #expect(renewed.record.certificatePEM != old.record.certificatePEM)
            let oldRead = try await lab.host(old.etcdctl() + ["get", "cilium/.heartbeat"])
            #expect(oldRead.status != 0 && oldRead.output.contains("unknown-credential"), "old credential after reconnect: \(oldRead.output)")
            let newRead = try await lab.host(renewed.etcdctl() + ["get", "cilium/.heartbeat"])
            #expect(newRead.status == 0, "\(newRead.output)")
            let lifetime = try CertificateInspection.notAfter(ofCertificatePEM: renewed.record.certificatePEM).timeIntervalSinceNow
            #expect(lifetime <= Double(PeerGrant.defaultValiditySeconds) + 5 && lifetime > Double(PeerGrant.defaultValiditySeconds) - 3600)
            try await lab.waitReady("cluster1")
        }
    }
}
