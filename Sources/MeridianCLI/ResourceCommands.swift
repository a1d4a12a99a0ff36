import ArgumentParser
import Foundation
import MeridianFlows
import MeridianAdmin
import MeridianStore
import MeridianCore
import MeridianEtcd

/// `meridian apply -f FILE`: multi-document Kubernetes YAML, all or nothing.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Apply Kubernetes YAML to a cluster.")
    @OptionGroup var contextOptions: ContextOptions
    @Option(name: .shortAndLong, help: "File to apply, or - for standard input.") var filename: String
    @Flag(help: "Return only once every node of the cluster has programmed what was applied (non-zero exit if --timeout runs out).")
    var wait = false
    @Option(help: "How long --wait waits (e.g. 30s, 2m).") var timeout: String = "60s"

    func validate() throws {
        guard DurationParser.parse(timeout) != nil else {
            throw ValidationError("--timeout: expected a duration such as 30s, 2m or 1h, got \(timeout)")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let (text, source) = try Resources.readManifest(filename)
            let context = try contextOptions.resolve()
            let applied = try await Resources.apply(text, source: source, context: context)
            for (object, outcome) in applied {
                print("\(object.kind.rawValue.lowercased())/\(object.name) \(outcome.rawValue)")
            }
            if wait, let timeout = DurationParser.parse(timeout) {
                try await Resources.waitUntilProgrammed(applied, context: context, timeout: timeout)
                print("programmed on every node of \(context.cluster)")
            }
        }
    }
}

/// `meridian wait --for programmed KIND/NAME`: `kubectl wait` for the condition Meridian's nodes
/// report, that an object as it is now is programmed into every node's datapath.
struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait", abstract: "Wait until every node of the cluster has programmed an object (--for programmed KIND/NAME).")
    @OptionGroup var contextOptions: ContextOptions
    @Option(name: .customLong("for"), help: "The condition; `programmed` is the one there is.") var condition: String
    @Argument(help: "KIND/NAME, e.g. networkpolicy/web-ingress or service/echo.") var target: String
    @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
    @Option(help: "How long to wait (e.g. 30s, 2m); non-zero exit when it runs out.") var timeout: String = "60s"

    func validate() throws {
        guard condition == "programmed" else { throw ValidationError("--for: expected programmed, got \(condition)") }
        _ = try kindAndName()
        guard DurationParser.parse(timeout) != nil else {
            throw ValidationError("--timeout: expected a duration such as 30s, 2m or 1h, got \(timeout)")
        }
    }

    func kindAndName() throws -> (ResourceKind, String) {
        let parts = target.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty, let kind = ResourceKind(userInput: parts[0]) else {
            throw ValidationError("expected KIND/NAME with a kind of \(ResourceKind.allCases.map(\.plural).joined(separator: ", ")), got \(target)")
        }
        return (kind, parts[1])
    }

    func run() async throws {
        try await reportingErrors {
            let (kind, name) = try kindAndName()
            let context = try contextOptions.resolve()
            try await Resources.waitUntilProgrammed(kind, namespace: namespace, name: name, context: context,
                                                    timeout: DurationParser.parse(timeout) ?? .seconds(60))
            print("\(kind.rawValue.lowercased())/\(name) programmed on every node of \(context.cluster)")
        }
    }
}

/// `meridian delete KIND NAME` or `meridian delete -f FILE`.
struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete resources.")
    @OptionGroup var contextOptions: ContextOptions
    @Argument(help: "Kind (service, namespace, node, ...) and name.") var target: [String] = []
    @Option(name: .shortAndLong, help: "Delete what this file describes.") var filename: String?
    @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
    @Option(help: "Seconds a deleted pod gets to stop (default: its terminationGracePeriodSeconds).") var gracePeriod: Int?
    @Flag(help: "Remove pods at once instead of letting their nodes stop them first.") var force = false

    func validate() throws {
        if let gracePeriod, !PodTermination.gracePeriodSeconds.contains(gracePeriod) {
            throw ValidationError("--grace-period must be between \(PodTermination.gracePeriodSeconds.lowerBound) and "
                                  + "\(PodTermination.gracePeriodSeconds.upperBound), got \(gracePeriod)")
        }
        if filename == nil && target.count != 2 { throw ValidationError("expected KIND NAME, or -f FILE") }
        if filename != nil && !target.isEmpty { throw ValidationError("give either KIND NAME or -f FILE, not both") }
        if filename == nil, !Self.isNode(target[0]), ResourceKind(userInput: target[0]) == nil {
            throw ValidationError("unknown kind \(target[0]); known: \(ResourceKind.allCases.map(\.plural).joined(separator: ", "))")
        }
    }

    func run() async throws {
        try await reportingErrors {
            if filename == nil, Self.isNode(target[0]) {
                let context = try contextOptions.resolve()
                guard try await Resources.deleteNode(target[1], context: context) else {
                    throw AdminError.nodeNotFound(node: target[1], cluster: context.cluster)
                }
                print("node/\(target[1]) deleted")
                return
            }
            let targets: [(kind: ResourceKind, namespace: String?, name: String)]
            if let filename {
                let (text, source) = try Resources.readManifest(filename)
                targets = try Resources.objects(in: text, source: source)
            } else {
                let kind = ResourceKind(userInput: target[0])!
                targets = [(kind, kind.isNamespaced ? namespace : nil, target[1])]
            }
            let result = try await Resources.delete(targets, context: try contextOptions.resolve(), gracePeriodSeconds: gracePeriod, force: force)
            for deleted in result.deleted { print("\(deleted) deleted") }
            for missing in result.missing { FileHandle.standardError.write(Data("Error: \(missing)\n".utf8)) }
            if !result.missing.isEmpty { throw ExitCode.failure }
        }
    }

    static func isNode(_ kind: String) -> Bool { ["node", "nodes", "no"].contains(kind.lowercased()) }
}

