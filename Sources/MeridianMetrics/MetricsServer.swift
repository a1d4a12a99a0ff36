import CoreMetrics
import Foundation
import Glibc
import Logging
import MeridianHost
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The `/metrics` listener of a daemon. Prometheus scrapes it; nothing else is served (any other
/// method or path is answered 404). It speaks plain HTTP/1.1, so it belongs on loopback or a
/// management address only. Each scrape first runs `refresh`, which copies state that is kept
/// elsewhere (status boards, BPF counters) into the registry, then renders the registry.
public struct MetricsServer: Sendable {
    /// Largest request head accepted, and largest body (a scrape has none).
    public static let maximumHeaderBytes = 8 * 1024
    public static let maximumBodyBytes = 0

    public let address: MetricsListenAddress
    public let registry: PrometheusCollectorRegistry
    /// A network namespace (a path such as `/proc/1/ns/net`) to open the listening socket in
    /// instead of the process's own: an agent inside a node's namespace can then be scraped
    /// from the host's.
    public let networkNamespace: String?
    public let refresh: @Sendable () -> Void
    public let logger: Logger

    public init(address: MetricsListenAddress, registry: PrometheusCollectorRegistry, networkNamespace: String? = nil,
                logger: Logger, refresh: @escaping @Sendable () -> Void = {}) {
        self.address = address
        self.registry = registry
        self.networkNamespace = networkNamespace
        self.refresh = refresh
        self.logger = logger
    }

    /// Serves until cancelled. `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        let registry = registry
        let refresh = refresh
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HeadSizeLimit(maximum: Self.maximumHeaderBytes), position: .first)
                    try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(registry: registry, refresh: refresh))
                }
            }
        let channel: any Channel
        do {
            if let networkNamespace {
                let socket = try await ListeningSocket.open(address, inNetworkNamespace: networkNamespace)
                do {
                    channel = try await bootstrap.withBoundSocket(socket).get()
                } catch {
                    close(socket)
                    throw error
                }
            } else {
                channel = try await bootstrap.bind(host: address.host, port: address.port).get()
            }
        } catch let error as MetricsServerError {
            throw error
        } catch {
            throw MetricsServerError("listen on \(address) for /metrics", cause: error)
        }
        let port = channel.localAddress?.port ?? address.port
        logger.info("serving metrics", metadata: ["address": "\(address.host):\(port)"])
        onListening(port)
        try await withTaskCancellationHandler {
            try await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Where `--metrics-listen` asks a daemon to serve `/metrics`: `HOST:PORT`, `[IPv6]:PORT`.
public struct MetricsListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` where HOST is a literal IPv4 or bracketed IPv6 address and PORT 0...65535.
    public init(parsing text: String) throws(MetricsServerError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw MetricsServerError("expected HOST:PORT, got \"\(text)\"")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw MetricsServerError("expected a port 0...65535 after the last colon, got \"\(text)\"")
        }
        guard (try? SocketAddress(ipAddress: host, port: port)) != nil else {
            throw MetricsServerError("expected a literal IP address before the port, got \"\(host)\"")
        }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why the metrics listener could not be set up, with what it was doing.
public struct MetricsServerError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let cause: (any Error)?

    public init(_ message: String, cause: (any Error)? = nil) {
        self.message = message
        self.cause = cause
    }

    public var description: String { cause.map { "\(message): \($0)" } ?? message }
}

/// A listening TCP socket made in another network namespace: a thread of its own enters the
/// namespace (which changes that thread only), creates, binds and listens, and ends; the socket
/// stays in the namespace it was made in.
enum ListeningSocket {
    static func open(_ address: MetricsListenAddress, inNetworkNamespace path: String) async throws(MetricsServerError) -> CInt {
        let result: Result<CInt, MetricsServerError> = await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: make(address, namespace: path)) }
            thread.start()
        }
        return try result.get()
    }

    private static func make(_ address: MetricsListenAddress, namespace path: String) -> Result<CInt, MetricsServerError> {
        func failure(_ what: String) -> Result<CInt, MetricsServerError> {
            .failure(MetricsServerError("\(what) for /metrics on \(address) in network namespace \(path): \(String(cString: strerror(errno)))"))
        }
        if let entered = ThreadNetworkNamespace.enter(path) {
            return .failure(MetricsServerError("/metrics on \(address): \(entered)"))
        }
        let socketAddress: SocketAddress
        do {
            socketAddress = try SocketAddress(ipAddress: address.host, port: address.port)
        } catch {
            return .failure(MetricsServerError("address \(address)", cause: error))
        }
        let family = socketAddress.protocol == .inet6 ? AF_INET6 : AF_INET
        let socket = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard socket >= 0 else { return failure("socket") }
        var one: CInt = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        let bound = socketAddress.withSockAddr { pointer, length in bind(socket, pointer, socklen_t(length)) }
        guard bound == 0 else {
            let result = failure("bind")
            close(socket)
            return result
        }
        guard listen(socket, 64) == 0 else {
            let result = failure("listen")
            close(socket)
            return result
        }
        return .success(socket)
    }
}

/// Refuses a request whose head grows past `maximum` bytes before it is parsed: the HTTP decoder
/// would otherwise buffer a head of any length.
final class HeadSizeLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maximum: Int
    private var seenSinceLastBlankLine = 0

    init(maximum: Int) { self.maximum = maximum }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        // A scrape has no body, so every byte until the blank line ending a head counts.
        let view = buffer.readableBytesView
        if let end = view.firstRange(of: [13, 10, 13, 10]) {
            seenSinceLastBlankLine = view.distance(from: end.upperBound, to: view.endIndex)
        } else {
            seenSinceLastBlankLine += buffer.readableBytes
        }
        guard seenSinceLastBlankLine <= maximum else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers `GET /metrics` with the registry's text exposition and everything else with 404.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let refresh: @Sendable () -> Void
    private var head: HTTPRequestHead?
    private var bodyBytes = 0

    init(registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.refresh = refresh
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head):
            self.head = head
            bodyBytes = 0
        case let .body(buffer):
            bodyBytes += buffer.readableBytes
            if bodyBytes > MetricsServer.maximumBodyBytes {
                respond(context, status: .payloadTooLarge, body: "a scrape has no body\n", keepAlive: false)
                head = nil
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            guard head.method == .GET, path == "/metrics" else {
                respond(context, status: .notFound, body: "only GET /metrics is served\n", keepAlive: head.isKeepAlive)
                return
            }
            refresh()
            var body: [UInt8] = []
            registry.emit(into: &body)
            respond(context, status: .ok, bytes: body, keepAlive: head.isKeepAlive)
        }
    }

    private func respond(_ context: ChannelHandlerContext, status: HTTPResponseStatus, body: String, keepAlive: Bool) {
        respond(context, status: status, bytes: Array(body.utf8), keepAlive: keepAlive)
    }

    private func respond(_ context: ChannelHandlerContext, status: HTTPResponseStatus, bytes: [UInt8], keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(bytes.count)")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        if !keepAlive {
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
