import CMeridianBPF
import Foundation
import MeridianCore
import MeridianDatapath
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The service side of the agent's state, kept per service name from changes: after any
/// sequence of changes it equals the merge of every record computed at once, it reports every
/// frontend and backend state that moved, and the maps it programs frontend by frontend match
/// a whole-state apply.
@Suite("Services from changes")
struct ServiceStateTests {
    static let context = EndpointManagerTests.context

    /// One random service-side change: Services (two namespaces, colliding ClusterIPs, global
    /// or not, with an affinity), pods moving between selectors and namespaces, terminating or
    /// not, statuses ready or not, imported records with and without slices (and slices holding
    /// backends of another slice), ServiceImports, ClusterSetIP or headless.
    static func randomChange(_ rng: inout SeededGenerator) -> (prefix: String, key: String, value: Data?) {
        let delete = Int.random(in: 0..<5, using: &rng) == 0
        let namespace = Int.random(in: 0..<4, using: &rng) == 0 ? "other" : "default"
        let service = "web\(Int.random(in: 1...2, using: &rng))"
        func pick<T>(_ values: [T]) -> T { values.randomElement(using: &rng)! }
        func backends(_ count: Int) -> [String: [String: L4Addr]] {
            var result: [String: [String: L4Addr]] = [:]
            for _ in 0..<count { result["10.\(pick([2, 3])).1.\(Int.random(in: 1...6, using: &rng))"] = ["http": L4Addr(protocol: .tcp, port: pick([8080, 8081]))] }
            return result
        }
        switch Int.random(in: 0..<9, using: &rng) {
        case 0:
            let affinity = pick(["", ", service.cilium.io/affinity: local", ", service.cilium.io/affinity: remote"])
            let shared = pick(["", ", service.cilium.io/shared: \"false\""])
            return (KeyLayout.resourcesPrefix, KeyLayout.resource(plural: "services", namespace: namespace, name: service), delete ? nil : encode("""
                apiVersion: v1
                kind: Service
                metadata: {name: \(service), namespace: \(namespace), annotations: {service.cilium.io/global: "\(Bool.random(using: &rng))"\(affinity)\(shared)}}
                spec: {clusterIP: 10.101.0.\(Int.random(in: 1...3, using: &rng)), selector: {app: \(pick(["web", "db"]))},
                       ports: [{name: http, port: 80, targetPort: 8080}\(pick(["", ", {name: dns, port: 53, protocol: UDP, targetPort: 5353}"]))]}
                """))
        case 1, 2:
            let name = "pod-\(Int.random(in: 1...4, using: &rng))"
            let deleting = Int.random(in: 0..<4, using: &rng) == 0 ? ", deletionTimestamp: \"2026-12-07T00:00:00Z\"" : ""
            return (KeyLayout.resourcesPrefix, KeyLayout.resource(plural: "pods", namespace: namespace, name: name), delete ? nil : encode("""
                apiVersion: v1
                kind: Pod
                metadata: {name: \(name), namespace: \(namespace), labels: {app: \(pick(["web", "db"]))}\(deleting)}
                spec: {nodeName: node1, hostname: h\(name), subdomain: \(service), containers: [{name: c, image: x, command: [sleep]}]}
                """))
        case 3, 4:
            let name = "pod-\(Int.random(in: 1...4, using: &rng))"
            var status = PodStatus(phase: Bool.random(using: &rng) ? .running : .pending)
            status.podIP = "10.1.1.\(Int.random(in: 20...23, using: &rng))"
            status.nodeName = "node1"
            return (KeyLayout.podStatusPrefix, KeyLayout.podStatus(namespace: namespace, name: name), delete ? nil : StoreCoding.encode(status))
        case 5, 6:
            let cluster = pick(["cluster2", "cluster3"])
            let sliced = Bool.random(using: &rng)
            var record = ClusterService(cluster: cluster, namespace: namespace, name: service, backends: sliced ? [:] : backends(Int.random(in: 0...3, using: &rng)),
                                        includeExternal: true, shared: Int.random(in: 0..<4, using: &rng) != 0, clusterID: cluster == "cluster2" ? 2 : 3,
                                        backendSlices: sliced ? 2 : nil)
            if let ip = record.backends.keys.first, Bool.random(using: &rng) { record.backendStates = [ip: BackendState.terminating.rawValue] }
            return (MeshKind.services.cacheRoot, "\(MeshKind.services.cacheRoot)\(cluster)/\(namespace)/\(service)", delete ? nil : StoreCoding.encode(record))
        case 7:
            let cluster = pick(["cluster2", "cluster3"])
            let index = Int.random(in: 0...1, using: &rng)
            let slice = ClusterService(cluster: cluster, namespace: namespace, name: service, backends: backends(Int.random(in: 1...4, using: &rng)),
                                       includeExternal: true, shared: true, clusterID: cluster == "cluster2" ? 2 : 3, backendSlices: 2, slice: index)
            return (MeshKind.serviceSlices.cacheRoot, "\(MeshKind.serviceSlices.cacheRoot)\(cluster)/\(namespace)/\(service)/\(index)",
                    delete ? nil : StoreCoding.encode(slice))
        default:
            let headless = Int.random(in: 0..<3, using: &rng) == 0
            let imported = ServiceImport(
                metadata: ObjectMeta(name: service, namespace: namespace),
                spec: ServiceImportSpec(type: headless ? .headless : .clusterSetIP, ports: [ServiceImportPort(name: "http", port: 80)],
                                        ips: headless ? nil : ["10.102.0.\(Int.random(in: 1...2, using: &rng))"]),
                status: ServiceImportStatus(clusters: ["cluster1", "cluster2", "cluster3"].filter { _ in Bool.random(using: &rng) }
                    .map(ServiceImportStatus.ClusterStatus.init)))
            return (KeyLayout.resourcesPrefix, KeyLayout.resource(plural: ResourceKind.serviceImport.plural, namespace: namespace, name: service),
                    delete ? nil : StoreCoding.encode(KubernetesObject.serviceImport(imported)))
        }
    }

