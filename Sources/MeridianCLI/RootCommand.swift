import ArgumentParser
import Foundation
import MeridianAdmin

/// The `meridian` command: clustermesh management shaped like the cilium CLI, resource
/// management shaped like kubectl, the lab, and the control-plane daemon.
public struct Meridian: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "meridian",
        abstract: "Multi-cluster networking in the manner of Cilium ClusterMesh.",
        subcommands: [
            LabCommand.self, ClusterMeshCommand.self, ApplyCommand.self, WaitCommand.self, GetCommand.self, DeleteCommand.self,
            ExecCommand.self, ScaleCommand.self, RolloutCommand.self, ServiceCommand.self, PolicyCommand.self, EncryptionCommand.self, ObserveCommand.self, UICommand.self,
            ControlPlaneCommand.self, AgentCommand.self, CNICommand.self, ToolCommand.self,
            ConfigCommand.self, BenchCommand.self, DemoCommand.self, SuperviseCommand.self,
        ])

    public init() {}
}

/// The `--context` option every cluster-facing command takes.
struct ContextOptions: ParsableArguments {
    @Option(name: .long, help: "Context from the Meridian config file (default: its current-context).")
    var context: String?

    func resolve() throws -> MeridianContext {
        try MeridianConfig.load().context(context)
    }
}

/// Output formats shared by the read commands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, wide
}

/// Runs a command body, printing typed errors as `Error: ...` and exiting non-zero.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
