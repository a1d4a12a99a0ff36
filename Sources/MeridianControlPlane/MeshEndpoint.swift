import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import MeridianEtcd
import MeridianEtcdAPI
import MeridianPKI
import MeridianStore

/// Where the mesh endpoint listens and the files of its TLS identity.
public struct MeshEndpointConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var serverCertificatePath: String
    public var serverKeyPath: String
    /// The mesh CA: the only issuer of client certificates the TLS handshake lets through.
    public var caPath: String

    public init(host: String, port: Int, serverCertificatePath: String, serverKeyPath: String, caPath: String) {
        self.host = host
        self.port = port
        self.serverCertificatePath = serverCertificatePath
        self.serverKeyPath = serverKeyPath
        self.caPath = caPath
    }
}

/// The only door a peer cluster has into this cluster: an etcd-v3-compatible gRPC service with
/// `KV.Range` and `Watch.Watch` and nothing else, restricted to the exported keys and open only
/// to the credentials the control plane issued for current grants (the part Cilium's
/// clustermesh-apiserver plays). Peers' importers, and `etcdctl get/watch` with a peer
/// credential, work against it unchanged; the cluster's etcd itself trusts another CA and never
/// sees a peer. Every other call is refused: `Put`, `DeleteRange`, `Txn` and `Compact` with
/// permission denied, every other service (Lease, Maintenance, Cluster, Auth) as unimplemented.
public struct MeshEndpoint: Sendable {
    public let configuration: MeshEndpointConfiguration
    let gate: MeshGate
    let upstream: EtcdClient

    public init(configuration: MeshEndpointConfiguration, cluster: String, authorizer: PeerAuthorizer, upstream: EtcdClient, logger: Logger) {
        self.configuration = configuration
        self.gate = MeshGate(policy: MeshReadPolicy(cluster: cluster), authorizer: authorizer, logger: logger)
        self.upstream = upstream
    }

    /// Refusals so far, per peer ("" when the caller was not admitted) and reason.
    public var refusals: [String: [MeshRefusal: Int]] { gate.refusals }

    /// Publishes the refusal counts (`meridian/clustermesh/endpoint`) whenever they change,
    /// looking every `interval`.
    public func publishRefusals(to client: any KeyValueStore, every interval: Duration = .seconds(2), logger: Logger) async throws {
        var published: [String: [MeshRefusal: Int]]?
        while true {
            let current = refusals
            if current != published {
                let record = MeshEndpointStatusRecord(
                    refusals: Dictionary(uniqueKeysWithValues: current.map { peer, reasons in
                        (peer.isEmpty ? "-" : peer, Dictionary(uniqueKeysWithValues: reasons.map { ($0.key.rawValue, $0.value) }))
                    }),
                    updatedAt: Date())
                do {
                    try await client.put(KeyLayout.meshEndpointStatus, StoreCoding.encode(record))
                    published = current
                } catch {
                    logger.warning("mesh endpoint status not published", metadata: ["error": "\(error)"])
                }
            }
            try await Task.sleep(for: interval)
        }
    }

    /// Serves until cancelled. `onListening` is told the bound port (useful with port 0).
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: configuration.host, port: configuration.port),
            transportSecurity: .mTLS(
                certificateChain: [.file(path: configuration.serverCertificatePath, format: .pem)],
                privateKey: .file(path: configuration.serverKeyPath, format: .pem)
            ) { $0.trustRoots = .certificates([.file(path: configuration.caPath, format: .pem)]) },
            config: .defaults { $0.rpc.maxRequestPayloadSize = Self.maximumRequestBytes })
        let services: [any RegistrableRPCService] = [
            MeshKVService(gate: gate, upstream: upstream), MeshWatchService(gate: gate, upstream: upstream),
        ]
        try await withGRPCServer(transport: transport, services: services) { server in
            if let port = try await transport.listeningAddress.ipv4?.port { onListening(port) }
            try await withTaskCancellationHandler {
                while true { try await Task.sleep(for: .seconds(3600)) }
            } onCancel: {
                server.beginGracefulShutdown()
            }
        }
    }

    /// Requests are keys and ranges; nothing a reader sends needs more.
    static let maximumRequestBytes = 64 * 1024
}

/// Admission and range checks shared by the endpoint's services, with the refusal counters.
struct MeshGate: Sendable {
    let policy: MeshReadPolicy
    let authorizer: PeerAuthorizer
    let logger: Logger
    private let counts = Shared([String: [MeshRefusal: Int]]())

    init(policy: MeshReadPolicy, authorizer: PeerAuthorizer, logger: Logger) {
        self.policy = policy
        self.authorizer = authorizer
        self.logger = logger
    }

    var refusals: [String: [MeshRefusal: Int]] { counts.withLock { $0 } }

    /// The peer whose current credential the caller presented.
    func admit(_ context: ServerContext, call: String) throws(RPCError) -> PeerAuthorizer.Admission {
        guard let certificate = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate,
              let fingerprint = try? CertificateFingerprint.of(certificate)
        else { throw refuse(.noCertificate, peer: "", call: call, detail: "no client certificate") }
        switch authorizer.admit(fingerprint: fingerprint) {
        case let .success(admission):
            return admission
        case let .failure(reason):
            throw refuse(reason, peer: "", call: call, detail: "certificate \(fingerprint.prefix(16)) is not a current peer credential")
        }
    }

