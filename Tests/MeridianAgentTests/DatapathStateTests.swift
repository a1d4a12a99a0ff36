import CMeridianBPF
import Foundation
import MeridianCore
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The agent's state kept from changes: after any sequence of changes it equals the state
/// computed at once from the records they leave, and one imported endpoint moving costs one
/// prefix, not a pass over the mesh.
@Suite("Datapath state from changes")
struct DatapathStateTests {
    static let context = EndpointManagerTests.context
    static let localNodes = MeshKind.nodes.statePrefix(cluster: "cluster1")
    static let localEndpoints = MeshKind.endpoints.statePrefix(cluster: "cluster1")

    static func encode(_ manifest: String) -> Data {
        StoreCoding.encode(try! ManifestDecoder.decode(manifest, source: "test.yaml")[0])
    }

    /// One random change: which mirrored prefix, which key, and its value now (nil: deleted).
    /// Keys and addresses come from small pools, so records collide: two records claim one
    /// address, imported ones claim local ranges, a record changes its address or goes.
    static func randomChange(_ rng: inout SeededGenerator) -> (prefix: String, key: String, value: Data?) {
        let delete = Int.random(in: 0..<5, using: &rng) == 0
        let address = ["10.9.0.\(Int.random(in: 1...4, using: &rng))", "10.1.1.\(Int.random(in: 5...7, using: &rng))",
                       "10.2.1.\(Int.random(in: 1...3, using: &rng))", "172.30.2.\(Int.random(in: 1...2, using: &rng))"]
            .randomElement(using: &rng)!
        let ports = Bool.random(using: &rng) ? [NamedPort(name: ["http", "dns"].randomElement(using: &rng)!, port: UInt16.random(in: 80...82, using: &rng), protocol: .tcp)] : nil
        func endpoint(_ identity: UInt32) -> Data {
            StoreCoding.encode(IPIdentityPair(ip: address, hostIP: "172.30.2.\(Int.random(in: 1...2, using: &rng))", id: identity,
                                              k8sNamespace: "default", k8sPodName: "pod-\(Int.random(in: 1...3, using: &rng))", namedPorts: ports))
        }
        func node(_ cluster: String, _ id: UInt32) -> Data {
            Data(StateFixtures.node(cluster: cluster, id: id, name: "node\(Int.random(in: 1...2, using: &rng))",
                                    ip: "172.30.\(Int.random(in: 1...2, using: &rng)).\(Int.random(in: 1...2, using: &rng))",
                                    podCIDR: "10.\(Int.random(in: 1...2, using: &rng)).\(Int.random(in: 1...2, using: &rng)).0/24").utf8)
        }
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:
            let key = "\(localEndpoints)\(Int.random(in: 1...3, using: &rng))"
            return (localEndpoints, key, delete ? nil : endpoint((1 << 16) | UInt32.random(in: 300...302, using: &rng)))
        case 1, 2:
            let cluster = Int.random(in: 2...3, using: &rng)
            let key = "\(MeshKind.endpoints.cacheRoot)cluster\(cluster)/default/\(Int.random(in: 1...4, using: &rng))"
            return (MeshKind.endpoints.cacheRoot, key, delete ? nil : endpoint(UInt32(cluster << 16) | UInt32.random(in: 500...502, using: &rng)))
        case 3:
            let key = "\(localNodes)node\(Int.random(in: 1...2, using: &rng))"
            return (localNodes, key, delete ? nil : node("cluster1", 1))
        case 4:
            let cluster = Int.random(in: 2...3, using: &rng)
            let key = "\(MeshKind.nodes.cacheRoot)cluster\(cluster)/cluster\(cluster)/node\(Int.random(in: 1...2, using: &rng))"
            return (MeshKind.nodes.cacheRoot, key, delete ? nil : node("cluster\(cluster)", UInt32(cluster)))
        case 5:
            let name = "web\(Int.random(in: 1...2, using: &rng))"
            return (KeyLayout.resourcesPrefix, KeyLayout.resource(plural: "services", namespace: "default", name: name), delete ? nil : encode("""
                apiVersion: v1
                kind: Service
                metadata: {name: \(name), namespace: default}
                spec: {clusterIP: 10.101.0.\(Int.random(in: 1...3, using: &rng)), selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
                """))
        default:
            let name = "web-\(Int.random(in: 1...3, using: &rng))"
            if Bool.random(using: &rng) {
                var status = PodStatus(phase: .running)
                status.podIP = "10.1.1.\(Int.random(in: 20...22, using: &rng))"
                status.nodeName = "node1"
                return (KeyLayout.podStatusPrefix, KeyLayout.podStatus(namespace: "default", name: name), delete ? nil : StoreCoding.encode(status))
            }
            return (KeyLayout.resourcesPrefix, KeyLayout.resource(plural: "pods", namespace: "default", name: name), delete ? nil : encode("""
                apiVersion: v1
                kind: Pod
                metadata: {name: \(name), namespace: default, labels: {app: \(Bool.random(using: &rng) ? "web" : "db")}}
                spec: {nodeName: node1, containers: [{name: c, image: x, command: [sleep]}]}
                """))
        }
    }

    static func inputs(_ records: [String: [String: Data]]) -> DesiredDatapath.Inputs {
        let resources = records[KeyLayout.resourcesPrefix] ?? [:]
        var inputs = DesiredDatapath.Inputs(
            nodes: records[localNodes] ?? [:], endpoints: records[localEndpoints] ?? [:],
            services: resources.filter { $0.key.hasPrefix(KeyLayout.resources(plural: "services")) },
            pods: resources.filter { $0.key.hasPrefix(KeyLayout.resources(plural: "pods")) },
            podStatuses: records[KeyLayout.podStatusPrefix] ?? [:])
        inputs.remoteNodes = records[MeshKind.nodes.cacheRoot] ?? [:]
        inputs.remoteEndpoints = records[MeshKind.endpoints.cacheRoot] ?? [:]
        inputs.namesPods = true
        return inputs
    }

    static func expectSame(_ a: DesiredDatapath, _ b: DesiredDatapath, seed: UInt64, step: Int) {
        let where_ = "seed \(seed), step \(step)"
        #expect(a.ipcache == b.ipcache, "ipcache, \(where_)")
        #expect(a.conflicts == b.conflicts, "conflicts, \(where_)")
        #expect(a.namedPorts == b.namedPorts, "named ports, \(where_)")
        #expect(a.podNames == b.podNames, "pod names, \(where_)")
        #expect(a.services == b.services, "services, \(where_)")
        #expect(a.backendStates == b.backendStates, "backend states, \(where_)")
        #expect(a.serviceIPs == b.serviceIPs, "service IPs, \(where_)")
    }

    @Test("after every change of a random sequence, the state kept from changes equals the state computed at once from the records left", arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func changesAgreeWithAFullComputation(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var state = DatapathState(context: Self.context, namesPods: true)
        var records: [String: [String: Data]] = [:]
        var compared = 0
        for step in 0..<300 {
            // Several changes to one prefix arrive together, as a watch batch does.
            let change = Self.randomChange(&rng)
            records[change.prefix, default: [:]][change.key] = change.value
            state.apply(.changed([change.key: change.value]), of: change.prefix)
            _ = state.refresh()
            if step % 3 == 0 || step == 299 {
                Self.expectSame(state.desired, DesiredDatapath.compute(Self.inputs(records), context: Self.context), seed: seed, step: step)
                compared += 1
            }
        }
        #expect(compared == 101)
        // A listing that drops some keys and changes others is the same as those changes.
        var relisted = records[MeshKind.endpoints.cacheRoot] ?? [:]
        if let first = relisted.keys.sorted().first { relisted[first] = nil }
        records[MeshKind.endpoints.cacheRoot] = relisted
        state.apply(.everything(relisted), of: MeshKind.endpoints.cacheRoot)
        _ = state.refresh()
        Self.expectSame(state.desired, DesiredDatapath.compute(Self.inputs(records), context: Self.context), seed: seed, step: 300)
    }

    @Test("one imported endpoint moving among 20,000 changes its prefix alone: no service or policy work")
    func oneChangeCostsOnePrefix() throws {
        var state = DatapathState(context: Self.context, namesPods: false)
        var all: [String: Data] = [:]
        for i in 0..<20_000 {
            let ip = "10.2.\(i / 250).\(i % 250 + 1)"
            all["\(MeshKind.endpoints.cacheRoot)cluster2/default/\(ip)"] =
                StoreCoding.encode(IPIdentityPair(ip: ip, hostIP: "172.30.2.1", id: (2 << 16) | 500, k8sNamespace: "default", k8sPodName: "p\(i)"))
        }
        state.apply(.everything(all), of: MeshKind.endpoints.cacheRoot)
        let first = state.refresh()
        #expect(first.ipcache.count == 20_001, "the endpoints and the gateway")
        #expect(state.claims.entries.count == 20_001)

        let key = "\(MeshKind.endpoints.cacheRoot)cluster2/default/10.2.3.4"
        let moved = StoreCoding.encode(IPIdentityPair(ip: "10.2.3.4", hostIP: "172.30.2.2", id: (2 << 16) | 501, k8sNamespace: "default", k8sPodName: "p"))
        state.apply(.changed([key: moved]), of: MeshKind.endpoints.cacheRoot)
        let changes = state.refresh()
        #expect(changes.ipcache == [IPCIDR("10.2.3.4/32")!])
        #expect(!changes.services && !changes.policyInputs && !changes.localEndpoints && !changes.podsOrNamespaces)
        let entry = try #require(state.claims.entries[IPCIDR("10.2.3.4/32")!])
        #expect(entry.identity == (2 << 16) | 501 && entry.tunnelEndpoint == IPAddress("172.30.2.2"))

        // Deleted: its prefix goes, and nothing else moves.
        state.apply(.changed([key: nil]), of: MeshKind.endpoints.cacheRoot)
        #expect(state.refresh().ipcache == [IPCIDR("10.2.3.4/32")!])
        #expect(state.claims.entries[IPCIDR("10.2.3.4/32")!] == nil && state.claims.entries.count == 20_000)
    }

    @Test("a named port that appears on an identity is a change of policy inputs")
    func namedPortsAreAPolicyInput() {
        var state = DatapathState(context: Self.context, namesPods: false)
        let key = "\(MeshKind.endpoints.cacheRoot)cluster2/default/10.2.0.9"
        let plain = StoreCoding.encode(IPIdentityPair(ip: "10.2.0.9", hostIP: "172.30.2.1", id: 131_573))
        state.apply(.changed([key: plain]), of: MeshKind.endpoints.cacheRoot)
        #expect(!state.refresh().policyInputs)
        let named = StoreCoding.encode(IPIdentityPair(ip: "10.2.0.9", hostIP: "172.30.2.1", id: 131_573,
                                                      namedPorts: [NamedPort(name: "http", port: 8080, protocol: .tcp)]))
        state.apply(.changed([key: named]), of: MeshKind.endpoints.cacheRoot)
        #expect(state.refresh().policyInputs)
        #expect(state.namedPorts[131_573] == [NamedPort(name: "http", port: 8080, protocol: .tcp)])
    }
}
