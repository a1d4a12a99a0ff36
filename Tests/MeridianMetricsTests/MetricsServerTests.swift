import Foundation
import Glibc
import Logging
import MeridianMetrics
import Prometheus
import Testing

/// The `/metrics` listener over a real loopback socket: what it serves, what it refuses, and
/// that a scrape runs the refresh first.
@Suite("MetricsServer")
struct MetricsServerTests {
    @Test("GET /metrics renders the registry after a refresh; other paths and methods get 404; an oversized head is cut off")
    func servesOnlyMetrics() async throws {
        let registry = PrometheusCollectorRegistry()
        let scrapes = registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "meridian", metricName: "test_scrapes", unitName: "total", helpText: "Scrapes served in this test."))
        let (ports, bound) = AsyncStream.makeStream(of: Int.self)
        let server = MetricsServer(address: MetricsListenAddress(host: "127.0.0.1", port: 0), registry: registry,
                                   logger: Logger(label: "test"), refresh: { scrapes.increment() })
        try await withThrowingTaskGroup { group in
            group.addTask { try await server.run { bound.yield($0) } }
            defer { group.cancelAll() }
            var iterator = ports.makeAsyncIterator()
            let listening = try #require(await iterator.next())

            let first = try Self.exchange(listening, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(first.hasPrefix("HTTP/1.1 200 OK"), "\(first)")
            #expect(first.contains("# TYPE meridian_test_scrapes_total counter"), "\(first)")
            #expect(first.contains("meridian_test_scrapes_total 1\n"), "the refresh ran before rendering: \(first)")
            let second = try Self.exchange(listening, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(second.contains("meridian_test_scrapes_total 2\n"), "\(second)")

            let root = try Self.exchange(listening, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(root.hasPrefix("HTTP/1.1 404"), "\(root)")
            let post = try Self.exchange(listening, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            #expect(post.hasPrefix("HTTP/1.1 404"), "\(post)")

            let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + String(repeating: "a", count: 64 * 1024) + "\r\n\r\n"
            let refused = try Self.exchange(listening, huge)
            #expect(!refused.contains("200 OK"), "a 64 KiB head is not answered: \(refused.prefix(200))")
        }
    }

    @Test("--metrics-listen parses HOST:PORT and [IPv6]:PORT and names what is wrong otherwise")
    func parsesListenAddresses() throws {
        #expect(try MetricsListenAddress(parsing: "127.0.0.1:9962") == MetricsListenAddress(host: "127.0.0.1", port: 9962))
        #expect(try MetricsListenAddress(parsing: "[::1]:0") == MetricsListenAddress(host: "::1", port: 0))
        for bad in ["127.0.0.1", "127.0.0.1:70000", "localhost:9962", ":9962", "127.0.0.1:x"] {
            #expect(throws: MetricsServerError.self, "\(bad)") { try MetricsListenAddress(parsing: bad) }
        }
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    static func exchange(_ port: Int, _ request: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: \(String(cString: strerror(errno)))")
        _ = request.utf8CString.withUnsafeBufferPointer { send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
