import ArgumentParser
import Foundation
import MeridianAgent
import MeridianCore
import MeridianEtcd
import MeridianStore

/// `meridian service list`: every frontend the cluster's nodes program, with its backends,
/// their cluster, state and whether the service's affinity prefers them, computed from the
/// store by the same function the agents use.
struct ServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "service", abstract: "Inspect service load balancing.",
                                                    subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Frontends and their backends, local and remote.")
        @OptionGroup var contextOptions: ContextOptions
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            try await reportingErrors {
                let context = try contextOptions.resolve()
                let frontends = try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                    try await Self.load(client)
                }
                if output == .json {
                    print(MeshRows.encode(frontends))
                    return
                }
                var rows: [[String]] = []
                for frontend in frontends {
                    let name = "\(frontend.namespace)/\(frontend.name)"
                    let address = "\(frontend.address):\(frontend.port)/\(frontend.proto)"
                    let mode = frontend.global ? "global, affinity \(frontend.affinity)" : "local"
                    if frontend.backends.isEmpty {
                        rows.append([address, name, mode, "<none>", "", "", ""])
                    }
                    for (index, backend) in frontend.backends.enumerated() {
                        rows.append([index == 0 ? address : "", index == 0 ? name : "", index == 0 ? mode : "",
                                     "\(backend.ip):\(backend.port)", backend.cluster, backend.state, backend.preferred ? "yes" : ""])
                    }
                }
                print(Table(headers: ["FRONTEND", "SERVICE", "MODE", "BACKEND", "CLUSTER", "STATE", "PREFERRED"], rows: rows).render())
            }
        }

        static func load(_ client: EtcdClient) async throws -> [ServiceFrontend] {
            guard let settingsRecord = try await client.get(KeyLayout.clusterSettings) else {
                throw StoreError.notFound(what: "cluster settings (is the control plane running?)")
            }
            let settings = try StoreCoding.decode(ClusterSettings.self, from: settingsRecord.value, key: settingsRecord.key)
            func records(_ prefix: String) async throws -> [String: Data] {
                Dictionary(try await client.list(prefix: prefix).items.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            }
            return ServiceFrontends.compute(
                cluster: settings.name, clusterID: settings.id,
                serviceRecords: try await records(KeyLayout.resources(plural: ResourceKind.service.plural)),
                podRecords: try await records(KeyLayout.resources(plural: ResourceKind.pod.plural)),
                statusRecords: try await records(KeyLayout.podStatusPrefix),
                remoteRecords: try await records("cilium/cache/services/v1/"))
        }
    }
}
