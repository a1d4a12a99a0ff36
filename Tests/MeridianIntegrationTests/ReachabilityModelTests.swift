import MeridianCore
import Testing

/// Checks every expectation of the reachability matrix (`ReachabilityCases`) against the pure
/// policy model: the case's YAML is decoded and compiled per cluster, the pods become
/// `PolicyEndpoint`s with the identity labels the agent gives them, and each probe is traced
/// with `PolicyVerdict.explain`. Needs no root, no lab and no network.
@Suite("Reachability matrix against the policy model")
struct ReachabilityModelTests {
    @Test("the policy model agrees with every probe of the case", arguments: ReachabilityCases.all.map(\.name))
    func modelAgrees(caseName: String) throws {
        let matrixCase = try #require(ReachabilityCases.all.first { $0.name == caseName })
        let rules = try ReachabilityModel.rules(for: matrixCase)
        for text in matrixCase.probes {
            let probe = try ReachabilityProbe(parsing: text)
            let from = probe.fromWorld
                ? ReachabilityModel.world
                : try #require(ReachabilityModel.endpoint(probe.sourcePod), "\(caseName): \(text): unknown source pod")
            let to: PolicyEndpoint
            switch probe.to {
            case .world:
                to = ReachabilityModel.world
            case .pod:
                to = try #require(ReachabilityModel.endpoint(probe.destinationPod), "\(caseName): \(text): unknown destination pod")
            }
            let verdict = PolicyVerdict.explain(from: from, to: to, port: probe.port, protocol: probe.transport, rules: rules)
            #expect(
                verdict.allowed == probe.allowed,
                "\(caseName): \(text): expected \(probe.allowed ? "allow" : "deny"), model says \(verdict)")
        }
    }

    @Test("the matrix is large and every case has allowed and denied probes")
    func matrixShape() throws {
        let cases = ReachabilityCases.all
        #expect(cases.count >= 32, "only \(cases.count) cases")

        let names = cases.map(\.name)
        #expect(Set(names).count == names.count, "case names repeat: \(names.filter { name in names.filter { $0 == name }.count > 1 })")

        var transports: [TransportProtocol: Int] = [:]
        for matrixCase in cases {
            let name = matrixCase.name
            #expect(!name.isEmpty && !name.contains("\n"), "case names are one non-empty line: \(name.debugDescription)")
            #expect((4...10).contains(matrixCase.probes.count), "\(name): has \(matrixCase.probes.count) probes, expected 4 to 10")
            #expect(!matrixCase.policies.isEmpty, "\(name): applies no policies")

            let probes = try matrixCase.parsedProbes()
            #expect(probes.contains { $0.allowed }, "\(name): no allowed probe")
            #expect(probes.contains { !$0.allowed }, "\(name): no denied probe")
            #expect(Set(matrixCase.probes).count == matrixCase.probes.count, "\(name): a probe repeats")
            for (text, probe) in zip(matrixCase.probes, probes) {
                transports[probe.transport, default: 0] += 1
                try ReachabilityModel.checkAgainstTopology(probe, text: text, caseName: name)
            }
        }
        let total = transports.values.reduce(0, +)
        for transport in [TransportProtocol.tcp, .udp] {
            let count = transports[transport] ?? 0
            #expect(count * 4 >= total, "only \(count) of \(total) probes use \(transport.rawValue)")
        }
    }

    @Test("every case's policies decode, are named uniquely and live in namespaces of the topology")
    func policiesAreWellFormed() throws {
        for matrixCase in ReachabilityCases.all {
            var names: [String] = []
            for (cluster, yaml) in try ReachabilityModel.policies(for: matrixCase).sorted(by: { $0.key < $1.key }) {
                let namespaces = try #require(
                    ReachabilityTopology.namespaces[cluster], "\(matrixCase.name): unknown cluster \(cluster)")
                let objects = try ManifestDecoder.decode(yaml, source: "\(matrixCase.name) [\(cluster)]")
                #expect(!objects.isEmpty, "\(matrixCase.name): no objects for \(cluster)")
                for object in objects {
                    names.append(object.name)
                    switch object {
                    case .networkPolicy, .ciliumNetworkPolicy:
                        let namespace = object.namespace ?? "default"
                        #expect(
                            namespaces[namespace] != nil,
                            "\(matrixCase.name): \(object.kind.rawValue) \(object.name) is in namespace \(namespace), which \(cluster) lacks")
                    case .ciliumClusterwideNetworkPolicy:
                        #expect(object.namespace == nil)
                    default:
                        Issue.record("\(matrixCase.name): \(object.kind.rawValue) \(object.name) is not a policy")
                    }
                    #expect(
                        !object.policyRules(settings: PolicySettings(clusterName: cluster)).isEmpty,
                        "\(matrixCase.name): \(object.name) compiles to no rules")
                }
            }
            #expect(Set(names).count == names.count, "\(matrixCase.name): policy names repeat: \(names.sorted())")
        }
    }

    @Test(
        "malformed probes are rejected with an error naming the probe",
        arguments: [
            "c1 alpha/client c1 alpha/web 8080/tcp allow",
            "c1 alpha/client -> c1 alpha/web 8080/tcp maybe",
            "c3 alpha/client -> c1 alpha/web 8080/tcp allow",
            "c1 alpha-client -> c1 alpha/web 8080/tcp allow",
            "c1 alpha/client -> c1 alpha/web 8080/icmp deny",
            "c1 alpha/client -> c1 alpha/web 70000/tcp deny",
            "c1 alpha/client -> mars 8080/tcp deny",
            "c1 alpha/client -> world",
        ])
    func malformedProbes(text: String) {
        do throws(ReachabilityProbeError) {
            let probe = try ReachabilityProbe(parsing: text)
            Issue.record("parsed \(text.debugDescription) as \(probe)")
        } catch {
            #expect(error.probe == text)
            #expect(error.description.contains(text))
        }
    }

    @Test("pod references in policies become the pods' addresses; a reference to no pod is an error naming the case")
    func podAddressesInPolicies() throws {
        let matrixCase = ReachabilityCase(
            name: "addresses", policies: ["cluster1": "cidr: $(c1 alpha/web)/32\nexcept: [$(c2 gamma/client)/32]"], probes: [])
        let resolved = try matrixCase.resolvedPolicies { "\($0.cluster)-\($0.namespace)-\($0.name)" }
        #expect(resolved == ["cluster1": "cidr: cluster1-alpha-web/32\nexcept: [cluster2-gamma-client/32]"])
        let broken = ReachabilityCase(name: "broken", policies: ["cluster1": "cidr: $(c1 alpha/nobody)/32"], probes: [])
        #expect(throws: ReachabilityCaseError.self) { try broken.resolvedPolicies { $0.name } }
    }

    @Test("probes parse into their parts")
    func probeParsing() throws {
        let pod = try ReachabilityProbe(parsing: "c2 gamma/client -> c1 alpha/web 5353/udp allow")
        #expect(pod.fromCluster == "cluster2")
        #expect(pod.fromNamespace == "gamma")
        #expect(pod.fromPod == "client")
        #expect(pod.to == .pod(cluster: "cluster1", namespace: "alpha", name: "web"))
        #expect(pod.port == 5353)
        #expect(pod.transport == .udp)
        #expect(pod.allowed)
        #expect(pod.description == "cluster2 gamma/client -> cluster1 alpha/web 5353/udp allow")

        let world = try ReachabilityProbe(parsing: "c1 alpha/client -> world 8080/tcp deny")
        #expect(world.to == .world)
        #expect(world.transport == .tcp)
        #expect(!world.allowed)
        #expect(world.destinationPod == nil)
        #expect(world.sourcePod == ReachabilityTopology.pod(cluster: "cluster1", namespace: "alpha", name: "client"))
    }
}

