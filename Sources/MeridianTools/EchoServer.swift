import Dispatch
import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The built-in workload for demos and tests (`meridian tool echo-server`): an HTTP server that
/// answers with who served the request (pod, namespace, node, cluster, from the environment the
/// node sets) and who asked, so load balancing and cross-cluster paths are visible in a curl.
/// `GET /bytes/N` returns N bytes, and a request body is counted, for large-payload tests. With a
/// UDP port it also echoes datagrams back unchanged. It can listen on several ports of each
/// kind, so policy tests can tell ports apart.
///
/// SIGTERM shuts it down gracefully, as a well-behaved server in a pod does: it stops
/// listening (new connections are refused), answers the requests of the connections it has,
/// each with `Connection: close`, and exits once the last one has closed (its node kills it
/// if that outlasts the pod's grace period).
public struct EchoServer: Sendable {
    public var host: String
    public var ports: [Int]
    public var udpPorts: [Int]
    public var environment: [String: String]

    public init(host: String = "0.0.0.0", port: Int, udpPort: Int? = nil, environment: [String: String]) {
        self.init(host: host, ports: [port], udpPorts: udpPort.map { [$0] } ?? [], environment: environment)
    }

    public init(host: String = "0.0.0.0", ports: [Int], udpPorts: [Int], environment: [String: String]) {
        self.host = host
        self.ports = ports
        self.udpPorts = udpPorts
        self.environment = environment
    }

    /// The identity line every answer starts with.
    func identity(client: String) -> [String: String] {
        [
            "pod": environment["POD_NAME"] ?? ProcessInfo.processInfo.hostName,
            "namespace": environment["POD_NAMESPACE"] ?? "",
            "node": environment["NODE_NAME"] ?? "",
            "cluster": environment["CLUSTER_NAME"] ?? "",
            "podIP": environment["POD_IP"] ?? "",
            "client": client,
        ]
    }

    public func run() async throws {
        let (terminations, notify) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM)
        source.setEventHandler { notify.yield() }
        source.resume()
        defer { source.cancel() }
        let draining = DrainFlag()
        try await withThrowingDiscardingTaskGroup { group in
            var listeners: [any Channel] = []
            for port in ports {
                let server = try await bindHTTP(port: port)
                listeners.append(server.channel)
                group.addTask { try await serveHTTP(server, draining: draining) }
            }
            for udpPort in udpPorts {
                let channel = try await bindUDP(port: udpPort)
                listeners.append(channel.channel)
                group.addTask { try await serveUDP(channel) }
            }
            let closing = listeners
            group.addTask {
                for await _ in terminations {
                    draining.set()
                    for listener in closing { try? await listener.close() }
                    return
                }
            }
        }
    }

    /// Set once SIGTERM arrived: answers say `Connection: close` and end their connection.
    final class DrainFlag: Sendable {
        private let state = Mutex(false)
        func set() { state.withLock { $0 = true } }
        var isSet: Bool { state.withLock { $0 } }
    }

    private typealias HTTPServer = NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>

    private func bindHTTP(port: Int) async throws -> HTTPServer {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
    }

    private func serveHTTP(_ server: HTTPServer, draining: DrainFlag) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            // Closing the listener (SIGTERM) ends the accept loop; the group then waits for the
            // connections being served.
            try? await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { try? await serve(connection, draining: draining) }
                }
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, draining: DrainFlag) async throws {
        let client = connection.channel.remoteAddress?.ipAddress ?? "unknown"
        try await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var received = 0
            for try await part in inbound {
                switch part {
                case let .head(requestHead):
                    head = requestHead
                    received = 0
                case let .body(buffer):
                    received += buffer.readableBytes
                case .end:
                    guard let request = head else { continue }
                    let body = responseBody(request, received: received, client: client)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: body.contentType)
                    headers.add(name: "Content-Length", value: "\(body.bytes.readableBytes)")
                    headers.add(name: "X-Served-By", value: identity(client: client)["pod"] ?? "")
                    let keepAlive = request.isKeepAlive && !draining.isSet
                    headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                    try await outbound.write(.head(HTTPResponseHead(version: request.version, status: body.status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(body.bytes)))
                    try await outbound.write(.end(nil))
                    if !keepAlive { return }
                }
            }
        }
    }

    private func responseBody(_ request: HTTPRequestHead, received: Int, client: String) -> (status: HTTPResponseStatus, contentType: String, bytes: ByteBuffer) {
        let path = request.uri.split(separator: "?").first.map(String.init) ?? "/"
        if path.hasPrefix("/bytes/") {
            guard let count = Int(path.dropFirst("/bytes/".count)), (0...(64 << 20)).contains(count) else {
                return (.badRequest, "text/plain", ByteBuffer(string: "size must be 0...\(64 << 20)\n"))
            }
            return (.ok, "application/octet-stream", ByteBuffer(repeating: UInt8(ascii: "x"), count: count))
        }
        var fields = identity(client: client)
        fields["path"] = request.uri
        fields["method"] = request.method.rawValue
        fields["received"] = "\(received)"
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data()
        return (.ok, "application/json", ByteBuffer(string: String(decoding: data, as: UTF8.self) + "\n"))
    }

    private typealias UDPChannel = NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>

    private func bindUDP(port: Int) async throws -> UDPChannel {
        try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
    }

    private func serveUDP(_ channel: UDPChannel) async throws {
        try? await channel.executeThenClose { inbound, outbound in
            for try await envelope in inbound {
                try await outbound.write(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data))
            }
        }
    }
}
