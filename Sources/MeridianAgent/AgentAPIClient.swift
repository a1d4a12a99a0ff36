import Foundation
import Glibc

/// The CNI plugin's side of the agent socket: connect, write one request, read one response.
/// Blocking calls are fine here; the plugin is a short-lived process doing one thing.
public enum AgentAPIClient {
    public static func send(_ request: AgentRequest, socketPath: String) throws(AgentAPIError) -> AgentResponse {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .socketPathTooLong(socketPath)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes + [0]) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            throw .unreachable(socketPath: socketPath, errno: errno)
        }
        // A request of plain Codable values always encodes.
        let body = (try? JSONEncoder().encode(request)) ?? Data()
        var sent = 0
        while sent < body.count {
            let n = body.withUnsafeBytes { write(fd, $0.baseAddress! + sent, body.count - sent) }
            guard n > 0 else { throw .system(call: "write to agent", errno: errno) }
            sent += n
        }
        shutdown(fd, Int32(SHUT_WR))
        var reply = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { throw .system(call: "read from agent", errno: errno) }
            if n == 0 { break }
            reply.append(contentsOf: buffer[0..<n])
        }
        do {
            return try JSONDecoder().decode(AgentResponse.self, from: reply)
        } catch {
            throw .unreadableResponse(bytes: reply.count, detail: "\(error)")
        }
    }
}
