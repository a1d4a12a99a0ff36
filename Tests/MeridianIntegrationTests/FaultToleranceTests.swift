import Foundation
import MeridianControlPlane
import MeridianEtcd
import MeridianHost
import MeridianLab
import MeridianStore
import Testing

/// Killing and stopping the lab's real processes: each fault is survived by itself, and what it
/// cost (a store that never came back, an orphan, a failed request, a broken stream) is measured
/// and asserted to be nothing.
@Suite("Fault tolerance", .serialized)
struct FaultToleranceTests {
    static let sleeper = DatapathIntegrationTests.sleeper

    @Test("kill -9 of etcd, of the control plane, of an agent and of a pod's process: each comes back by itself, the control plane adopts its etcd, nothing is orphaned")
    func killedDaemonsComeBack() async throws {
        try await LabFixture.with(clusters: 1, nodes: 1, enable: false) { lab in
            let cluster = try lab.cluster("cluster1")
            let node = try #require(cluster.nodes.first)
            try await lab.apply(DatapathIntegrationTests.pod("server", node: "node1") + DatapathIntegrationTests.pod("client", node: "node1", command: Self.sleeper))
            let pods = try await lab.waitRunning(["server", "client"])
            let server = try #require(pods["server"]?.ip)

            // etcd: the supervisor in the control plane starts it again on the socket the dead one left.
            let etcd = try #require(HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster.paths.etcdData)))
            kill(etcd, SIGKILL)
            try await eventually("etcd restarted and serving", timeout: .seconds(30)) {
                guard let now = HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster.paths.etcdData)), now != etcd,
                      HostProcess.isAlive(now) else { return false }
                return (try? await lab.withAdmin("cluster1") { try await $0.status() }) != nil
            }
            let log = (try? String(contentsOfFile: cluster.paths.etcdLog, encoding: .utf8)) ?? ""
            #expect(!log.contains("address already in use"), "a restart found the dead etcd's socket in its way")

