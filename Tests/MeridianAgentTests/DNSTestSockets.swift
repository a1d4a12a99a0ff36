import Foundation
import Glibc
import NIOCore

/// A UDP socket on 127.0.0.1 that sends datagrams to the server under test and polls for its
/// replies without blocking a thread of the cooperative pool.
final class LoopbackUDPClient {
    let descriptor: CInt

    init() throws {
        descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw TestSocketError(call: "socket", errno: errno) }
        // Once every property is set a throwing class initializer still runs deinit, which closes.
        let bound = try Self.loopback(port: 0).withSockAddr { bind(descriptor, $0, socklen_t($1)) }
        guard bound == 0 else { throw TestSocketError(call: "bind", errno: errno) }
    }

    deinit { close(descriptor) }

    /// The port the kernel bound.
    var port: Int {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return withUnsafeBytes(of: address) { SocketAddress($0.load(as: sockaddr_in.self)).port ?? 0 }
    }

    /// Sends one datagram to 127.0.0.1:`port`; a full socket buffer is reported, not hidden.
    func send(_ bytes: [UInt8], to port: Int) throws {
        let sent = try bytes.withUnsafeBytes { buffer in
            try Self.loopback(port: port).withSockAddr { sendto(descriptor, buffer.baseAddress, buffer.count, 0, $0, socklen_t($1)) }
        }
        guard sent == bytes.count else { throw TestSocketError(call: "sendto", errno: errno) }
    }

    static func loopback(port: Int) throws -> SocketAddress {
        try SocketAddress(ipAddress: "127.0.0.1", port: port)
    }

    /// The next datagram that arrives within `attempts` polls a millisecond apart, or nil.
    func receive(attempts: Int = 2000) async throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<attempts {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count >= 0 { return Array(buffer[..<count]) }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw TestSocketError(call: "recv", errno: errno) }
            try await Task.sleep(for: .milliseconds(1))
        }
        return nil
    }

    /// Reads and discards whatever replies are queued.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while buffer.withUnsafeMutableBytes({ recv(descriptor, $0.baseAddress, $0.count, 0) }) >= 0 {}
    }
}

/// Sends a UDP datagram with any source address and port, port 0 included, by writing the IPv4
/// and UDP headers itself on a raw socket (IPPROTO_RAW implies IP_HDRINCL); needs CAP_NET_RAW.
enum RawUDPSender {
    static func send(_ payload: [UInt8], from source: (address: [UInt8], port: UInt16), toLoopbackPort port: Int) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard descriptor >= 0 else { throw TestSocketError(call: "socket(SOCK_RAW)", errno: errno) }
        defer { close(descriptor) }
        let packet = packet(payload, source: source, destination: ([127, 0, 0, 1], UInt16(port)))
        let sent = try packet.withUnsafeBytes { buffer in
            try LoopbackUDPClient.loopback(port: 0).withSockAddr { sendto(descriptor, buffer.baseAddress, buffer.count, 0, $0, socklen_t($1)) }
        }
        guard sent == packet.count else { throw TestSocketError(call: "sendto(SOCK_RAW)", errno: errno) }
    }

    /// An IPv4 packet carrying one UDP datagram, both checksums computed (RFC 791, RFC 768).
    static func packet(_ payload: [UInt8], source: (address: [UInt8], port: UInt16),
                       destination: (address: [UInt8], port: UInt16)) -> [UInt8] {
        let udpLength = 8 + payload.count
        var udp = be16(source.port) + be16(destination.port) + be16(UInt16(udpLength)) + [0, 0] + payload
        let pseudoHeader = source.address + destination.address + [0, UInt8(IPPROTO_UDP)] + be16(UInt16(udpLength))
        let udpChecksum = checksum(pseudoHeader + udp)
        udp[6...7] = ArraySlice(be16(udpChecksum == 0 ? 0xFFFF : udpChecksum))
        var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + udpLength)) + be16(0x4D52) + [0x40, 0, 64, UInt8(IPPROTO_UDP), 0, 0]
            + source.address + destination.address
        ip[10...11] = ArraySlice(be16(checksum(ip)))
        return ip + udp
    }

    /// The Internet checksum: the ones' complement of the ones' complement sum of 16-bit words.
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index < bytes.count {
            let high = UInt32(bytes[index]) << 8
            let low = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
            sum += high | low
            index += 2
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

}

/// A failed socket call of a test helper, with the call's name and errno.
struct TestSocketError: Error, CustomStringConvertible {
    var call: String
    var errno: CInt
    var description: String { "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

func be16(_ value: UInt16) -> [UInt8] {
    [UInt8(value >> 8), UInt8(value & 0xFF)]
}

/// A DNS header with the counts given (RD set by default).
func header(id: UInt16 = 0x1234, flags: UInt16 = 0x0100, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
    be16(id) + be16(flags) + be16(qd) + be16(an) + be16(ns) + be16(ar)
}

/// An uncompressed wire name, encoded here rather than by the codec under test.
func wireName(_ text: String) -> [UInt8] {
    text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
}