    func checkRead(_ admission: PeerAuthorizer.Admission, key: Data, rangeEnd: Data, call: String) throws(RPCError) {
        guard policy.allows(key: key, rangeEnd: rangeEnd) else {
            let range = rangeEnd.isEmpty ? Self.printable(key) : "[\(Self.printable(key)), \(Self.printable(rangeEnd)))"
            throw refuse(.outsideExport, peer: admission.peer, call: call, detail: "\(range) is outside the exported keys")
        }
    }

    /// Counts and logs a refusal (the first of each peer and reason, then at every power of two)
    /// and returns the status the caller gets.
    func refuse(_ reason: MeshRefusal, peer: String, call: String, detail: String) -> RPCError {
        let count = counts.withLock { counts -> Int in
            counts[peer, default: [:]][reason, default: 0] += 1
            return counts[peer]![reason]!
        }
        if count & (count - 1) == 0 {
            logger.warning("mesh endpoint refused a call", metadata: [
                "peer": "\(peer.isEmpty ? "-" : peer)", "call": "\(call)", "reason": "\(reason.rawValue)",
                "detail": "\(detail)", "times": "\(count)",
            ])
        }
        let code: RPCError.Code = switch reason {
        case .noCertificate, .unknownCredential, .expired: .unauthenticated
        case .tooManyWatches: .resourceExhausted
        case .revoked, .outsideExport, .readOnly: .permissionDenied
        }
        return RPCError(code: code, message: "meridian mesh endpoint: \(reason.rawValue): \(detail)")
    }

    static func printable(_ bytes: Data) -> String {
        String(decoding: bytes.prefix(256), as: UTF8.self).unicodeScalars
            .map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }
}

/// `KV` for peers: Range inside the export, relayed to etcd; every write refused.
struct MeshKVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let gate: MeshGate
    let upstream: EtcdClient

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse {
        let admission = try gate.admit(context, call: "Range")
        try gate.checkRead(admission, key: request.key, rangeEnd: request.rangeEnd, call: "Range")
        return try await upstream.forwardRange(request)
    }

    func put(request: Etcdserverpb_PutRequest, context: ServerContext) async throws -> Etcdserverpb_PutResponse {
        throw refuseWrite("Put", context)
    }

    func deleteRange(request: Etcdserverpb_DeleteRangeRequest, context: ServerContext) async throws -> Etcdserverpb_DeleteRangeResponse {
        throw refuseWrite("DeleteRange", context)
    }

    func txn(request: Etcdserverpb_TxnRequest, context: ServerContext) async throws -> Etcdserverpb_TxnResponse {
        throw refuseWrite("Txn", context)
    }

    func compact(request: Etcdserverpb_CompactionRequest, context: ServerContext) async throws -> Etcdserverpb_CompactionResponse {
        throw refuseWrite("Compact", context)
    }

    private func refuseWrite(_ call: String, _ context: ServerContext) -> RPCError {
        do {
            let admission = try gate.admit(context, call: call)
            return gate.refuse(.readOnly, peer: admission.peer, call: call, detail: "peers may only read")
        } catch {
            return error
        }
    }
}

/// `Watch` for peers: each watch created on a stream must lie inside the export; the stream is
/// relayed to etcd as it is, and ends when the peer's credential is revoked or expires.
struct MeshWatchService: Etcdserverpb_Watch.SimpleServiceProtocol {
    let gate: MeshGate
    let upstream: EtcdClient

    /// Watches one stream may create (the importer uses one per stream).
    static let maximumWatchesPerStream = 64

    private enum Ended: Sendable { case relay, requests }

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<Etcdserverpb_WatchResponse>,
        context: ServerContext
    ) async throws {
        let admission = try gate.admit(context, call: "Watch")
        let (toEtcd, forward) = AsyncStream.makeStream(of: Etcdserverpb_WatchRequest.self)
        let (stopped, stop) = AsyncStream.makeStream(of: Never.self)
        let gate = gate
        let upstream = upstream
        try await withRPCCancellationHandler {
            try await withThrowingTaskGroup(of: Ended.self) { group in
                group.addTask {
                    try await upstream.relayWatch(requests: toEtcd) { try await response.write($0) }
                    return .relay
                }
                group.addTask {
                    var created = 0
                    for try await message in request {
                        if case let .createRequest(create) = message.requestUnion {
                            try gate.checkRead(admission, key: create.key, rangeEnd: create.rangeEnd, call: "Watch")
                            created += 1
                            guard created <= Self.maximumWatchesPerStream else {
                                throw gate.refuse(.tooManyWatches, peer: admission.peer, call: "Watch",
                                                  detail: "at most \(Self.maximumWatchesPerStream) watches per stream")
                            }
                        }
                        forward.yield(message)
                    }
                    forward.finish()
                    return .requests
                }
                group.addTask {
                    await gate.authorizer.revocation(of: admission.fingerprint)
                    try Task.checkCancellation()
                    throw gate.refuse(.revoked, peer: admission.peer, call: "Watch", detail: "credential revoked")
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(max(0, admission.notAfter.timeIntervalSinceNow)))
                    throw gate.refuse(.expired, peer: admission.peer, call: "Watch", detail: "credential expired")
                }
                group.addTask {
                    for await _ in stopped {}
                    throw CancellationError()
                }
                defer { group.cancelAll() }
                while let ended = try await group.next() {
                    if ended == .relay { return }
                }
            }
        } onCancelRPC: {
            forward.finish()
            stop.finish()
        }
    }
}
