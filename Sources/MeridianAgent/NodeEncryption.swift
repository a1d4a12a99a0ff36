import CMeridianBPF
import Foundation
import Logging
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianHost
import MeridianPKI
import MeridianStore

/// How a node encrypts traffic to other nodes (`meridian agent --encryption wireguard`).
public struct EncryptionSettings: Sendable, Hashable {
    /// The WireGuard device's name. wireguard-go's control sockets share one directory per host,
    /// so nodes sharing a host (the lab's) need names of their own.
    public var device: String
    /// Strict mode (`--encryption-strict`): `from_pod` drops pod traffic to a node for which the
    /// device holds no peer (`UNENCRYPTED_TRAFFIC`) instead of sending it in the clear, and
    /// `from_overlay` drops VXLAN that came in the clear from a node it holds a peer for
    /// (`UNENCRYPTED_INGRESS`).
    public var strict: Bool
    /// `--wireguard-rotation-interval`: the node replaces its key pair this long after the last
    /// replacement; nil: only on request (`encryption rotate`).
    public var rotationInterval: Duration?
    /// The shortest `rotationInterval` accepted (see `KeyRotationSchedule.minimumInterval`).
    public static var minimumRotationInterval: Duration { KeyRotationSchedule.minimumInterval }

    public init(device: String = MeridianWireGuard.defaultDevice, strict: Bool = false, rotationInterval: Duration? = nil) {
        self.device = device
        self.strict = strict
        self.rotationInterval = rotationInterval
    }
}

/// Keeps a node's WireGuard device, its peers and the routing into it in step with the node
/// records the agent mirrors (its own cluster's and every connected cluster's), and publishes
/// what the device reports.
///
/// It exists because pod traffic between nodes must cross the underlay encrypted while the
/// datapath stays as it is: see `WireGuardDevice` for how VXLAN is routed through the tunnel.
/// Every pass is idempotent and starts from what the device says (`wg show DEV dump`), so a
/// `wireguard-go` restarted by its supervisor (a fresh device without key or peers) is
/// configured again within one tick, and a peer whose record changes or goes is updated.
struct NodeEncryption: Sendable {
    let device: WireGuardDevice
    /// Whether the datapath runs strict mode; only reported here (the agent sets the flag in
    /// the node's configuration).
    let strict: Bool
    /// `mer_encrypt4`: the underlay addresses of nodes the device holds a peer and the route for.
    /// Kept whether or not strict mode is on, so turning it on needs no other state.
    let encryptedNodes: any DatapathMap<mer_encrypt_key, mer_encrypt_value>
    /// Puts `from_wireguard` on the device's ingress unless it is there (true when it attached
    /// it now), so `from_overlay` can tell VXLAN that came through the tunnel from VXLAN that
    /// came in the clear (strict mode refuses the latter from nodes in `encryptedNodes`).
    let attachDecryptionMark: @Sendable (_ device: String) throws -> Bool
    let initialKeys: WireGuardKeyPair
    /// Rotation on a schedule; nil: only on request.
    let schedule: KeyRotationSchedule?
    let context: NodeContext
    let mirror: PrefixMirror
    let client: any KeyValueStore
    let logPath: String
    let logger: Logger
    /// How often the device is checked even when no record changes (wireguard-go restarts,
    /// handshakes and byte counts for the status).
    var tick: Duration = .seconds(2)
    /// The status is written when it changes, but not more often than this (byte counts change
    /// with every packet).
    var publishInterval: Duration = .seconds(5)

    /// Where the mod revision of the last rotation request carried out is kept.
    var rotationPath: String { keyDirectory + "/wireguard.rotated" }
    /// Where the time of the last key replacement (seconds since 1970) is kept, for the schedule.
    var rotatedAtPath: String { keyDirectory + "/wireguard.rotated-at" }
    private var keyDirectory: String { (initialKeys.path as NSString).deletingLastPathComponent }

