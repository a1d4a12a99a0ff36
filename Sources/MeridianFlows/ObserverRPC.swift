import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import MeridianPKI

/// The JSON encoding of flows on the wire and in `observe -o json`: Hubble's key names, times in
/// RFC 3339 with nanoseconds' worth of fractional seconds.
public enum FlowJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let styles: [Date.ISO8601FormatStyle] = [
                .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted),
                .iso8601,
            ]
            for style in styles {
                if let date = try? style.parse(text) { return date }
            }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an RFC 3339 time: \(text)"))
        }
        return decoder
    }
}

/// gRPC message coding as JSON, for the observer's own service (no protobuf schema to keep in
/// step with a JSON shape that is the documented interface anyway).
struct JSONMessageCoder<Message: Codable & Sendable>: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try FlowJSON.encoder().encode(message))
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        let data = serializedMessageBytes.withUnsafeBytes { Data($0) }
        do {
            return try FlowJSON.decoder().decode(Message.self, from: data)
        } catch {
            throw RPCError(code: .invalidArgument, message: "unreadable \(Message.self): \(error)")
        }
    }
}

/// Where an observer listens or is reached: `HOST:PORT` or `unix:PATH`.
public enum ObserverAddress: Sendable, Hashable, CustomStringConvertible, Codable {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public init(parsing text: String) throws(ObserverAddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/") else { throw ObserverAddressError(text: text, expected: "unix:/absolute/path") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
            throw ObserverAddressError(text: text, expected: "HOST:PORT or unix:/PATH")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ObserverAddressError(text: text, expected: "HOST:PORT or unix:/PATH") }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): "unix:\(path)"
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try ObserverAddress(parsing: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An observer address that does not parse.
public struct ObserverAddressError: Error, Sendable, Hashable, CustomStringConvertible {
    public var text: String
    public var expected: String
    public var description: String { "observer address \"\(text)\": expected \(expected)" }
}

/// The files of one side's TLS identity, and the CA it trusts for the other side.
public struct ObserverTLS: Sendable, Hashable {
    public var caPEM: String
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(caPEM: String, certificatePEM: String, privateKeyPEM: String) {
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }

    public init(caPath: String, certificatePath: String, keyPath: String) throws {
        self.init(caPEM: try String(contentsOfFile: caPath, encoding: .utf8),
                  certificatePEM: try String(contentsOfFile: certificatePath, encoding: .utf8),
                  privateKeyPEM: try String(contentsOfFile: keyPath, encoding: .utf8))
    }

    /// The name observer servers' certificates carry, checked by every client.
    public static let serverName = "meridian-flows"
}

/// The observer's gRPC method: `meridian.observer.v1.Observer/GetFlows`, server streaming,
/// JSON messages (an `ObserverRequest` in, `ObserverResponse`s out).
public enum ObserverMethod {
    public static let descriptor = MethodDescriptor(fullyQualifiedService: "meridian.observer.v1.Observer", method: "GetFlows")
    /// Requests are a filter; nothing a reader sends needs more.
    public static let maximumRequestBytes = 64 * 1024
}

/// Serves `GetFlows` from a flow source over mutual TLS, to clients whose certificate (signed by
/// the trusted CA) has one of the admitted common names and to nobody else: the observer and
/// relay credentials read flows, and those credentials open nothing else (the cluster's etcd
/// knows no such user; the mesh endpoint admits only its peers' fingerprints).
public struct ObserverServer: Sendable {
    public let address: ObserverAddress
    public let tls: ObserverTLS
    public let admittedNames: Set<String>
    public let source: any FlowSource
    public let logger: Logger

    public init(address: ObserverAddress, tls: ObserverTLS, admittedNames: Set<String>, source: any FlowSource, logger: Logger) {
        self.address = address
        self.tls = tls
        self.admittedNames = admittedNames
        self.source = source
        self.logger = logger
    }

    /// Serves until cancelled; `onListening` gets the bound address.
    public func run(onListening: @Sendable (ObserverAddress) -> Void = { _ in }) async throws {
        let bindAddress: GRPCNIOTransportCore.SocketAddress
        switch address {
        case let .tcp(host, port):
            bindAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        case let .unix(path):
            // A socket left by an earlier run is replaced; any other file at the path is not touched.
            if (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeSocket {
                try? FileManager.default.removeItem(atPath: path)
            }
            bindAddress = .unixDomainSocket(path: path)
        }
        let transport = HTTP2ServerTransport.Posix(
            address: bindAddress,
            transportSecurity: .mTLS(
                certificateChain: [.bytes(Array(tls.certificatePEM.utf8), format: .pem)],
                privateKey: .bytes(Array(tls.privateKeyPEM.utf8), format: .pem)
            ) { $0.trustRoots = .certificates([.bytes(Array(tls.caPEM.utf8), format: .pem)]) },
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = ObserverMethod.maximumRequestBytes
                config.http2.maxConcurrentStreams = 32
            })
        let service = ObserverService(source: source, admittedNames: admittedNames, logger: logger)
        try await withGRPCServer(transport: transport, services: [service]) { server in
            let listening = try await transport.listeningAddress
            if let port = listening.ipv4?.port ?? listening.ipv6?.port, case let .tcp(host, _) = address {
                onListening(.tcp(host: host, port: port))
            } else {
                onListening(address)
            }
            try await withTaskCancellationHandler {
                while true { try await Task.sleep(for: .seconds(3600)) }
            } onCancel: {
                server.beginGracefulShutdown()
            }
        }
    }
}

struct ObserverService: RegistrableRPCService {
    let source: any FlowSource
    let admittedNames: Set<String>
    let logger: Logger

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let source = source
        let admittedNames = admittedNames
        let logger = logger
        router.registerHandler(forMethod: ObserverMethod.descriptor, deserializer: JSONMessageCoder<ObserverRequest>(),
                               serializer: JSONMessageCoder<ObserverResponse>()) { request, context in
            let caller = try Self.admit(context, names: admittedNames, logger: logger)
            var message: ObserverRequest?
            for try await part in request.messages {
                guard message == nil else { throw RPCError(code: .invalidArgument, message: "GetFlows takes one request") }
                message = part
            }
            guard let message else { throw RPCError(code: .invalidArgument, message: "GetFlows needs a request") }
            do throws(FlowRequestError) {
                try message.validate()
            } catch {
                throw RPCError(code: .invalidArgument, message: error.description)
            }
            logger.debug("flows requested", metadata: ["caller": "\(caller)", "follow": "\(message.follow)"])
            return StreamingServerResponse { writer in
                try await source.flows(message) { try await writer.write($0) }
                return [:]
            }
        }
    }

    /// The caller's common name, if its certificate carries one of `names`.
    static func admit(_ context: ServerContext, names: Set<String>, logger: Logger) throws -> String {
        guard let certificate = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate else {
            throw RPCError(code: .unauthenticated, message: "meridian observer: no client certificate")
        }
        guard let name = CertificateInspection.commonName(of: certificate), names.contains(name) else {
            logger.warning("observer refused a caller", metadata: ["commonName": "\(CertificateInspection.commonName(of: certificate) ?? "-")"])
            throw RPCError(code: .permissionDenied, message: "meridian observer: this credential may not read flows")
        }
        return name
    }
}

