import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianLab
import MeridianPKI
import MeridianStore
import MeridianTestSupport
import Testing

/// End-to-end behaviour of clustermesh with real etcd processes over mTLS and real control
/// planes, driven through the `meridian` CLI.
@Suite(.serialized)
struct ClusterMeshIntegrationTests {
    @Test func stateWrittenInEitherClusterShowsUpInTheOtherAndDeletesFollow() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.waitReady("cluster2")

            // Agents' records, written straight into each cluster's cilium/state.
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/nodes/v1/cluster2/node-a", StateFixtures.node(cluster: "cluster2", id: 2, name: "node-a", ip: "192.168.2.10", podCIDR: "10.2.1.0/24"))
                try await c2.put("cilium/state/ip/v1/default/10.2.1.5", StateFixtures.endpoint(ip: "10.2.1.5", identity: 131_073, hostIP: "192.168.2.10", pod: "backend-1"))
                try await c2.put("cilium/state/identities/v1/id/131073", StateFixtures.identityLabels(app: "backend", cluster: "cluster2"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await c1.put("cilium/state/ip/v1/default/10.1.1.7", StateFixtures.endpoint(ip: "10.1.1.7", identity: 65_537, hostIP: "192.168.1.10", pod: "client"))
            }
            let apply = try await lab.meridian(["apply", "--context", "cluster2", "-f", "-"], stdin: seedService)
            #expect(apply.status == 0, "\(apply.stderr)")

            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("cluster2's node, endpoint, identity and service in cluster1's cache") {
                    let node = try await c1.get("cilium/cache/nodes/v1/cluster2/node-a")
                    let endpoint = try await c1.get("cilium/cache/ip/v1/cluster2/10.2.1.5")
                    let identity = try await c1.get("cilium/cache/identities/v1/cluster2/id/131073")
                    let service = try await c1.get("cilium/cache/services/v1/cluster2/default/my-backend-service")
                    return node != nil && endpoint != nil && identity?.stringValue.contains("app=backend") == true && service != nil
                }
                let service = try #require(try await c1.get("cilium/cache/services/v1/cluster2/default/my-backend-service"))
                let json = try #require(try JSONSerialization.jsonObject(with: service.value) as? [String: Any])
                #expect(json["cluster"] as? String == "cluster2")
                #expect(json["clusterID"] as? Int == 2)
                #expect(json["shared"] as? Bool == true)
                #expect(json["includeExternal"] as? Bool == true)
                let frontends = try #require(json["frontends"] as? [String: [String: [String: Any]]])
                let ports = try #require(frontends.values.first?[""])
                #expect(ports["Protocol"] as? String == "TCP")
                #expect(ports["Port"] as? Int == 80)
            }
            try await lab.withAdmin("cluster2") { c2 in
                try await eventually("cluster1's endpoint in cluster2's cache") {
                    try await c2.get("cilium/cache/ip/v1/cluster1/10.1.1.7") != nil
                }
            }

