import Foundation
import Logging
import NIOCore
import Synchronization

/// Why the DNS server could not serve one datagram as asked: the key it counts and logs by.
/// None of these ends the listener; the datagram is answered FORMERR or dropped.
enum DNSDatagramFailure: Hashable, Sendable, CustomStringConvertible {
    /// From port 0, or from an address no query comes from (unspecified, multicast, broadcast):
    /// no reply could reach a sender there, or it would reach many hosts. Nothing is sent.
    case unreplyableSource
    /// Shorter than a DNS header. Nothing is sent.
    case tooShort
    /// A response rather than a query. Nothing is sent, so two servers cannot answer each other forever.
    case response
    /// A query that does not parse; answered FORMERR.
    case malformed
    /// The kernel refused to send the reply (no route back to a spoofed source, a full buffer...).
    case replyNotSent(errno: CInt)

    var description: String {
        switch self {
        case .unreplyableSource: "source cannot take a reply"
        case .tooShort: "shorter than a DNS header"
        case .response: "a response, not a query"
        case .malformed: "malformed query"
        case let .replyNotSent(code): "reply not sent: \(errnoDescription(code))"
        }
    }
}

/// Counts the failed datagrams of a DNS server by reason and logs each reason at its 1st, 2nd,
/// 4th, 8th... occurrence: a pod spraying garbage costs a few lines, not one per datagram.
final class DNSDatagramFailureLog: Sendable {
    private let logger: Logger
    private let counts = Mutex<[DNSDatagramFailure: Int]>([:])

    init(logger: Logger) {
        self.logger = logger
    }

    /// How many datagrams failed for each reason since the server started.
    var snapshot: [DNSDatagramFailure: Int] { counts.withLock { $0 } }

    func record(_ failure: DNSDatagramFailure, source: SocketAddress, detail: String? = nil) {
        let count = counts.withLock { counts in
            counts[failure, default: 0] += 1
            return counts[failure, default: 0]
        }
        guard count & (count - 1) == 0 else { return }
        var metadata: Logger.Metadata = ["reason": "\(failure)", "source": "\(source)", "count": "\(count)", "nextLogAt": "\(count * 2)"]
        if let detail { metadata["detail"] = "\(detail)" }
        logger.warning("DNS datagram failed", metadata: metadata)
    }
}

/// `strerror` text with the number, as logs and errors show a system call's failure.
func errnoDescription(_ code: CInt) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}
