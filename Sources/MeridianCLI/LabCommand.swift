import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianControlPlane
import MeridianLab

/// `meridian lab up|down|status`: several clusters on this machine, for demos and tests.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab", abstract: "Run several clusters on this machine.", subcommands: [Up.self, Down.self, Status.self, RestartAgent.self])

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
                                           identityGCSeconds: identityGCInterval, recordingContextsIn: MeridianConfig.path)
                for cluster in state.clusters {
                    print("✅ \(cluster.name) (ID \(cluster.id)) up: etcd \(cluster.endpoint), pods \(cluster.podCIDR), services \(cluster.serviceCIDR), underlay MTU \(cluster.underlayMTU), context \(cluster.name)")
                    for node in cluster.nodes {
                        print("   \(node.name): netns \(node.namespace), underlay \(node.underlayIP), log \(node.logPath)")
                    }
                }
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
        static let configuration = CommandConfiguration(abstract: "Show the lab's clusters and their processes.")
        @OptionGroup var options: LabOptions

        func run() async throws {
            try await reportingErrors {
                let lab = options.lab
                guard let state = lab.loadState() else {
                    print("No lab in \(lab.directory)")
                    return
                }
                for cluster in state.clusters {
                    let ready = FileManager.default.fileExists(atPath: cluster.paths.readyMarker)
                    print("\(cluster.name) (ID \(cluster.id)): \(ready ? "running" : "not running"), etcd \(cluster.endpoint), data \(cluster.dataDirectory)")
                }
            }
        }
    }
}
