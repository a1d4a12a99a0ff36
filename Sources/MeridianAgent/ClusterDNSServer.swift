import Logging
import MeridianCore
import MeridianDNS
import NIOCore
import NIOPosix
import Synchronization

/// The node's DNS server for pods, on the gateway address, port 53: Service names of the
/// cluster domain resolve to their ClusterIPs from the agent's view of the store.
struct ClusterDNSServer: Sendable {
    let address: IPAddress
    let port: Int
    let names: ServiceNameTable
    let logger: Logger

    func run() async throws {
        let responder = ClusterDNSResponder()
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.description, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
        logger.info("DNS listening", metadata: ["address": "\(address):\(port)"])
        try await channel.executeThenClose { inbound, outbound in
            for try await envelope in inbound {
                let query = Array(envelope.data.readableBytesView)
                guard let reply = responder.response(toQuery: query, lookup: names.lookup) else { continue }
                try await outbound.write(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: reply)))
            }
        }
    }
}

/// Service name → ClusterIP, replaced whole by the reconciler, read by the DNS server.
final class ServiceNameTable: Sendable {
    private let table = Mutex<[String: IPAddress]?>(nil)

    /// `names` is keyed `service.namespace`.
    func replace(_ names: [String: IPAddress]) {
        table.withLock { $0 = names }
    }

    func lookup(_ name: ServiceDNSName) -> ServiceLookupResult {
        table.withLock { table in
            guard let table else { return .unavailable }
            guard let ip = table["\(name.service).\(name.namespace)"],
                  let address = IPv4Address(bytes: ip.bytes) else { return .noSuchService }
            return .addresses([address])
        }
    }
}
