import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianControlPlane
import MeridianEtcd
import MeridianHost
import MeridianLab

/// `meridian lab up|down|status`: several clusters on this machine, for demos and tests.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab", abstract: "Run several clusters on this machine.", subcommands: [Up.self, Down.self, Status.self, RestartAgent.self, LabFaultCommand.self])

    struct LabOptions: ParsableArguments {
        @Option(help: "Lab directory (default: $MERIDIAN_LAB_DIR or ~/.local/state/meridian/lab).") var directory: String?

        var lab: Lab {
            let directory = URL(fileURLWithPath: self.directory ?? Lab.defaultDirectory).standardizedFileURL.path
            return Lab(directory: directory, executable: currentExecutable())
        }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the clusters' control planes and write their contexts.")
        @OptionGroup var options: LabOptions
        @Option(help: "Number of clusters.") var clusters: Int = 2
        @Option(help: "Nodes per cluster (network namespaces running `meridian agent`); 0 for control planes only.") var nodes: Int = 0
        @Option(help: "Prefix length of each node's pod CIDR (24: 253 pods per node).") var nodePodPrefix: Int = 24
        @Option(help: "Underlay MTU per cluster, comma-separated in cluster order (e.g. 1500,1400); the last value repeats.") var mtu: String = "1500"
        @Option(help: "Seconds between the control planes' scans for unused identities (default: theirs, 900).") var identityGCInterval: Int?
        @Option(help: "Members of each cluster's store: 1 (run by the control plane) or 3 or 5 (each an etcd of its own, real Raft).") var etcdMembers: Int = 1
        @Option(help: "Put each etcd's data on a tmpfs of this many MiB (160...65536), so `lab fault fill-disk` can fill it.") var storeDisk: Int?
        @Option(help: "Seconds a node stays registered after its agent stops (10...86400; default the agents', 900).") var nodeGracePeriod: Int?
        @Flag(help: "Also start Prometheus (Debian's) on a loopback port, scraping every daemon's /metrics each second.") var prometheus = false
        @Option(help: "Encrypt traffic between nodes, within and across clusters: wireguard (the kernel's, or wireguard-go without the module), wireguard-strict (also drop pod traffic to nodes without a tunnel and cleartext VXLAN from nodes with one, --encryption-strict), or none; per cluster comma-separated, e.g. wireguard-strict,none (the last repeats).")
        var encryption: String?
        @Option(help: "With --encryption: each node replaces its WireGuard key pair this often (the agents' --wireguard-rotation-interval, e.g. 20s, 24h; at least 10s). Off when absent.")
        var wireguardRotationInterval: String?

        func validate() throws {
            if let wireguardRotationInterval {
                guard let encryption, encryption.split(separator: ",").contains(where: { $0.hasPrefix("wireguard") }) else {
                    throw ValidationError("--wireguard-rotation-interval needs --encryption wireguard or wireguard-strict")
                }
                _ = try AgentCommand.rotationInterval(wireguardRotationInterval)
            }
        }

        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                let mtus = try mtu.split(separator: ",").map { value -> Int in
                    guard let number = Int(value.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--mtu: expected numbers separated by commas, got \(mtu)")
                    }
                    return number
                }
                let state = try await lab.up(clusters: clusters, nodes: nodes, mtus: mtus, nodePodPrefixLength: nodePodPrefix,
                                           identityGCSeconds: identityGCInterval, etcdMembers: etcdMembers, storeDiskMiB: storeDisk, nodeGraceSeconds: nodeGracePeriod,
                                           prometheus: prometheus, encryption: encryption, wireguardRotationInterval: wireguardRotationInterval,
                                           recordingContextsIn: MeridianConfig.path)
                for cluster in state.clusters {
                    print("✅ \(cluster.name) (ID \(cluster.id)) up: etcd \(cluster.endpoint), pods \(cluster.podCIDR), services \(cluster.serviceCIDR), underlay MTU \(cluster.underlayMTU), context \(cluster.name)")
                    for node in cluster.nodes {
                        print("   \(node.name): netns \(node.namespace), underlay \(node.underlayIP), log \(node.logPath)")
                    }
                }
                if let port = state.prometheusPort { print("📈 Prometheus at http://127.0.0.1:\(port)") }
                print("Contexts written to \(MeridianConfig.path)")
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop and remove everything the lab made.")
        @OptionGroup var options: LabOptions

        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                let removed = try await lab.down(configPath: MeridianConfig.path)
                print("✅ lab in \(lab.directory) removed (\(removed) contexts)")
            }
        }
    }

    struct RestartAgent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restart-agent", abstract: "Stop a node's agent, optionally wait, and start it again (its pods keep running).")
        @OptionGroup var options: LabOptions
        @Option(help: "Cluster name.") var cluster: String
        @Option(help: "Node name.") var node: String
        @Option(help: "Seconds to leave the agent down.") var downFor: Double = 0

        func run() async throws {
            try await reportingErrors {
                try await options.lab.restartAgent(cluster: cluster, node: node, downFor: .milliseconds(Int64(downFor * 1000)))
                print("✅ agent of \(cluster)/\(node) restarted")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the lab's clusters and their processes: pid, restarts, last exit.")
        @OptionGroup var options: LabOptions
        @Option(name: .shortAndLong, help: "Output: text or json (clusters, metrics addresses, Prometheus).") var output: String = "text"

        func validate() throws {
            guard ["text", "json"].contains(output) else { throw ValidationError("--output must be text or json, got \(output)") }
        }

        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                guard let state = lab.loadState() else {
                    if output == "json" { throw ValidationError("no lab in \(lab.directory)") }
                    print("No lab in \(lab.directory)")
                    return
                }
                if output == "json" {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(lab.statusReport(state)), as: UTF8.self))
                    return
                }
                for cluster in state.clusters {
                    let ready = FileManager.default.fileExists(atPath: cluster.paths.readyMarker)
                    print("\(cluster.name) (ID \(cluster.id)): \(ready ? "running" : "not running"), etcd \(cluster.endpoint), data \(cluster.dataDirectory)")
                    print("  " + Self.line("control-plane", ServiceRecord.load(cluster.controlPlaneService)))
                    if cluster.etcdMembers.isEmpty {
                        let etcd = try? await lab.pid(of: .etcd(cluster: cluster.name))
                        print("  " + "etcd".padding(toLength: 16, withPad: " ", startingAt: 0) + (etcd.map { "running, pid \($0) (run by the control plane)" } ?? "not running"))
                        if cluster.storeDiskMiB != nil, let disk = Lab.disk(cluster.paths.etcdData) { print("                  \(disk.summary)") }
                    } else if let health = await lab.storeHealth(cluster) {
                        print("  store           \(health.summary)")
                        for (member, state) in zip(cluster.etcdMembers, health.members) {
                            print("  " + Self.line("etcd \(member.name)", ServiceRecord.load(member.service)) + ", \(state.state) (\(member.clientURL))")
                            if cluster.storeDiskMiB != nil, let disk = Lab.disk(member.dataDirectory) { print("                  \(disk.summary)") }
                        }
                    }
                    for node in cluster.nodes {
                        print("  " + Self.line("agent \(node.name)", ServiceRecord.load(node.agentService)))
                    }
                }
                for pair in await lab.partitions() { print("partition \(pair[0]) <-> \(pair[1])") }
                if let port = state.prometheusPort {
                    print(Self.line("prometheus", ServiceRecord.load(lab.prometheusService)) + ", http://127.0.0.1:\(port)")
                }
            }
        }

        static func line(_ name: String, _ record: ServiceRecord?) -> String {
            let label = name.padding(toLength: 16, withPad: " ", startingAt: 0)
            guard let record else { return label + "stopped (no supervisor)" }
            let state = record.pid.map { "running, pid \($0)" } ?? "restarting"
            let exit = record.lastExit.map { ", last exit \($0)" + (record.lastExitAt.map { " at \(ISO8601DateFormatter().string(from: $0))" } ?? "") } ?? ""
            return label + "\(state), \(record.restarts) restarts\(exit)"
        }
    }
}

