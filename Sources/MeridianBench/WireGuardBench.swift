import Foundation
import MeridianDatapath
import MeridianHost
import MeridianLab
import MeridianPKI

/// The encrypted rows of `bench datapath`: the lab's agents restarted with `--encryption
/// wireguard` (user-space `wireguard-go` where the kernel has no WireGuard), then pod to pod
/// across nodes and across clusters from pods started after the switch (so with the encrypted
/// path's MTU), and the bare `wireguard-go` tunnel of the same run as their floor.
enum WireGuardRows {
    static func measure(_ bench: LabDriver, runs: Int, seconds: Int) async throws -> [DatapathBenchmark.Row] {
        BenchLab.progress("turning WireGuard on: agents restarted with --encryption wireguard…")
        let clusters = ["cluster1", "cluster2"]
        for cluster in clusters { try await bench.lab.restartAgents(cluster: cluster, encryption: "wireguard") }
        let nodeCount = try clusters.reduce(0) { $0 + (try bench.cluster($1).nodes.count) }
        try await LabDriver.waitUntil("every node has a WireGuard peer for each of the other \(nodeCount - 1)", timeout: .seconds(60)) {
            for cluster in clusters {
                if try await peerCounts(bench, cluster: cluster).contains(where: { $0 != nodeCount - 1 }) { return false }
            }
            return true
        }

        try await bench.mustRun(["apply", "--context", "cluster1", "-f", "-"], stdin: BenchLab.clientPod("wg-client", node: "node1", labels: ["bench": "wg-client"])
            + BenchLab.serverPod("wg-peer", node: "node2", labels: ["bench": "none"]))
        try await bench.mustRun(["apply", "--context", "cluster2", "-f", "-"], stdin: BenchLab.serverPod("wg-remote", node: "node1", labels: ["bench": "none"]))
        let ipsC1 = try await bench.waitForPods(["wg-client", "wg-peer"], context: "cluster1")
        let ipsC2 = try await bench.waitForPods(["wg-remote"], context: "cluster2")
        let client = try bench.podPlace(clusterID: 1, node: "node1", pod: "wg-client")
        let podMTU = try await mtu(namespace: client.namespace, device: "eth0")

        let deviceMTU = try bench.cluster("cluster1").underlayMTU - MeridianWireGuard.overhead
        try await Baselines.createWireGuard(prefix: bench.prefix, executable: bench.executable, directory: bench.lab.directory, mtu: deviceMTU)
        let bare = ToolPlace(namespace: "\(bench.prefix)-bw-a")

        let node = { (cluster: String, name: String) throws -> String in
            guard let node = try bench.cluster(cluster).nodes.first(where: { $0.name == name }) else { throw BenchError.missing("\(cluster) \(name)") }
            return node.namespace
        }
        let targets: [(String, String, ToolPlace, String, [String])] = [
            ("cross_node_wireguard", "Meridian pod to pod across nodes, VXLAN in WireGuard (wireguard-go), pod MTU \(podMTU)",
             client, ipsC1["wg-peer"]!, [try node("cluster1", "node1"), try node("cluster1", "node2")]),
            ("cross_cluster_wireguard", "Meridian pod to pod across clusters, VXLAN in WireGuard (wireguard-go) through the router, pod MTU \(podMTU)",
             client, ipsC2["wg-remote"]!, [try node("cluster1", "node1"), try node("cluster2", "node1")]),
            ("bare_wireguard_go", "bare wireguard-go tunnel between two underlay namespaces across the lab router, MTU \(deviceMTU) (user-space WireGuard baseline)",
             bare, Baselines.wireGuardPeer, ["\(bench.prefix)-bw-a", "\(bench.prefix)-bw-b"]),
        ]
        var rows: [DatapathBenchmark.Row] = []
        for (name, what, place, address, namespaces) in targets {
            // A handshake before the first measurement, so no run pays for it (under CI's load the
            // first answer across clusters once took over 30 s).
            try await LabDriver.waitUntil("\(name): \(address) answers through the tunnel", timeout: .seconds(90)) {
                await HostCommand.attempt(place.command(["curl", "-sf", "-m", "2", "-o", "/dev/null", "http://\(address):8080/"]))
            }
            let tunnels = ProcFS.pids(named: "wireguard-go", inNetworkNamespaces: namespaces)
            guard tunnels.count == namespaces.count else {
                throw BenchError.miswired("\(name): expected one wireguard-go in each of \(namespaces), found \(tunnels.count)")
            }
            rows.append(try await DatapathBenchmark.measureRow(name: name, what: what, place: place, address: address, runs: runs,
                                                               seconds: seconds, wireguardGo: tunnels))
        }
        return rows
    }

