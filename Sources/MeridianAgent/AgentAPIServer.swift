import Foundation
import Logging
import NIOCore
import NIOPosix

/// Serves the agent socket: each connection carries one JSON request, answered by `handler`.
struct AgentAPIServer: Sendable {
    let socketPath: String
    let handler: @Sendable (AgentRequest) async -> AgentResponse
    let logger: Logger

    func run() async throws {
        unlink(socketPath)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        chmod(socketPath, 0o600)
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await serve(connection) }
                }
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var request = ByteBuffer()
                for try await chunk in inbound {
                    var chunk = chunk
                    request.writeBuffer(&chunk)
                    if request.readableBytes > 1 << 20 { break }
                }
                let response: AgentResponse
                do {
                    let decoded = try JSONDecoder().decode(AgentRequest.self, from: Data(request.readableBytesView))
                    response = await handler(decoded)
                } catch {
                    response = AgentResponse(error: "unreadable request: \(error)")
                }
                try await outbound.write(ByteBuffer(bytes: try JSONEncoder().encode(response)))
                outbound.finish()
            }
        } catch {
            logger.warning("agent API connection failed", metadata: ["error": "\(error)"])
        }
    }
}
