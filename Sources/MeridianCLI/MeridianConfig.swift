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

    enum CodingKeys: String, CodingKey {
        case name, cluster, endpoint, lab
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

    func clientConfiguration() throws -> EtcdClientConfiguration {
        func read(_ path: String, _ what: String) throws -> String {
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw CLIError("context \(name): cannot read \(what) \(path)")
            }
        }
        return EtcdClientConfiguration(
            endpoint: try EtcdEndpoint(url: endpoint),
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
            throw CLIError("cannot parse \(path): \(error)")
        }
    }

    public func save(to path: String = MeridianConfig.path) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try YAMLEncoder().encode(self).write(to: url, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
    }

    public func context(_ name: String?) throws -> MeridianContext {
        guard let wanted = name ?? currentContext else {
            throw CLIError("no context given and no current-context set in \(Self.path); pass --context NAME")
        }
        guard let context = contexts.first(where: { $0.name == wanted }) else {
            let known = contexts.map(\.name).joined(separator: ", ")
            throw CLIError("context \(wanted) not found in \(Self.path)" + (known.isEmpty ? " (no contexts; run `meridian lab up`)" : " (known: \(known))"))
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

/// A user-facing failure: printed as `Error: ...` and turned into a non-zero exit.
public struct CLIError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
