import Foundation

/// Where an etcd member listens, parsed from the URLs users and etcd itself use
/// (`https://127.0.0.1:2379`, `unixs:///run/meridian/etcd.sock`).
public enum EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// Parses `https://HOST:PORT` or `unixs://PATH` (also `http://` and `unix://`: TLS is decided by
    /// the client configuration, not the scheme).
    public init(url: String) throws(EtcdError) {
        if let range = url.range(of: "://") {
            let scheme = url[..<range.lowerBound].lowercased()
            let rest = String(url[range.upperBound...])
            switch scheme {
            case "https", "http":
                self = try Self.parseHostPort(rest, original: url)
            case "unix", "unixs":
                guard !rest.isEmpty else { throw EtcdError(.invalidArgument, "endpoint \(url): empty socket path") }
                self = .unix(path: rest)
            default:
                throw EtcdError(.invalidArgument, "endpoint \(url): unsupported scheme \(scheme) (expected https or unixs)")
            }
        } else {
            self = try Self.parseHostPort(url, original: url)
        }
    }

    private static func parseHostPort(_ text: String, original: String) throws(EtcdError) -> EtcdEndpoint {
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        guard let colon = trimmed.lastIndex(of: ":"), let port = Int(trimmed[trimmed.index(after: colon)...]),
              (1...65535).contains(port)
        else { throw EtcdError(.invalidArgument, "endpoint \(original): expected HOST:PORT with a port in 1...65535") }
        var host = String(trimmed[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw EtcdError(.invalidArgument, "endpoint \(original): empty host") }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): host.contains(":") ? "https://[\(host)]:\(port)" : "https://\(host):\(port)"
        case let .unix(path): "unixs://\(path)"
        }
    }
}
