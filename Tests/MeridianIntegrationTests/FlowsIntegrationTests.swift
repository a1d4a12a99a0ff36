import Foundation
import Glibc
import MeridianControlPlane
import MeridianHost
import MeridianLab
import Testing

/// `meridian observe` on two meshed clusters: flows are read from every node through each
/// cluster's relay, named from local and imported records, with verdicts, drop reasons and the
/// service a call went through; the flows-only credential reads flows and opens nothing else.
@Suite("Flows across clusters", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct FlowsIntegrationTests {
    /// cluster1's client and cluster2's server (an echo server labelled app=server) on node1 of
    /// each, once the client reaches the server; returns the `meridian` arguments of that call.
    static func clientAndServer(_ lab: LabFixture) async throws -> [String] {
        try await lab.apply(DatapathIntegrationTests.pod("server", node: "node1", labels: ["app": "server"]), context: "cluster2")
        try await lab.apply(DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper), context: "cluster1")
        let server = try #require(try await lab.waitRunning(["server"], context: "cluster2")["server"]?.ip)
        try await lab.waitRunning(["client"], context: "cluster1")
        let call = ["exec", "--context", "cluster1", "client", "--", "curl", "-s", "-m", "2", "-o", "/dev/null", "http://\(server):8080/"]
        try await eventually("the client reaches cluster2's server", timeout: .seconds(40)) { try await lab.meridian(call).status == 0 }
        return call
    }

    /// The flows `observe -o json` prints, each line decoded.
    static func flows(_ lab: LabFixture, _ arguments: [String]) async throws -> [[String: Any]] {
        let result = try await lab.meridian(["observe", "-o", "json"] + arguments)
        try #require(result.status == 0, "observe \(arguments) failed: \(result.stderr)")
        return try result.stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }.compactMap { $0["flow"] as? [String: Any] }
    }

    static func side(_ flow: [String: Any], _ key: String) -> [String: Any] { flow[key] as? [String: Any] ?? [:] }

    @Test("an allowed call across clusters is FORWARDED, a denied one DROPPED by policy with both pods named, a service call names the service and the backend's cluster; the flows credential reads flows only")
    func observeAcrossClusters() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.waitReady("cluster2")
            for cluster in ["cluster1", "cluster2"] {
                try await lab.apply(CrossClusterIntegrationTests.globalBackend, context: cluster)
            }
            let call = try await Self.clientAndServer(lab)

            // Allowed: seen on cluster1's node leaving the client, both pods named.
            var forwarded: [String: Any]?
            try await eventually("a FORWARDED flow from client to server in cluster1's flows") {
                forwarded = try await Self.flows(lab, ["--context", "cluster1", "--from-pod", "default/client", "--to-pod", "default/server", "--last", "50"])
                    .first { $0["verdict"] as? String == "FORWARDED" }
                return forwarded != nil
            }
            let allowed = try #require(forwarded)
            #expect(Self.side(allowed, "source")["cluster_name"] as? String == "cluster1")
            #expect(Self.side(allowed, "destination")["cluster_name"] as? String == "cluster2", "the server is named from imported records: \(allowed)")
            #expect(Self.side(allowed, "destination")["pod_name"] as? String == "server")
            #expect(allowed["traffic_direction"] as? String == "EGRESS")

            // Denied: dropped by cluster2's node on the way into the server; read from cluster1's
            // context with --all-clusters, the client named from cluster2's imported records.
            try await lab.apply(MetricsIntegrationTests.denyIngress, context: "cluster2")
            try await eventually("the call is denied once the policy is programmed") { try await lab.meridian(call).status != 0 }
            var dropped: [String: Any]?
            try await eventually("a DROPPED flow by policy in the flows of all clusters") {
                _ = try? await lab.meridian(call)
                dropped = try await Self.flows(lab, ["--context", "cluster1", "--all-clusters", "--verdict", "DROPPED", "--to-pod", "default/server",
                                                     "--type", "policy-verdict", "--last", "20"]).last
                return dropped != nil
            }
            let denied = try #require(dropped)
            #expect(denied["drop_reason_desc"] as? String == "POLICY_DENIED")
            #expect(Self.side(denied, "source")["pod_name"] as? String == "client")
            #expect(Self.side(denied, "source")["cluster_name"] as? String == "cluster1", "the client is named from cluster2's imported records: \(denied)")
            #expect(Self.side(denied, "destination")["cluster_name"] as? String == "cluster2")
            #expect((denied["policy_verdict"] as? [String: Any])?["direction"] as? String == "INGRESS")
            let rules = (denied["policy_verdict"] as? [String: Any])?["rules"] as? [String] ?? []
            #expect(rules.contains { $0.contains("server-no-ingress") }, "the flow names the policy that decided: \(rules)")
            #expect(denied["node_name"] as? String == "cluster2/node1", "nodes are named CLUSTER/NODE, as Hubble names them across clusters")

            // A service call: the flow names the service and the backend it went to, in its cluster.
            var viaService: [String: Any]?
            try await eventually("a flow through the backend service") {
                _ = try await lab.meridian(["exec", "--context", "cluster1", "client", "--", "curl", "-s", "-m", "2", "-o", "/dev/null", "http://backend/"])
                viaService = try await Self.flows(lab, ["--context", "cluster1", "--from-pod", "default/client", "--port", "8080", "--last", "50"])
                    .first { ($0["destination_service"] as? [String: Any])?["name"] as? String == "backend" }
                return viaService != nil
            }
            let service = try #require(viaService)
            let backend = Self.side(service, "destination")
            #expect((backend["pod_name"] as? String)?.hasPrefix("backend-") == true, "the destination is the chosen backend: \(service)")
            let backendIP = (service["IP"] as? [String: Any])?["destination"] as? String ?? ""
            let expectedCluster = backendIP.hasPrefix("10.2.") ? "cluster2" : "cluster1"
            #expect(backend["cluster_name"] as? String == expectedCluster, "the backend's cluster matches its address \(backendIP)")

            // The flows-only credential: reads flows through the relay, and the store refuses it.
            let paths = try lab.cluster("cluster1").paths
            let relay = try lab.cluster("cluster1").observerSocket
            let cluster = try lab.cluster("cluster1")
            try await lab.run(["config", "set-context", "flows-reader", "--cluster", "cluster1", "--endpoint", cluster.endpoint,
                               "--server-name", cluster.serverName, "--certificate-authority", paths.caCertificate,
                               "--client-certificate", paths.flowsReaderCertificate, "--client-key", paths.flowsReaderKey,
                               "--flows-endpoint", "unix:\(relay)"])
            #expect(try await !Self.flows(lab, ["--context", "flows-reader", "--last", "5"]).isEmpty, "the reader credential reads flows")
            let storeRead = try await lab.meridian(["get", "pods", "--context", "flows-reader"])
            #expect(storeRead.status != 0, "the reader credential opens nothing in the store: \(storeRead.stdout)")
            // The agents' store credential is no flows credential.
            try await lab.run(["config", "set-context", "agent-as-reader", "--cluster", "cluster1", "--endpoint", cluster.endpoint,
                               "--server-name", cluster.serverName, "--certificate-authority", paths.caCertificate,
                               "--client-certificate", paths.agentCertificate, "--client-key", paths.agentKey,
                               "--flows-endpoint", "unix:\(relay)"])
            let refused = try await lab.meridian(["observe", "--context", "agent-as-reader"])
            #expect(refused.status != 0 && refused.stderr.contains("may not read flows"), "\(refused.stderr)")
        }
    }

    static let chromium = "/usr/bin/chromium"

    @Test("the UI, loaded in headless Chromium, draws both clusters, the pods and a forwarded flow from cluster1 to cluster2; a screenshot is kept",
          .enabled(if: FileManager.default.isExecutableFile(atPath: FlowsIntegrationTests.chromium), "needs Debian's chromium (scripts/setup.sh)"))
    func userInterface() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let call = try await Self.clientAndServer(lab)

            let port = try #require(try FreePorts.reserve(1).first)
            let ui = Process()
            ui.executableURL = URL(fileURLWithPath: LabFixture.executable)
            ui.arguments = ["ui", "--context", "cluster1", "--listen", "127.0.0.1:\(port)"]
            ui.environment = ProcessInfo.processInfo.environment.merging(lab.driver.environment) { $1 }
            ui.standardOutput = FileHandle.nullDevice
            try ui.run()
            defer {
                ui.terminate()
                ui.waitUntilExit()
            }
            let page = "http://127.0.0.1:\(port)/"
            try await eventually("the UI answers") { try await lab.host(["curl", "-sf", "-o", "/dev/null", page]).status == 0 }

            let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/test-artifacts").path
            try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
            let profile = lab.directory + "/chromium"
            // By name: the lab's host commands are looked up on PATH.
            let browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--disable-default-apps", "--user-data-dir=\(profile)",
                           "--window-size=1280,1400", "--virtual-time-budget=6000"]
            var dom = ""
            try await eventually("the page shows both clusters and a flow from cluster1 to cluster2", timeout: .seconds(60)) {
                _ = try? await lab.meridian(call)
                dom = try await lab.host(browser + ["--dump-dom", page]).stdout
                return dom.contains(#"data-loaded="true""#) && dom.contains(#"class="flow forwarded cross-cluster""#)
            }
            #expect(dom.contains(#"class="cluster" data-cluster="cluster1""#) && dom.contains(#"class="cluster" data-cluster="cluster2""#))
            #expect(dom.contains(#"data-pod="cluster1/default/client""#) && dom.contains(#"data-pod="cluster2/default/server""#))
            #expect(dom.contains(#"data-from="cluster1/default/client" data-to="cluster2/default/server" data-from-cluster="cluster1" data-to-cluster="cluster2""#),
                    "the flow joins the client in cluster1 to the server in cluster2")
            #expect(dom.contains("<td>cluster1/default/client:"), "the flow table lists the flow")
            let screenshot = artifacts + "/ui-map.png"
            let shot = try await lab.host(browser + ["--screenshot=\(screenshot)", page])
            #expect(shot.status == 0 && FileManager.default.fileExists(atPath: screenshot), "screenshot kept at \(screenshot): \(shot.stderr.suffix(500))")
        }
    }
}