/// `meridian config get-contexts | use-context NAME`.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Show or change the Meridian config file.",
                                                    subcommands: [GetContexts.self, UseContext.self, SetContext.self, DeleteContext.self])

    /// Adds or replaces a context, e.g. for a control plane started by hand.
    struct SetContext: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-context")
        @Argument var name: String
        @Option(help: "Cluster name (default: the context name).") var cluster: String?
        @Option(help: "etcd endpoint, https://HOST:PORT (several members comma-separated).") var endpoint: String
        @Option(help: "DNS name in the etcd server certificate.") var serverName: String
        @Option(help: "CA certificate file.") var certificateAuthority: String
        @Option(help: "Administrator (CN root) client certificate file.") var clientCertificate: String
        @Option(help: "Key of the client certificate.") var clientKey: String
        @Option(help: "The cluster's flow relay for `meridian observe`: HOST:PORT or unix:PATH.") var flowsEndpoint: String?

        func run() async throws {
            try await reportingErrors {
                guard !endpoint.split(separator: ",").isEmpty else { throw ValidationError("--endpoint: expected at least one endpoint") }
                for url in endpoint.split(separator: ",") { _ = try EtcdEndpoint(url: url.trimmingCharacters(in: .whitespaces)) }
                for path in [certificateAuthority, clientCertificate, clientKey] where !FileManager.default.isReadableFile(atPath: path) {
                    throw AdminError.fileUnreadable(path: path)
                }
                if let flowsEndpoint { _ = try ObserverAddress(parsing: flowsEndpoint) }
                var config = try MeridianConfig.load()
                var context = MeridianContext(
                    name: name, cluster: cluster ?? name, endpoint: endpoint, serverName: serverName,
                    certificateAuthority: certificateAuthority, clientCertificate: clientCertificate, clientKey: clientKey)
                context.flowsEndpoint = flowsEndpoint
                config.upsert(context)
                try config.save()
                print("Context \(name) set")
            }
        }
    }

    struct DeleteContext: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete-context")
        @Argument var name: String

        func run() async throws {
            try await reportingErrors {
                var config = try MeridianConfig.load()
                _ = try config.context(name)
                config.contexts.removeAll { $0.name == name }
                if config.currentContext == name { config.currentContext = config.contexts.first?.name }
                try config.save()
                print("Context \(name) deleted")
            }
        }
    }

    struct GetContexts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get-contexts")
        func run() async throws {
            let config = try MeridianConfig.load()
            print(Table(headers: ["CURRENT", "NAME", "CLUSTER", "ENDPOINT"], rows: config.contexts.map {
                [$0.name == config.currentContext ? "*" : "", $0.name, $0.cluster, $0.endpoint]
            }).render())
        }
    }

    struct UseContext: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "use-context")
        @Argument var name: String
        func run() async throws {
            try await reportingErrors {
                var config = try MeridianConfig.load()
                _ = try config.context(name)
                config.currentContext = name
                try config.save()
                print("Switched to context \(name)")
            }
        }
    }
}

/// `meridian rollout restart | status deployment NAME`, as kubectl's.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollout", abstract: "Restart a Deployment's pods, or follow a rollout.",
                                                    subcommands: [Restart.self, Status.self])

    static func checkKind(_ kind: String) throws {
        guard ["deployment", "deployments", "deploy"].contains(kind.lowercased()) else {
            throw ValidationError("only deployments can be rolled out, got \(kind)")
        }
    }

    /// Replaces every pod by the Deployment's strategy (a rolling update by default).
    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "restart", abstract: "Replace a Deployment's pods by its strategy.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
        @Argument(help: "deployment") var kind: String
        @Argument(help: "Deployment name.") var name: String

        func validate() throws { try RolloutCommand.checkKind(kind) }

        func run() async throws {
            try await reportingErrors {
                try await Rollout.restart(name, namespace: namespace, context: try contextOptions.resolve())
                print("deployment.apps/\(name) restarted")
            }
        }
    }

    /// Waits until every pod is of the current template, ready, and the old ones are gone.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Wait for a Deployment's rollout to finish.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
        @Argument(help: "deployment") var kind: String
        @Argument(help: "Deployment name.") var name: String
        @Option(help: "How long to wait (e.g. 90s, 5m).") var timeout: String = "5m"

        func validate() throws {
            try RolloutCommand.checkKind(kind)
            guard DurationParser.parse(timeout) != nil else { throw ValidationError("--timeout: expected a duration such as 30s or 5m, got \(timeout)") }
        }

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                let deadline = ContinuousClock.now + (DurationParser.parse(timeout) ?? .seconds(300))
                var last = ""
                while true {
                    let progress = try await Rollout.progress(name, namespace: namespace, context: context)
                    let line = progress.summary(name: name)
                    if line != last { print(line) }
                    last = line
                    if progress.isComplete { return }
                    guard ContinuousClock.now < deadline else {
                        FileHandle.standardError.write(Data("Error: timed out after \(timeout) waiting for the rollout to finish\n".utf8))
                        throw ExitCode.failure
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        }
    }
}