/// `meridian lab fault ...`: the faults users rehearse, by name, each printing what it did and
/// how to undo it.
struct LabFaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault", abstract: "Inject faults into the lab: partitions, stopped, killed, restarted and stalled processes.",
        subcommands: [Partition.self, Heal.self, Kill.self, Restart.self, Stop.self, Start.self, Stall.self, FillDisk.self, FreeDisk.self, List.self])

    /// The process a fault is aimed at: `agent CLUSTER/NODE`, `control-plane CLUSTER` or `etcd CLUSTER`.
    struct Target: ParsableArguments {
        @Argument(help: "agent, control-plane or etcd.") var kind: String
        @Argument(help: "CLUSTER/NODE for an agent, CLUSTER otherwise.") var target: String

        var process: LabProcess {
            get throws { try LabProcess(kind: kind, target: target) }
        }
    }

    static func print(_ report: LabFaultReport) {
        Swift.print("⚡ \(report.did)")
        if let undo = report.undo { Swift.print("   undo: \(undo)") }
    }

    struct Partition: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cut two clusters off from each other (node traffic and mesh connections).")
        @OptionGroup var options: LabCommand.LabOptions
        @Argument var first: String
        @Argument var second: String
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.partition(first, second)) }
        }
    }

    struct Heal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the partition between two clusters (none given: every partition).")
        @OptionGroup var options: LabCommand.LabOptions
        @Argument var clusters: [String] = []
        func validate() throws {
            guard clusters.isEmpty || clusters.count == 2 else { throw ValidationError("give two clusters, or none to heal every partition") }
        }
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.heal(clusters.first, clusters.last)) }
        }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "SIGKILL a process; its supervisor starts it again.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.signal(try target.process, SIGKILL)) }
        }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "SIGTERM a process; its supervisor starts it again.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.signal(try target.process, SIGTERM)) }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a process and its supervisor; it stays down until `start`.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.stop(try target.process)) }
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a stopped process under its supervisor and wait until it is ready.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.start(try target.process)) }
        }
    }

    struct Stall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "SIGSTOP a process for N seconds, then SIGCONT it.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        @Option(help: "How long the process stays stopped (0.1...3600).") var seconds: Double
        func validate() throws {
            guard (0.1...3600).contains(seconds) else { throw ValidationError("--seconds must be 0.1...3600, got \(seconds)") }
        }
        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                let process = try target.process
                Swift.print("⚡ \(process) stalled (SIGSTOP) for \(seconds) s; it is resumed when this command ends")
                LabFaultCommand.print(try await lab.stall(process, for: .milliseconds(Int64(seconds * 1000))))
            }
        }
    }

    struct FillDisk: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fill-disk", abstract: "Fill the disk under an etcd (lab up --store-disk puts each store on one of its own).")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.fillDisk(try target.process)) }
        }
    }

    struct FreeDisk: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "free-disk", abstract: "Undo fill-disk.")
        @OptionGroup var options: LabCommand.LabOptions
        @OptionGroup var target: Target
        func run() async throws {
            try await reportingErrors { LabFaultCommand.print(try await options.lab.freeDisk(try target.process)) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the partitions in place and the processes that are down.")
        @OptionGroup var options: LabCommand.LabOptions
        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                guard let state = lab.loadState() else { throw LabFaultError.noLab(directory: lab.directory) }
                for pair in await lab.partitions() { Swift.print("partition \(pair[0]) <-> \(pair[1])   undo: meridian lab fault heal \(pair[0]) \(pair[1])") }
                for cluster in state.clusters {
                    if ServiceRecord.load(cluster.controlPlaneService) == nil {
                        Swift.print("control-plane \(cluster.name) stopped   undo: meridian lab fault start control-plane \(cluster.name)")
                    }
                    for node in cluster.nodes where ServiceRecord.load(node.agentService) == nil {
                        Swift.print("agent \(cluster.name)/\(node.name) stopped   undo: meridian lab fault start agent \(cluster.name)/\(node.name)")
                    }
                }
            }
        }
    }
}
