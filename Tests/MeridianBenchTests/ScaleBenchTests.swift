import ArgumentParser
import Foundation
@testable import MeridianBench
@testable import MeridianCLI
import MeridianTools
import MeridianCore
import MeridianStore
import Testing

/// The pure parts of `bench controlplane --scale`: reading /proc, the rate and latency
/// arithmetic, option checks and the mocked clusters' records (the run itself needs root, etcd
/// and minutes, and is not part of the suite).
@Suite("Scale bench")
struct ScaleBenchTests {
    // MARK: /proc

    @Test("CPU ticks are utime + stime, counted after the last parenthesis of the command name")
    func statTicks() {
        let plain = "26544 (cat) R 26542 26542 19896 0 -1 4194304 102 0 0 0 1234 56 0 0 20 0 1 0 1388133 3133440 382 18446744073709551615 0"
        #expect(ProcFS.cpuTicks(stat: plain) == 1290)
        // A command name with spaces and parentheses must not shift the fields.
        let awkward = "77 (my (odd) name) S 1 77 77 0 -1 4194560 5000 0 12 0 98765 4321 7 8 20 0 9 0 100 2000000 500 18446744073709551615 0"
        #expect(ProcFS.cpuTicks(stat: awkward) == 98765 + 4321)
        #expect(ProcFS.cpuTicks(stat: "") == nil)
        #expect(ProcFS.cpuTicks(stat: "12 (short) S 1 2") == nil)
    }

    @Test("status fields in kB: the peak (VmHWM) and the current (VmRSS) resident set")
    func statusKilobytes() {
        let status = """
            Name:\tmeridian
            State:\tS (sleeping)
            VmPeak:\t 1459016 kB
            VmHWM:\t  286124 kB
            VmRSS:\t  201764 kB
            Threads:\t12
            """
        #expect(ProcFS.kilobytes("VmHWM", status: status) == 286_124)
        #expect(ProcFS.kilobytes("VmRSS", status: status) == 201_764)
        #expect(ProcFS.kilobytes("VmSwap", status: status) == nil)
        #expect(ProcFS.kilobytes("Threads", status: status) == nil)
    }

    @Test("machine-wide CPU: busy excludes idle and iowait; guest columns are not counted twice")
    func machineTicks() throws {
        let stat = "cpu  934498 91 213092 1736513 6910 0 61580 603 11 0\ncpu0 467249 45 106546 868256 3455 0 30790 301 0 0\nintr 1 2 3\n"
        let ticks = try #require(ProcFS.machineTicks(procStat: stat))
        #expect(ticks.total == 934_498 + 91 + 213_092 + 1_736_513 + 6_910 + 0 + 61_580 + 603)
        #expect(ticks.busy == ticks.total - 1_736_513 - 6_910)
        #expect(ProcFS.machineTicks(procStat: "intr 1 2 3") == nil)
        #expect(ProcFS.machineTicks() != nil)
    }

    @Test("this process's own /proc entries parse")
    func ownProcess() throws {
        #expect(ProcFS.cpuTicks(pid: getpid()) != nil)
        let peak = try #require(ProcFS.peakKilobytes(pid: getpid()))
        #expect(peak > 0)
    }

    // MARK: Arithmetic

    @Test("CPU time as a share of one core over the phase")
    func cpuPercent() {
        #expect(ScaleArithmetic.cpuPercent(ticks: 250, ticksPerSecond: 100, seconds: 5) == 50)
        #expect(ScaleArithmetic.cpuPercent(ticks: 1000, ticksPerSecond: 100, seconds: 5) == 200)
        #expect(ScaleArithmetic.cpuPercent(ticks: 10, ticksPerSecond: 100, seconds: 0) == 0)
    }

