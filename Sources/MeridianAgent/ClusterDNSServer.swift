import Logging
import MeridianCore
import MeridianDNS
import MeridianStore
import NIOCore
import NIOPosix
import Synchronization

/// The node's DNS server for pods, on the gateway address, port 53: Service names of the
/// cluster domain resolve to their ClusterIPs from the agent's view of the store.
///
/// Pods are untrusted senders, so no datagram can stop it: each failure to serve one is
/// counted in `failures` and the listener goes on. A listener that fails itself (its bind is
/// refused, its channel errors or closes) is logged and bound again after a backoff.
struct ClusterDNSServer: Sendable {
    let address: IPAddress
    let port: Int
    let names: ServiceNameTable
    let logger: Logger
    let restartBackoff: ReconnectBackoff
    /// Told each listener's channel as it starts; its local address has the bound port.
    let onListening: @Sendable (any Channel) -> Void
    let failures: DNSDatagramFailureLog

    init(address: IPAddress, port: Int, names: ServiceNameTable, logger: Logger,
         restartBackoff: ReconnectBackoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5)),
         onListening: @escaping @Sendable (any Channel) -> Void = { _ in }) {
        self.address = address
        self.port = port
        self.names = names
        self.logger = logger
        self.restartBackoff = restartBackoff
        self.onListening = onListening
        failures = DNSDatagramFailureLog(logger: logger)
    }

    /// Serves until the task is cancelled, restarting failed listeners. After the first bind,
    /// restarts keep its port, so a server started on port 0 stays where it was announced.
    func run() async {
        var backoff = restartBackoff
        var port = port
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let failure: DNSListenerError
            do {
                try await listen(port: &port)
                failure = .closed(endpoint: DNSUDPSocket.endpoint(address, port: port))
            } catch {
                failure = error
            }
            guard !Task.isCancelled else { return }
            // A listener that served for longer than the longest delay was healthy: start over.
            if ContinuousClock.now - started > backoff.maximum { backoff.reset() }
            let delay = backoff.next()
            logger.warning("DNS listener failed; restarting it", metadata: ["error": "\(failure)", "restartIn": "\(delay)"])
            guard (try? await Task.sleep(for: delay)) != nil else { return }
        }
    }

    /// Binds a socket and answers what arrives on it until its channel ends.
    private func listen(port: inout Int) async throws(DNSListenerError) {
        let socket = try DNSUDPSocket(address: address, port: port)
        port = socket.port
        let endpoint = socket.endpoint
        let reading = try socket.readingDescriptor()
        let responder = ClusterDNSResponder()
        do {
            let channel = try await Self.channel(reading: reading)
            logger.info("DNS listening", metadata: ["address": "\(endpoint)"])
            onListening(channel.channel)
            try await channel.executeThenClose { inbound, _ in
                for try await datagram in inbound {
                    serve(datagram, responder: responder, socket: socket)
                }
            }
        } catch {
            throw .channelFailed(endpoint: endpoint, error: error)
        }
    }

    /// A read-only channel on the socket `descriptor`. It is made with the future-based
    /// `withBoundSocket`: in NIO 2.101 the async one always fails with "operation unsupported"
    /// (it reaches the `Channel` extension's `registerAlreadyConfigured0`, which refuses).
    private static func channel(reading descriptor: CInt) async throws -> NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, Never> {
        let wrapped = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, Never>.self)
        DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    wrapped.succeed(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                }
            }
            .withBoundSocket(descriptor)
            .cascadeFailure(to: wrapped)
        return try await wrapped.futureResult.get()
    }

    /// Answers one datagram; whatever is wrong with it is counted and ends here.
    private func serve(_ datagram: AddressedEnvelope<ByteBuffer>, responder: ClusterDNSResponder, socket: borrowing DNSUDPSocket) {
        let source = datagram.remoteAddress
        guard DNSUDPSocket.canReply(to: source) else {
            failures.record(.unreplyableSource, source: source)
            return
        }
        let reply: [UInt8]
        switch responder.verdict(onDatagram: Array(datagram.data.readableBytesView), lookup: names.lookup) {
        case let .answer(bytes):
            reply = bytes
        case let .formatError(bytes, error):
            failures.record(.malformed, source: source, detail: "\(error)")
            reply = bytes
        case .tooShort:
            failures.record(.tooShort, source: source, detail: "\(datagram.data.readableBytes) bytes")
            return
        case .response:
            failures.record(.response, source: source)
            return
        }
        do {
            try socket.send(reply, to: source)
        } catch {
            failures.record(.replyNotSent(errno: error.errno), source: source)
        }
    }
}

/// The names the node DNS answers, from the agent's view of the store.
struct ServiceNames: Sendable, Hashable {
    /// `service.namespace` → ClusterIP, for `cluster.local`.
    var clusterIPs: [String: IPAddress] = [:]
    /// `service.namespace` → the ClusterSetIP, or a headless import's backend addresses, for
    /// `clusterset.local`.
    var clusterSet: [String: [IPAddress]] = [:]
    /// `hostname.cluster.service.namespace` → one backend of a headless import.
    var clusterSetBackends: [String: IPAddress] = [:]
}

/// The node DNS's names, replaced whole by the reconciler, read by the DNS server.
final class ServiceNameTable: Sendable {
    private let table = Mutex<ServiceNames?>(nil)

    func replace(_ names: ServiceNames) {
        table.withLock { $0 = names }
    }

    func lookup(_ name: ServiceDNSName) -> ServiceLookupResult {
        table.withLock { table in
            guard let table else { return .unavailable }
            let key = "\(name.service).\(name.namespace)"
            let found: [IPAddress]? = switch (name.zone, name.backend) {
            case (.cluster, _): table.clusterIPs[key].map { [$0] }
            case (.clusterSet, nil): table.clusterSet[key]
            case let (.clusterSet, backend?): table.clusterSetBackends["\(backend.hostname).\(backend.cluster).\(key)"].map { [$0] }
            }
            guard let found else { return .noSuchService }
            return .addresses(found.compactMap { IPv4Address(bytes: $0.bytes) })
        }
    }
}
