import Foundation
import Glibc

/// A one-datagram UDP echo check, for tests of large (fragmented) datagrams through the datapath.
public enum UDPProbe {
    public static let sizes = 1...65507

    public static func run(host: String, port: Int, size: Int, timeout: Double) throws(ProbeError) -> Int {
        guard sizes.contains(size) else { throw .badSize(size, allowed: sizes) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - floor(timeout)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw .badAddress(host) }
        var payload = [UInt8](repeating: 0, count: size)
        for index in payload.indices { payload[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, payload, size, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard sent == size else { throw .system(call: "sendto", errno: errno) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let received = recv(fd, &buffer, buffer.count, 0)
        guard received >= 0 else { throw .unreachable("udp:\(host):\(port)", detail: "no echo within \(timeout) s: \(String(cString: strerror(errno)))") }
        guard received == size, Array(buffer[0..<received]) == payload else {
            throw .echoDiffers(sent: size, received: received)
        }
        return received
    }
}
