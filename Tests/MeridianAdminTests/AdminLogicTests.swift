import Foundation
import MeridianAdmin
import MeridianStore
import Testing

@Suite struct AdminParsingTests {
    @Test(arguments: [("90s", 90_000), ("5m", 300_000), ("1h30m", 5_400_000), ("250ms", 250), ("1.5s", 1500)])
    func durations(text: String, milliseconds: Int64) {
        #expect(DurationParser.parse(text) == .milliseconds(milliseconds))
    }

    @Test(arguments: ["", "5", "m5", "5x", "1h-2m", "99999999999999h"])
    func badDurations(text: String) {
        #expect(DurationParser.parse(text) == nil)
    }

    @Test func connectionModesPairClustersAsTheCiliumCLIDoes() {
        let unicast = ConnectionMode.unicast.pairs(source: "a", destinations: ["b", "c"]).map { "\($0.importer)<-\($0.exporter)" }
        #expect(unicast == ["a<-b", "a<-c"])
        let bidirectional = ConnectionMode.bidirectional.pairs(source: "a", destinations: ["b"]).map { "\($0.importer)<-\($0.exporter)" }
        #expect(bidirectional == ["a<-b", "b<-a"])
        let mesh = Set(ConnectionMode.mesh.pairs(source: "a", destinations: ["b", "c"]).map { "\($0.importer)<-\($0.exporter)" })
        #expect(mesh == ["a<-b", "a<-c", "b<-a", "b<-c", "c<-a", "c<-b"])
    }
}

@Suite struct StatusReportTests {
    let settings = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                   maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1.meridian")

    func ready(_ name: String, reportedAt: Date) -> RemoteClusterStatus {
        var status = RemoteClusterStatus(name: name)
        status.connected = true
        status.configRetrieved = true
        status.ready = true
        status.phase = .ready
        status.synced = .init(all: true)
        status.counts = .init(nodes: 2, endpoints: 5, identities: 3, services: 1, serviceExports: 1, serviceSlices: 0)
        status.reportedAt = reportedAt
        return status
    }

    @Test func aFreshReadyPeerIsReady() {
        let now = Date()
        let report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: ["cluster2"],
                                             statuses: ["cluster2": ready("cluster2", reportedAt: now)], reportedAt: now, now: now)
        #expect(report.allReady)
        #expect(report.summary.ready == 1)
        #expect(report.text.contains("cluster2: ready, 2 nodes, 5 endpoints, 3 identities, 1 services"))
    }

    /// `clustermesh status` says whether each side encrypts, and warns when one does not.
    @Test(arguments: [
        ([true, true], [true, true], false),
        ([false, false], [false, false], false),
        ([true, true], [false, false], true),
        ([false], [true, false], true),
    ])
    func encryptionPerClusterAndMixedWarning(local: [Bool], remote: [Bool], warns: Bool) {
        let now = Date()
        var report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: ["cluster2"],
                                             statuses: ["cluster2": ready("cluster2", reportedAt: now)], reportedAt: now, now: now)
        report.addEncryption(local: local, remote: ["cluster2": remote])
        #expect(report.cluster.wireguardNodes == local.filter { $0 }.count && report.cluster.nodes == local.count)
        #expect(report.remoteClusters[0].wireguardNodes == remote.filter { $0 }.count)
        #expect(report.warnings.contains { $0.hasPrefix("mixed encryption") } == warns, "\(report.warnings)")
        #expect(report.text.contains("encryption: ") )
    }

    @Test func aStaleStatusMeansTheControlPlaneIsNotReporting() {
        let now = Date()
        let report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: ["cluster2"],
                                             statuses: ["cluster2": ready("cluster2", reportedAt: now)], reportedAt: now.addingTimeInterval(-60), now: now)
        #expect(!report.allReady)
        #expect(report.remoteClusters[0].errors.first?.contains("not reporting") == true)
    }

    @Test func aStatusUnchangedForLongIsCurrentWhileTheControlPlaneReports() {
        let now = Date()
        let report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: ["cluster2"],
                                             statuses: ["cluster2": ready("cluster2", reportedAt: now.addingTimeInterval(-3600))],
                                             reportedAt: now.addingTimeInterval(-1), now: now)
        #expect(report.allReady)
    }

    @Test func aConfiguredPeerWithoutStatusIsNotReadyAndPendingKindsAreNamed() {
        let now = Date()
        var syncing = ready("cluster3", reportedAt: now)
        syncing.ready = false
        syncing.synced.services = false
        syncing.synced.endpoints = false
        let report = ClusterMeshStatusReport(settings: settings, meshEnabled: true, peers: ["cluster2", "cluster3"],
                                             statuses: ["cluster3": syncing], reportedAt: now, now: now)
        #expect(report.summary.configured == 2)
        #expect(report.summary.ready == 0)
        #expect(report.remoteClusters[1].errors == ["synchronization in progress for endpoints, services"])
        let json = report.json
        #expect(json.contains("\"remoteClusters\""))
        #expect(json.contains("\"summary\""))
    }
}


/// Tables print what peers exported; nothing in a cell may drive the terminal.
@Suite struct TableEscapingTests {
    @Test func cellsAreEscapedAndCut() {
        let table = Table(headers: ["CLUSTER", "NAME"], rows: [["cluster2", "\u{1B}[31mred\nforged line"], ["cluster2", String(repeating: "n", count: 1000)]])
        let text = table.render()
        #expect(!text.contains("\u{1B}"))
        #expect(text.split(separator: "\n").count == 3, "a newline in a cell forged no row: \(text)")
        #expect(text.contains("\\u{1B}[31mred"))
        #expect(text.split(separator: "\n").allSatisfy { $0.count < 300 })
    }
}
