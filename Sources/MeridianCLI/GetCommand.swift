import ArgumentParser
import Foundation
import MeridianAdmin

/// `meridian get KIND`: resources of the cluster, and the mesh state (nodes, endpoints,
/// identities, services) of the cluster and, with `--all-clusters`, of the clusters it imports.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "List resources and mesh state.")

    @OptionGroup var contextOptions: ContextOptions
    @Argument(help: "nodes, endpoints, identities, services, namespaces, pods, deployments, policies, serviceexports, serviceimports or clusterproperties.") var kind: Listing.Kind
    @Flag(help: "Include records imported from remote clusters.") var allClusters = false
    @Option(name: .shortAndLong, help: "Namespace (services).") var namespace: String?
    @Option(name: .shortAndLong, help: "text, wide or json.") var output: OutputFormat = .text

    func run() async throws {
        try await reportingErrors {
            let context = try contextOptions.resolve()
            let listing = try await Listing.load(kind, context: context, allClusters: allClusters, namespace: namespace, wide: output == .wide)
            print(output == .json ? listing.json : listing.table.render())
        }
    }
}

extension Listing.Kind: ExpressibleByArgument {}
