import ArgumentParser
import Foundation
@testable import MeridianCLI
import Testing

/// The systemd units in deploy/systemd run exactly the commands this build accepts: each
/// `ExecStart=` line, with the example environment file's values, parses and validates as a
/// `meridian` command line; a renamed or removed flag fails here rather than on a user's host.
/// (This target links the CLI, which is why the test lives here.)
@Suite("Deploy units")
struct DeployUnitTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/systemd").path

    /// The unit's `ExecStart=` command line, continuation lines joined, `${VAR}` taken from `environment`
    /// and `%H` (the host name) given as `node1`.
    static func execStart(unit: String, environment: String) throws -> [String] {
        let text = try String(contentsOfFile: "\(directory)/\(unit)", encoding: .utf8)
        var variables: [String: String] = [:]
        for line in try String(contentsOfFile: "\(directory)/\(environment)", encoding: .utf8).split(separator: "\n")
        where !line.hasPrefix("#") && line.contains("=") {
            let parts = line.split(separator: "=", maxSplits: 1)
            variables[String(parts[0])] = String(parts[1])
        }
        let joined = text.replacingOccurrences(of: "\\\n", with: " ")
        let line = try #require(joined.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        var words = line.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)
        for index in words.indices {
            if words[index] == "%H" { words[index] = "node1" }
            if words[index].hasPrefix("${"), words[index].hasSuffix("}") {
                let name = String(words[index].dropFirst(2).dropLast())
                words[index] = try #require(variables[name], "\(unit) uses \(name), which \(environment) does not set")
            }
        }
        #expect(words.first == "/usr/local/bin/meridian")
        return Array(words.dropFirst())
    }

    @Test("each unit's flags parse and validate", arguments: [("meridian-control-plane.service", "control-plane.env"),
                                                                           ("meridian-agent.service", "agent.env")])
    func unitFlagsParse(unit: String, environment: String) throws {
        let arguments = try Self.execStart(unit: unit, environment: environment)
        #expect(throws: Never.self, "\(unit): \(arguments.joined(separator: " "))") {
            _ = try Meridian.parseAsRoot(arguments)
        }
    }

    @Test("a flag the CLI does not know fails the check")
    func unknownFlagFails() throws {
        var arguments = try Self.execStart(unit: "meridian-agent.service", environment: "agent.env")
        arguments.append("--no-such-flag")
        #expect(throws: (any Error).self) { _ = try Meridian.parseAsRoot(arguments) }
    }
}
