import CoreMetrics
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import MeridianEtcdAPI

/// TLS material for talking to etcd: the CA that signed the server, and the client certificate
/// whose CN etcd maps to an RBAC user.
public struct EtcdTLS: Sendable, Hashable {
    public var caPEM: String
    public var certificatePEM: String
    public var privateKeyPEM: String
    /// Name to verify in the server certificate (it is sent as SNI/authority, which also makes
    /// TLS over unix sockets verifiable).
    public var serverName: String

    public init(caPEM: String, certificatePEM: String, privateKeyPEM: String, serverName: String) {
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.serverName = serverName
    }
}

/// How to reach one etcd cluster: every member's endpoint (the client stays connected to one and
/// moves to the next when that one fails), TLS and timeouts.
public struct EtcdClientConfiguration: Sendable, Hashable {
    /// The members' endpoints, in the order they are tried; never empty.
    public var endpoints: [EtcdEndpoint]
    public var tls: EtcdTLS?
    /// Deadline of each unary call; streams (watch, keep-alive) have none.
    public var requestTimeout: Duration
    /// Upper bound of the transport's reconnect backoff.
    public var maxReconnectBackoff: Duration

    public init(endpoint: EtcdEndpoint, tls: EtcdTLS?, requestTimeout: Duration = .seconds(5), maxReconnectBackoff: Duration = .seconds(2)) {
        self.init(endpoints: [endpoint], tls: tls, requestTimeout: requestTimeout, maxReconnectBackoff: maxReconnectBackoff)
    }

    /// `endpoints` must not be empty.
    public init(endpoints: [EtcdEndpoint], tls: EtcdTLS?, requestTimeout: Duration = .seconds(5), maxReconnectBackoff: Duration = .seconds(2)) {
        precondition(!endpoints.isEmpty, "an etcd client needs at least one endpoint")
        self.endpoints = endpoints
        self.tls = tls
        self.requestTimeout = requestTimeout
        self.maxReconnectBackoff = maxReconnectBackoff
    }

    /// The first member's endpoint.
    public var endpoint: EtcdEndpoint { endpoints[0] }

    /// Every endpoint, comma-separated, for messages.
    public var endpointList: String { endpoints.map(\.description).joined(separator: ",") }

    /// The same configuration for one member alone (to ask that member about itself).
    public func member(_ endpoint: EtcdEndpoint) -> EtcdClientConfiguration {
        var copy = self
        copy.endpoints = [endpoint]
        return copy
    }
}

extension EtcdKeyValue {
    init(_ kv: Mvccpb_KeyValue) {
        self.init(key: String(decoding: kv.key, as: UTF8.self), value: kv.value, createRevision: kv.createRevision,
                  modRevision: kv.modRevision, lease: kv.lease)
    }
}

/// What a role may do on a key range; mirrors etcd's permission types.
public enum EtcdPermission: Sendable, Hashable {
    case read, write, readWrite
}

/// A thin, typed etcd v3 client over grpc-swift-2: KV, transactions, leases, watches and the RBAC
/// administration Meridian needs. It owns no background work of its own: connections run inside
/// `withClient`, and long-running calls (watch, keep-alive) run in the caller's task.
public struct EtcdClient: KeyValueStore {
    private let grpc: GRPCClient<HTTP2ClientTransport.Posix>
    public let configuration: EtcdClientConfiguration

