import Foundation
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

@Suite struct ReconnectBackoffTests {
    @Test func delaysDoubleUpToTheMaximumWithJitterInTheUpperHalf() {
        var backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(2))
        var generator = SeededGenerator(seed: 42)
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
        var generator = SeededGenerator(seed: 7)
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

