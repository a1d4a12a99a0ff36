import Foundation
@testable import MeridianCLI
@testable import MeridianControlPlane
import MeridianEtcd
import MeridianStore
import Testing

/// A deterministic generator so jitter bounds can be checked exactly.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ReconnectBackoffTests {
    @Test func delaysDoubleUpToTheMaximumWithJitterInTheUpperHalf() {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(2))
        var generator = SeededGenerator(state: 42)
        let ceilings: [Duration] = [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                                    .milliseconds(1600), .seconds(2), .seconds(2)]
        for ceiling in ceilings {
            let delay = backoff.next(using: &generator)
            #expect(delay <= ceiling)
            #expect(delay >= ceiling / 2)
        }
        backoff.reset()
        #expect(backoff.next(using: &generator) <= .milliseconds(100))
    }

    @Test func jitterSpreadsManyReconnectingClients() {
        // 100 control planes losing the same peer at once must not retry in lockstep.
        var generator = SeededGenerator(state: 7)
        var delays: Set<Duration> = []
        for _ in 0..<100 {
            var backoff = ReconnectBackoff(initial: .seconds(1), maximum: .seconds(30))
            _ = backoff.next(using: &generator)
            delays.insert(backoff.next(using: &generator))
        }
        #expect(delays.count > 90)
        #expect(delays.min()! >= .seconds(1))
        #expect(delays.max()! <= .seconds(2))
    }
}

@Suite struct CacheDiffTests {
    @Test func putsNewAndChangedDeletesWhatTheSourceNoLongerHas() {
        let current = ["a": Data("1".utf8), "b": Data("2".utf8), "stale": Data("x".utf8)]
        let desired = ["a": Data("1".utf8), "b": Data("3".utf8), "new": Data("4".utf8)]
        let diff = CacheDiff(desired: desired, current: current)
        #expect(diff.puts == ["b": Data("3".utf8), "new": Data("4".utf8)])
        #expect(diff.deletes == ["stale"])
    }

    @Test func identicalStatesNeedNoWrites() {
        let state = ["k": Data("v".utf8)]
        #expect(CacheDiff(desired: state, current: state).isEmpty)
    }
}

@Suite struct CLIParsingTests {
    @Test(arguments: [("90s", 90_000), ("5m", 300_000), ("1h30m", 5_400_000), ("250ms", 250), ("1.5s", 1500)])
    func durations(text: String, milliseconds: Int64) {
        #expect(DurationParser.parse(text) == .milliseconds(milliseconds))
    }

    @Test(arguments: ["", "5", "m5", "5x", "1h-2m"])
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

    @Test func endpointsParse() throws {
        #expect(try EtcdEndpoint(url: "https://127.0.0.1:2379") == .tcp(host: "127.0.0.1", port: 2379))
        #expect(try EtcdEndpoint(url: "https://[::1]:2379") == .tcp(host: "::1", port: 2379))
        #expect(try EtcdEndpoint(url: "unixs:///run/etcd.sock") == .unix(path: "/run/etcd.sock"))
        #expect(throws: EtcdError.self) { try EtcdEndpoint(url: "https://127.0.0.1:0") }
        #expect(throws: EtcdError.self) { try EtcdEndpoint(url: "ftp://x:1") }
    }

    @Test func prefixRangeEndCoversExactlyThePrefix() {
        #expect(EtcdClient.prefixEnd("cilium/state/") == Data("cilium/state0".utf8))
        #expect(EtcdClient.prefixEnd("a\u{7f}") == Data([0x61, 0x80]))
        #expect(EtcdClient.prefixEnd("") == Data([0]))
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
        status.synced = .init(nodes: true, endpoints: true, identities: true, services: true)
        status.counts = .init(nodes: 2, endpoints: 5, identities: 3, services: 1)
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

@Suite struct StatusPublishingTests {
    func status(heartbeat: Date?) -> RemoteClusterStatus {
        var status = RemoteClusterStatus(name: "cluster2")
        status.connected = true
        status.lastHeartbeat = heartbeat
        return status
    }

    @Test func aHeartbeatAloneIsRepublishedOnlyWhenThePublishedOneIsOld() {
        let start = Date()
        let published = status(heartbeat: start)
        #expect(StatusPublisher.needsPublishing(published, over: nil), "a status never published is published")
        var beat = published
        beat.lastHeartbeat = start.addingTimeInterval(2)
        beat.updated = start.addingTimeInterval(2)
        #expect(!StatusPublisher.needsPublishing(beat, over: published), "a 2 s newer heartbeat alone waits")
        beat.lastHeartbeat = start.addingTimeInterval(StatusPublisher.heartbeatRepublish)
        #expect(StatusPublisher.needsPublishing(beat, over: published), "a heartbeat 30 s newer than the published one is published")
        var changed = published
        changed.counts.nodes = 3
        #expect(StatusPublisher.needsPublishing(changed, over: published), "any other change is published at once")
    }
}

@Suite struct SampleSummaryTests {
    @Test func nearestRankPercentiles() throws {
        let summary = try #require(SampleSummary((1...100).map(Double.init).shuffled()))
        #expect(summary.count == 100)
        #expect(summary.min == 1)
        #expect(summary.p50 == 50)
        #expect(summary.p90 == 90)
        #expect(summary.p99 == 99)
        #expect(summary.max == 100)
    }

    @Test func smallAndEmptySamples() throws {
        #expect(SampleSummary([]) == nil)
        let one = try #require(SampleSummary([3.5]))
        #expect(one.p50 == 3.5 && one.p99 == 3.5)
        let two = try #require(SampleSummary([1, 9]))
        #expect(two.p50 == 1)
        #expect(two.p99 == 9)
    }
}