/// Reads flows from an observer (a node's agent or a cluster's relay).
public enum ObserverClient {
    /// Calls `GetFlows` and hands each answer to `onResponse` until the stream ends.
    public static func getFlows(from address: ObserverAddress, tls: ObserverTLS, request: ObserverRequest, timeout: Duration? = nil,
                                onResponse: @escaping @Sendable (ObserverResponse) async throws -> Void) async throws {
        let target: any ResolvableTarget
        switch address {
        case let .tcp(host, port):
            target = host.contains(":") ? ResolvableTargets.IPv6(addresses: [.init(host: host, port: port)])
                : ResolvableTargets.IPv4(addresses: [.init(host: host, port: port)])
        case let .unix(path):
            target = ResolvableTargets.UnixDomainSocket(address: .init(path: path), authority: ObserverTLS.serverName)
        }
        let transport = try HTTP2ClientTransport.Posix(
            target: target,
            transportSecurity: .mTLS(
                certificateChain: [.bytes(Array(tls.certificatePEM.utf8), format: .pem)],
                privateKey: .bytes(Array(tls.privateKeyPEM.utf8), format: .pem)
            ) { $0.trustRoots = .certificates([.bytes(Array(tls.caPEM.utf8), format: .pem)]) },
            config: .defaults { config in
                config.http2.authority = ObserverTLS.serverName
                config.backoff.initial = .milliseconds(100)
                config.backoff.max = .seconds(1)
            })
        try await withGRPCClient(transport: transport) { client in
            var options = CallOptions.defaults
            options.waitForReady = false
            options.timeout = timeout
            try await client.serverStreaming(
                request: ClientRequest(message: request), descriptor: ObserverMethod.descriptor,
                serializer: JSONMessageCoder<ObserverRequest>(), deserializer: JSONMessageCoder<ObserverResponse>(),
                options: options
            ) { response in
                for try await message in response.messages { try await onResponse(message) }
            }
        }
    }
}

/// The common names of the certificates (the cluster's store CA signs them) that the flow
/// services know. Neither is an etcd user, so neither opens the store.
public enum ObserverCredentials {
    /// The relay's: it reads every node's flows. Nodes' observers serve with the same
    /// certificate, under the DNS name `ObserverTLS.serverName`.
    public static let relayName = "meridian-flows-relay"
    /// A user's that may read flows through the relay and nothing else.
    public static let readerName = "meridian-flows-reader"
    /// The administrator's (CN `root`): the relay serves it too.
    public static let administratorName = "root"
}
