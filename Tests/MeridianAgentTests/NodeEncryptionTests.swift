import Foundation
import MeridianCore
import MeridianDatapath
import MeridianStore
import Testing
@testable import MeridianAgent

/// The peers a node's WireGuard device is given from the node records it mirrors, and how the
/// device's own report (`wg show DEV dump`) is read.
@Suite struct NodeEncryptionTests {
    static func key(_ seed: UInt8) -> String { Data((0..<32).map { seed &+ $0 }).base64EncodedString() }

    static func record(_ cluster: String, _ node: String, ip: String, key: String, id: UInt32 = 1) -> (String, Data) {
        let record = NodeRecord(name: node, cluster: cluster, ipAddresses: [NodeAddress(type: .internalIP, ip: ip)], clusterID: id,
                                wireguardPublicKey: key)
        return (MeshKind.nodes.stateKey(cluster: cluster, name: node), StoreCoding.encode(record))
    }

    @Test func everyOtherNodeWithAKeyIsAPeerAtItsUnderlayAddress() throws {
        let records = Dictionary(uniqueKeysWithValues: [
            Self.record("cluster1", "node1", ip: "172.30.1.1", key: Self.key(1)),
            Self.record("cluster1", "node2", ip: "172.30.1.2", key: Self.key(2)),
            Self.record("cluster2", "node1", ip: "172.30.2.1", key: Self.key(3), id: 2),
            Self.record("cluster2", "node2", ip: "172.30.2.2", key: "", id: 2),
        ])
        let result = NodeEncryption.peers(records: records, cluster: "cluster1", node: "node1", ownKey: Self.key(1))
        #expect(result.peers.map(\.node) == ["cluster1/node2", "cluster2/node1"])
        #expect(result.peers.map(\.endpointText) == ["172.30.1.2:51871", "172.30.2.1:51871"])
        #expect(result.peers.map(\.allowedIPs) == [["172.30.1.2/32"], ["172.30.2.1/32"]])
        #expect(result.unencrypted == ["cluster2/node2"])
    }

    /// A local record is not validated on import, so a bad key, our own key, a key or address
    /// two records share must not reach `wg set` (which would fail the whole pass or move an
    /// allowed IP between peers).
    @Test func unusableSharedOrOwnKeysAndSharedAddressesAreNotPeers() throws {
        let records = Dictionary(uniqueKeysWithValues: [
            Self.record("cluster1", "a", ip: "172.30.1.2", key: "not-a-key"),
            Self.record("cluster1", "b", ip: "172.30.1.3", key: Self.key(1)),
            Self.record("cluster1", "c", ip: "172.30.1.4", key: Self.key(4)),
            Self.record("cluster1", "d", ip: "172.30.1.5", key: Self.key(4)),
            Self.record("cluster1", "e", ip: "172.30.1.4", key: Self.key(6)),
            Self.record("cluster1", "f", ip: "fd00::1", key: Self.key(7)),
        ])
        let result = NodeEncryption.peers(records: records, cluster: "cluster1", node: "node1", ownKey: Self.key(1))
        #expect(result.peers.map(\.node) == ["cluster1/c"])
        #expect(result.unencrypted == ["cluster1/a", "cluster1/b", "cluster1/d", "cluster1/e", "cluster1/f"])
    }

    /// Strict mode lets `from_pod` encapsulate only to nodes marked in `mer_encrypt4`: a mark
    /// means the device holds the node's peer (its key, its /32) and a pass put the routes in.
    @Test func nodesAreMarkedOnlyWhileTheDeviceHoldsTheirPeer() throws {
        func peer(_ seed: UInt8, _ ip: String) -> WireGuardPeer {
            WireGuardPeer(node: "cluster1/n\(seed)", publicKey: Self.key(seed), endpoint: IPAddress(ip)!, allowedIPs: ["\(ip)/32"])
        }
        let wanted = [peer(2, "172.30.1.2"), peer(3, "172.30.1.3"), peer(4, "172.30.1.4")]
        // The device holds 2 as wanted, 3 under an old key (a rotation not applied yet), and 4
        // without its allowed IP.
        let dump = try WireGuardDump(parsing: "(none)\t\(Self.key(1))\t51871\toff\n"
            + "\(Self.key(2))\t(none)\t172.30.1.2:51871\t172.30.1.2/32\t0\t0\t0\toff\n"
            + "\(Self.key(33))\t(none)\t172.30.1.3:51871\t172.30.1.3/32\t0\t0\t0\toff\n"
            + "\(Self.key(4))\t(none)\t172.30.1.4:51871\t(none)\t0\t0\t0\toff\n", device: "wg0")
        let two = IPAddress("172.30.1.2")!, three = IPAddress("172.30.1.3")!, gone = IPAddress("172.30.1.9")!
        #expect(NodeEncryption.encryptedEndpoints(wanted: wanted, device: dump, routed: true, marked: []) == [two])
        // A pass that failed adds no mark, and keeps only those still true.
        #expect(NodeEncryption.encryptedEndpoints(wanted: wanted, device: dump, routed: false, marked: []).isEmpty)
        #expect(NodeEncryption.encryptedEndpoints(wanted: wanted, device: dump, routed: false, marked: [two, three, gone]) == [two])
        // A device that cannot be read (wireguard-go restarting) keeps the marks of wanted
        // peers (the blackholes hold their traffic) and drops those of nodes no longer wanted.
        #expect(NodeEncryption.encryptedEndpoints(wanted: wanted, device: nil, routed: false, marked: [two, three, gone]) == [two, three])
        // A fresh device without peers: nothing is marked.
        let fresh = try WireGuardDump(parsing: "(none)\t(none)\t0\toff\n", device: "wg0")
        #expect(NodeEncryption.encryptedEndpoints(wanted: wanted, device: fresh, routed: false, marked: [two]).isEmpty)
        #expect(NodeEncryption.encryptedEndpoints(wanted: [], device: dump, routed: true, marked: [two]).isEmpty)
    }