    static func encode(_ manifest: String) -> Data {
        StoreCoding.encode(try! ManifestDecoder.decode(manifest, source: "test.yaml")[0])
    }

    /// Every service of `records` merged at once, through the batch decoding `service list` uses.
    static func oracle(_ records: [String: [String: Data]]) -> (frontends: [Frontend: [BackendAddress]], states: [BackendAddress: BackendState], names: ServiceNames) {
        let resources = records[KeyLayout.resourcesPrefix] ?? [:]
        func of(_ plural: String) -> [String: Data] { resources.filter { $0.key.hasPrefix(KeyLayout.resources(plural: plural)) } }
        let all = ServiceRecords(services: of("services"), pods: of("pods"), statuses: records[KeyLayout.podStatusPrefix] ?? [:],
                                 remote: records[MeshKind.services.cacheRoot] ?? [:], imports: of(ResourceKind.serviceImport.plural),
                                 remoteSlices: records[MeshKind.serviceSlices.cacheRoot] ?? [:])
        return DesiredDatapath.services(all, cluster: context.cluster.name, clusterID: context.cluster.id)
    }

    @Test("after every change of a random sequence, the services kept per name equal every service merged at once, and every move is reported",
          arguments: [UInt64(11), 12, 13, 14, 15, 16, 17, 18])
    func perServiceAgreesWithTheWholeMerge(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        var state = DatapathState(context: Self.context, namesPods: false)
        var records: [String: [String: Data]] = [:]
        var frontendsSeen = 0
        for step in 0..<400 {
            let before = (state.services, state.backendStates)
            let change = Self.randomChange(&rng)
            records[change.prefix, default: [:]][change.key] = change.value
            state.apply(.changed([change.key: change.value]), of: change.prefix)
            let changes = state.refresh()
            let expected = Self.oracle(records)
            let at = "seed \(seed), step \(step)"
            #expect(state.services == expected.frontends, "frontends, \(at)")
            #expect(state.backendStates == expected.states, "backend states, \(at)")
            #expect(state.serviceIPs == expected.names.clusterIPs, "ClusterIPs, \(at)")
            #expect(state.clusterSetNames.clusterSet == expected.names.clusterSet, "clusterset names, \(at)")
            #expect(state.clusterSetNames.clusterSetBackends == expected.names.clusterSetBackends, "clusterset backend names, \(at)")
            // The synchronizer rewrites only what is reported: a move left out would stay unprogrammed.
            let moved = Set(before.0.keys).union(state.services.keys).filter { before.0[$0] != state.services[$0] }
            #expect(moved.isSubset(of: changes.frontends), "unreported frontends \(moved.subtracting(changes.frontends)), \(at)")
            let movedStates = Set(before.1.keys).union(state.backendStates.keys).filter { before.1[$0] != state.backendStates[$0] }
            #expect(movedStates.isSubset(of: changes.backendStates), "unreported backend states, \(at)")
            frontendsSeen = max(frontendsSeen, state.services.count)
        }
        #expect(frontendsSeen >= 3, "the sequence built services with frontends")
    }

