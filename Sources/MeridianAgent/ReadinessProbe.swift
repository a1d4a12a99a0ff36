import Foundation
import Glibc
import MeridianCore
import MeridianHost

/// Runs a pod's readiness probe as a kubelet does, against the pod's own address and port, but
/// from inside the pod's network namespace: the connection never crosses the node's datapath,
/// so a policy on the pod cannot fail its probe and the probe loads no conntrack entry.
///
/// The socket is made on a thread of its own that enters the pod's namespace (`setns` changes
/// the calling thread only) and ends with the probe, so no other work ever runs in the pod's
/// namespace; a socket stays in the namespace it was made in.
enum ReadinessProbe {
    /// What one probe found.
    enum Outcome: Sendable, Hashable {
        case passed
        case failed(String)
    }

    /// Probes `port` of `address` inside `/var/run/netns/<networkNamespace>`: a TCP handshake,
    /// then for `httpPath` a `GET` whose status must be 200...399, all within `timeout` seconds.
    static func run(networkNamespace: String, address: String, port: Int, httpPath: String?, timeout: Double) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
            let thread = Thread {
                continuation.resume(returning: probe(networkNamespace: networkNamespace, address: address, port: port,
                                                     httpPath: httpPath, timeout: timeout))
            }
            thread.name = "readiness-probe"
            thread.start()
        }
    }

    /// Runs on a dedicated thread, which it leaves in the pod's namespace (the thread ends).
    private static func probe(networkNamespace: String, address: String, port: Int, httpPath: String?, timeout: Double) -> Outcome {
        if let failure = ThreadNetworkNamespace.enter("/var/run/netns/\(networkNamespace)") { return .failed(failure) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failed("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, address, &target.sin_addr) == 1 else { return .failed("not an IPv4 address: \(address)") }
        let deadline = Date().addingTimeInterval(timeout)
        let started = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started != 0 && errno != EINPROGRESS { return .failed("connect: \(String(cString: strerror(errno)))") }
        guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return .failed("connect timed out after \(timeout) s") }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { return .failed("connect: \(String(cString: strerror(error)))") }
        guard let httpPath else { return .passed }

        let request = Array("GET \(httpPath) HTTP/1.1\r\nHost: \(address):\(port)\r\nUser-Agent: meridian-probe\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            guard wait(fd, for: Int16(POLLOUT), until: deadline) else { return .failed("request timed out") }
            let written = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno != EAGAIN { return .failed("send: \(String(cString: strerror(errno)))") }
            sent += max(written, 0)
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while !response.contains(UInt8(ascii: "\n")) {
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { return .failed("response timed out") }
            let received = recv(fd, &buffer, buffer.count, 0)
            if received == 0 { break }
            if received < 0 {
                if errno == EAGAIN { continue }
                return .failed("recv: \(String(cString: strerror(errno)))")
            }
            response += buffer[0..<received]
            if response.count > 4096 { break }
        }
        let statusLine = String(decoding: response.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
            return .failed("not an HTTP response: \(statusLine.prefix(64).debugDescription)")
        }
        return (200...399).contains(code) ? .passed : .failed("HTTP status \(code)")
    }

    private static func wait(_ fd: Int32, for events: Int16, until deadline: Date) -> Bool {
        while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return false }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(remaining * 1000) + 1)
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return false }
        }
    }
}