    @Test func theDumpIsReadWithoutThePrivateKey() throws {
        let text = "cHJpdmF0ZQ==\t\(Self.key(9))\t51871\toff\n"
            + "\(Self.key(2))\t(none)\t172.30.1.2:51871\t172.30.1.2/32\t1765111111\t1200\t3400\toff\n"
            + "\(Self.key(3))\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
        let dump = try WireGuardDump(parsing: text, device: "wg0")
        #expect(dump.publicKey == Self.key(9))
        #expect(dump.listenPort == 51871)
        #expect(dump.peers.count == 2)
        #expect(dump.peers[0].endpoint == "172.30.1.2:51871" && dump.peers[0].allowedIPs == ["172.30.1.2/32"])
        #expect(dump.peers[0].latestHandshake == 1_765_111_111 && dump.peers[0].receivedBytes == 1200 && dump.peers[0].sentBytes == 3400)
        #expect(dump.peers[1].endpoint == nil && dump.peers[1].allowedIPs.isEmpty)
        #expect(!"\(dump)".contains("cHJpdmF0ZQ=="))
        let fresh = try WireGuardDump(parsing: "(none)\t(none)\t0\toff\n", device: "wg0")
        #expect(fresh.publicKey == nil && fresh.peers.isEmpty)
        #expect(throws: WireGuardError.self) { try WireGuardDump(parsing: "x\ty\n", device: "wg0") }
    }

    // MARK: Rotation on a schedule

    @Test func aKeyIsDueIntervalAfterItsLastReplacement() {
        let schedule = KeyRotationSchedule(interval: .seconds(20))
        let last = Date(timeIntervalSince1970: 1_000)
        #expect(schedule.nextRotation(after: last) == Date(timeIntervalSince1970: 1_020))
        #expect(!schedule.isDue(last: last, now: Date(timeIntervalSince1970: 1_000)))
        #expect(!schedule.isDue(last: last, now: Date(timeIntervalSince1970: 1_019.9)))
        #expect(schedule.isDue(last: last, now: Date(timeIntervalSince1970: 1_020)))
        // An agent that was down past the time rotates at once, and then counts from then.
        #expect(schedule.isDue(last: last, now: Date(timeIntervalSince1970: 5_000)))
        #expect(!schedule.isDue(last: Date(timeIntervalSince1970: 5_000), now: Date(timeIntervalSince1970: 5_001)))
        let daily = KeyRotationSchedule(interval: .seconds(86_400) + .milliseconds(500))
        #expect(daily.nextRotation(after: last) == Date(timeIntervalSince1970: 87_400.5))
    }

    /// A restart neither rotates early (it keeps the recorded time) nor never (a time ahead of
    /// the clock counts as now; without a record, the key file's age counts).
    @Test func theLastRotationSurvivesRestartsAndClockSteps() {
        let now = Date(timeIntervalSince1970: 10_000)
        let recorded = Date(timeIntervalSince1970: 9_990), keyFile = Date(timeIntervalSince1970: 5_000)
        #expect(KeyRotationSchedule.lastRotation(recorded: recorded, keyFileModified: keyFile, now: now) == recorded)
        #expect(KeyRotationSchedule.lastRotation(recorded: nil, keyFileModified: keyFile, now: now) == keyFile)
        #expect(KeyRotationSchedule.lastRotation(recorded: nil, keyFileModified: nil, now: now) == now)
        #expect(KeyRotationSchedule.lastRotation(recorded: Date(timeIntervalSince1970: 900_000), keyFileModified: keyFile, now: now) == now)
        let schedule = KeyRotationSchedule(interval: .seconds(20))
        #expect(!schedule.isDue(last: KeyRotationSchedule.lastRotation(recorded: recorded, keyFileModified: keyFile, now: now), now: now))
        #expect(schedule.isDue(last: KeyRotationSchedule.lastRotation(recorded: nil, keyFileModified: keyFile, now: now), now: now))
    }
}