    @Test("a change to one service does not touch another's frontends")
    func oneServiceAlone() {
        var state = DatapathState(context: Self.context, namesPods: false)
        for name in ["web1", "web2"] {
            let key = KeyLayout.resource(plural: "services", namespace: "default", name: name)
            state.apply(.changed([key: Self.encode("""
                apiVersion: v1
                kind: Service
                metadata: {name: \(name), namespace: default}
                spec: {clusterIP: 10.101.0.\(name == "web1" ? 1 : 2), selector: {app: \(name)}, ports: [{port: 80, targetPort: 8080}]}
                """)]), of: KeyLayout.resourcesPrefix)
        }
        _ = state.refresh()
        let pod = KeyLayout.resource(plural: "pods", namespace: "default", name: "p")
        state.apply(.changed([pod: Self.encode("""
            apiVersion: v1
            kind: Pod
            metadata: {name: p, namespace: default, labels: {app: web2}}
            spec: {nodeName: node1, containers: [{name: c, image: x, command: [sleep]}]}
            """)]), of: KeyLayout.resourcesPrefix)
        #expect(state.refresh().frontends.isEmpty, "a pod without a status is no backend")
        var status = PodStatus(phase: .running)
        status.podIP = "10.1.1.9"
        state.apply(.changed([KeyLayout.podStatus(namespace: "default", name: "p"): StoreCoding.encode(status)]), of: KeyLayout.podStatusPrefix)
        let changes = state.refresh()
        #expect(changes.frontends == [Frontend(address: IPAddress("10.101.0.2")!, port: 80, proto: 6)])
        #expect(state.services[Frontend(address: IPAddress("10.101.0.2")!, port: 80, proto: 6)]?.count == 1)
    }

    // MARK: Programming frontend by frontend

    /// What the maps balance: each frontend's count, reverse NAT target and backends by slot,
    /// resolved through the backend map (IDs differ between two writers), with the flags.
    struct Programmed: Equatable, CustomStringConvertible {
        var frontends: [String: [String]] = [:]
        var backends = 0
        var reverseNAT = 0
        var description: String { "\(frontends.sorted { $0.key < $1.key }) backends \(backends) revNAT \(reverseNAT)" }
    }