/// The topology as the policy model sees it.
enum ReachabilityModel {
    /// The world server, an outside address with the `world` identity.
    static let world = PolicyEndpoint.reserved(.world, ip: MeridianCore.IPAddress(ReachabilityTopology.worldAddress))

    /// Each pod as a policy endpoint: its own identity (cluster number in the high bits, 256 and up
    /// below), the labels the agent derives for it, an address in its cluster's pod range and
    /// the named container ports of the echo server.
    static let endpoints: [ReachabilityPod: PolicyEndpoint] = {
        var result: [ReachabilityPod: PolicyEndpoint] = [:]
        for (index, pod) in ReachabilityTopology.pods.enumerated() {
            let clusterNumber: UInt32 = pod.cluster == "cluster1" ? 1 : 2
            var namespaceLabels = ReachabilityTopology.namespaces[pod.cluster]?[pod.namespace] ?? [:]
            namespaceLabels[LabelKeys.namespaceMetadataName] = pod.namespace
            let labels = LabelSet.podIdentityLabels(
                podLabels: pod.labels, namespace: pod.namespace, namespaceLabels: namespaceLabels,
                serviceAccount: nil, cluster: pod.cluster)
            result[pod] = PolicyEndpoint(
                identity: clusterNumber << 16 | UInt32(256 + index),
                labels: labels,
                ip: MeridianCore.IPAddress("10.\(clusterNumber).\(pod.node == "node1" ? 1 : 2).\(10 + index)"),
                namedPorts: namedPorts)
        }
        return result
    }()

