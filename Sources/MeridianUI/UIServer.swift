import Foundation
import Logging
import MeridianFlows
import NIOCore
import NIOHTTP1
import NIOPosix

/// `meridian ui`'s web server: the page and its two scripts' worth of assets, compiled into the
/// binary (nothing is fetched from anywhere else), and two JSON endpoints the page polls —
/// `/api/map` (clusters, services, pods) and `/api/flows` (recent flows, with `observe`'s
/// filters as query parameters). Plain HTTP/1.1 for a browser on the same machine: it belongs on
/// loopback. Every other path is 404, every other method 405.
public struct UIServer: Sendable {
    public let host: String
    public let port: Int
    public let map: @Sendable () async -> ServiceMap
    public let flows: @Sendable (ObserverRequest) async -> [ObserverResponse]
    public let logger: Logger

    /// Largest request head read; the page sends nothing bigger.
    public static let maximumHeadBytes = 16 * 1024

    public init(host: String, port: Int, map: @escaping @Sendable () async -> ServiceMap,
                flows: @escaping @Sendable (ObserverRequest) async -> [ObserverResponse], logger: Logger) {
        self.host = host
        self.port = port
        self.map = map
        self.flows = flows
        self.logger = logger
    }

    /// Serves until cancelled; `onListening` gets the bound port.
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        onListening(server.channel.localAddress?.port ?? port)
        logger.info("serving the UI", metadata: ["address": "http://\(host):\(server.channel.localAddress?.port ?? port)/"])
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await serve(connection) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case let .head(request): head = request
                    case .body: continue
                    case .end:
                        guard let request = head else { return }
                        let (status, type, body) = await answer(request)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: type)
                        headers.add(name: "Content-Length", value: "\(body.count)")
                        headers.add(name: "Cache-Control", value: "no-store")
                        headers.add(name: "Connection", value: "close")
                        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            logger.debug("UI connection ended", metadata: ["error": "\(error)"])
        }
    }

    func answer(_ request: HTTPRequestHead) async -> (HTTPResponseStatus, String, Data) {
        guard request.method == .GET else { return (.methodNotAllowed, "text/plain", Data("GET only\n".utf8)) }
        let components = URLComponents(string: request.uri)
        switch components?.path ?? "" {
        case "/", "/index.html": return (.ok, "text/html; charset=utf-8", Data(UIAssets.indexHTML.utf8))
        case "/app.js": return (.ok, "text/javascript; charset=utf-8", Data(UIAssets.appJS.utf8))
        case "/app.css": return (.ok, "text/css; charset=utf-8", Data(UIAssets.appCSS.utf8))
        case "/api/map":
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return (.ok, "application/json", (try? encoder.encode(await map())) ?? Data("{}".utf8))
        case "/api/flows":
            let request: ObserverRequest
            do { request = try Self.flowRequest(components?.queryItems ?? []) } catch {
                return (.badRequest, "text/plain", Data("\(error)\n".utf8))
            }
            let answers = await flows(request)
            let encoder = FlowJSON.encoder()
            let lines = answers.compactMap { try? encoder.encode($0) }
            var body = Data("[".utf8)
            body.append(Data(lines.joined(separator: Data(",".utf8))))
            body.append(Data("]".utf8))
            return (.ok, "application/json", body)
        default:
            return (.notFound, "text/plain", Data("not found\n".utf8))
        }
    }

    /// `observe`'s filters as query parameters (`pod`, `from-pod`, `to-pod`, `namespace`,
    /// `from-cluster`, `to-cluster`, `label`, `verdict`, `protocol`, `port`, `type`), and `last`
    /// (default 200, at most 2,000). A value that does not parse is refused, naming the parameter.
    static func flowRequest(_ items: [URLQueryItem]) throws -> ObserverRequest {
        var filter = FlowFilter()
        var last = 200
        for item in items {
            guard let value = item.value, !value.isEmpty else { continue }
            switch item.name {
            case "from-pod": filter.fromPod.append(value)
            case "to-pod": filter.toPod.append(value)
            case "pod": filter.pod.append(value)
            case "namespace": filter.namespace.append(value)
            case "from-cluster": filter.fromCluster.append(value)
            case "to-cluster": filter.toCluster.append(value)
            case "label": filter.label.append(value)
            case "protocol": filter.protocol.append(value.lowercased())
            case "verdict":
                guard let verdict = FlowVerdict(rawValue: value.uppercased()) else { throw UIRequestError(parameter: "verdict", value: value) }
                filter.verdict.append(verdict)
            case "port":
                guard let port = UInt16(value) else { throw UIRequestError(parameter: "port", value: value) }
                filter.port.append(port)
            case "type":
                guard let kind = FlowEventKind(rawValue: value.lowercased()) else { throw UIRequestError(parameter: "type", value: value) }
                filter.type.append(kind)
            case "last":
                guard let value = Int(value), (1...2_000).contains(value) else { throw UIRequestError(parameter: "last", value: value) }
                last = value
            default: continue
            }
        }
        let request = ObserverRequest(filter: filter, last: last)
        try request.validate()
        return request
    }
}

/// A query parameter of the UI's API that does not parse.
public struct UIRequestError: Error, Sendable, CustomStringConvertible {
    public var parameter: String
    public var value: String
    public var description: String { "\(parameter): \"\(value)\" is not accepted" }
}
