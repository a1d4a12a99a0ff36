import ArgumentParser
import Foundation
import MeridianAdmin

/// `meridian policy`: questions about the network policy in force.
struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "policy", abstract: "Inspect network policy.",
                                                    subcommands: [Trace.self])

    /// `meridian policy trace`: would a connection pass, and which rules decide it. Each side is
    /// judged by its own cluster's policies, the sender's egress and the receiver's ingress, with
    /// the identities the pods have in the store.
    struct Trace: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "trace", abstract: "Explain whether traffic from one pod to another (or to an address) is allowed.")

        @OptionGroup var contextOptions: ContextOptions
        @Option(help: "Source pod as NAMESPACE/POD (or POD in default).") var from: String
        @Option(help: "Destination pod as NAMESPACE/POD, or an IPv4 address outside the clusters.") var to: String
        @Option(help: "Destination port and protocol, e.g. 80/TCP, 53/UDP.") var port: String
        @Option(help: "Context of the source pod (default: --context).") var fromContext: String?
        @Option(help: "Context of the destination pod (default: --context).") var toContext: String?
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            try await reportingErrors {
                let config = try MeridianConfig.load()
                let base = try config.context(contextOptions.context)
                let trace = try await PolicyTrace.run(from: from, to: to, port: port,
                                                      fromContext: try fromContext.map { try config.context($0) } ?? base,
                                                      toContext: try toContext.map { try config.context($0) } ?? base)
                print(output == .json ? Listing.encode(trace.result) : trace.text)
            }
        }
    }
}
