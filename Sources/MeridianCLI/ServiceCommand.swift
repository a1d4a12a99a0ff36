import ArgumentParser
import MeridianAdmin

/// `meridian service list`: every frontend the cluster's nodes program, with its backends,
/// their cluster, state and whether the service's affinity prefers them.
struct ServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "service", abstract: "Inspect service load balancing.",
                                                    subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Frontends and their backends, local and remote.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            try await reportingErrors {
                let frontends = try await ServiceList.load(try contextOptions.resolve())
                print(output == .json ? Listing.encode(frontends) : ServiceList.table(frontends).render())
            }
        }
    }
}
