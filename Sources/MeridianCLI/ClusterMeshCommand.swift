import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianStore

/// `meridian clustermesh ...`, shaped like `cilium clustermesh ...`.
struct ClusterMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clustermesh", abstract: "Enable, connect, disconnect and inspect the cluster mesh.",
        subcommands: [Enable.self, Disable.self, Connect.self, Disconnect.self, Status.self])

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish the cluster config and start heartbeat and export; the mesh endpoint serves peers from then on.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(help: "Seconds between heartbeats; peers reconnect after two missed beats.") var heartbeatInterval: Double = 60
        @Option(help: "Seconds an unreachable peer's data is kept before it is withdrawn (0 = forever).") var cacheTTL: Double = 0
        @Option(help: ArgumentHelp("Which endpoints and identities peers may read: all, or global-namespaces (only those of namespaces annotated clustermesh.cilium.io/global: \"true\", and only their services).",
                                   valueName: "all|global-namespaces"))
        var exportScope: ExportScope = .all

        func validate() throws {
            guard heartbeatInterval >= 0.1 else { throw ValidationError("--heartbeat-interval must be at least 0.1 seconds") }
            guard cacheTTL >= 0 else { throw ValidationError("--cache-ttl must not be negative") }
        }

        func run() async throws {
            try await reportingErrors {
                let settings = try await ClusterMesh.enable(try contextOptions.resolve(), heartbeatInterval: heartbeatInterval, cacheTTL: cacheTTL,
                                                            exportScope: exportScope)
                print("✅ ClusterMesh enabled on \(settings.name) (ID \(settings.id)): cilium/cluster-config/\(settings.name) published, heartbeat every \(heartbeatInterval) s")
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop exporting; peers lose access to this cluster's state.")
        @OptionGroup var contextOptions: ContextOptions

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                try await ClusterMesh.disable(context)
                print("ClusterMesh disabled on \(context.cluster)")
            }
        }
    }

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Connect this cluster with one or more others: each importer gets a read-only credential for the exporter's mesh endpoint (30 days; connect again to renew).")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .customLong("destination-context"), parsing: .upToNextOption, help: "Context(s) of the cluster(s) to connect to.")
        var destinations: [String] = []
        @Option(help: "bidirectional (default), unicast or mesh.") var connectionMode: String = "bidirectional"
        @Flag(help: "Connect clusters whose CAs differ (each side trusts the other's CA for this connection).")
        var allowMismatchingCA = false
        @Flag(help: "Connect a cluster whose nodes encrypt (WireGuard) with one whose nodes (some or all) do not; traffic between those nodes is then not encrypted.")
        var allowMixedEncryption = false

        func validate() throws {
            guard !destinations.isEmpty else { throw ValidationError("--destination-context is required") }
            guard ConnectionMode(rawValue: connectionMode) != nil else {
                throw ValidationError("--connection-mode must be one of bidirectional, unicast, mesh; got \(connectionMode)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let config = try MeridianConfig.load()
                let mode = ConnectionMode(rawValue: connectionMode)!
                let names = try await ClusterMesh.connect(try config.context(contextOptions.context), to: try destinations.map { try config.context($0) },
                                                          mode: mode, allowMismatchingCA: allowMismatchingCA, allowMixedEncryption: allowMixedEncryption)
                for destination in names.dropFirst() {
                    print("✅ Connected cluster \(names[0]) \(mode == .unicast ? "=>" : "<=>") \(destination)")
                }
                if mode == .mesh && names.count > 2 { print("✅ Meshed clusters \(names.joined(separator: ", "))") }
            }
        }
    }

    struct Disconnect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disconnect clusters: the credentials are revoked at once and each side drains the other's data.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .customLong("destination-context"), parsing: .upToNextOption) var destinations: [String] = []
        @Option(help: "bidirectional (default) or unicast.") var connectionMode: String = "bidirectional"

        func validate() throws {
            guard !destinations.isEmpty else { throw ValidationError("--destination-context is required") }
            guard ["bidirectional", "unicast"].contains(connectionMode) else {
                throw ValidationError("--connection-mode must be bidirectional or unicast for disconnect")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let config = try MeridianConfig.load()
                let names = try await ClusterMesh.disconnect(try config.context(contextOptions.context), from: try destinations.map { try config.context($0) },
                                                             bothWays: connectionMode == "bidirectional")
                for remote in names.dropFirst() {
                    print("✅ Disconnected cluster \(names[0]) \(connectionMode == "unicast" ? "=>" : "<=>") \(remote)")
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the state of every remote cluster this cluster imports.")
        @OptionGroup var contextOptions: ContextOptions
        @Flag(help: "Wait until every configured remote cluster is ready.") var wait = false
        @Option(help: "How long --wait waits (e.g. 90s, 5m, 1h).") var waitDuration: String = "5m"
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard DurationParser.parse(waitDuration) != nil else {
                throw ValidationError("--wait-duration: expected a duration such as 30s, 5m or 1h, got \(waitDuration)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let report = try await ClusterMesh.status(try contextOptions.resolve(), wait: wait ? DurationParser.parse(waitDuration) : nil)
                print(output == .json ? report.json : report.text)
                if wait && !report.allReady {
                    FileHandle.standardError.write(Data("Error: timed out after \(waitDuration) waiting for all remote clusters to be ready\n".utf8))
                    throw ExitCode.failure
                }
            }
        }
    }
}

extension ExportScope: ExpressibleByArgument {}
