#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Crypto
import Foundation

/// A node's WireGuard key pair (Curve25519), kept in one file of the node's state directory.
///
/// It exists so that a node's private key is made on the node and never leaves it: the file
/// holds the base64 private key as `wg genkey` prints it (mode 0600, written through
/// `PEMFiles`' create-then-rename, so it is never readable by others even briefly), the device
/// reads it from there (`wg set DEV private-key FILE`), and only the public key is published in
/// the node record. The same file is used again after a restart, so peers keep the key they
/// have. A file that is not 0600, or does not hold a 32-byte key, is refused rather than used.
public struct WireGuardKeyPair: Sendable {
    /// The base64 public key, as `wg pubkey` prints it and node records carry it.
    public let publicKey: String
    /// Where the private key is.
    public let path: String

    static let mode: mode_t = 0o600

    /// Reads the key pair at `path`, or makes one there if there is no file.
    public static func loadOrCreate(at path: String) throws(PKIError) -> WireGuardKeyPair {
        let operation = "load WireGuard key"
        // attributesOfItem does not follow a symbolic link, so a link is refused as not a regular file.
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path) {
            guard attributes[.type] as? FileAttributeType == .typeRegular else {
                throw PKIError(operation: operation, message: "not a regular file", path: path)
            }
            let permissions = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
            guard permissions == Int(mode) else {
                throw PKIError(operation: operation, message: "mode is \(String(permissions, radix: 8)), must be 600 (the private key must not be readable by others)", path: path)
            }
            guard ((attributes[.size] as? NSNumber)?.intValue ?? Int.max) <= 128, let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else {
                throw PKIError(operation: operation, message: "does not hold a base64 32-byte private key", path: path)
            }
            let key = try PKIError.wrapping(operation, path: path) { try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: bytes) }
            return WireGuardKeyPair(publicKey: key.publicKey.rawRepresentation.base64EncodedString(), path: path)
        }
        guard !FileManager.default.fileExists(atPath: path) else {
            throw PKIError(operation: operation, message: "cannot read its attributes", path: path)
        }
        return try create(at: path)
    }

    /// Makes a new key pair at `path`, replacing the one there (key rotation): the new file is
    /// written beside it with mode 0600 and renamed over it, so the file always holds one whole key.
    public static func create(at path: String) throws(PKIError) -> WireGuardKeyPair {
        let key = Curve25519.KeyAgreement.PrivateKey()
        try PEMFiles.atomicallyWrite(key.rawRepresentation.base64EncodedString() + "\n", to: path, mode: mode,
                                     operation: "write WireGuard private key")
        return WireGuardKeyPair(publicKey: key.publicKey.rawRepresentation.base64EncodedString(), path: path)
    }
}
