import Foundation
import CMeridianBPF
import Glibc
import MeridianAgent
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianLab
import MeridianStore
import Testing

/// The datapath on a real lab: node namespaces running agents, pods set up through the CNI
/// plugin, real TCP and UDP through the BPF programs, VXLAN between nodes.
@Suite("Datapath on lab nodes", .serialized, .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct DatapathIntegrationTests {
    static let echo = ["meridian", "tool", "echo-server", "--port", "8080", "--udp-port", "9090"]

    static func pod(_ name: String, node: String, labels: [String: String] = [:], command: [String] = echo) -> String {
        let labelLines = labels.map { "    \($0.key): \($0.value)" }.joined(separator: "\n")
        let commandList = command.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            apiVersion: v1
            kind: Pod
            metadata:
              name: \(name)
            \(labels.isEmpty ? "" : "  labels:\n" + labelLines)
            spec:
              nodeName: \(node)
              containers:
              - name: main
                command: [\(commandList)]
                ports:
                - name: http
                  containerPort: 8080
            ---

            """
    }

    static func backends(replicas: Int) -> String {
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: backend
        spec:
          replicas: \(replicas)
          selector:
            matchLabels:
              app: backend
          template:
            metadata:
              labels:
                app: backend
            spec:
              containers:
              - name: echo
                command: ["meridian", "tool", "echo-server", "--port", "8080", "--udp-port", "9090"]
                ports:
                - name: http
                  containerPort: 8080
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: backend
        spec:
          selector:
            app: backend
          ports:
          - port: 80
            targetPort: http
        ---

        """
    }

    static let sleeper = ["sleep", "100000"]

    @Test("pods reach pods on the same node and across nodes, TCP and UDP, small and 64 KiB")
    func podToPod() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            try await lab.apply(Self.pod("server-a", node: "node1") + Self.pod("server-b", node: "node2") + Self.pod("client", node: "node1", command: Self.sleeper))
            let pods = try await lab.waitRunning(["server-a", "server-b", "client"])
            #expect(pods["server-a"]?.node == "node1" && pods["server-b"]?.node == "node2")
            for server in ["server-a", "server-b"] {
                let ip = try #require(pods[server]?.ip)
                let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(ip):8080/"])
                #expect(answer.status == 0, "TCP to \(server): \(answer.stderr)")
                #expect(answer.stdout.contains("\"pod\":\"\(server)\""))
                #expect(answer.stdout.contains("\"client\":\"\(pods["client"]?.ip ?? "?")\""), "the server sees the client's own address")
                let large = try await lab.exec("client", ["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{size_download}", "http://\(ip):8080/bytes/65536"])
                #expect(large.stdout == "65536", "64 KiB over TCP to \(server): \(large.stdout) \(large.stderr)")
                for size in [32, 65000] {
                    let udp = try await lab.exec("client", ["meridian", "tool", "udp-probe", ip, "9090", "--size", "\(size)"])
                    #expect(udp.status == 0, "UDP \(size) bytes to \(server): \(udp.stdout) \(udp.stderr)")
                }
            }
        }
    }

    @Test("a ClusterIP spreads over every backend on both nodes, by address and by DNS name")
    func clusterIPLoadBalancing() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            try await lab.apply(Self.backends(replicas: 4) + Self.pod("client", node: "node1", command: Self.sleeper))
            try await lab.waitRunning(["client"])
            let backendPods = try await lab.waitDeployment("backend", ready: 4)
            #expect(Set(backendPods.compactMap(\.node)) == ["node1", "node2"])
            let clusterIP = try await lab.clusterIP("backend")
            var served: Set<String> = []
            for _ in 0..<40 {
                let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(clusterIP)/"])
                #expect(answer.status == 0, "\(answer.stderr)")
                if let pod = Self.field("pod", in: answer.stdout) { served.insert(pod) }
                if served.count == 4 { break }
            }
            #expect(served == Set(backendPods.map(\.name)))
            for name in ["backend.default.svc.cluster.local", "backend.default", "backend"] {
                let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(name)/"])
                #expect(answer.status == 0 && answer.stdout.contains("\"pod\":\"backend-"), "\(name): \(answer.stdout) \(answer.stderr)")
            }
            let unknown = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://nothing.default.svc.cluster.local/"])
            #expect(unknown.status == 6, "an unknown service name does not resolve (curl exit 6), got \(unknown.status)")
        }
    }

    /// Run in a pod: connects to TCP_VIP:80 and sends a datagram to UDP_VIP:9090 from an
    /// unconnected UDP socket; prints what the socket calls show, then the kernel's own view
    /// of the TCP connection (`ss`, which no socket program rewrites).
    static let socketProbe = """
        import socket, subprocess, sys
        tcp_vip, udp_vip = sys.argv[1], sys.argv[2]
        tcp = socket.create_connection((tcp_vip, 80), timeout=5)
        peer = tcp.getpeername()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(5)
        udp.sendto(b"probe", (udp_vip, 9090))
        data, source = udp.recvfrom(2048)
        kernel = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True).stdout.split()
        print(f"peer={peer[0]}:{peer[1]} udp_source={source[0]}:{source[1]} udp_data={data.decode()} kernel={','.join(kernel)}")
        """

    /// The `ss` part of the socket probe's output.
    static func kernelView(_ output: String) -> String {
        output.components(separatedBy: "kernel=").dropFirst().first ?? ""
    }

    @Test("a pod's connect() to a service goes straight to a backend; getpeername and UDP replies show the ClusterIP; a backend reaches itself; outside the pod cgroup the packet path balances")
    func socketLoadBalancing() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            let udpService = """
                apiVersion: v1
                kind: Service
                metadata:
                  name: backend-udp
                spec:
                  selector:
                    app: backend
                  ports:
                  - {port: 9090, protocol: UDP}
                ---

                """
            try await lab.apply(Self.backends(replicas: 1) + udpService + Self.pod("client", node: "node1", command: Self.sleeper))
            try await lab.waitRunning(["client"])
            let backendPod = try #require(try await lab.waitDeployment("backend", ready: 1).first)
            let backend = try #require(backendPod.ip)
            let clusterIP = try await lab.clusterIP("backend")
            let udpIP = try await lab.clusterIP("backend-udp")

            // Through `meridian exec`, which joins the node's pod cgroup as the pod does.
            let inPod = try await lab.exec("client", ["python3", "-c", Self.socketProbe, clusterIP, udpIP])
            #expect(inPod.status == 0, "\(inPod.stdout) \(inPod.stderr)")
            #expect(inPod.stdout.contains("peer=\(clusterIP):80 "), "getpeername shows the service: \(inPod.stdout)")
            #expect(inPod.stdout.contains("udp_source=\(udpIP):9090 udp_data=probe"), "the UDP reply comes from the service: \(inPod.stdout)")
            let kernelInPod = Self.kernelView(inPod.stdout)
            #expect(kernelInPod.contains("\(backend):8080"), "the kernel's socket is connected to the backend: \(inPod.stdout)")
            #expect(!kernelInPod.contains("\(clusterIP):80"), "no socket is connected to the ClusterIP: \(inPod.stdout)")

            // Hairpin: the backend reaches itself through its own service (the socket is
            // connected to the pod's own address, so the packets never leave the pod).
            let hairpin = try await lab.exec(backendPod.name, ["curl", "-s", "-m", "5", "http://\(clusterIP)/"])
            #expect(hairpin.status == 0 && hairpin.stdout.contains("\"pod\":\"\(backendPod.name)\""),
                    "a backend reaches itself through its ClusterIP: \(hairpin.stdout) \(hairpin.stderr)")

            // A process in the pod's network namespace but outside its cgroup: the socket stays
            // connected to the ClusterIP and the packet path translates it.
            let netns = PodNaming.networkNamespace(prefix: "\(lab.prefix)-c1", namespace: "default", pod: "client")
            let outside = try await lab.host(["ip", "netns", "exec", netns, "python3", "-c", Self.socketProbe, clusterIP, udpIP])
            #expect(outside.status == 0, "\(outside.stdout) \(outside.stderr)")
            #expect(outside.stdout.contains("peer=\(clusterIP):80 "), "\(outside.stdout)")
            #expect(outside.stdout.contains("udp_source=\(udpIP):9090 udp_data=probe"), "\(outside.stdout)")
            let kernelOutside = Self.kernelView(outside.stdout)
            #expect(kernelOutside.contains("\(clusterIP):80") && !kernelOutside.contains("\(backend):8080"),
                    "outside the cgroup the socket is connected to the service: \(outside.stdout)")
        }
    }

    @Test("identities no endpoint uses are collected; those in use survive every scan; labels that come back get a working identity")
    func identityGarbageCollection() async throws {
        try await LabFixture.with(clusters: 1, nodes: 1, enable: false, identityGCSeconds: 1) { lab in
            let identityPrefix = MeshKind.identities.statePrefix(cluster: "")
            func endpointIdentity(_ ip: String) async throws -> UInt32? {
                try await lab.withAdmin("cluster1") { client in
                    try await client.get(MeshKind.endpoints.stateKey(cluster: "cluster1", name: ip)).map {
                        try StoreCoding.decode(IPIdentityPair.self, from: $0.value, key: $0.key).id
                    }
                }
            }
            func identities() async throws -> [UInt32: String] {
                try await lab.withAdmin("cluster1") { client in
                    Dictionary(uniqueKeysWithValues: try await client.list(prefix: identityPrefix).items.compactMap { item in
                        UInt32(item.key.dropFirst(identityPrefix.count)).map { ($0, item.stringValue) }
                    })
                }
            }
            try await lab.apply(Self.pod("web", node: "node1", labels: ["app": "web"]) + Self.pod("client", node: "node1", command: Self.sleeper))
            let ip = try #require(try await lab.waitRunning(["web", "client"])["web"]?.ip)
            let first = try #require(try await endpointIdentity(ip))

            try await lab.apply(Self.pod("web", node: "node1", labels: ["app": "web-v2"]))
            var second: UInt32 = 0
            try await eventually("the pod has the identity of its new labels") {
                guard let current = try await endpointIdentity(ip) else { return false }
                second = current
                return second != first
            }
            try await eventually("the identity no endpoint uses is collected, with its label index", timeout: .seconds(30)) {
                let ids = try await identities()
                let index = try await lab.withAdmin("cluster1") { client in
                    try await client.list(prefix: KeyLayout.identityIndexPrefix).items.map(\.stringValue)
                }
                return ids[first] == nil && !index.contains("\(first)") && ids[second]?.contains("app=web-v2") == true
            }
            // Identities in use outlive several scans (1 s apart).
            try await Task.sleep(for: .seconds(4))
            let inUse = try await identities()
            #expect(inUse[second]?.contains("app=web-v2") == true, "the pod's identity is kept: \(inUse)")
            let clientIP = try #require(try await lab.pods().first { $0.name == "client" }?.ip)
            #expect(inUse[try #require(try await endpointIdentity(clientIP))] != nil, "the idle client's identity is kept")

            // The old labels come back: they are allocated afresh and the pod still answers.
            try await lab.apply(Self.pod("web", node: "node1", labels: ["app": "web"]))
            var third: UInt32 = 0
            try await eventually("the pod has an identity for its old labels again") {
                guard let current = try await endpointIdentity(ip) else { return false }
                third = current
                return third != second
            }
            let labelsOfThird = try await identities()[third]
            #expect(labelsOfThird?.contains("app=web") == true && labelsOfThird?.contains("web-v2") == false, "\(labelsOfThird ?? "none")")
            let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(ip):8080/"])
            #expect(answer.status == 0 && answer.stdout.contains("\"pod\":\"web\""), "\(answer.stdout) \(answer.stderr)")

            // A label index left pointing at a deleted identity (what a collection racing an
            // allocation would leave) is not trusted: the allocation's touch fails and it starts
            // over. The record goes while the pod still names it, so the collector keeps away.
            try await lab.withAdmin("cluster1") { client in
                _ = try await client.delete(MeshKind.identities.stateKey(cluster: "", name: "\(third)"))
            }
            try await lab.apply(Self.pod("web", node: "node1", labels: ["app": "web-v3"]))
            // (Its number may be the freed one: identities are compared by their labels here.)
            try await eventually("the pod moved to a third label set") {
                guard let current = try await endpointIdentity(ip) else { return false }
                return try await identities()[current]?.contains("app=web-v3") == true
            }
            let staleIndex = try await lab.withAdmin("cluster1") { client in
                try await client.list(prefix: KeyLayout.identityIndexPrefix).items.first { $0.key.contains("app=web") && !$0.key.contains("web-v") }
            }
            #expect(staleIndex?.stringValue == "\(third)", "the index of the old labels still names the deleted identity: \(staleIndex?.stringValue ?? "none")")
            try await lab.apply(Self.pod("web", node: "node1", labels: ["app": "web"]))
            try await eventually("the old labels get an identity whose record exists") {
                guard let current = try await endpointIdentity(ip) else { return false }
                let labels = try await identities()[current]
                return labels?.contains("app=web") == true && labels?.contains("web-v") == false
            }

            // The client's endpoint record is lost (deleted by hand): the collector takes its
            // identity, and the agent's next resync (30 s) publishes the record again and writes
            // the identity back, so the running pod keeps a valid identity.
            let clientIdentity = try #require(try await endpointIdentity(clientIP))
            let clientLabels = try #require(try await identities()[clientIdentity])
            try await lab.withAdmin("cluster1") { client in
                _ = try await client.delete(MeshKind.endpoints.stateKey(cluster: "cluster1", name: clientIP))
            }
            try await eventually("the lost endpoint's identity is collected") { try await identities()[clientIdentity] == nil }
            try await eventually("the agent publishes the endpoint and its identity again", timeout: .seconds(60)) {
                guard let current = try await endpointIdentity(clientIP) else { return false }
                return try await identities()[current] == clientLabels
            }
            let again = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(ip):8080/"])
            #expect(again.status == 0, "\(again.stderr)")
        }
    }

    @Test("scaling to zero refuses new connections at once; a deleted pod leaves no state behind")
    func scaleToZeroAndDelete() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            try await lab.apply(Self.backends(replicas: 2) + Self.pod("client", node: "node2", command: Self.sleeper)
                                + Self.pod("victim", node: "node1"))
            let pods = try await lab.waitRunning(["client", "victim"])
            _ = try await lab.waitDeployment("backend", ready: 2)
            let clusterIP = try await lab.clusterIP("backend")
            #expect(try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(clusterIP)/"]).status == 0)

            try await lab.run(["scale", "deployment", "backend", "--replicas", "0"])
            try await eventually("backends gone") { try await lab.pods().filter { $0.name.hasPrefix("backend-") }.isEmpty }
            try await eventually("connections refused (curl exit 7), not timed out") {
                try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(clusterIP)/"]).status == 7
            }

            let victimIP = try #require(pods["victim"]?.ip)
            let node = try #require(try lab.cluster("cluster1").nodes.first { $0.name == "node1" })
            try await lab.run(["delete", "pod", "victim"])
            // With the backends scaled away and the victim deleted, node1 runs no pod: no pod veth may remain.
            try await eventually("the victim's endpoint, status, namespace and veth are gone") {
                let endpoint = try await lab.withAdmin("cluster1") { try await $0.get(MeshKind.endpoints.stateKey(cluster: "cluster1", name: victimIP)) }
                let status = try await lab.withAdmin("cluster1") { try await $0.get(KeyLayout.podStatus(namespace: "default", name: "victim")) }
                let namespaces = Lab.namespaces(prefix: lab.prefix)
                let links = try await lab.links(inNamespace: node.namespace).filter { $0.hasPrefix("mer") && $0 != "mer_vxlan" }
                return endpoint == nil && status == nil && !namespaces.contains { $0.hasSuffix(".victim") } && links.isEmpty
            }
            let endpoints = try BPFMap<mer_endpoint_key, mer_endpoint_info>(pinnedAt: node.pinDirectory + "/mer_endpoints")
            let victimKey = mer_endpoint_key(ip4: try #require(IPAddress(victimIP)?.datapathValue))
            #expect(endpoints.lookup(victimKey) == nil, "the victim's endpoint map entry is removed")
            let services = try BPFMap<mer_lb4_key, mer_lb4_service>(pinnedAt: node.pinDirectory + "/mer_lb4_svc")
            let backendSlots = services.entries().filter { $0.key.backend_slot != 0 }
            #expect(backendSlots.isEmpty, "no backend slot survives scaling to zero: \(backendSlots.count)")
            let unreachable = try await lab.exec("client", ["curl", "-s", "-m", "2", "http://\(victimIP):8080/"])
            #expect(unreachable.status != 0)
        }
    }

    @Test("an agent restart interrupts neither a running stream nor new connections to services")
    func agentRestart() async throws {
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            try await lab.apply(Self.backends(replicas: 2) + Self.pod("client", node: "node1", command: Self.sleeper)
                                + Self.pod("streamer", node: "node2"))
            let pods = try await lab.waitRunning(["client", "streamer"])
            _ = try await lab.waitDeployment("backend", ready: 2)
            let clusterIP = try await lab.clusterIP("backend")
            let streamer = try #require(pods["streamer"]?.ip)
            let cluster = try lab.cluster("cluster1")
            let state = try #require(lab.lab.loadState())

            try await withThrowingTaskGroup(of: LabFixture.Result.self) { group in
                // 4 MiB at 1 MiB/s: the stream is running while both agents are away.
                group.addTask {
                    try await lab.exec("client", ["curl", "-s", "-m", "30", "--limit-rate", "1M", "-o", "/dev/null", "-w", "%{size_download}",
                                                  "http://\(streamer):8080/bytes/4194304"])
                }
                try await Task.sleep(for: .milliseconds(700))
                for node in cluster.nodes { await lab.lab.stopAgent(node) }
                for _ in 0..<5 {
                    let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(clusterIP)/"])
                    #expect(answer.status == 0, "new connection while agents are down: \(answer.stderr)")
                }
                for node in cluster.nodes {
                    let previous = lab.lab.registrations(of: node)
                    try await lab.lab.startAgent(node, cluster: cluster, prefix: state.prefix)
                    try await lab.lab.waitForNode(node, cluster: cluster, timeout: .seconds(30), previous: previous)
                }
                for _ in 0..<5 {
                    let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://backend/"])
                    #expect(answer.status == 0, "new connection after the restart: \(answer.stderr)")
                }
                let stream = try #require(try await group.next())
                #expect(stream.stdout == "4194304", "the stream completed whole: \(stream.stdout) \(stream.stderr)")
            }
            // The restarted agents kept the pods they had, without restarting them.
            #expect(try await lab.pods().allSatisfy { $0.restarts == 0 && $0.status == "Running" })
        }
    }

    @Test("bad workloads get a clear error or a visible status, never a half-made pod")
    func badWorkloads() async throws {
        try await LabFixture.with(clusters: 1, nodes: 1, enable: false) { lab in
            let noCommand = """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: broken
                spec:
                  selector:
                    matchLabels: {app: broken}
                  template:
                    metadata:
                      labels: {app: broken}
                    spec:
                      containers:
                      - name: main
                        image: nginx
                """
            let rejected = try await lab.meridian(["apply", "-f", "-"], stdin: noCommand)
            #expect(rejected.status != 0)
            #expect(rejected.stderr.contains("spec.template.spec.containers[0].command"), "\(rejected.stderr)")
            let badPort = Self.pod("badport", node: "node1").replacingOccurrences(of: "containerPort: 8080", with: "containerPort: 70000")
            let portResult = try await lab.meridian(["apply", "-f", "-"], stdin: badPort)
            #expect(portResult.status != 0 && portResult.stderr.contains("containerPort"), "\(portResult.stderr)")
            #expect(try await lab.pods().isEmpty, "rejected manifests create nothing")

            try await lab.apply(Self.pod("crasher", node: "node1", command: ["sh", "-c", "echo boom; exit 3"]))
            try await eventually("the crashing pod shows CrashLoopBackOff with its exit code") {
                let pod = try await lab.pods().first { $0.name == "crasher" }
                return pod?.status == "CrashLoopBackOff" && pod?.message?.contains("exited with 3") == true
            }
        }
    }

    @Test("a node whose pod range is exhausted shows the pod's failure and leaks nothing")
    func exhaustedPodRange() async throws {
        // A /29 per node: .0 network, .1 gateway, .7 broadcast leave five pod addresses.
        try await LabFixture.with(clusters: 1, nodes: 1, enable: false, nodePodPrefix: 29) { lab in
            let names = (1...6).map { "p\($0)" }
            try await lab.apply(names.map { Self.pod($0, node: "node1", command: Self.sleeper) }.joined())
            try await eventually("five pods running and the sixth failed") {
                let pods = try await lab.pods()
                return pods.filter { $0.status == "Running" }.count == 5 && pods.filter { $0.status == "Error" }.count == 1
            }
            let failed = try #require(try await lab.pods().first { $0.status == "Error" })
            #expect(failed.message?.contains("exhausted") == true, "\(failed.message ?? "no message")")
            #expect(failed.ip == nil)
            #expect(Lab.namespaces(prefix: lab.prefix).filter { $0.hasSuffix("." + failed.name) }.isEmpty, "the failed pod's namespace is gone")
            let node = try #require(try lab.cluster("cluster1").nodes.first)
            let veths = try await lab.links(inNamespace: node.namespace).filter { $0.hasPrefix("mer") && $0 != "mer_vxlan" }
            #expect(veths.count == 5, "one veth per running pod: \(veths)")
        }
    }

    @Test("lab down leaves no namespace, process, pin or file behind")
    func labDownIsClean() async throws {
        var prefix = ""
        var directory = ""
        try await LabFixture.with(clusters: 1, nodes: 2, enable: false) { lab in
            prefix = lab.prefix
            directory = lab.directory
            try await lab.apply(Self.backends(replicas: 2))
            _ = try await lab.waitDeployment("backend", ready: 2)
            #expect(Lab.namespaces(prefix: prefix).count == 1 + 2 + 2)
        }
        #expect(Lab.namespaces(prefix: prefix).isEmpty)
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        #expect(!mounts.contains(directory))
        #expect(!FileManager.default.fileExists(atPath: directory))
        let leftovers = (try FileManager.default.contentsOfDirectory(atPath: "/proc")).compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(directory) || String(decoding: data, as: UTF8.self).contains(prefix)
        }
        #expect(leftovers.isEmpty, "processes left: \(leftovers)")
        let etcNetns = (try? FileManager.default.contentsOfDirectory(atPath: "/etc/netns")) ?? []
        #expect(!etcNetns.contains { $0.hasPrefix(prefix) })
        let mountFields: [[Substring]] = mounts.split(separator: "\n").map { $0.split(separator: " ") }
        let cgroupMounts: [String] = mountFields.filter { $0.count > 2 && $0[2] == "cgroup2" }.map { String($0[1]) }
        for mount in cgroupMounts {
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: mount)) ?? []).filter { $0.hasPrefix(prefix + "-") }
            #expect(left.isEmpty, "node cgroups left under \(mount): \(left)")
        }
    }

    static func field(_ name: String, in json: String) -> String? {
        guard let data = json.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return object[name] as? String
    }
}

