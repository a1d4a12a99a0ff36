import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import MeridianCore
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

    /// `upstream` is the connection reads are relayed over (in a managed cluster a store user
    /// that may read only the exported keys); `isEnabled` says whether clustermesh is on (off,
    /// every call is refused); `exportFilter` which endpoints and identities are exported (nil:
    /// all of them).
    public init(configuration: MeshEndpointConfiguration, cluster: String, authorizer: PeerAuthorizer, upstream: EtcdClient,
                isEnabled: @escaping @Sendable () -> Bool, exportFilter: @escaping @Sendable () -> ExportFilter? = { nil }, logger: Logger) {
        self.configuration = configuration
        self.gate = MeshGate(policy: MeshReadPolicy(cluster: cluster), authorizer: authorizer, isEnabled: isEnabled,
                             exportFilter: exportFilter, logger: logger)
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
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = Self.maximumRequestBytes
                config.http2.maxConcurrentStreams = Self.maximumStreamsPerConnection
            })
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
    /// Concurrent RPCs on one HTTP/2 connection.
    static let maximumStreamsPerConnection = 64
}

/// Admission and range checks shared by the endpoint's services, with the refusal counters.
struct MeshGate: Sendable {
    let policy: MeshReadPolicy
    let authorizer: PeerAuthorizer
    let logger: Logger
    let isEnabled: @Sendable () -> Bool
    let exportFilter: @Sendable () -> ExportFilter?
    private let counts = Shared([String: [MeshRefusal: Int]]())
    private let held = Shared([String: [Held: Int]]())

    init(policy: MeshReadPolicy, authorizer: PeerAuthorizer, isEnabled: @escaping @Sendable () -> Bool,
         exportFilter: @escaping @Sendable () -> ExportFilter? = { nil }, logger: Logger) {
        self.policy = policy
        self.authorizer = authorizer
        self.isEnabled = isEnabled
        self.exportFilter = exportFilter
        self.logger = logger
    }

    var refusals: [String: [MeshRefusal: Int]] { counts.withLock { $0 } }

    /// The peer whose current credential the caller presented, while clustermesh is enabled.
    func admit(_ context: ServerContext, call: String) throws(RPCError) -> PeerAuthorizer.Admission {
        guard isEnabled() else { throw refuse(.disabled, peer: "", call: call, detail: "clustermesh is disabled on this cluster") }
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
        case .tooManyWatches, .tooManyReads, .tooManyRequests: .resourceExhausted
        case .revoked, .outsideExport, .readOnly: .permissionDenied
        case .disabled: .unavailable
        }
        return RPCError(code: code, message: "\(Self.refusalPrefix)\(reason.rawValue): \(detail)")
    }

    static let refusalPrefix = "meridian mesh endpoint: "

    static func printable(_ bytes: Data) -> String {
        TerminalSafe.escape(utf8: bytes.prefix(256))
    }

    /// What a peer is told when etcd fails a relayed call: etcd's own status where a client
    /// needs it (a compacted revision, a bad argument), nothing of the store's internals otherwise.
    static func upstreamFailure(_ error: any Error) -> RPCError {
        if let rpc = error as? RPCError, [.outOfRange, .invalidArgument, .failedPrecondition].contains(rpc.code) {
            return rpc
        }
        if error is CancellationError { return RPCError(code: .cancelled, message: "cancelled") }
        return RPCError(code: .unavailable, message: "\(refusalPrefix)the store is unavailable")
    }

    /// What a peer holds open at once: watch streams, and Range calls in flight.
    enum Held: Sendable, Hashable { case watchStream, range }

    /// Per peer: at most `maximumWatchStreams` open watch streams and `maximumRangesInFlight`
    /// Range calls; more is refused (`too-many-watches`, `too-many-reads`) rather than queued.
    static let maximumWatchStreams = 16
    static let maximumRangesInFlight = 16

    func holding<R: Sendable>(_ kind: Held, of admission: PeerAuthorizer.Admission, call: String,
                              _ body: () async throws -> R) async throws -> R {
        let limit = kind == .watchStream ? Self.maximumWatchStreams : Self.maximumRangesInFlight
        let admitted = held.withLock { held -> Bool in
            guard held[admission.peer, default: [:]][kind, default: 0] < limit else { return false }
            held[admission.peer, default: [:]][kind, default: 0] += 1
            return true
        }
        guard admitted else {
            let reason: MeshRefusal = kind == .watchStream ? .tooManyWatches : .tooManyReads
            throw refuse(reason, peer: admission.peer, call: call, detail: "at most \(limit) at once per peer")
        }
        defer { held.withLock { $0[admission.peer, default: [:]][kind, default: 1] -= 1 } }
        return try await body()
    }
}

/// `KV` for peers: Range inside the export, relayed to etcd; every write refused.
struct MeshKVService: Etcdserverpb_KV.SimpleServiceProtocol {
    let gate: MeshGate
    let upstream: EtcdClient

