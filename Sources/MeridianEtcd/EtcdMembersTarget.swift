import GRPCCore
import GRPCNIOTransportHTTP2

/// Every member of an etcd cluster as one gRPC target: a single endpoint holding each member's
/// address (TCP or unix socket, which the transport's own targets cannot mix or list), so the
/// channel's pick-first balancing connects to the first member that answers and moves on when it
/// fails. Host names are not resolved here: members are given by address.
struct EtcdMembersTarget: ResolvableTarget, Sendable {
    let addresses: [SocketAddress]
    let authority: String?

    init(_ endpoints: [EtcdEndpoint], authority: String?) throws(EtcdError) {
        addresses = try endpoints.map { endpoint throws(EtcdError) -> SocketAddress in
            switch endpoint {
            case let .unix(path): return .unixDomainSocket(.init(path: path))
            case let .tcp(host, port) where host.contains(":"): return .ipv6(host: host, port: port)
            case let .tcp(host, port) where Self.isIPv4(host): return .ipv4(host: host, port: port)
            case let .tcp(host, _):
                throw EtcdError(.invalidArgument, "endpoint \(endpoint): with several members, give each by address, not by name (\(host))")
            }
        }
        self.authority = authority
    }

    static func isIPv4(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The same result on every pull: the members' addresses do not change.
    struct Addresses: AsyncSequence, Sendable {
        let result: NameResolutionResult

        struct AsyncIterator: AsyncIteratorProtocol {
            let result: NameResolutionResult
            func next() async throws(any Error) -> NameResolutionResult? { result }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(result: result) }
    }

    /// Resolves the target to its fixed addresses, once per request for names.
    struct Resolver: NameResolverFactory, Sendable {
        func resolver(for target: EtcdMembersTarget) -> NameResolver {
            let result = NameResolutionResult(endpoints: [Endpoint(addresses: target.addresses)], serviceConfig: nil)
            return NameResolver(names: RPCAsyncSequence(wrapping: Addresses(result: result)), updateMode: .pull, authority: target.authority)
        }
    }
}
