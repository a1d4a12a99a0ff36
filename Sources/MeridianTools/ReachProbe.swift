import Foundation
import Glibc

/// Checks many TCP and UDP destinations at once from one process (`meridian tool reach`), for
/// policy reachability tests: a TCP destination is reachable when the handshake completes, a UDP
/// one when its echo comes back. All probes share one deadline and one `poll` loop, so a set
/// of denied destinations costs one timeout, not one each.
public enum ReachProbe {
    public struct Target: Hashable, Sendable, CustomStringConvertible {
        public enum Transport: String, Sendable { case tcp, udp }
        public var transport: Transport
        public var address: String
        public var port: UInt16

        /// `tcp:10.1.1.5:8080` or `udp:10.1.1.5:5353`.
        public init(parsing text: String) throws(ProbeError) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, let transport = Transport(rawValue: parts[0].lowercased()), let port = UInt16(parts[2]), port > 0 else {
                throw .badTarget(text, expected: "tcp:ADDRESS:PORT or udp:ADDRESS:PORT")
            }
            var probe = in_addr()
            guard inet_pton(AF_INET, String(parts[1]), &probe) == 1 else { throw .badTarget(text, expected: "an IPv4 address, not \(parts[1])") }
            self.transport = transport
            self.address = String(parts[1])
            self.port = port
        }

        public var description: String { "\(transport.rawValue):\(address):\(port)" }
    }

    public enum Outcome: Equatable, Sendable {
        case reached
        case failed(String)
    }

    /// One target's outcome as `tool reach -o json` prints it (an array of these, in the order
    /// the targets were given).
    public struct Result: Codable, Sendable, Hashable {
        public var target: String
        public var transport: String
        public var address: String
        public var port: UInt16
        public var reached: Bool
        /// Why the target was not reached (refused, timed out, ...); absent when it was.
        public var error: String?

        public init(_ target: Target, _ outcome: Outcome) {
            self.target = target.description
            transport = target.transport.rawValue
            address = target.address
            port = target.port
            switch outcome {
            case .reached:
                reached = true
            case let .failed(reason):
                reached = false
                error = reason
            }
        }
    }

    public static func run(_ targets: [Target], timeout: Double, source: String? = nil) throws(ProbeError) -> [Target: Outcome] {
        var outcomes: [Target: Outcome] = [:]
        var pending: [(Target, Int32)] = []
        let payload = Array("meridian-reach".utf8)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        if let source, inet_pton(AF_INET, source, &local.sin_addr) != 1 {
            throw .badAddress(source)
        }
        for target in targets {
            let fd = socket(AF_INET, Int32((target.transport == .tcp ? SOCK_STREAM : SOCK_DGRAM).rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else {
                outcomes[target] = .failed("socket: \(String(cString: strerror(errno)))")
                continue
            }
            if source != nil {
                let bound = withUnsafePointer(to: &local) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                if bound != 0 {
                    outcomes[target] = .failed("bind \(source ?? ""): \(String(cString: strerror(errno)))")
                    close(fd)
                    continue
                }
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = target.port.bigEndian
            _ = inet_pton(AF_INET, target.address, &address.sin_addr)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if result != 0 && errno != EINPROGRESS {
                outcomes[target] = .failed("connect: \(String(cString: strerror(errno)))")
                close(fd)
                continue
            }
            if target.transport == .udp && send(fd, payload, payload.count, 0) != payload.count {
                outcomes[target] = .failed("send: \(String(cString: strerror(errno)))")
                close(fd)
                continue
            }
            pending.append((target, fd))
        }
        let deadline = Date().addingTimeInterval(timeout)
        while !pending.isEmpty {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { break }
            var fds = pending.map { target, fd in
                pollfd(fd: fd, events: Int16(target.transport == .tcp ? POLLOUT : POLLIN), revents: 0)
            }
            let ready = poll(&fds, nfds_t(fds.count), Int32(remaining * 1000) + 1)
            if ready < 0 && errno != EINTR { break }
            var still: [(Target, Int32)] = []
            for (index, entry) in pending.enumerated() {
                let (target, fd) = entry
                guard fds[index].revents != 0 else {
                    still.append(entry)
                    continue
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error != 0 {
                    outcomes[target] = .failed(String(cString: strerror(error)))
                } else if target.transport == .tcp {
                    outcomes[target] = .reached
                } else {
                    var buffer = [UInt8](repeating: 0, count: 256)
                    let received = recv(fd, &buffer, buffer.count, 0)
                    outcomes[target] = received == payload.count && Array(buffer[0..<received]) == payload
                        ? .reached : .failed("echo differs or recv failed")
                }
                close(fd)
            }
            pending = still
        }
        for (target, fd) in pending {
            outcomes[target] = .failed("timed out after \(timeout) s")
            close(fd)
        }
        return outcomes
    }

    /// Times `count` blocking TCP handshakes to `target` in microseconds; each connection is reset
    /// at once (no TIME_WAIT piles up). Fails on the first handshake that does not complete.
    public static func connectTimes(_ target: Target, count: Int, timeout: Double) throws(ProbeError) -> [Double] {
        var samples: [Double] = []
        samples.reserveCapacity(count)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = target.port.bigEndian
        _ = inet_pton(AF_INET, target.address, &address.sin_addr)
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw .system(call: "socket", errno: errno) }
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            let started = ContinuousClock.now
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let elapsed = ContinuousClock.now - started
            let failure = errno
            close(fd)
            guard result == 0 else { throw .unreachable(target.description, detail: String(cString: strerror(failure))) }
            samples.append(Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12)
        }
        return samples
    }
}

/// A probe that could not be made or did not get through, with what it concerned.
public enum ProbeError: Error, Sendable, Hashable, CustomStringConvertible {
    case badTarget(String, expected: String)
    case badAddress(String)
    case badSize(Int, allowed: ClosedRange<Int>)
    case system(call: String, errno: Int32)
    case unreachable(String, detail: String)
    case echoDiffers(sent: Int, received: Int)

    public var description: String {
        switch self {
        case let .badTarget(text, expected): "target \(text): expected \(expected)"
        case let .badAddress(text): "not an IPv4 address: \(text)"
        case let .badSize(size, allowed): "size \(size) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        case let .system(call, code): "\(call): \(String(cString: strerror(code)))"
        case let .unreachable(target, detail): "\(target): \(detail)"
        case let .echoDiffers(sent, received): "echo differs: sent \(sent) bytes, got \(received)"
        }
    }
}
