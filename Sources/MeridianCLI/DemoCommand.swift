import ArgumentParser
import Foundation
import MeridianLab

/// `meridian demo`: the seed walkthrough, step by step, with each step's result checked. Runs
/// the real `meridian` commands a user would type, in a lab of its own.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run the ClusterMesh walkthrough on a two-cluster lab and check every step.")

    @Flag(help: "Leave the lab running afterwards.") var keep = false
    @Option(help: "Lab directory (default: $MERIDIAN_LAB_DIR or ~/.local/state/meridian/lab).") var directory: String?

    struct StepFailed: Error, CustomStringConvertible {
        var description: String
    }

    func run() async throws {
        let labDirectory = URL(fileURLWithPath: directory ?? Lab.defaultDirectory).standardizedFileURL.path
        let executable = currentExecutable()
        var environment = ProcessInfo.processInfo.environment
        environment["MERIDIAN_LAB_DIR"] = labDirectory
        var passed: [String] = []
        func step(_ title: String, _ arguments: [String], stdin: String? = nil, expect: (String) -> Bool = { _ in true }) throws -> String {
            print("\n▶ \(title)\n$ meridian \(arguments.joined(separator: " "))")
            let (status, output) = try Self.runChild(executable, arguments, environment: environment, stdin: stdin)
            print(output, terminator: output.hasSuffix("\n") ? "" : "\n")
            guard status == 0, expect(output) else { throw StepFailed(description: "step failed: \(title)") }
            passed.append(title)
            return output
        }
        var failure: (any Error)?
        do {
            _ = try step("Bring up two clusters", ["lab", "up", "--clusters", "2"])
            _ = try step("Enable ClusterMesh in cluster1", ["clustermesh", "enable", "--context", "cluster1"])
            _ = try step("Enable ClusterMesh in cluster2", ["clustermesh", "enable", "--context", "cluster2"])
            _ = try step("Connect the clusters", ["clustermesh", "connect", "--context", "cluster1", "--destination-context", "cluster2"]) {
                $0.contains("cluster1 <=> cluster2")
            }
            for name in ["cluster1", "cluster2"] {
                _ = try step("Wait until \(name) is connected to its peer and ready", ["clustermesh", "status", "--context", name, "--wait", "--wait-duration", "2m"]) {
                    $0.contains("1/1 remote clusters ready")
                }
            }
            for name in ["cluster1", "cluster2"] {
                _ = try step("Apply the global Service in \(name)", ["apply", "--context", name, "-f", "-"], stdin: Self.seedService) {
                    $0.contains("service/my-backend-service")
                }
            }
            let deadline = Date().addingTimeInterval(30)
            while true {
                let (_, output) = try Self.runChild(executable, ["get", "services", "--context", "cluster1", "--all-clusters"], environment: environment, stdin: nil)
                if output.contains("cluster2") || Date() > deadline { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            _ = try step("cluster1 sees the Service exported by both clusters", ["get", "services", "--context", "cluster1", "--all-clusters"]) {
                $0.split(separator: "\n").filter { $0.contains("my-backend-service") }.count == 2 && $0.contains("cluster2")
            }
            _ = try step("Mesh status of cluster1", ["clustermesh", "status", "--context", "cluster1"]) { $0.contains("ready") }
        } catch {
            failure = error
        }
        if !keep || failure != nil {
            _ = try? Self.runChild(executable, ["lab", "down"], environment: environment, stdin: nil)
            print("\nLab removed.")
        } else {
            print("\nLab kept in \(labDirectory); remove it with `meridian lab down`.")
        }
        print("\nSummary: \(passed.count) steps passed" + (failure.map { ", then \($0)" } ?? ", all held."))
        print("The datapath (pods, kernel load balancing across clusters) arrives with the next issues; this demo stops after the control plane.")
        if failure != nil { throw ExitCode.failure }
    }

    static func runChild(_ executable: String, _ arguments: [String], environment: [String: String], stdin: String?) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let seedService = """
    apiVersion: v1
    kind: Service
    metadata:
      name: my-backend-service
      annotations:
        io.cilium/global-service: "true"
    spec:
      selector:
        app: backend
      ports:
        - port: 80
          targetPort: 8080
    """
}
