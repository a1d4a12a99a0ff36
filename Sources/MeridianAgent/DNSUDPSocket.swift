import Foundation
import Glibc
import MeridianCore
import NIOCore

/// The DNS server's UDP socket, bound here rather than by NIO so that replies leave through a
/// descriptor the server owns. NIO closes a datagram channel on any send error but EMSGSIZE and
/// EHOSTUNREACH, so one reply the kernel refuses (EINVAL towards source port 0, ENETUNREACH or
/// EACCES towards a spoofed source) would end the listener; here it fails that reply alone.
/// NIO reads through a duplicate of the descriptor, which it closes with its channel.
/// Addresses go through NIO's `SocketAddress`: the members of `sockaddr_in` are, depending on
/// module load order, attributed to NIO's CNIOLinux, which member import visibility then hides.
struct DNSUDPSocket: ~Copyable {
    let descriptor: CInt
    /// The bound port: the one asked for, or the kernel's choice when that was 0.
    let port: Int
    /// `address:port` as bound, for logs and errors.
    let endpoint: String

    init(address: IPAddress, port: Int) throws(DNSListenerError) {
        let requested = Self.endpoint(address, port: port)
        guard let port = UInt16(exactly: port) else { throw .bindFailed(endpoint: requested, errno: EINVAL) }
        let descriptor = socket(address.family == .ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw .socketFailed(endpoint: requested, call: "socket", errno: errno) }
        func fail(_ error: DNSListenerError) -> DNSListenerError {
            close(descriptor)
            return error
        }
        var one: CInt = 1
        guard setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
            throw fail(.socketFailed(endpoint: requested, call: "setsockopt(SO_REUSEADDR)", errno: errno))
        }
        let socketAddress: SocketAddress
        do {
            socketAddress = try SocketAddress(ipAddress: address.description, port: Int(port))
        } catch {
            throw fail(.bindFailed(endpoint: requested, errno: EINVAL))
        }
        guard socketAddress.withSockAddr({ bind(descriptor, $0, socklen_t($1)) }) == 0 else {
            throw fail(.bindFailed(endpoint: requested, errno: errno))
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard named == 0 else { throw fail(.socketFailed(endpoint: requested, call: "getsockname", errno: errno)) }
        let boundAddress = withUnsafeBytes(of: bound) { raw in
            address.family == .ipv6 ? SocketAddress(raw.load(as: sockaddr_in6.self)) : SocketAddress(raw.load(as: sockaddr_in.self))
        }
        self.descriptor = descriptor
        self.port = boundAddress.port ?? Int(port)
        self.endpoint = Self.endpoint(address, port: self.port)
    }

    /// `address:port`, with IPv6 addresses in brackets.
    static func endpoint(_ address: IPAddress, port: Int) -> String {
        address.family == .ipv6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    deinit { close(descriptor) }

    /// A second descriptor of the same socket for NIO to read from and close.
    func readingDescriptor() throws(DNSListenerError) -> CInt {
        let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { throw .socketFailed(endpoint: endpoint, call: "fcntl(F_DUPFD_CLOEXEC)", errno: errno) }
        return duplicate
    }

    /// Sends one datagram without waiting: a full send buffer fails this reply like any other error.
    func send(_ bytes: [UInt8], to destination: SocketAddress) throws(DNSReplyError) {
        let sent = bytes.withUnsafeBytes { buffer in
            destination.withSockAddr { sendto(descriptor, buffer.baseAddress, buffer.count, CInt(MSG_DONTWAIT), $0, socklen_t($1)) }
        }
        guard sent == bytes.count else { throw DNSReplyError(errno: sent < 0 ? errno : EMSGSIZE) }
    }

    /// Whether a reply to `source` can reach one sender: not port 0 (sendto refuses it), nor an
    /// unspecified, multicast, reserved or broadcast address, which no query legitimately comes from.
    static func canReply(to source: SocketAddress) -> Bool {
        guard let port = source.port, port != 0, let text = source.ipAddress, let address = IPAddress(text) else { return false }
        let bytes = address.bytes
        switch address.family {
        case .ipv4: return bytes[0] != 0 && bytes[0] < 224
        case .ipv6: return bytes[0] != 0xFF && bytes.contains { $0 != 0 }
        }
    }
}

/// A reply the kernel did not send; the reply is dropped and counted, the listener goes on.
struct DNSReplyError: Error {
    var errno: CInt
}

/// Why a DNS listener stopped serving, with the address it was for; the server logs it and binds again.
enum DNSListenerError: Error, CustomStringConvertible {
    case socketFailed(endpoint: String, call: String, errno: CInt)
    case bindFailed(endpoint: String, errno: CInt)
    /// NIO could not take the socket, or reading from it failed.
    case channelFailed(endpoint: String, error: any Error)
    /// The channel closed without an error, e.g. after its socket was shut down.
    case closed(endpoint: String)

    var description: String {
        switch self {
        case let .socketFailed(endpoint, call, code): "DNS socket for \(endpoint): \(call) failed: \(errnoDescription(code))"
        case let .bindFailed(endpoint, code): "cannot bind DNS socket to \(endpoint): \(errnoDescription(code))"
        case let .channelFailed(endpoint, error): "DNS listener on \(endpoint) failed: \(error)"
        case let .closed(endpoint): "DNS listener on \(endpoint) closed"
        }
    }
}
