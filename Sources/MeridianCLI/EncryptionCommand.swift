import ArgumentParser
import MeridianAdmin

/// `meridian encryption status`: per node, the WireGuard mode (kernel or user space), whether it
/// runs strict mode, device, public key and peers with their last handshake and bytes, as the
/// agents publish them.
struct EncryptionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encryption", abstract: "Inspect transparent encryption between nodes.",
                                                    subcommands: [Status.self, Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a node a new WireGuard key pair; its peers follow its record.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(help: "The node whose key is replaced.") var node: String

        func run() async throws {
            try await reportingErrors {
                let (old, new) = try await EncryptionReport.rotate(try contextOptions.resolve(), node: node)
                print("✅ \(node): WireGuard key rotated, public key \(old) → \(new)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each node's WireGuard device, strict mode and peers.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            try await reportingErrors {
                let report = try await EncryptionReport.load(try contextOptions.resolve())
                print(output == .json ? Listing.encode(report) : report.render())
            }
        }
    }
}
