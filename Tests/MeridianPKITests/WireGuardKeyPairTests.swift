import Foundation
import MeridianPKI
import Testing

/// The node's WireGuard key: made once, owner-only, the same after a restart, and the public key
/// the one `wg` derives (checked with wireguard-tools itself, which configures the device).
@Suite struct WireGuardKeyPairTests {
    @Test func madeOnceOwnerOnlyAndKeptAcrossLoads() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("state/wireguard.key")
        let first = try WireGuardKeyPair.loadOrCreate(at: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(Data(base64Encoded: first.publicKey)?.count == 32)
        let again = try WireGuardKeyPair.loadOrCreate(at: path)
        #expect(again.publicKey == first.publicKey)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains(first.publicKey), "the file holds the private key, not the public one")
    }

    @Test func aKeyFileOthersCanReadIsRefused() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("wireguard.key")
        _ = try WireGuardKeyPair.loadOrCreate(at: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let error = #expect(throws: PKIError.self) { try WireGuardKeyPair.loadOrCreate(at: path) }
        #expect(error?.message.contains("must be 600") == true)
    }

    @Test func aFileWithoutA32ByteKeyIsRefused() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("wireguard.key")
        FileManager.default.createFile(atPath: path, contents: Data("c2hvcnQ=\n".utf8), attributes: [.posixPermissions: 0o600])
        #expect(throws: PKIError.self) { try WireGuardKeyPair.loadOrCreate(at: path) }
    }

    /// Needs wireguard-tools (scripts/setup.sh installs it).
    @Test
    func thePublicKeyIsTheOneWgDerives() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.path("wireguard.key")
        let pair = try WireGuardKeyPair.loadOrCreate(at: path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/wg")
        process.arguments = ["pubkey"]
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let derived = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(derived.trimmingCharacters(in: .whitespacesAndNewlines) == pair.publicKey)
    }
}
