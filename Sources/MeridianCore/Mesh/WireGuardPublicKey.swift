import Foundation

/// A WireGuard public key as nodes publish it in `WireguardPubKey`: standard base64 of a
/// 32-byte Curve25519 point (44 characters with one `=`).
///
/// It exists because a peer's key is configured into this node's WireGuard device as it came:
/// a key that is not exactly 32 bytes would make `wg set` fail for every peer of the pass, and
/// the all-zero key is a low-order point that WireGuard refuses to handshake with, so such a
/// record could only break or silently disable encryption towards the node. The text is checked
/// for length before it is decoded, so a huge value costs nothing.
public struct WireGuardPublicKey: Sendable, Hashable, CustomStringConvertible {
    /// The key's 32 bytes.
    public let bytes: [UInt8]

    /// The length of the base64 text of 32 bytes.
    public static let textLength = 44
    public static let byteCount = 32

    /// Parses the published text; nil when it is not the base64 of 32 bytes other than zero.
    public init?(_ text: String) {
        guard Self.problem(text) == nil, let data = Data(base64Encoded: text) else { return nil }
        bytes = Array(data)
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount, bytes.contains(where: { $0 != 0 }) else { return nil }
        self.bytes = bytes
    }

    /// The base64 text, as `wg` prints and reads it.
    public var description: String { Data(bytes).base64EncodedString() }

    /// Why `text` is not a WireGuard public key; nil when it is one.
    public static func problem(_ text: String) -> String? {
        guard text.utf8.count == textLength else {
            return "is \(text.utf8.count) bytes long, not the \(textLength) of a base64 32-byte key"
        }
        guard let data = Data(base64Encoded: text), data.count == byteCount else {
            return "is not the standard base64 of \(byteCount) bytes"
        }
        guard data.contains(where: { $0 != 0 }) else { return "is the all-zero key, which WireGuard refuses" }
        return nil
    }
}