    static func programmed(_ maps: NodeMaps) -> Programmed {
        var backends: [UInt32: mer_lb4_backend] = [:]
        for (id, value) in maps.backends.entries() { backends[id] = value }
        var reverseNAT: [UInt16: mer_lb4_revnat] = [:]
        for (index, value) in maps.reverseNAT.entries() { reverseNAT[index] = value }
        var slots: [String: [UInt16: String]] = [:]
        for (key, value) in maps.services.entries() {
            let frontend = "\(IPAddress(datapathValue: key.address)):\(UInt16(bigEndian: key.dport))/\(key.proto)"
            if key.backend_slot == 0 {
                let target = reverseNAT[value.rev_nat_index].map { "\(IPAddress(datapathValue: $0.address)):\(UInt16(bigEndian: $0.port))" } ?? "missing"
                slots[frontend, default: [:]][0] = "count \(value.count) revNAT \(target)"
            } else {
                let backend = backends[value.backend_id].map { "\(IPAddress(datapathValue: $0.address)):\(UInt16(bigEndian: $0.port)) c\($0.cluster_id) f\($0.flags)" }
                slots[frontend, default: [:]][key.backend_slot] = backend ?? "missing \(value.backend_id)"
            }
        }
        var result = Programmed(backends: backends.count, reverseNAT: reverseNAT.count)
        for (frontend, bySlot) in slots { result.frontends[frontend] = bySlot.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" } }
        return result
    }

    @Test("frontends programmed one by one as they change leave the maps a whole-state apply leaves, with nothing orphaned",
          arguments: [UInt64(21), 22, 23, 24])
    func frontendByFrontendMatchesWholeApply(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        var state = DatapathState(context: Self.context, namesPods: false)
        let incremental = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: incremental.maps)
        try synchronizer.apply(state.desired)
        var records: [String: [String: Data]] = [:]
        for step in 0..<250 {
            let change = Self.randomChange(&rng)
            records[change.prefix, default: [:]][change.key] = change.value
            state.apply(.changed([change.key: change.value]), of: change.prefix)
            let changes = state.refresh()
            if changes.services {
                try synchronizer.apply(ipcache: [:], ipBlocks: [:], services: MapSynchronizer.ServiceChanges(
                    frontends: state.services, states: state.backendStates, changed: changes.frontends, changedStates: changes.backendStates))
            }
            guard step % 5 == 0 || step == 249 else { continue }
            let whole = InMemoryNodeDatapath()
            var reference = MapSynchronizer(maps: whole.maps)
            var desired = DesiredDatapath()
            desired.services = state.services
            desired.backendStates = state.backendStates
            try reference.apply(desired)
            let got = Self.programmed(incremental.maps), want = Self.programmed(whole.maps)
            #expect(got == want, "seed \(seed), step \(step):\n got \(got)\nwant \(want)")
        }
    }

    @Test("one backend added to a frontend of 10,000 takes three writes: the backend, its slot, the count")
    func oneBackendCostsItsWrites() throws {
        let datapath = InMemoryNodeDatapath()
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        let web = Frontend(address: IPAddress("10.101.0.10")!, port: 80, proto: 6)
        let other = Frontend(address: IPAddress("10.101.0.11")!, port: 80, proto: 6)
        var backends = (0..<10_000).map { BackendAddress(address: IPAddress("10.2.\($0 / 250).\($0 % 250 + 1)")!, port: 8080, proto: 6, clusterID: 2) }
        var desired = DesiredDatapath()
        desired.services = [web: backends, other: Array(backends.prefix(10))]
        try synchronizer.apply(desired)
        backends.append(BackendAddress(address: IPAddress("10.2.200.1")!, port: 8080, proto: 6, clusterID: 2))
        desired.services[web] = backends
        let writes = try synchronizer.apply(ipcache: [:], ipBlocks: [:], services: MapSynchronizer.ServiceChanges(
            frontends: desired.services, states: [:], changed: [web], changedStates: []))
        #expect(writes == 3)
        #expect(datapath.services.lookup(MapSynchronizerTests.slotKey(web, 0))?.count == 10_001)
        // And removed again: the count, the slot, the backend.
        backends.removeLast()
        desired.services[web] = backends
        #expect(try synchronizer.apply(ipcache: [:], ipBlocks: [:], services: MapSynchronizer.ServiceChanges(
            frontends: desired.services, states: [:], changed: [web], changedStates: [])) == 3)
        #expect(datapath.backends.count == 10_000)
    }
}