    @Test("churn: written and delivered rates, missing updates, per-second arrivals and latency")
    func churnArithmetic() throws {
        let start: UInt64 = 1_000_000_000_000
        // 10 updates per second for 4 s; 38 of 40 arrive, each 20 ms after it was sent; the last at 3.92 s.
        var arrivals: [(sent: UInt64, arrived: UInt64)] = []
        for g in 0..<38 {
            let sent = start + UInt64(g) * 100_000_000
            arrivals.append((sent, sent + 20_000_000))
        }
        let outcome = ScaleArithmetic.churnOutcome(target: 10, seconds: 4, written: 40, writeFailures: 0, writeSpan: 3.91,
                                                   arrivals: arrivals, start: start)
        #expect(outcome.writtenPerSecond == 10)
        #expect(outcome.arrived == 38 && outcome.missing == 2)
        #expect(abs(outcome.sustainedPerSecond - 9.5) < 1e-9)
        #expect(abs(outcome.lastArrivalSeconds - 3.72) < 1e-9)
        let perSecond = try #require(outcome.arrivalsPerSecond)
        #expect(perSecond.count == 4 && perSecond.max == 10 && perSecond.min == 8)
        let latency = try #require(outcome.latencyMs)
        #expect(abs(latency.p50 - 20) < 1e-9 && abs(latency.p99 - 20) < 1e-9)

        // Falling behind: the last arrival at 8 s halves the delivered rate; writers that
        // overran the window lower the written rate.
        let late = [(sent: start, arrived: start + 8_000_000_000)]
        let slow = ScaleArithmetic.churnOutcome(target: 1, seconds: 4, written: 4, writeFailures: 0, writeSpan: 5,
                                                arrivals: late + late, start: start)
        #expect(slow.writtenPerSecond == 0.8)
        #expect(slow.sustainedPerSecond == 0.25)
        #expect(slow.arrivalsPerSecond?.max == 0)
        #expect(abs((slow.latencyMs?.p50 ?? 0) - 8000) < 1e-9)

        let none = ScaleArithmetic.churnOutcome(target: 5, seconds: 2, written: 10, writeFailures: 3, writeSpan: 2, arrivals: [], start: start)
        #expect(none.arrived == 0 && none.missing == 10 && none.sustainedPerSecond == 0 && none.latencyMs == nil)
    }

    @Test("a churn stamp survives the trip through Metadata; anything else is not one")
    func churnStamp() {
        let stamp = ChurnStamp(sequence: 4711, sentNanoseconds: 123_456_789_012)
        #expect(ChurnStamp(metadata: stamp.metadata) == stamp)
        #expect(ChurnStamp(metadata: "") == nil)
        #expect(ChurnStamp(metadata: "meridian-scale-churn seq=x t=1") == nil)
        #expect(ChurnStamp(metadata: "other seq=1 t=1") == nil)
    }

    // MARK: Options

    private func message(_ sizes: ScaleSizes) -> String? {
        do {
            try sizes.validate()
            return nil
        } catch {
            return error.description
        }
    }

    @Test("sizes the mocks cannot represent are refused with the reason")
    func sizeValidation() throws {
        #expect(message(.ciScaleTest) == nil)
        #expect(message(.quick) == nil)
        var sizes = ScaleSizes.ciScaleTest
        sizes.clusters = 254
        #expect(message(sizes) == nil)
        sizes.clusters = 255
        let tooMany = try #require(message(sizes))
        #expect(tooMany.contains("at most 254") && tooMany.contains("8 bits") && tooMany.contains("cluster1"))
        sizes.clusters = 0
        #expect(message(sizes) != nil)

        sizes = .ciScaleTest
        sizes.nodesPerCluster = 256
        #expect(message(sizes)?.contains("--nodes") == true)
        sizes = .ciScaleTest
        sizes.nodesPerCluster = 3
        sizes.endpointsPerCluster = 760
        #expect(message(sizes)?.contains("at most 253 per node") == true)
        sizes.endpointsPerCluster = 759
        #expect(message(sizes) == nil)
        sizes = .ciScaleTest
        sizes.identitiesPerCluster = 0
        #expect(message(sizes)?.contains("--identities") == true)
        sizes.identitiesPerCluster = 65_536
        #expect(message(sizes)?.contains("65535") == true)
        sizes = .ciScaleTest
        sizes.endpointsPerCluster = 0
        #expect(message(sizes)?.contains("--churn") == true)
        sizes.churnPerSecond = 0
        #expect(message(sizes) == nil)
        sizes.churnSeconds = 0
        #expect(message(sizes)?.contains("--churn-seconds") == true)
    }

