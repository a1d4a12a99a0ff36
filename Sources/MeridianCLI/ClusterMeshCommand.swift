import ArgumentParser
import Foundation
import MeridianCore
import MeridianControlPlane
import MeridianEtcd
import MeridianStore

/// `meridian clustermesh ...`, shaped like `cilium clustermesh ...`.
struct ClusterMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clustermesh", abstract: "Enable, connect, disconnect and inspect the cluster mesh.",
        subcommands: [Enable.self, Disable.self, Connect.self, Disconnect.self, Status.self])

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the remote-access role, publish the cluster config and start heartbeat and export.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(help: "Seconds between heartbeats; peers reconnect after two missed beats.") var heartbeatInterval: Double = 60
        @Option(help: "Seconds an unreachable peer's data is kept before it is withdrawn (0 = forever).") var cacheTTL: Double = 0

        func validate() throws {
            guard heartbeatInterval >= 0.1 else { throw ValidationError("--heartbeat-interval must be at least 0.1 seconds") }
            guard cacheTTL >= 0 else { throw ValidationError("--cache-ttl must not be negative") }
        }

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                    let info = try await ClusterAccessInfo.load(context, client: client)
                    try await ClusterAccess.createRemoteRole(client, cluster: info.settings.name)
                    let settings = ClusterMeshSettings(enabled: true, heartbeatIntervalSeconds: heartbeatInterval, cacheTTLSeconds: cacheTTL)
                    try await client.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(settings))
                    let deadline = ContinuousClock.now + .seconds(30)
                    while try await client.get(KeyLayout.clusterConfig(info.settings.name)) == nil {
                        guard ContinuousClock.now < deadline else {
                            throw CLIError("clustermesh enabled, but the control plane of \(info.settings.name) has not published its cluster config within 30 s; is it running?")
                        }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    print("✅ ClusterMesh enabled on \(info.settings.name) (ID \(info.settings.id)): cilium/cluster-config/\(info.settings.name) published, heartbeat every \(heartbeatInterval) s")
                }
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop exporting; peers lose access to this cluster's state.")
        @OptionGroup var contextOptions: ContextOptions

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                    try await client.put(KeyLayout.clusterMeshSettings, StoreCoding.encode(ClusterMeshSettings(enabled: false)))
                    print("ClusterMesh disabled on \(context.cluster)")
                }
            }
        }
    }

    struct Connect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Connect this cluster with one or more others.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .customLong("destination-context"), parsing: .upToNextOption, help: "Context(s) of the cluster(s) to connect to.")
        var destinations: [String] = []
        @Option(help: "bidirectional (default), unicast or mesh.") var connectionMode: String = "bidirectional"
        @Flag(help: "Connect clusters whose CAs differ (each side trusts the other's CA for this connection).")
        var allowMismatchingCA = false

        func validate() throws {
            guard !destinations.isEmpty else { throw ValidationError("--destination-context is required") }
            guard ConnectionMode(rawValue: connectionMode) != nil else {
                throw ValidationError("--connection-mode must be one of bidirectional, unicast, mesh; got \(connectionMode)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let config = try MeridianConfig.load()
                let source = try config.context(contextOptions.context)
                let targets = try destinations.map { try config.context($0) }
                let mode = ConnectionMode(rawValue: connectionMode)!
                try await withClients([source] + targets) { clients in
                    var infos: [String: (ClusterAccessInfo, EtcdClient)] = [:]
                    var names: [String] = []
                    for (context, client) in zip([source] + targets, clients) {
                        let info = try await ClusterAccessInfo.load(context, client: client)
                        if infos[info.settings.name] != nil {
                            throw CLIError("cannot connect: cluster \(info.settings.name) is given twice (context \(context.name))")
                        }
                        infos[info.settings.name] = (info, client)
                        names.append(info.settings.name)
                    }
                    let pairs = mode.pairs(source: names[0], destinations: Array(names.dropFirst()))
                    for (importer, exporter) in pairs {
                        try ConnectValidation.validate(infos[importer]!.0, infos[exporter]!.0, allowMismatchingCA: allowMismatchingCA)
                    }
                    for (importer, exporter) in pairs {
                        try await ClusterMeshOperations.grantImport(
                            importer: infos[importer]!.0, importerClient: infos[importer]!.1,
                            exporter: infos[exporter]!.0, exporterClient: infos[exporter]!.1)
                    }
                    for destination in names.dropFirst() {
                        let arrow = mode == .unicast ? "=>" : "<=>"
                        print("✅ Connected cluster \(names[0]) \(arrow) \(destination)")
                    }
                    if mode == .mesh && names.count > 2 { print("✅ Meshed clusters \(names.joined(separator: ", "))") }
                }
            }
        }
    }

    struct Disconnect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disconnect clusters; each side drains the other's data.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .customLong("destination-context"), parsing: .upToNextOption) var destinations: [String] = []
        @Option(help: "bidirectional (default) or unicast.") var connectionMode: String = "bidirectional"

        func validate() throws {
            guard !destinations.isEmpty else { throw ValidationError("--destination-context is required") }
            guard ["bidirectional", "unicast"].contains(connectionMode) else {
                throw ValidationError("--connection-mode must be bidirectional or unicast for disconnect")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let config = try MeridianConfig.load()
                let source = try config.context(contextOptions.context)
                let targets = try destinations.map { try config.context($0) }
                try await withClients([source] + targets) { clients in
                    let local = try await ClusterAccessInfo.load(source, client: clients[0])
                    for (target, client) in zip(targets, clients.dropFirst()) {
                        let remote = try await ClusterAccessInfo.load(target, client: client)
                        try await ClusterMeshOperations.revokeImport(importer: local, importerClient: clients[0], exporter: remote, exporterClient: client)
                        if connectionMode == "bidirectional" {
                            try await ClusterMeshOperations.revokeImport(importer: remote, importerClient: client, exporter: local, exporterClient: clients[0])
                        }
                        print("✅ Disconnected cluster \(local.settings.name) \(connectionMode == "unicast" ? "=>" : "<=>") \(remote.settings.name)")
                    }
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the state of every remote cluster this cluster imports.")
        @OptionGroup var contextOptions: ContextOptions
        @Flag(help: "Wait until every configured remote cluster is ready.") var wait = false
        @Option(help: "How long --wait waits (e.g. 90s, 5m, 1h).") var waitDuration: String = "5m"
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard DurationParser.parse(waitDuration) != nil else {
                throw ValidationError("--wait-duration: expected a duration such as 30s, 5m or 1h, got \(waitDuration)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                let deadline = ContinuousClock.now + DurationParser.parse(waitDuration)!
                let report = try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                    while true {
                        let report = try await Self.report(client, context: context)
                        if !wait || report.allReady || ContinuousClock.now >= deadline { return report }
                        try await Task.sleep(for: .milliseconds(500))
                    }
                }
                print(output == .json ? report.json : report.text)
                if wait && !report.allReady {
                    FileHandle.standardError.write(Data("Error: timed out after \(waitDuration) waiting for all remote clusters to be ready\n".utf8))
                    throw ExitCode.failure
                }
            }
        }

        static func report(_ client: EtcdClient, context: MeridianContext) async throws -> ClusterMeshStatusReport {
            let info = try await ClusterAccessInfo.load(context, client: client)
            let peers = try await client.list(prefix: KeyLayout.peersPrefix).items.map { String($0.key.dropFirst(KeyLayout.peersPrefix.count)) }
            var statuses: [String: RemoteClusterStatus] = [:]
            var reporter: StatusReporterRecord?
            for item in try await client.list(prefix: KeyLayout.remoteStatusPrefix).items {
                if item.key == KeyLayout.statusReporter {
                    reporter = try StoreCoding.decode(StatusReporterRecord.self, from: item.value, key: item.key)
                    continue
                }
                let status = try StoreCoding.decode(RemoteClusterStatus.self, from: item.value, key: item.key)
                statuses[status.name] = status
            }
            var report = ClusterMeshStatusReport(settings: info.settings, meshEnabled: info.meshEnabled, peers: peers, statuses: statuses,
                                                 reportedAt: reporter?.reportedAt)
            let localNodes: [(String, NodeRecord)] = try await MeshRows.gather(.nodes, client: client, localCluster: info.settings.name, allClusters: true)
            report.addMTUs(local: localNodes.filter { $0.0 == info.settings.name }.compactMap(\.1.mtu),
                           remote: Dictionary(grouping: localNodes.filter { $0.0 != info.settings.name }, by: \.0).mapValues { $0.compactMap(\.1.mtu) })
            report.warnings += try await LabelConsistency.warnings(client, localCluster: info.settings.name)
            return report
        }
    }
}

/// Parses Go-style durations as the cilium CLI takes them: `90s`, `5m`, `1h30m`, `250ms`.
enum DurationParser {
    static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("h", 3600), ("m", 60), ("s", 1)]
        var rest = Substring(text)
        var seconds = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.0.count)
            seconds += value * unit.1
        }
        return .milliseconds(Int64(seconds * 1000))
    }
}