    /// How many peers each node of `cluster` reports in `encryption status`.
    static func peerCounts(_ bench: LabDriver, cluster: String) async throws -> [Int] {
        let output = try await bench.mustRun(["encryption", "status", "--context", cluster, "-o", "json"])
        guard let report = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let nodes = report["nodes"] as? [[String: Any]], !nodes.isEmpty else { return [0] }
        return nodes.map { ($0["peers"] as? [Any])?.count ?? 0 }
    }

    static func mtu(namespace: String, device: String) async throws -> Int {
        let output = try await HostCommand.run(["ip", "-n", namespace, "link", "show", "dev", device])
        let words = output.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let index = words.firstIndex(of: "mtu"), index + 1 < words.count, let mtu = Int(words[index + 1]) else {
            throw BenchError.unreadableOutput(tool: "ip link show", target: "\(namespace) \(device)", output: output)
        }
        return mtu
    }
}

extension Baselines {
    static let wireGuardPeer = "192.168.76.2"

    /// The bare tunnel's device in `namespace`: `<prefix>-w<side>` (so its control socket,
    /// `/var/run/wireguard/<device>.sock`, carries the lab's prefix and `lab down` removes it),
    /// or the lab nodes' hashed name when that would be longer than the kernel's 15 characters.
    static func wireGuardDevice(prefix: String, namespace: String, side: String) -> String {
        let named = "\(prefix)-w\(side)"
        return named.utf8.count <= 15 ? named : Lab.wireGuardDevice(namespace: namespace)
    }

    /// `-bw-a` on cluster1's segment and `-bw-b` on cluster2's, joined by a `wireguard-go` tunnel
    /// (one process in each, keys made here and kept in the lab's directory, configured with `wg`,
    /// device MTU `mtu`) across the lab router; the measuring servers run in `-bw-b`. Everything
    /// lives in the two namespaces, which `lab down` removes with their processes.
    static func createWireGuard(prefix: String, executable: String, directory: String, mtu: Int) async throws {
        let underlay = "\(prefix)-underlay"
        let ends = [("\(prefix)-bw-a", "a", 1, "172.30.1.203", "192.168.76.1"),
                    ("\(prefix)-bw-b", "b", 2, "172.30.2.203", wireGuardPeer)]
        var keys: [String] = []
        for (namespace, side, cluster, local, inner) in ends {
            try await underlayEndpoint(namespace: namespace, underlay: underlay, port: "bw\(cluster)", cluster: cluster, local: local)
            let device = try WireGuardDevice(name: wireGuardDevice(prefix: prefix, namespace: namespace, side: side), mtu: mtu)
            let log = "\(directory)/\(device.name).log"
            try await HostProcess.launchDetached(["ip", "netns", "exec", namespace, "wireguard-go", "-f", device.name], logPath: log,
                                                 environment: ["WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"])
            try await device.waitReady(timeout: .seconds(10), logPath: log)
            let pair = try WireGuardKeyPair.create(at: "\(directory)/\(device.name).key")
            keys.append(pair.publicKey)
            try await HostCommand.run(["wg", "set", device.name, "listen-port", "\(device.listenPort)", "private-key", pair.path])
            try await HostCommand.run(["ip", "-n", namespace, "link", "set", device.name, "mtu", "\(mtu)", "up"])
            try await HostCommand.run(["ip", "-n", namespace, "addr", "add", "\(inner)/24", "dev", device.name])
        }
        for (index, (namespace, side, _, _, _)) in ends.enumerated() {
            let (_, _, _, remote, remoteInner) = ends[1 - index]
            try await HostCommand.run(["wg", "set", wireGuardDevice(prefix: prefix, namespace: namespace, side: side),
                                       "peer", keys[1 - index], "endpoint", "\(remote):\(MeridianWireGuard.listenPort)", "allowed-ips", "\(remoteInner)/32"])
        }
        let server = "\(prefix)-bw-b"
        try await HostProcess.launchDetached(["ip", "netns", "exec", server, "iperf3", "-s"], logPath: nil)
        try await HostProcess.launchDetached(["ip", "netns", "exec", server, "sockperf", "sr", "--tcp", "-p", "11111"], logPath: nil)
        try await HostProcess.launchDetached(["ip", "netns", "exec", server, executable, "tool", "echo-server", "--port", "8080"], logPath: nil)
    }
}
