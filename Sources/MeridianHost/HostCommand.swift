import Foundation
import Subprocess

/// A failed host command (`ip`, `sysctl`), with the command line and what it printed, so a
/// setup error says exactly which step broke.
public struct HostCommandError: Error, Sendable, CustomStringConvertible {
    public var command: [String]
    public var status: String
    public var output: String

    public init(command: [String], status: String, output: String) {
        self.command = command
        self.status = status
        self.output = output
    }

    public var description: String {
        "`\(command.joined(separator: " "))` failed (\(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}

/// Runs the iproute2 and procps tools that set up links, addresses and routes. Netlink from
/// Swift by hand would repeat what `ip` already does well; these run only when devices and
/// pods are set up, never per packet.
public enum HostCommand {
    /// Runs `arguments[0]` found on PATH with the rest as arguments; returns its standard output.
    @discardableResult
    public static func run(_ arguments: [String]) async throws -> String {
        precondition(!arguments.isEmpty)
        let result = try await Subprocess.run(
            .name(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 16))
        guard case .exited(0) = result.terminationStatus else {
            throw HostCommandError(command: arguments, status: "\(result.terminationStatus)",
                                   output: result.standardError + result.standardOutput)
        }
        return result.standardOutput
    }

    /// The blocking form, for short-lived processes such as the CNI plugin that do one thing.
    @discardableResult
    public static func runSync(_ arguments: [String]) throws -> String {
        precondition(!arguments.isEmpty)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HostCommandError(command: arguments, status: "exit \(process.terminationStatus)", output: stderr + stdout)
        }
        return stdout
    }

    /// Runs the command and reports success instead of throwing: for teardown steps whose target may be gone.
    @discardableResult
    public static func attempt(_ arguments: [String]) async -> Bool {
        (try? await run(arguments)) != nil
    }

    public static func ip(_ arguments: String...) async throws {
        try await run(["ip"] + arguments)
    }

    public static func sysctl(_ key: String, _ value: String, namespace: String? = nil) async throws {
        if let namespace {
            try await run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", "\(key)=\(value)"])
        } else {
            try await run(["sysctl", "-q", "-w", "\(key)=\(value)"])
        }
    }
}