            // Update and delete propagate.
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.1.5", StateFixtures.endpoint(ip: "10.2.1.5", identity: 131_074, hostIP: "192.168.2.10", pod: "backend-1"))
                try await c2.delete("cilium/state/nodes/v1/cluster2/node-a")
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("update and delete reach cluster1") {
                    let endpoint = try await c1.get("cilium/cache/ip/v1/cluster2/10.2.1.5")
                    let node = try await c1.get("cilium/cache/nodes/v1/cluster2/node-a")
                    return endpoint?.stringValue.contains("131074") == true && node == nil
                }
            }

            // The CLI shows both clusters' records with a CLUSTER column.
            let endpoints = try await lab.meridian(["get", "endpoints", "--context", "cluster1", "--all-clusters"])
            #expect(endpoints.stdout.contains("cluster1") && endpoints.stdout.contains("10.1.1.7"))
            #expect(endpoints.stdout.contains("cluster2") && endpoints.stdout.contains("10.2.1.5"))
            let local = try await lab.meridian(["get", "endpoints", "--context", "cluster1"])
            #expect(!local.stdout.contains("10.2.1.5"))
            let services = try await lab.meridian(["get", "services", "--context", "cluster1", "--all-clusters"])
            #expect(services.stdout.contains("my-backend-service"))

            // The status is published periodically, so it catches up with the cache shortly after.
            try await eventually("status counts match the cache") {
                let status = try await lab.status("cluster1")
                let remotes = try #require(status["remoteClusters"] as? [[String: Any]])
                let counts = try #require(remotes.first?["counts"] as? [String: Int])
                return counts["endpoints"] == 1 && counts["identities"] == 1 && counts["services"] == 1 && counts["nodes"] == 0
            }

            // Deleting the Service withdraws its export everywhere.
            let delete = try await lab.meridian(["delete", "service", "my-backend-service", "--context", "cluster2"])
            #expect(delete.status == 0)
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("service withdrawn from cluster1's cache") {
                    try await c1.get("cilium/cache/services/v1/cluster2/default/my-backend-service") == nil
                }
            }
        }
    }

    @Test func recordsNotBelongingToTheRemoteAreRejectedAndCounted() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                // Identity 65537 belongs to cluster 1, not to cluster 2.
                try await c2.put("cilium/state/ip/v1/default/10.2.9.9", StateFixtures.endpoint(ip: "10.2.9.9", identity: 65_537, hostIP: "192.168.2.10", pod: "impostor"))
                // A node claiming to be cluster1's, published by cluster2.
                try await c2.put("cilium/state/nodes/v1/cluster2/liar", StateFixtures.node(cluster: "cluster1", id: 1, name: "liar", ip: "192.168.2.11", podCIDR: "10.1.9.0/24"))
                try await c2.put("cilium/state/ip/v1/default/10.2.9.10", StateFixtures.endpoint(ip: "10.2.9.10", identity: 131_080, hostIP: "192.168.2.10", pod: "honest"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("the honest endpoint arrives") { try await c1.get("cilium/cache/ip/v1/cluster2/10.2.9.10") != nil }
                #expect(try await c1.get("cilium/cache/ip/v1/cluster2/10.2.9.9") == nil)
                #expect(try await c1.get("cilium/cache/nodes/v1/cluster2/liar") == nil)
            }
            try await eventually("one endpoint and one node counted as rejected") {
                let status = try await lab.status("cluster1")
                let rejected = (status["remoteClusters"] as? [[String: Any]])?.first?["rejected"] as? [String: Int]
                return rejected?["endpoints"] == 1 && rejected?["nodes"] == 1
            }
        }
    }

    @Test func restartedImporterSweepsEntriesDeletedWhileItWasAway() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                for i in 1...3 {
                    try await c2.put("cilium/state/ip/v1/default/10.2.0.\(i)", StateFixtures.endpoint(ip: "10.2.0.\(i)", identity: 131_073, hostIP: "192.168.2.10", pod: "p\(i)"))
                }
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("three endpoints cached") { try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 3 }
            }
            // cluster1's control plane goes away; cluster2 deletes two endpoints meanwhile.
            let cluster1 = try lab.cluster("cluster1")
            if let pid = Int32((try? String(contentsOfFile: cluster1.paths.pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") {
                kill(pid, SIGKILL)
            }
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.delete("cilium/state/ip/v1/default/10.2.0.1")
                try await c2.delete("cilium/state/ip/v1/default/10.2.0.2")
                try await c2.put("cilium/state/ip/v1/default/10.2.0.4", StateFixtures.endpoint(ip: "10.2.0.4", identity: 131_073, hostIP: "192.168.2.10", pod: "p4"))
            }
            await lab.lab.stopControlPlane(cluster1)
            try await lab.lab.startControlPlane(cluster1)
            try await lab.lab.waitUntilReady(cluster1, timeout: .seconds(30))
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster1") { c1 in
                let keys = try await c1.list(prefix: "cilium/cache/ip/v1/cluster2/").items.map(\.key).sorted()
                #expect(keys == ["cilium/cache/ip/v1/cluster2/10.2.0.3", "cilium/cache/ip/v1/cluster2/10.2.0.4"])
            }
        }
    }

    @Test func aStalledLocalStoreDoesNotCountAsAFailureOfTheRemote() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let cluster1 = try lab.cluster("cluster1")
            let etcd = try #require(Int32((try String(contentsOfFile: cluster1.paths.etcdData + ".pid", encoding: .utf8))
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            // cluster1's etcd freezes for longer than a request may take (5 s) while cluster2 changes.
            #expect(kill(etcd, SIGSTOP) == 0)
            defer { kill(etcd, SIGCONT) }
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.9", StateFixtures.endpoint(ip: "10.2.0.9", identity: 131_073, hostIP: "192.168.2.10", pod: "p9"))
            }
            try await Task.sleep(for: .seconds(7))
            #expect(kill(etcd, SIGCONT) == 0)
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("the endpoint written during the stall is cached") {
                    try await c1.get("cilium/cache/ip/v1/cluster2/10.2.0.9") != nil
                }
                try await eventually("the status shows the retried write") {
                    let status = try await c1.get(KeyLayout.remoteStatus("cluster2")).map {
                        try StoreCoding.decode(RemoteClusterStatus.self, from: $0.value, key: $0.key)
                    }
                    return (status?.localStoreRetries ?? 0) >= 1
                }
                let status = try #require(try await c1.get(KeyLayout.remoteStatus("cluster2")).map {
                    try StoreCoding.decode(RemoteClusterStatus.self, from: $0.value, key: $0.key)
                })
                #expect(status.numFailures == 0, "the connection to cluster2 was not torn down: \(status.lastError ?? "")")
                #expect(status.ready)
            }
        }
    }

    @Test func peerRestartIsSurvivedAndItsDeletionsAreSeen() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
                try await c2.put("cilium/state/ip/v1/default/10.2.0.2", StateFixtures.endpoint(ip: "10.2.0.2", identity: 131_073, hostIP: "192.168.2.10", pod: "p2"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("two endpoints cached") { try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 2 }
            }
            // Stop cluster2 entirely (control plane and its etcd), then bring it back.
            let cluster2 = try lab.cluster("cluster2")
            await lab.lab.stopControlPlane(cluster2)
            try await eventually("cluster1 notices cluster2 is gone", timeout: .seconds(15)) {
                let status = try await lab.status("cluster1")
                let remote = (status["remoteClusters"] as? [[String: Any]])?.first
                return remote?["connected"] as? Bool == false
            }
            // Last-known data is kept while the peer is unreachable (no cache TTL set).
            try await lab.withAdmin("cluster1") { c1 in
                try Task.checkCancellation()
                #expect(try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 2)
            }
            try await lab.lab.startControlPlane(cluster2)
            try await lab.lab.waitUntilReady(cluster2, timeout: .seconds(30))
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.delete("cilium/state/ip/v1/default/10.2.0.1")
            }
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("deletion made after the restart is seen") {
                    try await c1.list(prefix: "cilium/cache/ip/v1/cluster2/").items.map(\.key) == ["cilium/cache/ip/v1/cluster2/10.2.0.2"]
                }
            }
            let status = try await lab.status("cluster1")
            let remote = try #require((status["remoteClusters"] as? [[String: Any]])?.first)
            #expect((remote["numFailures"] as? Int ?? 0) >= 1)
        }
    }

    @Test func disconnectDrainsBothSides() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.waitReady("cluster2")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("endpoint cached") { try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 1 }
            }
            let result = try await lab.meridian(["clustermesh", "disconnect", "--context", "cluster1", "--destination-context", "cluster2"])
            #expect(result.status == 0, "\(result.stderr)")
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("cluster2's data drained from cluster1") {
                    let cached = try await c1.count(prefix: "cilium/cache/")
                    let config = try await c1.get("cilium/cluster-config/cluster2")
                    let canaries = try await c1.count(prefix: "cilium/synced/cluster2/")
                    return cached == 0 && config == nil && canaries == 0
                }
            }
            try await lab.withAdmin("cluster2") { c2 in
                try await eventually("cluster1's data drained from cluster2") { try await c2.count(prefix: "cilium/cache/") == 0 }
            }
            let status = try await lab.status("cluster1")
            #expect((status["remoteClusters"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func disconnectWhileTheImporterIsDownIsDrainedWhenItReturns() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"], extra: ["--connection-mode", "unicast"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("endpoint cached") { try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 1 }
            }
            // The control plane crashes; its etcd lives on, and the user disconnects meanwhile.
            let cluster1 = try lab.cluster("cluster1")
            let pid = try #require(Int32((try String(contentsOfFile: cluster1.paths.pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
            kill(pid, SIGKILL)
            let result = try await lab.meridian(["clustermesh", "disconnect", "--context", "cluster1", "--destination-context", "cluster2", "--connection-mode", "unicast"])
            #expect(result.status == 0, "\(result.stderr)")
            try await lab.withAdmin("cluster1") { c1 in
                try Task.checkCancellation()
                #expect(try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 1)
            }
            await lab.lab.stopControlPlane(cluster1)
            try await lab.lab.startControlPlane(cluster1)
            try await lab.lab.waitUntilReady(cluster1, timeout: .seconds(30))
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("the former peer's data is drained on start") {
                    let cached = try await c1.count(prefix: "cilium/cache/")
                    let config = try await c1.get("cilium/cluster-config/cluster2")
                    return cached == 0 && config == nil
                }
            }
        }
    }

    @Test func statusWaitTimesOutOnAnUnreachablePeer() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"], extra: ["--connection-mode", "unicast"])
            try await lab.waitReady("cluster1")
            await lab.lab.stopControlPlane(try lab.cluster("cluster2"))
            try await eventually("cluster1 sees cluster2 down") {
                let status = try await lab.status("cluster1")
                return ((status["remoteClusters"] as? [[String: Any]])?.first?["ready"] as? Bool) == false
            }
            let result = try await lab.meridian(["clustermesh", "status", "--context", "cluster1", "--wait", "--wait-duration", "2s"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("timed out"))
            #expect(result.stdout.contains("not connected"))
        }
    }

    @Test func threeClustersInMeshModeSeeEachOther() async throws {
        try await LabFixture.with(clusters: 3) { lab in
            try await lab.connect("cluster1", ["cluster2", "cluster3"], extra: ["--connection-mode", "mesh"])
            for index in 1...3 {
                try await lab.withAdmin("cluster\(index)") { client in
                    let identity = UInt32(index) << 16 | 5
                    try await client.put("cilium/state/identities/v1/id/\(identity)", StateFixtures.identityLabels(app: "web", cluster: "cluster\(index)"))
                }
            }
            for index in 1...3 {
                try await lab.waitReady("cluster\(index)")
                let status = try await lab.status("cluster\(index)")
                let summary = try #require(status["summary"] as? [String: Int])
                #expect(summary["configured"] == 2 && summary["ready"] == 2)
                try await lab.withAdmin("cluster\(index)") { client in
                    try await eventually("cluster\(index) caches both peers' identities") {
                        try await client.count(prefix: "cilium/cache/identities/v1/") == 2
                    }
                }
            }
        }
    }

    @Test func cacheTTLWithdrawsAnUnreachableClusterAfterItExpires() async throws {
        try await LabFixture.with(clusters: 2) { lab in
            let enable = try await lab.meridian(["clustermesh", "enable", "--context", "cluster1", "--heartbeat-interval", "1", "--cache-ttl", "2"])
            #expect(enable.status == 0)
            try await lab.connect("cluster1", ["cluster2"], extra: ["--connection-mode", "unicast"])
            try await lab.waitReady("cluster1")
            try await lab.withAdmin("cluster2") { c2 in
                try await c2.put("cilium/state/ip/v1/default/10.2.0.1", StateFixtures.endpoint(ip: "10.2.0.1", identity: 131_073, hostIP: "192.168.2.10", pod: "p1"))
            }
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("endpoint cached") { try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 1 }
            }
            await lab.lab.stopControlPlane(try lab.cluster("cluster2"))
            try await lab.withAdmin("cluster1") { c1 in
                try await eventually("data withdrawn after the TTL", timeout: .seconds(30)) {
                    try await c1.count(prefix: "cilium/cache/ip/v1/cluster2/") == 0
                }
            }
        }
    }
}

/// The seed walkthrough's Service manifest, verbatim, from `examples/`.
let seedService: String = {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return (try? String(contentsOf: root.appendingPathComponent("examples/global-service.yaml"), encoding: .utf8)) ?? ""
}()
