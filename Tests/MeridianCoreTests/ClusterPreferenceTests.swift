import MeridianCore
import Testing

/// Ordered and weighted preference between clusters for a global service: the annotations, and
/// which backends new connections go to with how many slots each.
@Suite("Cluster preference")
struct ClusterPreferenceTests {
    static func backend(_ cluster: String, _ ip: String, _ state: BackendState = .active) -> MeshBackend {
        MeshBackend(ip: ip, ports: ["http": L4Addr(protocol: .tcp, port: 8080)], cluster: cluster, isLocal: cluster == "cluster1", state: state)
    }

    static func select(_ backends: [MeshBackend], _ annotations: [String: String]) throws -> BackendSelectionResult {
        let mesh = try ServiceMeshAnnotations.parse(["service.cilium.io/global": "true"].merging(annotations) { $1 })
        return BackendSelection.select(local: backends.filter(\.isLocal), remote: backends.filter { !$0.isLocal },
                                       affinity: mesh.affinity, preference: mesh.preference)
    }

    static let three = [backend("cluster1", "10.1.0.5"), backend("cluster2", "10.2.0.5"), backend("cluster2", "10.2.0.6"),
                        backend("cluster3", "10.3.0.5")]

    @Test("the annotations parse into an order and weights; a service that is not global has none")
    func parsing() throws {
        let parsed = try ServiceMeshAnnotations.parse([
            "service.cilium.io/global": "true", "service.meridian.io/cluster-preference": "cluster3, cluster2,*",
            "service.meridian.io/cluster-weights": "cluster2=3,*=2",
        ])
        #expect(parsed.preference?.order == [.cluster("cluster3"), .cluster("cluster2"), .others])
        #expect(parsed.preference?.weight(of: "cluster2") == 3)
        #expect(parsed.preference?.weight(of: "cluster9") == 2)
        let local = try ServiceMeshAnnotations.parse(["service.meridian.io/cluster-preference": "cluster3"])
        #expect(local.preference == nil)
    }

    @Test("bad values are refused naming the annotation and what it takes", arguments: [
        ["service.meridian.io/cluster-preference": "cluster1,cluster1"],
        ["service.meridian.io/cluster-preference": "*,cluster1,*"],
        ["service.meridian.io/cluster-preference": "Cluster_1"],
        ["service.meridian.io/cluster-preference": ""],
        ["service.meridian.io/cluster-weights": "cluster1=0"],
        ["service.meridian.io/cluster-weights": "cluster1=101"],
        ["service.meridian.io/cluster-weights": "cluster1"],
        ["service.meridian.io/cluster-weights": "cluster1=1,cluster1=2"],
        ["service.meridian.io/cluster-weights": "*=1,*=2"],
        ["service.meridian.io/cluster-preference": "cluster1", "service.cilium.io/affinity": "local"],
        ["service.meridian.io/cluster-preference": (0...ClusterPreference.maximumEntries).map { "c\($0)" }.joined(separator: ",")],
        ["service.meridian.io/cluster-weights": (0...ClusterPreference.maximumEntries).map { "c\($0)=1" }.joined(separator: ",")],
    ])
    func refused(_ annotations: [String: String]) {
        do {
            _ = try ServiceMeshAnnotations.parse(["service.cilium.io/global": "true"].merging(annotations) { $1 })
            Issue.record("accepted \(annotations)")
        } catch {
            #expect(annotations.keys.contains(error.annotation), "\(error)")
            #expect(error.description.contains("expected"), "\(error)")
        }
    }

    @Test("the first cluster of the order with an active backend takes new connections; others are not selected")
    func orderHolds() throws {
        let result = try Self.select(Self.three, ["service.meridian.io/cluster-preference": "cluster3,cluster2,*"])
        #expect(result.selected.map(\.key) == ["cluster3/10.3.0.5"])
        #expect(result.preferred == ["cluster3/10.3.0.5"])
        #expect(result.slots.isEmpty)
    }

    @Test("when the first cluster's backends go, the next takes over, its terminating ones keep their connections; when they return, traffic comes back")
    func failoverAndFailback() throws {
        let order = ["service.meridian.io/cluster-preference": "cluster3,cluster2,*"]
        let drained = [Self.backend("cluster1", "10.1.0.5"), Self.backend("cluster2", "10.2.0.5"), Self.backend("cluster3", "10.3.0.5", .terminating)]
        let over = try Self.select(drained, order)
        #expect(over.selected.map(\.key) == ["cluster2/10.2.0.5", "cluster3/10.3.0.5"])
        #expect(over.preferred == ["cluster2/10.2.0.5"])
        let gone = try Self.select(drained.filter { $0.cluster != "cluster3" } + [Self.backend("cluster2", "10.2.0.6", .quarantined)], order)
        #expect(gone.selected.map(\.key) == ["cluster2/10.2.0.5"])
        let lastResort = try Self.select([Self.backend("cluster1", "10.1.0.5")], order)
        #expect(lastResort.selected.map(\.key) == ["cluster1/10.1.0.5"], "* covers the clusters not named")
        #expect(try Self.select(Self.three, order).selected.map(\.cluster) == ["cluster3"])
    }

    @Test("without * clusters the order does not name get no traffic, even as the last resort")
    func unnamedClustersNever() throws {
        let result = try Self.select([Self.backend("cluster1", "10.1.0.5")], ["service.meridian.io/cluster-preference": "cluster3,cluster2"])
        #expect(result.selected.isEmpty)
    }

    @Test("weights split slots between clusters in proportion, whatever their number of backends")
    func weights() throws {
        let result = try Self.select(Self.three, ["service.meridian.io/cluster-weights": "cluster2=3,cluster3=1,cluster1=1"])
        #expect(result.selected.count == 4)
        var perCluster: [String: Int] = [:]
        for backend in result.selected { perCluster[backend.cluster, default: 0] += result.slots[backend.key] ?? 0 }
        let total = Double(perCluster.values.reduce(0, +))
        #expect(abs(Double(perCluster["cluster2"] ?? 0) / total - 0.6) < 0.01, "\(perCluster)")
        #expect(abs(Double(perCluster["cluster3"] ?? 0) / total - 0.2) < 0.01, "\(perCluster)")
        #expect(abs((result.slots["cluster2/10.2.0.5"] ?? 0) - (result.slots["cluster2/10.2.0.6"] ?? 0)) <= 1, "backends of one cluster share alike")
        #expect(Int(total) <= BackendSelection.maximumSlots)
    }

    @Test("weights stay within the slot limit with many backends, and every active backend keeps a slot")
    func weightsWithManyBackends() throws {
        let many = (0..<3_000).map { Self.backend("cluster2", "10.2.\($0 / 250).\($0 % 250 + 1)") } + [Self.backend("cluster3", "10.3.0.5")]
        let result = try Self.select(many, ["service.meridian.io/cluster-weights": "cluster2=1,cluster3=1"])
        let total = result.slots.values.reduce(0, +)
        #expect(total <= BackendSelection.maximumSlots, "\(total) slots")
        #expect(result.selected.allSatisfy { (result.slots[$0.key] ?? 0) >= 1 })
        let share = Double(result.slots["cluster3/10.3.0.5"] ?? 0) / Double(total)
        #expect(abs(share - 0.5) < 0.01, "cluster3's one backend carries its cluster's half: \(share)")
    }
}