/// What `get pods -o json` says about a pod.
struct PodRow: Decodable, Sendable {
    var namespace: String
    var name: String
    var status: String
    var restarts: Int
    var ip: String?
    var node: String?
    var message: String?
}

extension LabFixture {
    func run(_ arguments: [String]) async throws {
        let result = try await meridian(arguments)
        try #require(result.status == 0, "meridian \(arguments.joined(separator: " ")) failed: \(result.stderr)")
    }

    func apply(_ yaml: String) async throws {
        let result = try await meridian(["apply", "-f", "-"], stdin: yaml)
        try #require(result.status == 0, "apply failed: \(result.stderr)")
    }

    func exec(_ pod: String, _ command: [String]) async throws -> Result {
        try await meridian(["exec", pod, "--"] + command)
    }

    func pods() async throws -> [PodRow] {
        let result = try await meridian(["get", "pods", "-o", "json"])
        try #require(result.status == 0, "get pods failed: \(result.stderr)")
        return try JSONDecoder().decode([PodRow].self, from: Data(result.stdout.utf8))
    }

    @discardableResult
    func waitRunning(_ names: [String], timeout: Duration = .seconds(30)) async throws -> [String: PodRow] {
        var found: [String: PodRow] = [:]
        try await eventually("pods \(names) running", timeout: timeout) {
            let pods = try await pods()
            found = Dictionary(pods.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            return names.allSatisfy { found[$0]?.status == "Running" && found[$0]?.ip != nil }
        }
        return found
    }

    func waitDeployment(_ name: String, ready: Int, timeout: Duration = .seconds(30)) async throws -> [PodRow] {
        var owned: [PodRow] = []
        try await eventually("deployment \(name) has \(ready) running pods", timeout: timeout) {
            owned = try await pods().filter { $0.name.hasPrefix(name + "-") }
            return owned.count == ready && owned.allSatisfy { $0.status == "Running" && $0.ip != nil }
        }
        return owned
    }

    func clusterIP(_ service: String) async throws -> String {
        let result = try await meridian(["get", "services", "-o", "json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        return try #require(rows.first { $0["name"] as? String == service }?["clusterIP"] as? String)
    }

    func links(inNamespace namespace: String) async throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "-n", namespace, "-o", "link", "show"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            line.split(separator: ":").dropFirst().first.map { String($0.trimmingCharacters(in: .whitespaces).split(separator: "@").first ?? "") }
        }
    }
}