    static let namedPorts: [NamedPort] = ReachabilityTopology.podPorts.compactMap { port in
        port.name.map { NamedPort(name: $0, port: port.port, protocol: port.transport == .tcp ? .tcp : .udp) }
    }

    static func endpoint(_ pod: ReachabilityPod?) -> PolicyEndpoint? {
        pod.flatMap { endpoints[$0] }
    }

    /// The case's policies with pod addresses (`$(c1 alpha/web)`) as the model gives them.
    static func policies(for matrixCase: ReachabilityCase) throws -> [String: String] {
        try matrixCase.resolvedPolicies { pod in
            guard let address = endpoints[pod]?.ip else {
                throw ReachabilityCaseError(caseName: matrixCase.name, reason: "no model address for \(pod)")
            }
            return address.description
        }
    }

    /// The rules of every cluster of the case, each compiled for the cluster it is applied in.
    static func rules(for matrixCase: ReachabilityCase) throws -> [PolicyRule] {
        var rules: [PolicyRule] = []
        for (cluster, yaml) in try policies(for: matrixCase).sorted(by: { $0.key < $1.key }) {
            let objects = try ManifestDecoder.decode(yaml, source: "\(matrixCase.name) [\(cluster)]")
            rules += PolicyCompiler.rules(for: objects, settings: PolicySettings(clusterName: cluster))
        }
        return rules
    }

    /// Records an issue when the probe names a pod the topology lacks, or a port the destination
    /// does not listen on (an allow could then never be observed).
    static func checkAgainstTopology(_ probe: ReachabilityProbe, text: String, caseName: String) throws {
        if !probe.fromWorld {
            _ = try #require(probe.sourcePod, "\(caseName): \(text): the source pod is not in the topology")
        }
        let listening: [ReachabilityPort]
        switch probe.to {
        case .world:
            listening = ReachabilityTopology.worldPorts
        case .pod:
            _ = try #require(probe.destinationPod, "\(caseName): \(text): the destination pod is not in the topology")
            listening = ReachabilityTopology.podPorts
        }
        #expect(
            listening.contains { $0.port == probe.port && $0.transport == probe.transport },
            "\(caseName): \(text): nothing listens on \(probe.port)/\(probe.transport.rawValue) there")
    }
}
