import ArgumentParser
import Foundation
import Logging
import MeridianAdmin
import MeridianCore
import MeridianEtcd
import MeridianFlows
import MeridianUI
import UnixSignals

/// `meridian ui`: a web page with the clusters, their services and pods as a map, the flows
/// between them drawn live, and a flow table with `observe`'s filters, served by this process.
struct UICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui", abstract: "Serve a web page: service map with live flows across clusters, and a flow table.",
        discussion: "Shows the context's cluster and every other cluster of the config file (of the same lab for a lab's context).")

    @OptionGroup var contextOptions: ContextOptions
    @Option(help: "HOST:PORT to serve the page on (plain HTTP: keep it on loopback).") var listen: String = "127.0.0.1:12000"

    func validate() throws {
        _ = try Self.parse(listen)
    }

    static func parse(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
            throw ValidationError("--listen: expected HOST:PORT, got \"\(text)\"")
        }
        return (String(text[..<colon]), port)
    }

    func run() async throws {
        try await reportingErrors {
            let (host, port) = try Self.parse(listen)
            let config = try MeridianConfig.load()
            let chosen = try config.context(contextOptions.context)
            var contexts = [chosen]
            for other in config.contexts where other.cluster != chosen.cluster && (chosen.lab == nil || other.lab == chosen.lab)
                && !contexts.contains(where: { $0.cluster == other.cluster }) {
                contexts.append(other)
            }
            let sources = try FlowSources.resolve(context: contextOptions.context, allClusters: true)
            let clusters = contexts
            let server = UIServer(host: host, port: port, map: { await Self.map(clusters) },
                                  flows: { await FlowSources.history(sources, $0).answers },
                                  logger: Logger(label: "meridian.ui"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await server.run { bound in print("Serving the UI at http://\(host):\(bound)/ (Ctrl-C to stop)") }
                }
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { return }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Each cluster's pods and services, read from its store as its administrator.
    static func map(_ contexts: [MeridianContext]) async -> ServiceMap {
        await withTaskGroup(of: (Int, ServiceMap.Cluster).self) { group in
            for (index, context) in contexts.enumerated() {
                group.addTask {
                    do {
                        let pods = try await EtcdClient.withClient(try context.clientConfiguration()) { client in
                            try await PodView.load(client: client, namespace: nil)
                        }
                        var services: [String: ServiceMap.Service] = [:]
                        for frontend in try await ServiceList.load(context) {
                            let key = "\(frontend.namespace)/\(frontend.name)"
                            var service = services[key] ?? ServiceMap.Service(namespace: frontend.namespace, name: frontend.name,
                                                                              address: frontend.address, global: frontend.global, backends: [])
                            for backend in frontend.backends {
                                let entry = ServiceMap.Backend(cluster: backend.cluster, ip: backend.ip)
                                if !service.backends.contains(entry) { service.backends.append(entry) }
                            }
                            services[key] = service
                        }
                        return (index, ServiceMap.Cluster(
                            name: context.cluster,
                            pods: pods.map { ServiceMap.Pod(namespace: $0.namespace, name: $0.name, ip: $0.ip, node: $0.node, status: $0.status) },
                            services: services.values.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) }))
                    } catch {
                        return (index, ServiceMap.Cluster(name: context.cluster, error: "\(error)"))
                    }
                }
            }
            var clusters: [(Int, ServiceMap.Cluster)] = []
            for await entry in group { clusters.append(entry) }
            return ServiceMap(clusters: clusters.sorted { $0.0 < $1.0 }.map(\.1))
        }
    }
}