    func range(request: Etcdserverpb_RangeRequest, context: ServerContext) async throws -> Etcdserverpb_RangeResponse {
        let admission = try gate.admit(context, call: "Range")
        try gate.checkRead(admission, key: request.key, rangeEnd: request.rangeEnd, call: "Range")
        return try await gate.holding(.range, of: admission, call: "Range") {
            do {
                guard let filter = gate.exportFilter(), ExportFilter.mayJudge(key: request.key, rangeEnd: request.rangeEnd) else {
                    return try await upstream.forwardRange(request)
                }
                return try await filter.range(request) { try await upstream.forwardRange($0) }
            } catch {
                throw MeshGate.upstreamFailure(error)
            }
        }
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

/// `Watch` for peers: each watch created on a stream must lie inside the export, and a stream
/// holds at most `maximumWatchesPerStream` live watches. The peer's requests are read only as
/// fast as etcd takes them and etcd's responses only as fast as the peer reads them, so a
/// stream buffers nothing of its own. It ends when the peer goes, or its credential is revoked
/// or expires.
struct MeshWatchService: Etcdserverpb_Watch.SimpleServiceProtocol {
    let gate: MeshGate
    let upstream: EtcdClient

    /// Live watches one stream may hold (the importer holds one per stream).
    static let maximumWatchesPerStream = 64

    func watch(
        request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>,
        response: RPCWriter<Etcdserverpb_WatchResponse>,
        context: ServerContext
    ) async throws {
        let admission = try gate.admit(context, call: "Watch")
        let (stopped, stop) = AsyncStream.makeStream(of: Never.self)
        let gate = gate
        let upstream = upstream
        let live = Shared(0)
        // A refused request ends the whole stream: it is kept here, and the stream stopped.
        let refusal = Shared(RPCError?.none)
        @Sendable func refuse(_ error: RPCError) -> RPCError {
            refusal.withLock { $0 = $0 ?? error }
            stop.finish()
            return error
        }
        let checked = request.map { message -> Etcdserverpb_WatchRequest in
            if case let .createRequest(create) = message.requestUnion {
                do throws(RPCError) {
                    try gate.checkRead(admission, key: create.key, rangeEnd: create.rangeEnd, call: "Watch")
                } catch {
                    throw refuse(error)
                }
                let count = live.withLock { count in
                    count += 1
                    return count
                }
                guard count <= Self.maximumWatchesPerStream else {
                    throw refuse(gate.refuse(.tooManyWatches, peer: admission.peer, call: "Watch",
                                             detail: "at most \(Self.maximumWatchesPerStream) live watches per stream"))
                }
            }
            return message
        }
        try await gate.holding(.watchStream, of: admission, call: "Watch") {
            try await withRPCCancellationHandler {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        do {
                            try await upstream.relayWatch(requests: checked) { message in
                                if message.canceled { live.withLock { $0 = max(0, $0 - 1) } }
                                try await response.write(gate.exportFilter().map { $0.rewrite(message) } ?? message)
                            }
                        } catch let error as RPCError where error.message.hasPrefix(MeshGate.refusalPrefix) {
                            throw error
                        } catch let overflow as WatchRelayOverflow {
                            throw refuse(gate.refuse(.tooManyRequests, peer: admission.peer, call: "Watch",
                                                     detail: "\(overflow), sent without reading the answers"))
                        } catch {
                            throw MeshGate.upstreamFailure(error)
                        }
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
                        // A scope that changes under a watch (a namespace turned global or not)
                        // ends it: the peer lists again and gets exactly the new export.
                        let scope = gate.exportFilter()
                        while gate.exportFilter() == scope { try await Task.sleep(for: .seconds(1)) }
                        throw RPCError(code: .unavailable, message: "the export scope changed; list again")
                    }
                    group.addTask {
                        for await _ in stopped {}
                        throw refusal.value ?? CancellationError()
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            } onCancelRPC: {
                stop.finish()
            }
        }
    }
}

extension ExportFilter {
    /// A range read under the filter: the records it does not export are left out, and a page
    /// left empty while more follow is read on from where it ended (at the first page's
    /// revision), so a reader paging by its last key always gets one to continue from. `count`
    /// is what the response holds, plus one while more follow. `keys_only` and `count_only` are
    /// served from full reads, since the filter judges values.
    func range(_ request: Etcdserverpb_RangeRequest,
               fetch: (Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse) async throws -> Etcdserverpb_RangeResponse {
        var upstream = request
        upstream.keysOnly = false
        upstream.countOnly = false
        let first = try await fetch(upstream)
        var page = first
        var kept = page.kvs.filter(admits)
        while kept.isEmpty, page.more, let last = page.kvs.last {
            upstream.key = last.key + Data([0])
            upstream.revision = first.header.revision
            page = try await fetch(upstream)
            kept = page.kvs.filter(admits)
        }
        var result = first
        result.more = page.more
        result.count = Int64(kept.count) + (page.more ? 1 : 0)
        result.kvs = request.countOnly ? [] : request.keysOnly ? kept.map { kv in
            var key = kv
            key.value = Data()
            return key
        } : kept
        return result
    }

    private func admits(_ kv: Mvccpb_KeyValue) -> Bool {
        admits(key: String(decoding: kv.key, as: UTF8.self), value: kv.value)
    }

    /// A watch response with every record the filter does not export turned into the deletion of
    /// its key (the peer may hold it from before: a pod's address now used in a namespace that is
    /// not global), and no previous value it does not export.
    func rewrite(_ response: Etcdserverpb_WatchResponse) -> Etcdserverpb_WatchResponse {
        guard !response.events.isEmpty else { return response }
        var rewritten = response
        rewritten.events = response.events.map { event in
            var event = event
            if event.hasPrevKv, !admits(event.prevKv) { event.clearPrevKv() }
            if event.type == .put, !admits(event.kv) {
                event.type = .delete
                event.kv.value = Data()
                event.kv.createRevision = 0
                event.kv.version = 0
                event.kv.lease = 0
            }
            return event
        }
        return rewritten
    }
}
