import CMeridianBPF
import Foundation
import Glibc
import MeridianCore
import MeridianDatapath
import MeridianLab
import Testing

/// Two meshed clusters with nodes: global services across clusters, MTU differences, identity
/// checks on the overlay, disconnect and reconnect under load, and the demo itself.
@Suite("Across clusters", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct CrossClusterIntegrationTests {
    static let globalBackend = DatapathIntegrationTests.backends(replicas: 2)
        .replacingOccurrences(of: "kind: Service\nmetadata:\n  name: backend\n",
                              with: "kind: Service\nmetadata:\n  name: backend\n  annotations:\n    service.cilium.io/global: \"true\"\n")

    static func mesh(_ body: (LabFixture) async throws -> Void) async throws {
        try await LabFixture.with(clusters: 2, nodes: 2, heartbeat: 1, enable: false) { lab in
            for cluster in ["cluster1", "cluster2"] {
                try await lab.run(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "1"])
            }
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.waitReady("cluster2")
            try await body(lab)
        }
    }

    @Test("the demo runs the seed walkthrough end to end and every step holds")
    func demo() async throws {
        let directory = "/tmp/meridian-test-\(UUID().uuidString.prefix(8).lowercased())"
        let fixture = LabFixture(directory: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try await fixture.meridian(["demo", "--directory", fixture.labDirectory, "--calls", "20"])
        await fixture.tearDown()
        #expect(result.status == 0, "demo failed:\n\(result.stdout.suffix(3000))\n\(result.stderr)")
        #expect(result.stdout.contains("all held."))
        #expect(result.stdout.contains("failover: cluster1 scaled to zero"))
        #expect(Lab.namespaces(prefix: fixture.prefix).isEmpty, "the demo tears its lab down")
    }

    @Test("a global service is answered from both clusters; backend changes propagate; disconnect and reconnect under load lose no call")
    func globalServiceAcrossClusters() async throws {
        try await Self.mesh { lab in
            for cluster in ["cluster1", "cluster2"] {
                let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"], stdin: Self.globalBackend)
                try #require(result.status == 0, "\(result.stderr)")
            }
            try await lab.apply(DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper))
            try await lab.waitRunning(["client"])
            var answered: [String: Int] = [:]
            try await eventually("answers from both clusters", timeout: .seconds(40)) {
                let cluster = DatapathIntegrationTests.field("cluster", in: try await lab.exec("client", ["curl", "-s", "-m", "3", "http://backend/"]).stdout)
                if let cluster { answered[cluster, default: 0] += 1 }
                return answered.keys.count == 2
            }

            // Convergence: cluster2 goes to zero backends and comes back; measured from the
            // change in cluster2's store to the first answer from cluster2 seen in cluster1.
            try await lab.run(["scale", "deployment", "backend", "--replicas", "0", "--context", "cluster2"])
            try await eventually("cluster2's backends withdrawn from cluster1") {
                let list = try await lab.meridian(["service", "list", "--context", "cluster1"]).stdout
                return !list.contains("cluster2")
            }
            let started = ContinuousClock.now
            try await lab.run(["scale", "deployment", "backend", "--replicas", "1", "--context", "cluster2"])
            try await eventually("an answer from cluster2's new backend", timeout: .seconds(60)) {
                let answer = try await lab.exec("client", ["curl", "-s", "-m", "3", "http://backend/"]).stdout
                return DatapathIntegrationTests.field("cluster", in: answer) == "cluster2"
            }
            let convergence = ContinuousClock.now - started
            print("convergence: backend added in cluster2 → first answer in cluster1 after \(convergence) (pod start included)")

            // Disconnect and reconnect while the client keeps calling: local backends carry the
            // load, so no call fails; after reconnecting, cluster2 answers again.
            let loop = "for i in $(seq 60); do curl -s -m 3 http://backend/ || echo FAILED; echo; sleep 0.1; done"
            try await withThrowingTaskGroup(of: LabFixture.Result.self) { group in
                group.addTask { try await lab.exec("client", ["sh", "-c", loop]) }
                try await Task.sleep(for: .seconds(1))
                try await lab.run(["clustermesh", "disconnect", "--context", "cluster1", "--destination-context", "cluster2"])
                try await eventually("cluster2's backends withdrawn after disconnect") {
                    !(try await lab.meridian(["service", "list", "--context", "cluster1"]).stdout.contains("cluster2"))
                }
                try await lab.connect("cluster1", ["cluster2"])
                let output = try #require(try await group.next()).stdout
                let lines = output.split(separator: "\n").filter { !$0.isEmpty }
                #expect(lines.count == 60)
                #expect(!lines.contains { $0.contains("FAILED") }, "no call failed across disconnect and reconnect")
            }
            try await eventually("cluster2 answers again after reconnecting", timeout: .seconds(40)) {
                DatapathIntegrationTests.field("cluster", in: try await lab.exec("client", ["curl", "-s", "-m", "3", "http://backend/"]).stdout) == "cluster2"
            }
        }
    }

    @Test("clusters with underlay MTUs 1500 and 1400: status flags it, pods size their routes, 64 KiB bodies pass both ways")
    func mtuMismatch() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1, enable: false, mtus: "1500,1400") { lab in
            for cluster in ["cluster1", "cluster2"] {
                try await lab.run(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "1"])
            }
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            for cluster in ["cluster1", "cluster2"] {
                let result = try await lab.meridian(["apply", "--context", cluster, "-f", "-"],
                                                    stdin: DatapathIntegrationTests.pod("server", node: "node1"))
                try #require(result.status == 0, "\(result.stderr)")
            }
            var ips: [String: String] = [:]
            try await eventually("servers running in both clusters") {
                for cluster in ["cluster1", "cluster2"] {
                    let rows = try JSONDecoder().decode([PodRow].self, from: Data(try await lab.meridian(["get", "pods", "--context", cluster, "-o", "json"]).stdout.utf8))
                    ips[cluster] = rows.first { $0.name == "server" && $0.status == "Running" }?.ip
                }
                return ips.count == 2
            }
            let status = try await lab.meridian(["clustermesh", "status", "--context", "cluster1", "-o", "json"])
            let report = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            let warnings = report["warnings"] as? [String] ?? []
            #expect(warnings.contains { $0.contains("MTU mismatch") }, "\(warnings)")
            let remotes = report["remoteClusters"] as? [[String: Any]] ?? []
            #expect(remotes.first?["mtu"] as? Int == 1400)

            let state = try #require(lab.lab.loadState())
            let podNamespace = "\(state.prefix)-c1-default.server"
            try await eventually("cluster1's pod routes cluster2's pods with MTU 1350") {
                let routes = try await lab.command(["ip", "-n", podNamespace, "route"])
                return routes.contains("10.2.1.0/24") && routes.contains("mtu 1350")
            }
            try await Self.largeTransfersBothWays(lab, serverIPs: ips)
        }
    }

    /// 64 KiB GET and POST and a 60,000-byte UDP datagram between each cluster's pod `server`
    /// (whose addresses `serverIPs` gives by cluster), both ways.
    static func largeTransfersBothWays(_ lab: LabFixture, serverIPs ips: [String: String]) async throws {
        for (from, to) in [("cluster1", "cluster2"), ("cluster2", "cluster1")] {
            let ip = try #require(ips[to])
            let body = try await lab.meridian(["exec", "--context", from, "server", "--", "curl", "-s", "-m", "10", "-o", "/dev/null",
                                               "-w", "%{size_download}", "http://\(ip):8080/bytes/65536"])
            #expect(body.stdout == "65536", "64 KiB GET \(from) → \(to): \(body.stdout) \(body.stderr)")
            let upload = try await lab.meridian(["exec", "--context", from, "server", "--", "sh", "-c",
                                                 "head -c 65536 /dev/zero | curl -s -m 10 --data-binary @- http://\(ip):8080/"])
            #expect(DatapathIntegrationTests.field("received", in: upload.stdout) == "65536", "64 KiB POST \(from) → \(to): \(upload.stdout)")
            let udp = try await lab.meridian(["exec", "--context", from, "server", "--", "meridian", "tool", "udp-probe", ip, "9090", "--size", "60000"])
            #expect(udp.status == 0, "60000-byte UDP \(from) → \(to): \(udp.stdout) \(udp.stderr)")
        }
    }

    @Test("status warns when a global service's backends carry different labels in different clusters")
    func labelConsistency() async throws {
        try await Self.mesh { lab in
            let service = """
                apiVersion: v1
                kind: Service
                metadata:
                  name: web
                  annotations: {service.cilium.io/global: "true"}
                spec:
                  selector: {app: web}
                  ports: [{port: 80, targetPort: 8080}]
                ---

                """
            let first = try await lab.meridian(["apply", "--context", "cluster1", "-f", "-"],
                                               stdin: service + DatapathIntegrationTests.pod("web", node: "node1", labels: ["app": "web"]))
            let second = try await lab.meridian(["apply", "--context", "cluster2", "-f", "-"],
                                                stdin: service + DatapathIntegrationTests.pod("web", node: "node1", labels: ["app": "web", "tier": "gold"]))
            try #require(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
            try await eventually("the label mismatch is reported", timeout: .seconds(40)) {
                let status = try await lab.meridian(["clustermesh", "status", "--context", "cluster1"]).stdout
                return status.contains("global service default/web: backends carry different labels") && status.contains("k8s:tier=gold")
            }
        }
    }

    @Test("the overlay drops a VNI claiming another cluster's identity or a reserved one, an inner source the sender does not hold, and packets from unknown senders")
    func forgedIdentitiesAreDropped() async throws {
        try await Self.mesh { lab in
            let state = try #require(lab.lab.loadState())
            let cluster1 = try lab.cluster("cluster1")
            let receiver = try #require(cluster1.nodes.first { $0.name == "node2" })
            let metrics = try PerCPUArrayMap<mer_metric>(name: "mer_metrics", fd: try BPFMap<UInt32, mer_metric>(pinnedAt: receiver.pinDirectory + "/mer_metrics").fd)
            // from-overlay counts in the ingress block of the counter map.
            func drops(_ reason: Int) -> UInt64 {
                metrics.values(at: UInt32(MER_EVENT_DIR_INGRESS) * UInt32(MER_METRICS_REASONS) + UInt32(reason)).reduce(0) { $0 + $1.packets }
            }
            let reasons = [MER_DROP_INVALID_IDENTITY, MER_DROP_UNKNOWN_SENDER, MER_DROP_RESERVED_IDENTITY_FROM_NODE, MER_DROP_SOURCE_NOT_OWNED_BY_SENDER]
            let before = reasons.map(drops)
            let node1 = ["ip", "netns", "exec", "\(state.prefix)-c1-n1", "python3", "-c"]
            // node1 of cluster1 sends a VXLAN packet whose VNI is an identity of cluster2.
            try await lab.command(node1 + [Self.vxlanSender(vni: (2 << 16) | 300, to: receiver.underlayIP)])
            // The underlay router, which is no node, sends one with a plain identity.
            try await lab.command(["ip", "netns", "exec", "\(state.prefix)-underlay", "python3", "-c", Self.vxlanSender(vni: (1 << 16) | 300, to: receiver.underlayIP)])
            // node1 sends the world identity, then a cluster1 identity from an address of node2's pod CIDR.
            try await lab.command(node1 + [Self.vxlanSender(vni: Int(MER_ID_WORLD), to: receiver.underlayIP)])
            try await lab.command(node1 + [Self.vxlanSender(vni: (1 << 16) | 300, to: receiver.underlayIP, source: "10.1.2.201")])
            try await eventually("every forged packet dropped with its reason") {
                zip(reasons.map(drops), before).allSatisfy { $0 > $1 }
            }
            // From node1's own pod CIDR the packet passes every check of the sender, and is
            // dropped only because no pod holds its destination.
            let unroutableBefore = drops(MER_DROP_UNROUTABLE)
            try await lab.command(node1 + [Self.vxlanSender(vni: (1 << 16) | 300, to: receiver.underlayIP)])
            try await eventually("the packet of node1's own address reaches the endpoint lookup") {
                drops(MER_DROP_UNROUTABLE) > unroutableBefore
            }
            #expect(zip(reasons.map(drops), before).allSatisfy { $0 == $1 + 1 }, "one drop per forged packet")
        }
    }

    /// A Python one-liner sending one VXLAN packet (inner IPv4/UDP from `source` to a pod address)
    /// to port 8472.
    static func vxlanSender(vni: Int, to address: String, source: String = "10.1.1.200") -> String {
        """
        import socket, struct
        def csum(b):
            s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16; return ~s & 0xffff
        src, dst = socket.inet_aton('\(source)'), socket.inet_aton('10.1.2.200')
        udp = struct.pack('!HHHH', 1234, 5678, 12, 0) + b'test'
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        frame = b'\\x02\\x00\\x00\\x00\\x00\\x01' + b'\\x02\\x00\\x00\\x00\\x00\\x02' + b'\\x08\\x00' + ip + udp
        vxlan = struct.pack('!II', 0x08000000, \(vni) << 8)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(vxlan + frame, ('\(address)', 8472))
        """
    }
}

extension LabFixture {
    /// Runs a host command and returns its output (for `ip` and the like in tests).
    @discardableResult
    func command(_ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        return String(decoding: data, as: UTF8.self)
    }
}
