import Foundation
import Glibc

/// Calls an HTTP server in a loop and counts what failed (`meridian tool load`): the client
/// side of the rolling-update and termination tests. Each request opens a new TCP connection
/// (so every request is a fresh load-balancing decision), or, with `keepAlive`, all requests
/// share one connection (an established connection, which must survive a backend's
/// termination). A request succeeds when its response has status 200 and its whole body.
public struct LoadProbe: Sendable {
    public var address: String
    public var port: UInt16
    public var path: String
    public var keepAlive: Bool
    /// Pause between requests.
    public var interval: Duration
    /// For one request, connect to last byte.
    public var timeout: Double
    /// The loop ends after this long, or as soon as `stopFile` exists.
    public var duration: Duration
    public var stopFile: String?
    /// Record who answered each request, and when, in `Report.timeline`.
    public var recordsTimeline = false

    public init(address: String, port: UInt16, path: String = "/", keepAlive: Bool = false, interval: Duration = .milliseconds(20),
                timeout: Double = 2, duration: Duration = .seconds(60), stopFile: String? = nil) {
        self.address = address
        self.port = port
        self.path = path
        self.keepAlive = keepAlive
        self.interval = interval
        self.timeout = timeout
        self.duration = duration
        self.stopFile = stopFile
    }

    /// What a run did: requests, failures with when and why, and who answered.
    public struct Report: Codable, Sendable, Hashable {
        public var requests = 0
        public var failures = 0
        /// TCP connections opened.
        public var connections = 0
        /// Pod name (`X-Served-By`) → answers.
        public var servedBy: [String: Int] = [:]
        /// The first failures, as "+SECONDS: reason".
        public var failureDetails: [String] = []
        public var seconds = 0.0
        /// With `recordsTimeline`: each request's start (Unix time, seconds) and the pod that
        /// answered it, or nil when it failed; the first `keptTimeline` requests.
        public var timeline: [TimelineEntry]?
    }

    /// One request of the timeline.
    public struct TimelineEntry: Codable, Sendable, Hashable {
        public var at: Double
        public var servedBy: String?

        public init(at: Double, servedBy: String?) {
            self.at = at
            self.servedBy = servedBy
        }
    }

    static let keptTimeline = 100_000

    static let keptFailureDetails = 50

    public func run() -> Report {
        var report = Report()
        if recordsTimeline { report.timeline = [] }
        func record(_ servedBy: String?, at: Date) {
            if recordsTimeline, (report.timeline?.count ?? 0) < Self.keptTimeline {
                report.timeline?.append(TimelineEntry(at: at.timeIntervalSince1970, servedBy: servedBy))
            }
        }
        let started = ContinuousClock.now
        var connection: Int32 = -1
        defer { if connection >= 0 { close(connection) } }
        while ContinuousClock.now - started < duration {
            if let stopFile, FileManager.default.fileExists(atPath: stopFile) { break }
            let offset = ContinuousClock.now - started
            let requestedAt = Date()
            report.requests += 1
            do throws(ProbeError) {
                if connection < 0 {
                    connection = try connect()
                    report.connections += 1
                }
                let answer = try request(on: connection)
                report.servedBy[answer.servedBy, default: 0] += 1
                record(answer.servedBy, at: requestedAt)
                if !keepAlive || !answer.keepAlive {
                    close(connection)
                    connection = -1
                }
            } catch {
                report.failures += 1
                record(nil, at: requestedAt)
                if report.failureDetails.count < Self.keptFailureDetails {
                    report.failureDetails.append(String(format: "+%.2f s: ", Self.seconds(offset)) + error.description)
                }
                if connection >= 0 {
                    close(connection)
                    connection = -1
                }
            }
            Thread.sleep(forTimeInterval: Self.seconds(interval))
        }
        report.seconds = Self.seconds(ContinuousClock.now - started)
        return report
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func connect() throws(ProbeError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &target.sin_addr) == 1 else {
            close(fd)
            throw .badAddress(address)
        }
        let result = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let failure = errno
            close(fd)
            throw .unreachable("\(address):\(port)", detail: "connect: \(String(cString: strerror(failure)))")
        }
        return fd
    }

    private struct Answer {
        var servedBy: String
        var keepAlive: Bool
    }

    /// One request and its whole response on `fd`.
    private func request(on fd: Int32) throws(ProbeError) -> Answer {
        let text = "GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw .system(call: "send", errno: errno) }
            sent += written
        }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var headerEnd: Int?
        var bodyLength: Int?
        func receive() throws(ProbeError) {
            let received = recv(fd, &chunk, chunk.count, 0)
            if received < 0 { throw .system(call: "recv", errno: errno) }
            if received == 0 {
                throw .unreachable("\(address):\(port)", detail: "connection closed after \(buffer.count) bytes of the response")
            }
            buffer += chunk[0..<received]
        }
        while headerEnd == nil {
            try receive()
            if let range = buffer.firstRange(of: Array("\r\n\r\n".utf8)) { headerEnd = range.upperBound }
            if buffer.count > 64 * 1024 && headerEnd == nil { throw .unreachable("\(address):\(port)", detail: "response header too long") }
        }
        let head = String(decoding: buffer[..<(headerEnd ?? 0)], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        let status = lines.first?.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        var servedBy = "unknown"
        var closes = false
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            switch parts[0].lowercased() {
            case "content-length": bodyLength = Int(parts[1])
            case "x-served-by": servedBy = parts[1]
            case "connection": closes = parts[1].lowercased() == "close"
            default: break
            }
        }
        guard let bodyLength else { throw .unreachable("\(address):\(port)", detail: "response without Content-Length") }
        while buffer.count - (headerEnd ?? 0) < bodyLength { try receive() }
        guard status == 200 else { throw .unreachable("\(address):\(port)", detail: "HTTP status \(status.map(String.init) ?? "?")") }
        return Answer(servedBy: servedBy, keepAlive: !closes)
    }
}
