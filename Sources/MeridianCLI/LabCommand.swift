import ArgumentParser
import Foundation
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
                                           identityGCSeconds: identityGCInterval)
                var config = try MeridianConfig.load()
                for cluster in state.clusters {
                    config.upsert(MeridianContext(labCluster: cluster, lab: lab.directory))
                }
                try config.save()
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
                await lab.down()
                var config = try MeridianConfig.load()
                let before = config.contexts.count
                config.contexts.removeAll { $0.lab == lab.directory }
                if let current = config.currentContext, !config.contexts.contains(where: { $0.name == current }) {
                    config.currentContext = config.contexts.first?.name
                }
                if config.contexts.count != before { try config.save() }
                print("✅ lab in \(lab.directory) removed (\(before - config.contexts.count) contexts)")
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
                let lab = options.lab
                guard let state = lab.loadState(), let labCluster = state.cluster(cluster),
                      let labNode = labCluster.nodes.first(where: { $0.name == node }) else {
                    throw ValidationError("no node \(node) in cluster \(cluster) of the lab in \(lab.directory)")
                }
                await lab.stopAgent(labNode)
                if downFor > 0 { try await Task.sleep(for: .milliseconds(Int(downFor * 1000))) }
                let previous = lab.registrations(of: labNode)
                try await lab.startAgent(labNode, cluster: labCluster, prefix: state.prefix)
                try await lab.waitForNode(labNode, cluster: labCluster, timeout: .seconds(30), previous: previous)
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

extension MeridianContext {
    /// The administrator's context for a lab cluster.
    init(labCluster cluster: LabCluster, lab: String?) {
        self.init(name: cluster.name, cluster: cluster.name, endpoint: cluster.endpoint, serverName: cluster.serverName,
                  certificateAuthority: cluster.paths.caCertificate, clientCertificate: cluster.paths.adminCertificate,
                  clientKey: cluster.paths.adminKey, lab: lab)
    }
}

/// The path of the running `meridian` binary, so the lab starts the same build.
func currentExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