    /// The time of the last key replacement to schedule from (see
    /// `KeyRotationSchedule.lastRotation`), recorded again when the record was missing or ahead of
    /// the clock.
    func loadLastRotation(now: Date = Date()) -> Date {
        let text = (try? String(contentsOfFile: rotatedAtPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let recorded = text.flatMap(Int64.init).map { Date(timeIntervalSince1970: TimeInterval($0)) }
        let modified = (try? FileManager.default.attributesOfItem(atPath: initialKeys.path))?[.modificationDate] as? Date
        let last = KeyRotationSchedule.lastRotation(recorded: recorded, keyFileModified: modified, now: now)
        if recorded != last { recordRotation(at: last) }
        return last
    }

    private func recordRotation(at time: Date) {
        do {
            try "\(Int64(time.timeIntervalSince1970))\n".write(toFile: rotatedAtPath, atomically: true, encoding: .utf8)
        } catch {
            logger.warning("could not record the time of the WireGuard key rotation", metadata: ["path": "\(rotatedAtPath)", "error": "\(error)"])
        }
    }

    /// Replaces the key pair: a new one in the key file, given to the device, and the node record
    /// republished with the new public key (peers then replace the old key with the new one; the
    /// tunnel is down for each peer until it has). `lastRotation` becomes now.
    private func rotate(_ keys: inout WireGuardKeyPair, lastRotation: inout Date, reason: String,
                        afterKeyWritten: () throws -> Void = {}) async throws {
        keys = try WireGuardKeyPair.create(at: keys.path)
        lastRotation = Date()
        recordRotation(at: lastRotation)
        try afterKeyWritten()
        try await device.configure(privateKeyPath: keys.path)
        try await republish(publicKey: keys.publicKey)
        logger.info("WireGuard key rotated", metadata: ["publicKey": "\(keys.publicKey)", "reason": "\(reason)"])
    }

    /// Carries out a rotation request newer than the last one.
    private func rotateIfAsked(_ keys: inout WireGuardKeyPair, lastRotation: inout Date) async {
        guard let request = try? await client.get(KeyLayout.encryptionRotation(context.nodeName)) else { return }
        let done = Int64((try? String(contentsOfFile: rotationPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        guard request.modRevision > done else { return }
        do {
            try await rotate(&keys, lastRotation: &lastRotation, reason: "request \(request.modRevision)") {
                try "\(request.modRevision)\n".write(toFile: rotationPath, atomically: true, encoding: .utf8)
            }
        } catch {
            logger.warning("WireGuard key rotation failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// Rotates the key pair when the schedule says it is due.
    private func rotateIfDue(_ keys: inout WireGuardKeyPair, lastRotation: inout Date) async {
        guard let schedule, schedule.isDue(last: lastRotation, now: Date()) else { return }
        do {
            try await rotate(&keys, lastRotation: &lastRotation, reason: "schedule (every \(schedule.interval))")
        } catch {
            logger.warning("scheduled WireGuard key rotation failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// Rewrites the node's record with `publicKey`, under the lease it is registered with.
    private func republish(publicKey: String) async throws {
        let key = MeshKind.nodes.stateKey(cluster: context.cluster.name, name: context.nodeName)
        guard let current = try await client.get(key) else { return }
        var record = try StoreCoding.decode(NodeRecord.self, from: current.value, key: key)
        record.wireguardPublicKey = publicKey
        _ = try await client.put(key, StoreCoding.encode(record), lease: current.lease)
    }

    func run() async throws {
        var keys = initialKeys
        var lastRotation = loadLastRotation()
        let mode: WireGuardMode = await device.createKernelDevice() ? .kernel : .userspace
        logger.info("WireGuard encryption", metadata: [
            "mode": "\(mode.rawValue)", "device": "\(device.name)", "publicKey": "\(keys.publicKey)", "mtu": "\(device.mtu)",
        ])
        let (events, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingDiscardingTaskGroup { group in
            if mode == .userspace {
                let supervisor = ProcessSupervisor(try device.userspaceCommand(logPath: logPath),
                                                   restart: .always(initial: .milliseconds(200), maximum: .seconds(5)), stopGrace: .seconds(2),
                                                   logger: logger)
                group.addTask {
                    try await supervisor.run(onStart: { pid in
                        logger.info("wireguard-go started", metadata: ["pid": "\(pid)", "device": "\(device.name)"])
                        continuation.yield()
                    })
                }
                try await device.waitReady(timeout: .seconds(10), logPath: logPath)
            }
            group.addTask {
                // Peers follow the node records alone; anything else waits for the tick.
                await mirror.onChanges(under: [MeshKind.nodes.statePrefix(cluster: context.cluster.name), MeshKind.nodes.cacheRoot]) {
                    continuation.yield()
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: tick)
                    continuation.yield()
                }
            }
            var published: NodeEncryptionStatus?
            var publishedAt = ContinuousClock.now - publishInterval
            var lastError: String?
            // Marks a previous run left in the pinned map are taken as they are, then corrected.
            var marked = Set(encryptedNodes.entries().map { IPAddress(datapathValue: $0.key.ip4) })
            for await _ in events {
                guard await mirror.isSynced else { continue }
                await rotateIfAsked(&keys, lastRotation: &lastRotation)
                await rotateIfDue(&keys, lastRotation: &lastRotation)
                let wanted = Self.peers(
                    records: await mirror.snapshot(MeshKind.nodes.statePrefix(cluster: context.cluster.name))
                        .merging(await mirror.snapshot(MeshKind.nodes.cacheRoot), uniquingKeysWith: { a, _ in a }),
                    cluster: context.cluster.name, node: context.nodeName, ownKey: keys.publicKey)
                // A node that is no longer to be a peer loses its mark before its peer and routes
                // go, so strict mode drops its traffic from then on rather than letting it out
                // through the main table.
                marked = markEncrypted(marked.intersection(wanted.peers.map(\.endpoint)), current: marked)
                var routed = false
                var dump: WireGuardDump?
                do {
                    var current = try await device.dump()
                    if current.publicKey != keys.publicKey || current.listenPort != device.listenPort {
                        try await device.configure(privateKeyPath: keys.path)
                        current = try await device.dump()
                        logger.info("WireGuard device configured", metadata: ["device": "\(device.name)"])
                    }
                    if try attachDecryptionMark(device.name) {
                        logger.info("WireGuard device's ingress marks decrypted traffic", metadata: ["device": "\(device.name)"])
                    }
                    let changed = try await device.apply(peers: wanted.peers, current: current)
                    let routes = try await device.route(peers: wanted.peers.map(\.endpoint), nodeIP: context.nodeIP)
                    if changed > 0 || routes > 0 {
                        logger.info("WireGuard peers updated", metadata: [
                            "peers": "\(wanted.peers.count)", "changed": "\(changed)", "routes": "\(routes)",
                            "unencrypted": "\(wanted.unencrypted.joined(separator: ","))",
                        ])
                    }
                    if changed == 0 { dump = current }
                    routed = true
                    if lastError != nil { logger.info("WireGuard device in step again") }
                    lastError = nil
                } catch {
                    if lastError != "\(error)" {
                        logger.warning("WireGuard pass failed; will retry", metadata: ["error": "\(error)"])
                    }
                    lastError = "\(error)"
                }
                // After a change or a failure, what the device holds now.
                if dump == nil { dump = try? await device.dump() }
                marked = markEncrypted(Self.encryptedEndpoints(wanted: wanted.peers, device: dump, routed: routed, marked: marked),
                                       current: marked)
                var status = Self.status(dump: dump, wanted: wanted, mode: mode, device: device, keys: keys, context: context,
                                         strict: strict, lastError: lastError)
                status.lastKeyRotation = Int64(lastRotation.timeIntervalSince1970)
                if let schedule {
                    status.keyRotationIntervalSeconds = Int64(KeyRotationSchedule.seconds(schedule.interval))
                    status.nextKeyRotation = Int64(schedule.nextRotation(after: lastRotation).timeIntervalSince1970.rounded(.up))
                }
                var comparable = status
                comparable.updatedAt = published?.updatedAt ?? 0
                if comparable != published, ContinuousClock.now - publishedAt >= publishInterval || published == nil {
                    do {
                        try await client.put(KeyLayout.encryptionStatus(context.nodeName), StoreCoding.encode(status))
                        published = status
                        publishedAt = .now
                    } catch {
                        logger.warning("could not publish the node's encryption status", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Brings `mer_encrypt4` to `wanted` and returns what it holds afterwards (an entry that
    /// could not be written or removed stays as it was, and is tried again on the next pass).
    private func markEncrypted(_ wanted: Set<IPAddress>, current: Set<IPAddress>) -> Set<IPAddress> {
        var result = current
        for address in current.subtracting(wanted).sorted(by: { $0.description < $1.description }) {
            guard let value = address.datapathValue else { continue }
            do {
                try encryptedNodes.delete(mer_encrypt_key(ip4: value))
                result.remove(address)
            } catch {
                logger.warning("could not unmark a node in the encryption map", metadata: ["node": "\(address)", "error": "\(error)"])
            }
        }
        for address in wanted.subtracting(current).sorted(by: { $0.description < $1.description }) {
            guard let value = address.datapathValue else { continue }
            do {
                try encryptedNodes.update(mer_encrypt_key(ip4: value), mer_encrypt_value(flags: UInt32(MER_ENCRYPT_F_WIREGUARD)))
                result.insert(address)
            } catch {
                logger.warning("could not mark a node in the encryption map", metadata: ["node": "\(address)", "error": "\(error)"])
            }
        }
        return result
    }

    /// The nodes `from_pod` may encapsulate to in strict mode: wanted peers the device reports
    /// with their key and their underlay /32 among its allowed IPs. A mark is only added by a
    /// pass that also put the routes into the device in place (`routed`); a pass that failed
    /// keeps the marks it still finds true. When the device cannot be read at all (its
    /// `wireguard-go` restarting, or gone with the agent), the marks of wanted peers stay: the
    /// blackhole behind each peer's route keeps their traffic off the underlay meanwhile.
    static func encryptedEndpoints(wanted: [WireGuardPeer], device: WireGuardDump?, routed: Bool, marked: Set<IPAddress>) -> Set<IPAddress> {
        let wantedEndpoints = Set(wanted.map(\.endpoint))
        guard let device else { return marked.intersection(wantedEndpoints) }
        let held = Dictionary(device.peers.map { ($0.publicKey, Set($0.allowedIPs)) }, uniquingKeysWith: { a, b in a.union(b) })
        let configured = Set(wanted.filter { peer in held[peer.publicKey]?.isSuperset(of: peer.allowedIPs) ?? false }.map(\.endpoint))
        return routed ? configured : configured.intersection(marked)
    }

    /// The peers the device should have: one per node record other than this node's with a valid
    /// key and an IPv4 InternalIP; records without are listed as unencrypted. When records share
    /// a key or an address (a stale record beside its node's new one), the first by key name
    /// wins, so the device never gets two peers fighting over one allowed IP.
    static func peers(records: [String: Data], cluster: String, node: String, ownKey: String)
        -> (peers: [WireGuardPeer], unencrypted: [String])
    {
        var peers: [WireGuardPeer] = []
        var unencrypted: [String] = []
        var keys: Set<String> = [ownKey]
        var addresses: Set<IPAddress> = []
        for key in records.keys.sorted() {
            guard let record = try? StoreCoding.decode(NodeRecord.self, from: records[key]!, key: key) else { continue }
            if record.cluster == cluster && record.name == node { continue }
            guard let text = record.address(ofType: .internalIP), let address = IPAddress(text), address.family == .ipv4,
                  WireGuardPublicKey(record.wireguardPublicKey) != nil, !keys.contains(record.wireguardPublicKey),
                  !addresses.contains(address) else {
                unencrypted.append(record.keyName)
                continue
            }
            keys.insert(record.wireguardPublicKey)
            addresses.insert(address)
            peers.append(WireGuardPeer(node: record.keyName, publicKey: record.wireguardPublicKey, endpoint: address,
                                       allowedIPs: ["\(address)/32"]))
        }
        return (peers, unencrypted)
    }

    static func status(dump: WireGuardDump?, wanted: (peers: [WireGuardPeer], unencrypted: [String]), mode: WireGuardMode,
                       device: WireGuardDevice, keys: WireGuardKeyPair, context: NodeContext, strict: Bool,
                       lastError: String?) -> NodeEncryptionStatus {
        let names = Dictionary(wanted.peers.map { ($0.publicKey, $0.node) }, uniquingKeysWith: { a, _ in a })
        let peers = (dump?.peers ?? []).sorted { $0.publicKey < $1.publicKey }.map { peer in
            NodeEncryptionStatus.Peer(node: names[peer.publicKey] ?? "", publicKey: peer.publicKey, endpoint: peer.endpoint ?? "",
                                      allowedIPs: peer.allowedIPs, latestHandshake: peer.latestHandshake,
                                      receivedBytes: peer.receivedBytes, sentBytes: peer.sentBytes)
        }
        return NodeEncryptionStatus(node: context.nodeName, cluster: context.cluster.name, mode: mode.rawValue, interface: device.name,
                                    publicKey: keys.publicKey, listenPort: device.listenPort, mtu: device.mtu, peers: peers,
                                    unencryptedNodes: wanted.unencrypted, strict: strict, lastError: lastError,
                                    updatedAt: Int64(Date().timeIntervalSince1970))
    }
}