            // The control plane: restarted by its supervisor, it adopts the etcd that kept running.
            let etcdBefore = try #require(HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster.paths.etcdData)))
            let controlPlane = try #require(HostProcess.pid(inFile: cluster.paths.pidFile))
            kill(controlPlane, SIGKILL)
            try await eventually("control plane restarted and ready", timeout: .seconds(30)) {
                guard let now = HostProcess.pid(inFile: cluster.paths.pidFile), now != controlPlane, HostProcess.isAlive(now) else { return false }
                return FileManager.default.fileExists(atPath: cluster.paths.readyMarker)
            }
            #expect(HostProcess.pid(inFile: ManagedEtcd.pidFile(dataDirectory: cluster.paths.etcdData)) == etcdBefore,
                    "the restarted control plane adopted the running etcd")
            #expect(Self.processes(containing: "etcd --name cluster1 --data-dir \(cluster.paths.etcdData)").count == 1, "exactly one etcd serves the cluster")
            let service = try #require(ServiceRecord.load(cluster.controlPlaneService))
            #expect(service.starts == 2 && service.lastExit?.contains("9") == true, "\(service)")

            // An agent: restarted by its supervisor; the pods keep running and are not restarted.
            let agent = try #require(HostProcess.pid(inFile: node.pidFile))
            let registered = lab.lab.registrations(of: node)
            kill(agent, SIGKILL)
            try await lab.lab.waitForNode(node, cluster: cluster, timeout: .seconds(30), previous: registered)
            #expect(HostProcess.pid(inFile: node.pidFile) != agent)
            let answer = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(server):8080/"])
            #expect(answer.status == 0, "pod to pod after the agent restart: \(answer.stderr)")
            #expect(try await lab.pods().allSatisfy { $0.restarts == 0 && $0.status == "Running" })

            // A pod's process: its node's agent starts it again, as a kubelet would.
            try await lab.run(["lab", "fault", "kill", "pod", "cluster1/server", "--directory", lab.labDirectory])
            try await eventually("the server pod's container restarted and serving", timeout: .seconds(30)) {
                let server = try await lab.pods().first { $0.name == "server" }
                guard server?.restarts == 1, server?.status == "Running" else { return false }
                return try await lab.exec("client", ["curl", "-s", "-m", "2", "http://\(server?.ip ?? ""):8080/"]).status == 0
            }

            // A node deleted while its agent is away leaves its cluster at once, not after its grace period.
            await lab.lab.stopAgent(node)
            try await lab.run(["delete", "node", "node1"])
            #expect(try await lab.withAdmin("cluster1") { try await $0.get(MeshKind.nodes.stateKey(cluster: "cluster1", name: "node1")) } == nil)
            let missing = try await lab.meridian(["delete", "node", "node9"])
            #expect(missing.status != 0 && missing.stderr.contains("\"node9\" not found"), "\(missing.stderr)")

            // Down: every supervisor and daemon of the lab is gone.
            await lab.lab.down()
            #expect(Self.processes(containing: lab.labDirectory).isEmpty, "processes left behind after lab down")
        }
    }

    @Test("a node outlives its agent: away longer than the old 15 s lease, its pods keep a stream and take new connections from both clusters")
    func nodeOutlivesItsAgent() async throws {
        try await LabFixture.with(clusters: 2, nodes: 2) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.waitReady("cluster2")
            try await lab.apply(DatapathIntegrationTests.pod("server", node: "node2") + DatapathIntegrationTests.pod("client", node: "node1", command: Self.sleeper))
            let applied = try await lab.meridian(["apply", "--context", "cluster2", "-f", "-"],
                                                 stdin: DatapathIntegrationTests.pod("remote", node: "node1", command: Self.sleeper))
            try #require(applied.status == 0, "apply in cluster2: \(applied.stderr)")
            let server = try #require(try await lab.waitRunning(["server", "client"])["server"]?.ip)
            let fromRemote = { @Sendable (command: [String]) async throws -> LabFixture.Result in
                try await lab.meridian(["exec", "--context", "cluster2", "remote", "--"] + command)
            }
            try await eventually("cluster2 reaches the server pod", timeout: .seconds(40)) {
                try await fromRemote(["curl", "-s", "-m", "2", "http://\(server):8080/"]).status == 0
            }
            let cluster = try lab.cluster("cluster1")
            let node = try #require(cluster.nodes.first { $0.name == "node2" })
            let state = try #require(lab.lab.loadState())
            let away: Duration = .seconds(25)

            let failures = try await withThrowingTaskGroup(of: LabFixture.Result.self) { group in
                // 4 MiB at 128 KiB/s: about 32 s, running before, while and after the agent is away.
                group.addTask {
                    try await fromRemote(["curl", "-s", "-m", "90", "--limit-rate", "128K", "-o", "/dev/null", "-w", "%{size_download}",
                                          "http://\(server):8080/bytes/4194304"])
                }
                try await Task.sleep(for: .seconds(1))
                await lab.lab.stopAgent(node)
                var failed: [String] = []
                let back = ContinuousClock.now + away
                while ContinuousClock.now < back {
                    let local = try await lab.exec("client", ["curl", "-s", "-m", "5", "http://\(server):8080/"])
                    if local.status != 0 { failed.append("from cluster1: \(local.stderr)") }
                    let remote = try await fromRemote(["curl", "-s", "-m", "5", "http://\(server):8080/"])
                    if remote.status != 0 { failed.append("from cluster2: \(remote.stderr)") }
                    try await Task.sleep(for: .seconds(2))
                }
                let record = try await lab.withAdmin("cluster1") { try await $0.get(MeshKind.nodes.stateKey(cluster: "cluster1", name: "node2")) }
                if record == nil { failed.append("the node record left the store while the agent was away") }
                let previous = lab.lab.registrations(of: node)
                try await lab.lab.startAgent(node, cluster: cluster, prefix: state.prefix)
                try await lab.lab.waitForNode(node, cluster: cluster, timeout: .seconds(30), previous: previous)
                let stream = try #require(try await group.next())
                if stream.stdout != "4194304" { failed.append("the stream broke: \(stream.stdout) \(stream.stderr)") }
                return failed
            }
            #expect(failures.isEmpty, "\(failures.count) failures while the agent was away: \(failures)")
            let log = try String(contentsOfFile: node.logPath, encoding: .utf8)
            let last = log.split(separator: "\n").last { $0.contains("node registered") } ?? ""
            #expect(last.contains("lease-kept=true"), "the restarted agent renewed the lease its record was under: \(last)")
        }
    }

    @Test("partitions: the remote turns not ready; after healing, 1,000 endpoints deleted while away are gone; with a cache TTL, calls are answered locally meanwhile")
    func partitionAndHeal() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 1, enable: false) { lab in
            for cluster in ["cluster1", "cluster2"] {
                try await lab.run(["clustermesh", "enable", "--context", cluster, "--heartbeat-interval", "1"])
                let applied = try await lab.meridian(["apply", "--context", cluster, "-f", "-"], stdin: CrossClusterIntegrationTests.globalBackend)
                try #require(applied.status == 0, "\(applied.stderr)")
            }
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            try await lab.apply(DatapathIntegrationTests.pod("client", node: "node1", command: Self.sleeper))
            try await lab.waitRunning(["client"])
            try await eventually("answers from both clusters", timeout: .seconds(40)) {
                Set(try await Self.answers(lab, calls: 10).compactMap { $0 }).count == 2
            }
            // 1,000 endpoints of cluster2, written into its store as its agents would write them.
            let synthetic = (0..<1000).map { "10.2.\(200 + $0 / 250).\($0 % 250 + 1)" }
            let keys = synthetic.map { MeshKind.endpoints.stateKey(cluster: "cluster2", name: $0) }
            try await lab.withAdmin("cluster2") { store in
                try await store.commit(puts: synthetic.enumerated().map { (keys[$0], Self.endpointRecord(ip: $1, index: $0)) }, deletes: [])
            }
            let cache = MeshKind.endpoints.cachePrefix(cluster: "cluster2")
            let syntheticInCache = { @Sendable () async throws -> Int in
                try await lab.withAdmin("cluster1") { store in
                    try await store.list(prefix: cache).items.filter { $0.key.hasPrefix(cache + "10.2.2") }.count
                }
            }
            try await eventually("cluster1 imported the 1,000 endpoints", timeout: .seconds(30)) { try await syntheticInCache() == 1000 }

            // Without a cache TTL, what was imported stays while the remote is away; what the
            // remote deleted meanwhile must be gone once it is back.
            try await lab.run(["lab", "fault", "partition", "cluster1", "cluster2", "--directory", lab.labDirectory])
            try await eventually("cluster2 not ready in cluster1", timeout: .seconds(20)) { !(try await Self.remoteReady(lab)) }
            try await lab.withAdmin("cluster2") { try await $0.commit(puts: [], deletes: keys) }
            try await Task.sleep(for: .seconds(2))
            #expect(try await syntheticInCache() == 1000, "the remote's data is kept while it is away")
            try await lab.run(["lab", "fault", "heal", "cluster1", "cluster2", "--directory", lab.labDirectory])
            try await lab.waitReady("cluster1", timeout: "60s")
            #expect(try await syntheticInCache() == 0, "endpoints deleted during the partition left behind in cluster1's cache")

            // With a cache TTL, the remote's backends are withdrawn once it is away that long,
            // and global-service calls are answered by local backends only.
            try await lab.run(["clustermesh", "enable", "--context", "cluster1", "--heartbeat-interval", "1", "--cache-ttl", "5"])
            try await lab.run(["lab", "fault", "partition", "cluster1", "cluster2", "--directory", lab.labDirectory])
            try await eventually("cluster2's backends withdrawn after the cache TTL", timeout: .seconds(30)) {
                !(try await lab.meridian(["service", "list", "--context", "cluster1"]).stdout.contains("cluster2"))
            }
            let local = try await Self.answers(lab, calls: 20)
            #expect(local.allSatisfy { $0 == "cluster1" }, "calls during the partition are all answered by cluster1: \(local)")
            try await lab.run(["lab", "fault", "heal", "--directory", lab.labDirectory])
            try await lab.waitReady("cluster1", timeout: "60s")
            try await eventually("answers from cluster2 again", timeout: .seconds(40)) {
                (try await Self.answers(lab, calls: 10)).contains("cluster2")
            }
        }
    }

    @Test("stores of three members: leader and member kills under mesh churn lose no update; two members down: no quorum, said so; back: recovered")
    func threeMemberStores() async throws {
        // A heartbeat of 2 s: two of them outlast a leader election (about 1 s) after a full interval.
        try await LabFixture.with(clusters: 2, nodes: 1, heartbeat: 2, etcdMembers: 3) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let cache = MeshKind.endpoints.cachePrefix(cluster: "cluster2")
            let imported = { @Sendable () async throws -> Int in
                try await lab.withAdmin("cluster1") { try await $0.list(prefix: cache + "10.2.2").items.count }
            }
            let updates = 300
            let failuresBefore = [try await Self.remoteFailures(lab, "cluster1"), try await Self.remoteFailures(lab, "cluster2")]
            let notReady = Shared(0)
            let written = try await withThrowingTaskGroup(of: Int.self) { group in
                // The mesh stays ready: cluster1's view of cluster2, sampled throughout.
                group.addTask {
                    while !Task.isCancelled {
                        if (try? await Self.remoteReady(lab)) == false { notReady.withLock { $0 += 1 } }
                        try? await Task.sleep(for: .milliseconds(300))
                    }
                    return -1
                }
                // Churn: cluster2's endpoints change every 50 ms, each write retried until acknowledged.
                group.addTask {
                    try await EtcdClient.withClient(try lab.admin("cluster2")) { store in
                        for index in 0..<updates {
                            let ip = "10.2.\(200 + index / 250).\(index % 250 + 1)"
                            let deadline = ContinuousClock.now + .seconds(30)
                            while true {
                                do {
                                    try await store.put(MeshKind.endpoints.stateKey(cluster: "cluster2", name: ip), Self.endpointRecord(ip: ip, index: index))
                                    break
                                } catch where ContinuousClock.now < deadline {
                                    try await Task.sleep(for: .milliseconds(50))
                                }
                            }
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        return updates
                    }
                }
                // The exporter's leader stopped; the member every client of the importer tries
                // first (its mesh endpoint's relay among them) stopped; then the importer's leader
                // killed. The stopped ones stay down until the churn is over, so every client must
                // move to another member.
                var undo: [[String]] = []
                for (action, target) in [("stop", "cluster2/leader"), ("stop", "cluster1/m0"), ("kill", "cluster1/leader")] {
                    try await Task.sleep(for: .seconds(3))
                    let result = try await lab.meridian(["lab", "fault", action, "etcd", target, "--directory", lab.labDirectory])
                    try #require(result.status == 0, "\(action) \(target): \(result.stderr)")
                    if let line = result.stdout.split(separator: "\n").first(where: { $0.contains("undo: meridian lab fault start") }) {
                        undo.append(line.split(separator: " ").drop { $0 != "lab" }.map(String.init))
                    }
                }
                var written = -1
                while written < 0 { written = try #require(try await group.next()) }
                group.cancelAll()
                #expect(undo.count == 2, "\(undo)")
                for command in undo { try await lab.run(command + ["--directory", lab.labDirectory]) }
                return written
            }
            #expect(written == updates)
            #expect(notReady.value == 0, "cluster2 seen not ready \(notReady.value) times while members were killed and stopped")
            // Not even for a moment between two samples: neither cluster's connection to the other
            // failed (each relays its peer's watches from a member that went away).
            let failuresAfter = [try await Self.remoteFailures(lab, "cluster1"), try await Self.remoteFailures(lab, "cluster2")]
            let lastErrors = try await Self.remoteLastErrors(lab)
            #expect(failuresAfter == failuresBefore, "connections failed while store members went away (cluster1's, cluster2's); last errors: \(lastErrors)")
            try await eventually("every update arrived in cluster1", timeout: .seconds(60)) { try await imported() == updates }
            try await lab.waitReady("cluster1", timeout: "60s")
            let status = try await lab.meridian(["clustermesh", "status", "--context", "cluster1"])
            #expect(status.stdout.contains("Store: 3/3 members healthy"), "\(status.stdout)")

            // Two members of cluster1's store down: no quorum, and status says so.
            try await lab.run(["lab", "fault", "stop", "etcd", "cluster1/m1", "--directory", lab.labDirectory])
            try await lab.run(["lab", "fault", "stop", "etcd", "cluster1/m2", "--directory", lab.labDirectory])
            try await eventually("status says cluster1's store has no quorum", timeout: .seconds(30)) {
                let result = try await lab.meridian(["clustermesh", "status", "--context", "cluster1"])
                return result.status != 0 && result.stderr.contains("has no quorum")
            }
            let labStatus = try await lab.meridian(["lab", "status", "--directory", lab.labDirectory])
            #expect(labStatus.stdout.contains("no quorum"), "\(labStatus.stdout)")

            // Back: the mesh recovers, and what changed meanwhile arrives.
            try await lab.run(["lab", "fault", "start", "etcd", "cluster1/m1", "--directory", lab.labDirectory])
            try await lab.run(["lab", "fault", "start", "etcd", "cluster1/m2", "--directory", lab.labDirectory])
            try await lab.waitReady("cluster1", timeout: "90s")
            try await lab.withAdmin("cluster2") { _ = try await $0.delete(prefix: MeshKind.endpoints.statePrefix(cluster: "cluster2") + "10.2.200.") }
            try await eventually("deletions after the recovery arrive", timeout: .seconds(60)) { try await imported() == updates - 250 }
        }
    }

    @Test("a full disk under a store: writes fail and the control plane says why, nothing acknowledged is lost, and all recovers once space is freed")
    func fullDisk() async throws {
        try await LabFixture.with(clusters: 1, enable: false, storeDiskMiB: 192) { lab in
            let cluster = try lab.cluster("cluster1")
            let value = Data(repeating: UInt8(ascii: "d"), count: 64 * 1024)
            var acknowledged: [String] = []
            try await lab.withAdmin("cluster1") { store in
                for index in 0..<50 {
                    let key = "meridian/test/disk/before-\(index)"
                    try await store.put(key, value)
                    acknowledged.append(key)
                }
            }
            try await lab.run(["lab", "fault", "fill-disk", "etcd", "cluster1", "--directory", lab.labDirectory])
            var refused: (any Error)?
            for index in 0..<400 where refused == nil {
                let key = "meridian/test/disk/during-\(index)"
                do {
                    try await lab.withAdmin("cluster1") { try await $0.put(key, value) }
                    acknowledged.append(key)
                } catch {
                    refused = error
                }
            }
            #expect(refused != nil, "writes kept succeeding on a full disk")
            try await eventually("the control plane says the disk is full", timeout: .seconds(30)) {
                let log = (try? String(contentsOfFile: cluster.controlPlaneLog, encoding: .utf8)) ?? ""
                // Its etcd stopped on the full disk, or its store space guard saw the disk short first.
                return log.contains("the disk under \(cluster.paths.etcdData) is full") || log.contains("store is out of disk space")
            }
            let status = try await lab.meridian(["lab", "status", "--directory", lab.labDirectory])
            #expect(status.stdout.contains("held by a fill-disk fault"), "\(status.stdout)")

            try await lab.run(["lab", "fault", "free-disk", "etcd", "cluster1", "--directory", lab.labDirectory])
            try await eventually("the store takes writes again", timeout: .seconds(60)) {
                (try? await lab.withAdmin("cluster1") { try await $0.put("meridian/test/disk/after", Data("1".utf8)) }) != nil
            }
            let stored = try await lab.withAdmin("cluster1") { store in
                Dictionary(uniqueKeysWithValues: try await store.list(prefix: "meridian/test/disk/").items.map { ($0.key, $0.value) })
            }
            let missing = acknowledged.filter { stored[$0] != value }
            #expect(missing.isEmpty, "\(missing.count) of \(acknowledged.count) acknowledged writes lost or changed: \(missing.prefix(5))")
            try await lab.waitReady("cluster1")
        }
    }

    @Test("a node whose agent stays away past its grace period leaves its cluster and its peers; its agent's return registers it again")
    func nodeLeavesWhenItsGracePeriodRunsOut() async throws {
        try await LabFixture.with(clusters: 2, nodes: 1, nodeGraceSeconds: 10) { lab in
            try await lab.connect("cluster1", ["cluster2"])
            try await lab.waitReady("cluster1")
            let key = MeshKind.nodes.stateKey(cluster: "cluster2", name: "node1")
            let imported = MeshKind.nodes.cacheKey(cluster: "cluster2", name: "node1")
            try await eventually("cluster1 imports cluster2's node", timeout: .seconds(30)) {
                try await lab.withAdmin("cluster1") { try await $0.get(imported) } != nil
            }
            let cluster = try lab.cluster("cluster2")
            let node = try #require(cluster.nodes.first)
            await lab.lab.stopAgent(node)
            try await Task.sleep(for: .seconds(5))
            #expect(try await lab.withAdmin("cluster2") { try await $0.get(key) } != nil, "within its grace period the node stays")
            try await eventually("the node gone from its cluster and from cluster1 after its grace period", timeout: .seconds(30)) {
                let local = try await lab.withAdmin("cluster2") { try await $0.get(key) }
                let remote = try await lab.withAdmin("cluster1") { try await $0.get(imported) }
                return local == nil && remote == nil
            }
            let previous = lab.lab.registrations(of: node)
            try await lab.lab.startAgent(node, cluster: cluster, prefix: try #require(lab.lab.loadState()).prefix)
            try await lab.lab.waitForNode(node, cluster: cluster, timeout: .seconds(30), previous: previous)
            let log = try String(contentsOfFile: node.logPath, encoding: .utf8)
            #expect(log.split(separator: "\n").last { $0.contains("node registered") }?.contains("lease-kept=false") == true)
            #expect(try await lab.withAdmin("cluster2") { try await $0.get(key) } != nil)
        }
    }

    /// The cluster that answered each of `calls` calls from the client to the global service (nil: failed).
    static func answers(_ lab: LabFixture, calls: Int) async throws -> [String?] {
        var answers: [String?] = []
        for _ in 0..<calls {
            let reply = try await lab.exec("client", ["curl", "-s", "-m", "3", "http://backend/"])
            answers.append(reply.status == 0 ? DatapathIntegrationTests.field("cluster", in: reply.stdout) : nil)
        }
        return answers
    }

    /// An endpoint of cluster2 as its agents write one (Cilium's ipcache JSON).
    static func endpointRecord(ip: String, index: Int) -> Data {
        Data(#"{"IP":"\#(ip)","HostIP":"172.30.2.1","ID":\#(131_073 + index % 1000),"Key":0,"Metadata":"","K8sNamespace":"default","K8sPodName":"away-\#(index)"}"#.utf8)
    }

    static func remoteReady(_ lab: LabFixture) async throws -> Bool {
        let remotes = try await lab.status("cluster1")["remoteClusters"] as? [[String: Any]]
        return remotes?.first?["ready"] as? Bool == true
    }

    /// How often a cluster's connection to its one remote has failed so far.
    static func remoteFailures(_ lab: LabFixture, _ cluster: String) async throws -> Int {
        let remotes = try await lab.status(cluster)["remoteClusters"] as? [[String: Any]]
        return try #require(remotes?.first?["numFailures"] as? Int, "no failure count in \(String(describing: remotes))")
    }

    /// Each cluster's last error of its connection to its remote.
    static func remoteLastErrors(_ lab: LabFixture) async throws -> [String] {
        var errors: [String] = []
        for cluster in ["cluster1", "cluster2"] {
            let remotes = try await lab.status(cluster)["remoteClusters"] as? [[String: Any]]
            errors.append("\(cluster): \(remotes?.first?["lastError"] as? String ?? "none")")
        }
        return errors
    }

    static func processes(containing text: String) -> [Int32] {
        HostProcess.others().filter { HostProcess.commandLine($0)?.contains(text) == true }
    }
}
