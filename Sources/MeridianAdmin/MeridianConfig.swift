import Foundation
import MeridianEtcd
import Yams

/// One cluster the CLI can talk to: its etcd endpoint and the administrator's certificate.
public struct MeridianContext: Codable, Sendable, Hashable {
    public var name: String
    public var cluster: String
    public var endpoint: String
    public var serverName: String
    public var certificateAuthority: String
    public var clientCertificate: String
    public var clientKey: String
    /// The lab directory that made this context, if any; `lab down` removes only its own.
    public var lab: String?
    /// The cluster's flow relay (`HOST:PORT` or `unix:PATH`), which `meridian observe` reads
    /// with this context's CA and client certificate.
    public var flowsEndpoint: String?

    enum CodingKeys: String, CodingKey {
        case name, cluster, endpoint, lab
        case flowsEndpoint = "flows-endpoint"
        case serverName = "server-name"
        case certificateAuthority = "certificate-authority"
        case clientCertificate = "client-certificate"
        case clientKey = "client-key"
    }

    public init(name: String, cluster: String, endpoint: String, serverName: String, certificateAuthority: String,
                clientCertificate: String, clientKey: String, lab: String? = nil) {
        self.name = name
        self.cluster = cluster
        self.endpoint = endpoint
        self.serverName = serverName
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.lab = lab
    }

    /// How to reach the context's etcd as its administrator.
    public func clientConfiguration() throws -> EtcdClientConfiguration {
        func read(_ path: String, _ what: String) throws(AdminError) -> String {
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw .credentialUnreadable(context: name, what: what, path: path)
            }
        }
        // Several members are given comma-separated, as etcdctl's --endpoints takes them.
        let endpoints = try endpoint.split(separator: ",").map { url throws(EtcdError) in
            try EtcdEndpoint(url: url.trimmingCharacters(in: .whitespaces))
        }
        guard !endpoints.isEmpty else { throw EtcdError(.invalidArgument, "context \(name): no endpoint") }
        return EtcdClientConfiguration(
            endpoints: endpoints,
            tls: EtcdTLS(caPEM: try read(certificateAuthority, "certificate-authority"),
                         certificatePEM: try read(clientCertificate, "client-certificate"),
                         privateKeyPEM: try read(clientKey, "client-key"), serverName: serverName),
            requestTimeout: .seconds(5))
    }
}

/// The user's configuration file (`$MERIDIAN_CONFIG`, default `~/.config/meridian/config.yaml`),
/// shaped like a kubeconfig: named contexts and a current one.
public struct MeridianConfig: Codable, Sendable, Hashable {
    public var currentContext: String?
    public var contexts: [MeridianContext]

    enum CodingKeys: String, CodingKey {
        case currentContext = "current-context"
        case contexts
    }

    public init(currentContext: String? = nil, contexts: [MeridianContext] = []) {
        self.currentContext = currentContext
        self.contexts = contexts
    }

    public static var path: String {
        if let explicit = ProcessInfo.processInfo.environment["MERIDIAN_CONFIG"], !explicit.isEmpty { return explicit }
        return NSHomeDirectory() + "/.config/meridian/config.yaml"
    }

    public static func load(from path: String = MeridianConfig.path) throws -> MeridianConfig {
        guard let data = FileManager.default.contents(atPath: path) else { return MeridianConfig() }
        do {
            return try YAMLDecoder().decode(MeridianConfig.self, from: data)
        } catch {
            throw AdminError.configUnreadable(path: path, detail: "\(error)")
        }
    }

    public func save(to path: String = MeridianConfig.path) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try YAMLEncoder().encode(self).write(to: url, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
    }

    public func context(_ name: String?) throws(AdminError) -> MeridianContext {
        guard let wanted = name ?? currentContext else { throw .noCurrentContext(configPath: Self.path) }
        guard let context = contexts.first(where: { $0.name == wanted }) else {
            throw .contextNotFound(wanted, configPath: Self.path, known: contexts.map(\.name))
        }
        return context
    }

    public mutating func upsert(_ context: MeridianContext) {
        contexts.removeAll { $0.name == context.name }
        contexts.append(context)
        contexts.sort { $0.name < $1.name }
        if currentContext == nil { currentContext = context.name }
    }
}