    private var kv: Etcdserverpb_KV.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    var watchAPI: Etcdserverpb_Watch.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    private var leaseAPI: Etcdserverpb_Lease.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    private var auth: Etcdserverpb_Auth.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    private var maintenance: Etcdserverpb_Maintenance.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }

    /// Connects, runs `body`, then closes the connection. All calls made through the client must
    /// finish inside `body`.
    public static func withClient<R: Sendable>(
        _ configuration: EtcdClientConfiguration,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (EtcdClient) async throws -> R
    ) async throws -> R {
        let transport = try makeTransport(configuration)
        return try await withGRPCClient(transport: transport, isolation: isolation) { grpc in
            try await body(EtcdClient(grpc: grpc, configuration: configuration))
        }
    }

    private static func makeTransport(_ configuration: EtcdClientConfiguration) throws -> HTTP2ClientTransport.Posix {
        let target: any ResolvableTarget
        var registry = NameResolverRegistry.defaults
        if configuration.endpoints.count > 1 {
            // One endpoint of every member's address: pick-first stays on the first that
            // connects and, when it fails, tries the others in order.
            target = try EtcdMembersTarget(configuration.endpoints, authority: configuration.tls?.serverName)
            registry.registerFactory(EtcdMembersTarget.Resolver())
        } else {
            switch configuration.endpoint {
            case let .tcp(host, port):
                if host.contains(":") {
                    target = ResolvableTargets.IPv6(addresses: [.init(host: host, port: port)])
                } else if EtcdMembersTarget.isIPv4(host) {
                    target = ResolvableTargets.IPv4(addresses: [.init(host: host, port: port)])
                } else {
                    target = ResolvableTargets.DNS(host: host, port: port)
                }
            case let .unix(path):
                target = ResolvableTargets.UnixDomainSocket(address: .init(path: path), authority: configuration.tls?.serverName)
            }
        }
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if let tls = configuration.tls {
            security = .mTLS(
                certificateChain: [.bytes(Array(tls.certificatePEM.utf8), format: .pem)],
                privateKey: .bytes(Array(tls.privateKeyPEM.utf8), format: .pem)
            ) { $0.trustRoots = .certificates([.bytes(Array(tls.caPEM.utf8), format: .pem)]) }
        } else {
            security = .plaintext
        }
        let config = HTTP2ClientTransport.Posix.Config.defaults { config in
            if let tls = configuration.tls { config.http2.authority = tls.serverName }
            config.backoff.initial = .milliseconds(100)
            config.backoff.max = configuration.maxReconnectBackoff
            config.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
        }
        return try HTTP2ClientTransport.Posix(target: target, transportSecurity: security, config: config, resolverRegistry: registry)
    }

    private var unaryOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = configuration.requestTimeout
        options.waitForReady = true
        return options
    }

    /// One unary request, timed into `meridian_kvstore_operations_duration_seconds` by operation
    /// and outcome (a no-op until the process bootstraps a metrics backend).
    private func call<R>(_ operation: StaticString, _ what: @autoclosure () -> String, _ body: () async throws -> R) async throws(EtcdError) -> R {
        let start = ContinuousClock.now
        do {
            let result = try await body()
            Self.recordDuration(operation, outcome: "success", since: start)
            return result
        } catch {
            Self.recordDuration(operation, outcome: "failure", since: start)
            throw Self.translate(error, context: "\(what()) at \(configuration.endpointList)")
        }
    }

    static let durationMetric = "meridian_kvstore_operations_duration_seconds"

    static func recordDuration(_ operation: StaticString, outcome: String, since start: ContinuousClock.Instant) {
        CoreMetrics.Timer(label: durationMetric, dimensions: [("action", "\(operation)"), ("outcome", outcome)])
            .recordNanoseconds((ContinuousClock.now - start).nanoseconds)
    }

    static func translate(_ error: any Error, context: String) -> EtcdError {
        if let error = error as? EtcdError { return error }
        if error is CancellationError { return EtcdError(.cancelled, "\(context): cancelled", cause: error) }
        guard let rpc = error as? RPCError else { return EtcdError(.other, "\(context): \(error)", cause: error) }
        if rpc.code == .resourceExhausted && rpc.message.contains("database space exceeded") {
            return EtcdError(.noSpace, "\(context): \(Self.noSpaceExplanation) (\(rpc.message))", cause: error)
        }
        let code: EtcdError.Code = switch rpc.code {
        case .unavailable: .unavailable
        // The server's auth store moved (a role or user changed) between the token and the
        // request: transient, the same request succeeds when sent again.
        case .invalidArgument where rpc.message.contains("revision of auth store is old"): .unavailable
        // A member going away can break off an answer mid-stream in ways the gRPC transport
        // reports as protocol errors; another member answers the same request.
        case .internalError where brokenOffAnswers.contains(where: rpc.message.hasPrefix): .unavailable
        case .permissionDenied: .permissionDenied
        case .unauthenticated: .unauthenticated
        case .invalidArgument, .failedPrecondition, .outOfRange: .invalidArgument
        case .deadlineExceeded: .timeout
        case .cancelled: .cancelled
        case .notFound where rpc.message.contains("lease not found"): .leaseExpired
        default: .other
        }
        return EtcdError(code, "\(context): \(rpc.message)", cause: error)
    }

    /// How grpc-swift's transport reports an answer a server broke off (HTTP/2 frames without
    /// the gRPC headers or trailers around them).
    static let brokenOffAnswers = [
        "Missing content-type header", "Server sent EOS alongside a data frame", "Server sent a DATA frame before sending initial metadata",
    ]

    /// What a writer is told when the store refuses writes for lack of space: etcd's own words
    /// ("database space exceeded") say neither why nor what to do.
    static let noSpaceExplanation = ("the store is out of space and refuses writes (NOSPACE): its backend reached its quota, "
        + "or the filesystem under its data directory has no space left on device (or nearly none); "
        + "`meridian clustermesh status` and the control plane's log say which; free space on that filesystem, or raise "
        + "--etcd-quota-bytes if the live data outgrew the quota, and the control plane lifts the alarm")

    // MARK: KV

    public func read(_ key: String) async throws(EtcdError) -> (value: EtcdKeyValue?, revision: Int64) {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        let response = try await call("get", "get \(key)") { try await kv.range(request, options: unaryOptions) }
        return (response.kvs.first.map(EtcdKeyValue.init), response.header.revision)
    }

    /// Every key under `prefix`, read at one revision. Read in pages of `pageSize` keys, every
    /// page at the first page's revision, so a prefix of any size (a mesh of hundreds of clusters'
    /// endpoints) stays under the transport's per-message limit; a page of large values that
    /// exceeds it anyway is read again in halves, down to one key a page.
    public func list(prefix: String, pageSize: Int64) async throws(EtcdError) -> EtcdListing {
        var items: [EtcdKeyValue] = []
        var start = Data(prefix.utf8)
        var revision: Int64 = 0
        var limit = max(1, pageSize)
        while true {
            var request = Etcdserverpb_RangeRequest()
            request.key = start
            request.rangeEnd = Self.prefixEnd(prefix)
            request.limit = limit
            request.revision = revision
            let page = request
            let response: Etcdserverpb_RangeResponse
            let started = ContinuousClock.now
            do {
                response = try await kv.range(page, options: unaryOptions)
                Self.recordDuration("list", outcome: "success", since: started)
            } catch let error as RPCError where Self.isOversizedResponse(error) && limit > 1 {
                Self.recordDuration("list", outcome: "failure", since: started)
                limit = max(1, limit / 2)
                continue
            } catch {
                Self.recordDuration("list", outcome: "failure", since: started)
                throw Self.translate(error, context: "list \(prefix) at \(configuration.endpointList)")
            }
            if revision == 0 { revision = response.header.revision }
            items += response.kvs.map(EtcdKeyValue.init)
            guard response.more, let last = response.kvs.last else { break }
            start = last.key + Data([0])
        }
        return EtcdListing(items: items, revision: revision)
    }

    /// A response larger than the transport accepts: reported as resource exhausted, or (by
    /// grpc-swift-nio-transport's deframer) as an internal error naming it.
    static func isOversizedResponse(_ error: RPCError) -> Bool {
        error.code == .resourceExhausted || (error.code == .internalError && error.message.contains("resourceExhausted"))
    }

    /// Number of keys under `prefix`, without transferring them.
    public func count(prefix: String) async throws(EtcdError) -> Int {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(prefix.utf8)
        request.rangeEnd = Self.prefixEnd(prefix)
        request.countOnly = true
        let response = try await call("count", "count \(prefix)") { try await kv.range(request, options: unaryOptions) }
        return Int(response.count)
    }

    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Int64 {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key.utf8)
        request.value = value
        request.lease = lease
        let response = try await call("put", "put \(key)") { try await kv.put(request, options: unaryOptions) }
        return response.header.revision
    }

    /// Writes `value` only if the key does not exist. Returns whether it wrote.
    public func create(_ key: String, _ value: Data, lease: Int64) async throws(EtcdError) -> Bool {
        var compare = Etcdserverpb_Compare()
        compare.key = Data(key.utf8)
        compare.target = .create
        compare.result = .equal
        compare.createRevision = 0
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key.utf8)
        put.value = value
        put.lease = lease
        return try await guardedPut(put, if: compare, "create \(key)")
    }

    /// Rewrites `key` with its own value if that value is `expected`, which moves its mod
    /// revision: a user of a record says "still in use" to anyone who will delete it only if it
    /// has not moved. Returns whether the key held `expected`.
    public func touch(_ key: String, ifValue expected: Data) async throws(EtcdError) -> Bool {
        var compare = Etcdserverpb_Compare()
        compare.key = Data(key.utf8)
        compare.target = .value
        compare.result = .equal
        compare.value = expected
        var put = Etcdserverpb_PutRequest()
        put.key = Data(key.utf8)
        put.value = expected
        put.ignoreLease = true
        return try await guardedPut(put, if: compare, "touch \(key)")
    }

    /// One put in a transaction guarded by `compare`; whether the guard held.
    private func guardedPut(_ put: Etcdserverpb_PutRequest, if compare: Etcdserverpb_Compare, _ context: @autoclosure () -> String) async throws(EtcdError) -> Bool {
        var op = Etcdserverpb_RequestOp()
        op.requestPut = put
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [compare]
        txn.success = [op]
        let request = txn
        return try await call("txn", context()) { try await kv.txn(request, options: unaryOptions) }.succeeded
    }

    /// Deletes `keys` in one transaction if every key in `unchanged` still has the mod revision
    /// given (0: the key does not exist). Returns whether it deleted.
    public func delete(_ keys: [String], ifModRevisions unchanged: [(key: String, modRevision: Int64)]) async throws(EtcdError) -> Bool {
        var txn = Etcdserverpb_TxnRequest()
        for (key, revision) in unchanged {
            var compare = Etcdserverpb_Compare()
            compare.key = Data(key.utf8)
            compare.target = .mod
            compare.result = .equal
            compare.modRevision = revision
            txn.compare.append(compare)
        }
        txn.success = keys.map(Self.deleteOp)
        let request = txn
        let response = try await call("delete", "delete of \(keys.count) keys if unchanged") { try await kv.txn(request, options: unaryOptions) }
        return response.succeeded
    }

    private static func deleteOp(_ key: String) -> Etcdserverpb_RequestOp {
        var delete = Etcdserverpb_DeleteRangeRequest()
        delete.key = Data(key.utf8)
        var op = Etcdserverpb_RequestOp()
        op.requestDeleteRange = delete
        return op
    }

    /// Applies puts and deletes atomically (etcd allows each key once per transaction).
    public func commit(puts: [(key: String, value: Data)], deletes: [String], lease: Int64) async throws(EtcdError) {
        var txn = Etcdserverpb_TxnRequest()
        for (key, value) in puts {
            var put = Etcdserverpb_PutRequest()
            put.key = Data(key.utf8)
            put.value = value
            put.lease = lease
            var op = Etcdserverpb_RequestOp()
            op.requestPut = put
            txn.success.append(op)
        }
        for key in deletes {
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Data(key.utf8)
            var op = Etcdserverpb_RequestOp()
            op.requestDeleteRange = delete
            txn.success.append(op)
        }
        guard !txn.success.isEmpty else { return }
        _ = try await call("commit", "commit of \(txn.success.count) operations") { try await kv.txn(txn, options: unaryOptions) }
    }

    @discardableResult
    public func delete(_ key: String) async throws(EtcdError) -> Bool {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = Data(key.utf8)
        let response = try await call("delete", "delete \(key)") { try await kv.deleteRange(request, options: unaryOptions) }
        return response.deleted > 0
    }

    @discardableResult
    public func delete(prefix: String) async throws(EtcdError) -> Int {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = Data(prefix.utf8)
        request.rangeEnd = Self.prefixEnd(prefix)
        let response = try await call("delete", "delete prefix \(prefix)") { try await kv.deleteRange(request, options: unaryOptions) }
        return Int(response.deleted)
    }

    /// The etcd cluster ID, current revision and server version; also a cheap reachability probe.
    public func status() async throws(EtcdError) -> (clusterID: UInt64, revision: Int64, version: String) {
        let response = try await call("status", "status") {
            try await maintenance.status(Etcdserverpb_StatusRequest(), options: unaryOptions)
        }
        return (response.header.clusterID, response.header.revision, response.version)
    }

    /// What the member this client is connected to says about itself and the cluster's leader.
    public func memberStatus() async throws(EtcdError) -> EtcdMemberStatus {
        let response = try await call("status", "status") {
            try await maintenance.status(Etcdserverpb_StatusRequest(), options: unaryOptions)
        }
        return EtcdMemberStatus(memberID: response.header.memberID, leader: response.leader, raftTerm: response.raftTerm,
                                raftIndex: response.raftIndex, backendBytes: response.dbSize, version: response.version)
    }

    /// The alarms raised in the cluster, as (member, kind) pairs.
    public func alarms() async throws(EtcdError) -> [EtcdAlarm] {
        try await alarm(.get, .none)
    }

    /// Raises (`activate`) or clears (`deactivate`) an alarm; `member` 0 means every member that
    /// has it (deactivate) or the member answering (activate). Returns the alarms affected.
    @discardableResult
    public func alarm(_ action: EtcdAlarm.Action, _ kind: EtcdAlarm.Kind, member: UInt64 = 0) async throws(EtcdError) -> [EtcdAlarm] {
        var request = Etcdserverpb_AlarmRequest()
        request.action = switch action {
        case .get: .get
        case .activate: .activate
        case .deactivate: .deactivate
        }
        request.alarm = switch kind {
        case .none: .none
        case .noSpace: .nospace
        case .corrupt: .corrupt
        }
        request.memberID = member
        let response = try await call("alarm", "alarm \(action)") { try await maintenance.alarm(request, options: unaryOptions) }
        return response.alarms.map { alarm in
            let kind: EtcdAlarm.Kind = switch alarm.alarm {
            case .nospace: .noSpace
            case .corrupt: .corrupt
            default: .none
            }
            return EtcdAlarm(member: alarm.memberID, kind: kind)
        }
    }

    /// Drops every revision before `revision` from the history (physically, before returning).
    public func compact(revision: Int64, timeout: Duration = .seconds(120)) async throws(EtcdError) {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        request.physical = true
        var options = unaryOptions
        options.timeout = timeout
        _ = try await call("compact", "compact \(revision)") { try await kv.compact(request, options: options) }
    }

    /// Rewrites the answering member's backend file without the space freed by compaction.
    public func defragment(timeout: Duration = .seconds(60)) async throws(EtcdError) {
        var options = unaryOptions
        options.timeout = timeout
        _ = try await call("defragment", "defragment") { try await maintenance.defragment(Etcdserverpb_DefragmentRequest(), options: options) }
    }

    /// Size in bytes of the answering member's backend file (what the quota is measured against).
    public func backendSize() async throws(EtcdError) -> Int64 {
        try await call("status", "status") { try await maintenance.status(Etcdserverpb_StatusRequest(), options: unaryOptions) }.dbSize
    }

    public func currentRevision() async throws(EtcdError) -> Int64 {
        try await status().revision
    }

    /// The end of the key range that covers every key starting with `prefix`.
    public static func prefixEnd(_ prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])
    }

    // MARK: Leases

    public func grantLease(ttl: Duration) async throws(EtcdError) -> Int64 {
        var request = Etcdserverpb_LeaseGrantRequest()
        request.ttl = max(1, ttl.components.seconds)
        let response = try await call("lease", "lease grant") { try await leaseAPI.leaseGrant(request, options: unaryOptions) }
        guard response.error.isEmpty else { throw EtcdError(.other, "lease grant: \(response.error)") }
        return response.id
    }

    public func revokeLease(_ id: Int64) async throws(EtcdError) {
        var request = Etcdserverpb_LeaseRevokeRequest()
        request.id = id
        _ = try await call("lease", "lease revoke") { try await leaseAPI.leaseRevoke(request, options: unaryOptions) }
    }

    /// Keeps `lease` alive until the task is cancelled, refreshing every `interval`. Throws
    /// `.leaseExpired` when etcd reports the lease gone, or the transport error if the stream breaks.
    public func keepAlive(lease: Int64, interval: Duration) async throws(EtcdError) {
        try await call("lease", "lease keep-alive") {
            try await leaseAPI.leaseKeepAlive { writer in
                var request = Etcdserverpb_LeaseKeepAliveRequest()
                request.id = lease
                while !Task.isCancelled {
                    try await writer.write(request)
                    try await Task.sleep(for: interval)
                }
            } onResponse: { response in
                for try await message in response.messages where message.ttl <= 0 {
                    throw EtcdError(.leaseExpired, "lease \(String(lease, radix: 16)) expired")
                }
            }
        }
    }

    // MARK: Watch

    /// Watches every key under `prefix` from `startRevision` (0 = now) and hands each batch of
    /// events, with the revision it brings the watcher to, to `handle`. Runs until `handle`
    /// throws (its error is rethrown unchanged) or the task is cancelled; transport failures
    /// become `EtcdError`s, and `.compacted` means the start revision is gone, so re-list.
    public func watch(
        prefix: String,
        startRevision: Int64,
        handle: @escaping @Sendable (_ events: [EtcdWatchEvent], _ revision: Int64) async throws -> Void
    ) async throws {
        try await watch(key: prefix, rangeEnd: Self.prefixEnd(prefix), startRevision: startRevision, handle: handle)
    }

    /// Watches exactly one key (a role may be allowed that key but not the range after it).
    public func watch(
        key: String,
        startRevision: Int64,
        handle: @escaping @Sendable (_ events: [EtcdWatchEvent], _ revision: Int64) async throws -> Void
    ) async throws {
        try await watch(key: key, rangeEnd: Data(), startRevision: startRevision, handle: handle)
    }

    private func watch(
        key prefix: String,
        rangeEnd: Data,
        startRevision: Int64,
        handle: @escaping @Sendable (_ events: [EtcdWatchEvent], _ revision: Int64) async throws -> Void
    ) async throws {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(prefix.utf8)
        create.rangeEnd = rangeEnd
        create.startRevision = startRevision
        var createRequest = Etcdserverpb_WatchRequest()
        createRequest.createRequest = create
        let request = createRequest
        do {
            try await watchAPI.watch { writer in
                try await writer.write(request)
                // Closing the request stream would end the watch; keep it open until cancelled.
                while true { try await Task.sleep(for: .seconds(3600)) }
            } onResponse: { response in
                for try await message in response.messages {
                    if message.compactRevision != 0 {
                        throw EtcdError(.compacted, "watch \(prefix): revision \(startRevision) compacted (now \(message.compactRevision))")
                    }
                    if message.canceled {
                        let reason = message.cancelReason
                        let code: EtcdError.Code = reason.contains("permission denied") ? .permissionDenied : .other
                        throw EtcdError(code, "watch \(prefix) cancelled by server: \(reason)")
                    }
                    // The creation notice, and any other message without events, is not a change.
                    if message.events.isEmpty { continue }
                    let events = message.events.map { event -> EtcdWatchEvent in
                        switch event.type {
                        case .delete: .delete(key: String(decoding: event.kv.key, as: UTF8.self), revision: event.kv.modRevision)
                        default: .put(EtcdKeyValue(event.kv))
                        }
                    }
                    try await handle(events, message.header.revision)
                }
                throw EtcdError(.unavailable, "watch \(prefix): stream ended by server")
            }
        } catch let error as RPCError {
            throw Self.translate(error, context: "watch \(prefix) at \(configuration.endpointList)")
        } catch let error as CancellationError {
            throw Self.translate(error, context: "watch \(prefix) at \(configuration.endpointList)")
        }
    }

    // MARK: Relaying (the mesh endpoint)

    /// Sends a Range request as it is and returns etcd's answer as it is; failures are etcd's own
    /// gRPC status, so a relaying server can hand them on unchanged.
    public func forwardRange(_ request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse {
        try await kv.range(request, options: unaryOptions)
    }

    // MARK: RBAC administration

    public func addRole(_ name: String) async throws(EtcdError) {
        var request = Etcdserverpb_AuthRoleAddRequest()
        request.name = name
        try await ignoringAlreadyExists("role add \(name)") { try await auth.roleAdd(request, options: unaryOptions) }
    }

    public func deleteRole(_ name: String) async throws(EtcdError) {
        var request = Etcdserverpb_AuthRoleDeleteRequest()
        request.role = name
        try await ignoringNotFound("role delete \(name)") { try await auth.roleDelete(request, options: unaryOptions) }
    }

    /// Grants `permission` on one key, or on every key under it when `prefix` is true.
    public func grant(role: String, _ permission: EtcdPermission, key: String, prefix: Bool) async throws(EtcdError) {
        var perm = Authpb_Permission()
        perm.permType = switch permission {
        case .read: .read
        case .write: .write
        case .readWrite: .readwrite
        }
        perm.key = Data(key.utf8)
        if prefix { perm.rangeEnd = Self.prefixEnd(key) }
        var request = Etcdserverpb_AuthRoleGrantPermissionRequest()
        request.name = role
        request.perm = perm
        _ = try await call("grant", "grant \(role) on \(key)") { try await auth.roleGrantPermission(request, options: unaryOptions) }
    }

    /// Adds a user that can only authenticate with a client certificate whose CN is `name`.
    public func addCertificateUser(_ name: String) async throws(EtcdError) {
        var request = Etcdserverpb_AuthUserAddRequest()
        request.name = name
        var options = Authpb_UserAddOptions()
        options.noPassword = true
        request.options = options
        try await ignoringAlreadyExists("user add \(name)") { try await auth.userAdd(request, options: unaryOptions) }
    }

    public func deleteUser(_ name: String) async throws(EtcdError) {
        var request = Etcdserverpb_AuthUserDeleteRequest()
        request.name = name
        try await ignoringNotFound("user delete \(name)") { try await auth.userDelete(request, options: unaryOptions) }
    }

    public func grantRole(user: String, role: String) async throws(EtcdError) {
        var request = Etcdserverpb_AuthUserGrantRoleRequest()
        request.user = user
        request.role = role
        _ = try await call("grant", "grant role \(role) to \(user)") { try await auth.userGrantRole(request, options: unaryOptions) }
    }

    public func enableAuth() async throws(EtcdError) {
        _ = try await call("auth", "auth enable") { try await auth.authEnable(Etcdserverpb_AuthEnableRequest(), options: unaryOptions) }
    }

    private func ignoringAlreadyExists(_ what: String, _ body: () async throws -> some Sendable) async throws(EtcdError) {
        do {
            _ = try await call("auth", what, body)
        } catch where error.message.contains("already exists") {
            return
        }
    }

    private func ignoringNotFound(_ what: String, _ body: () async throws -> some Sendable) async throws(EtcdError) {
        do {
            _ = try await call("auth", what, body)
        } catch where error.message.contains("not found") {
            return
        }
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating far beyond any request's length).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? .max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