    @Test("the command line: --scale takes the scale test's sizes, --quick the small ones, options override; scale options need --scale")
    func commandLine() throws {
        #expect(try BenchCommand.ControlPlane.parse(["--scale"]).scaleSizes == .ciScaleTest)
        #expect(try BenchCommand.ControlPlane.parse(["--scale", "--quick"]).scaleSizes == .quick)
        let custom = try BenchCommand.ControlPlane.parse(["--scale", "--clusters", "10", "--nodes", "20", "--endpoints", "300",
                                                  "--identities", "5", "--churn", "100", "--churn-seconds", "15"]).scaleSizes
        #expect(custom == ScaleSizes(clusters: 10, nodesPerCluster: 20, endpointsPerCluster: 300, identitiesPerCluster: 5,
                                     churnPerSecond: 100, churnSeconds: 15))
        #expect(throws: (any Error).self) { try BenchCommand.ControlPlane.parse(["--scale", "--clusters", "255"]) }
        #expect(throws: (any Error).self) { try BenchCommand.ControlPlane.parse(["--clusters", "5"]) }
        // Without --scale the existing benchmark is unchanged.
        let plain = try BenchCommand.ControlPlane.parse(["--changes", "50"])
        #expect(!plain.scale && plain.changes == 50)
        #expect(throws: (any Error).self) { try BenchCommand.ControlPlane.parse(["--changes", "5"]) }
    }

    // MARK: Records

    @Test("a mock holds the requested counts, every record passes the importer's checks, keys are unique")
    func records() throws {
        let sizes = ScaleSizes(clusters: 3, nodesPerCluster: 7, endpointsPerCluster: 40, identitiesPerCluster: 6, churnPerSecond: 1, churnSeconds: 1)
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        for mock in (0..<sizes.clusters).map(MockCluster.init(index:)) {
            let validation = try RemoteRecordValidation(remoteName: mock.name, remoteID: ClusterID(mock.id), podCIDRs: [IPCIDR(mock.podCIDR)!], layout: layout)
            let nodes = ScaleRecords.nodes(of: mock, sizes: sizes)
            let endpoints = ScaleRecords.endpoints(of: mock, sizes: sizes)
            let identities = ScaleRecords.identities(of: mock, sizes: sizes)
            #expect(nodes.count == 7 && endpoints.count == 40 && identities.count == 6)
            let state = ScaleRecords.state(of: mock, sizes: sizes)
            #expect(state.count == 53 && Set(state.map(\.key)).count == 53)

            let podCIDR = try #require(IPCIDR(mock.podCIDR))
            for node in nodes {
                let prefix = MeshKind.nodes.statePrefix(cluster: mock.name)
                #expect(node.key.hasPrefix(prefix))
                let record = try validation.decodeNode(keyName: "\(mock.name)/\(node.key.dropFirst(prefix.count))", value: node.value)
                let nodeCIDR = try #require(record.ipv4AllocCIDR)
                #expect(podCIDR.contains(nodeCIDR))
            }
            let identityIDs = Set(identities.map { UInt32($0.key.split(separator: "/").last!)! })
            for identity in identities {
                let id = String(identity.key.dropFirst(MeshKind.identities.statePrefix(cluster: mock.name).count))
                let decoded = try validation.decodeIdentity(keyName: id, value: identity.value)
                #expect(layout.isIdentity(decoded.id, ownedBy: ClusterID(mock.id)))
                #expect(decoded.labels.clusterName == mock.name)
            }
            for endpoint in endpoints {
                let ip = String(endpoint.key.dropFirst(MeshKind.endpoints.statePrefix(cluster: mock.name).count))
                let pair = try validation.decodeIPIdentityPair(keyName: ip, value: endpoint.value)
                let address = try #require(IPAddress(pair.ip))
                #expect(podCIDR.contains(address))
                #expect(identityIDs.contains(pair.id))
                // The endpoint sits in its node's /24.
                let node = nodes.compactMap { try? validation.decodeNode(keyName: "\(mock.name)/\($0.key.split(separator: "/").last!)", value: $0.value) }
                    .first { $0.address(ofType: .internalIP) == pair.hostIP }
                let hostCIDR = try #require(node?.ipv4AllocCIDR)
                #expect(hostCIDR.contains(address))
            }
        }
    }

    @Test("pod CIDRs, node addresses and identity ranges of all 254 possible mocks never overlap, nor cluster1's pod and service CIDRs")
    func addressPlan() throws {
        let mocks = (0..<ScaleSizes.maxClusters).map(MockCluster.init(index:))
        #expect(mocks.first?.id == 2 && mocks.last?.id == 255)
        #expect(Set(mocks.map(\.name)).count == mocks.count)
        // cluster1's pod and service CIDRs, then every mock's pod CIDR.
        let cidrs = try [IPCIDR(parsing: "10.1.0.0/16"), IPCIDR(parsing: "10.101.0.0/16")] + mocks.map { try IPCIDR(parsing: $0.podCIDR) }
        for (i, a) in cidrs.enumerated() {
            for b in cidrs[(i + 1)...] { #expect(!a.overlaps(b), "\(a) overlaps \(b)") }
        }
        let layout = IdentityLayout(maxConnectedClusters: .c255)
        for mock in mocks {
            #expect(layout.isIdentity(mock.identity(0), ownedBy: ClusterID(mock.id)))
            #expect(layout.isIdentity(mock.identity(ScaleSizes.maxIdentities - 1), ownedBy: ClusterID(mock.id)))
        }
        let nodeIPs = mocks.flatMap { mock in [0, 1, ScaleSizes.maxNodes - 1].map { mock.nodeIP($0) } }
        #expect(Set(nodeIPs).count == nodeIPs.count && nodeIPs.allSatisfy { IPAddress($0) != nil })
        // The largest endpoint index fits the last node's /24.
        let mock = mocks[0]
        let last = mock.endpointIP(ScaleSizes.maxNodes * ScaleSizes.endpointsPerNode - 1, nodes: ScaleSizes.maxNodes)
        #expect(last == "10.2.255.254")
    }

    @Test("churn updates rewrite existing endpoints with a new identity or host and stay valid")
    func churnUpdates() throws {
        let sizes = ScaleSizes(clusters: 1, nodesPerCluster: 4, endpointsPerCluster: 10, identitiesPerCluster: 3, churnPerSecond: 1, churnSeconds: 1)
        let mock = MockCluster(index: 0)
        let validation = try RemoteRecordValidation(remoteName: mock.name, remoteID: ClusterID(mock.id), podCIDRs: [IPCIDR(mock.podCIDR)!],
                                                    layout: IdentityLayout(maxConnectedClusters: .c255))
        let initial = Dictionary(uniqueKeysWithValues: ScaleRecords.endpoints(of: mock, sizes: sizes).map { ($0.key, $0.value) })
        var previous = initial
        for sequence in 0..<30 {
            let stamp = ChurnStamp(sequence: sequence, sentNanoseconds: 42)
            let update = ScaleRecords.churnUpdate(of: mock, sequence: sequence, sizes: sizes, metadata: stamp.metadata)
            let before = try #require(previous[update.key], "churn must update an existing endpoint")
            let ip = String(update.key.dropFirst(MeshKind.endpoints.statePrefix(cluster: mock.name).count))
            let old = try validation.decodeIPIdentityPair(keyName: ip, value: before)
            let new = try validation.decodeIPIdentityPair(keyName: ip, value: update.value)
            #expect(old.id != new.id || old.hostIP != new.hostIP)
            #expect(ChurnStamp(metadata: new.metadata) == stamp)
            previous[update.key] = update.value
        }
    }

    @Test("the control records carry the cluster config, the four canaries, the heartbeat and what connect reads")
    func controlRecords() throws {
        let mock = MockCluster(index: 5)
        let records = Dictionary(uniqueKeysWithValues: ScaleRecords.control(
            of: mock, endpoint: "https://127.0.0.1:2379", ca: MeshCertificateAuthorityRecord(certificatePEM: "c"),
            now: "2025-01-01T00:00:00Z").map { ($0.key, $0.value) })
        let config = try JSONDecoder().decode(CiliumClusterConfig.self, from: try #require(records["cilium/cluster-config/mock7"]))
        #expect(config.id == 7 && config.capabilities.syncedCanaries == true && config.capabilities.maxConnectedClusters == 255)
        for kind in MeshKind.allCases {
            #expect(records[KeyLayout.syncCanary(cluster: "mock7", prefix: kind.stateCanaryPrefix)] != nil)
        }
        #expect(records[KeyLayout.heartbeat] != nil)
        let settings = try StoreCoding.decode(ClusterSettings.self, from: try #require(records[KeyLayout.clusterSettings]), key: "settings")
        #expect(settings.name == "mock7" && settings.id == 7 && settings.podCIDR == "10.7.0.0/16" && settings.clientEndpoints == ["https://127.0.0.1:2379"])
        let mesh = try StoreCoding.decode(ClusterMeshSettings.self, from: try #require(records[KeyLayout.clusterMeshSettings]), key: "mesh")
        #expect(mesh.enabled)
        #expect(records[KeyLayout.meshCertificateAuthority] != nil)
    }
}
