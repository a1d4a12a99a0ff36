import CMeridianBPF
import Foundation
import Logging
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianFlows
import MeridianHost
import MeridianPKI
import MeridianStore

/// How an agent is started: which node it is, how it reaches its cluster's etcd, where it
/// keeps state and pins maps, and the underlay it encapsulates over.
public struct AgentConfiguration: Sendable {
    public var nodeName: String
    public var etcd: EtcdClientConfiguration
    public var stateDirectory: String
    public var pinDirectory: String
    public var underlayDevice: String
    public var netnsPrefix: String
    public var executable: String
    public var resyncInterval: Duration
    /// How long the node stays registered (and its pods reachable from other nodes and
    /// clusters) after its agent stopped renewing it: the TTL of the lease its record is under.
    /// Cilium's kvstore lease is 15 minutes.
    public var nodeGracePeriod: Duration
    /// The size of the pod CIDR a node carves from the cluster's (24: 253 pods per node).
    public var nodePodPrefixLength: Int = 24
    /// The cgroup v2 directory the node's pods run in (Cilium's `--cgroup-root`). With one,
    /// services are balanced at the socket for the pods; without, in the packet path only.
    public var cgroup: String?
    /// Where the node serves its flows to the cluster's relay (Hubble's server on each node);
    /// nil: the ring of datapath events is not read and no flows are kept.
    public var observer: ObserverSettings?
    /// Transparent encryption of the traffic between nodes (WireGuard); nil: none, and any
    /// routing a previous run with encryption left is removed.
    public var encryption: EncryptionSettings?

    public init(nodeName: String, etcd: EtcdClientConfiguration, stateDirectory: String, pinDirectory: String,
                underlayDevice: String, netnsPrefix: String, executable: String,
                resyncInterval: Duration = .seconds(30), nodeGracePeriod: Duration = Self.defaultNodeGracePeriod) {
        self.nodeName = nodeName
        self.etcd = etcd
        self.stateDirectory = stateDirectory
        self.pinDirectory = pinDirectory
        self.underlayDevice = underlayDevice
        self.netnsPrefix = netnsPrefix
        self.executable = executable
        self.resyncInterval = resyncInterval
        self.nodeGracePeriod = nodeGracePeriod
    }

    public static let defaultNodeGracePeriod: Duration = .seconds(15 * 60)

    public var socketPath: String { stateDirectory + "/agent.sock" }
    /// The lease the node record is under, kept so a restarted agent renews the same lease.
    public var nodeLeasePath: String { stateDirectory + "/node-lease" }
    /// The node's WireGuard private key (0600); it never leaves the node.
    public var wireGuardKeyPath: String { stateDirectory + "/wireguard.key" }
    /// Where `wireguard-go`'s output goes.
    public var wireGuardLogPath: String { stateDirectory + "/wireguard-go.log" }
}

/// How a node's flow observer listens and how many flows it keeps.
public struct ObserverSettings: Sendable {
    public var address: ObserverAddress
    public var tls: ObserverTLS
    public var capacity: Int

    public init(address: ObserverAddress, tls: ObserverTLS, capacity: Int = FlowBuffer.defaultCapacity) {
        self.address = address
        self.tls = tls
        self.capacity = capacity
    }

    /// The common names of the credentials that may read a node's flows: the cluster's relay.
    public static let admittedNames: Set<String> = [ObserverCredentials.relayName]
}

/// The node agent (`meridian agent`): runs inside its node's network namespace, owns the
/// node's eBPF datapath, registers the node, runs the node's pods, and keeps the maps in step
/// with the cluster's store. Traffic never passes through it: if it stops, programs and pinned
/// maps keep forwarding, and on return it picks up its pods, endpoints and maps.
public struct Agent: Sendable {
    public let configuration: AgentConfiguration
    public let logger: Logger

    public init(configuration: AgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
        try await EtcdClient.withClient(configuration.etcd) { client in
            // The key is made (or read) before the node registers, so its record carries it from the start.
            let keys = try configuration.encryption.map { _ throws(PKIError) in try WireGuardKeyPair.loadOrCreate(at: configuration.wireGuardKeyPath) }
            let context = try await prepareNode(client)
            let network = NodeNetwork(underlayDevice: configuration.underlayDevice, underlayMTU: context.underlayMTU,
                                      gateway: context.gateway, encryptionOverhead: context.tunnelOverhead - MeridianMTU.vxlanOverhead)
            try await network.setUp()
            if configuration.encryption == nil { await WireGuardDevice.removeRouting() }
            let datapath = try BPFNodeDatapath(pinDirectory: configuration.pinDirectory)
            var config = mer_config()
            config.vxlan_ifindex = UInt32(try TrafficControl.interfaceIndex(NodeNetwork.vxlanDevice))
            config.node_ip = context.nodeIP.datapathValue ?? 0
            config.gateway_ip = context.gateway.datapathValue ?? 0
            config.cluster_id = UInt16(context.cluster.id)
            config.identity_cluster_shift = UInt32(context.identityLayout.shift)
            // Without an observer nobody reads the ring: the programs report nothing.
            if configuration.observer == nil { config.flags |= UInt16(MER_CONFIG_F_NO_EVENTS) }
            if configuration.encryption?.strict == true { config.flags |= UInt16(MER_CONFIG_F_ENCRYPTION_STRICT) }
            // Without encryption no node is reached through a tunnel: marks a previous run left go.
            if configuration.encryption == nil {
                for entry in datapath.encryptedNodes.entries() { try datapath.encryptedNodes.delete(entry.key) }
            }
            try datapath.config.update(0, config)
            try datapath.attachOverlay(device: NodeNetwork.vxlanDevice)
            if let cgroup = configuration.cgroup { try datapath.attachSockets(cgroup: cgroup) }

            let endpoints = EndpointManager(context: context, client: client, datapath: datapath,
                                            stateDirectory: configuration.stateDirectory, logger: logger)
            await endpoints.restore()
            let mirror = PrefixMirror(prefixes: DatapathState.mirroredPrefixes(cluster: context.cluster.name))
            let encryption = try configuration.encryption.map { settings throws in
                NodeEncryption(device: try WireGuardDevice(name: settings.device, mtu: context.underlayMTU - MeridianWireGuard.overhead),
                               strict: settings.strict, encryptedNodes: datapath.encryptedNodes,
                               attachDecryptionMark: { device in try datapath.attachDecryptionMark(device: device) },
                               initialKeys: keys!, schedule: settings.rotationInterval.map(KeyRotationSchedule.init(interval:)), context: context,
                               mirror: mirror, client: client, logPath: configuration.wireGuardLogPath, logger: logger)
            }
            let names = ServiceNameTable()
            // Flows name their node as Hubble does across clusters: CLUSTER/NODE.
            let flowNodeName = "\(context.cluster.name)/\(context.nodeName)"
            let observer = configuration.observer.map { FlowObserver(buffer: FlowBuffer(nodeName: flowNodeName, capacity: $0.capacity)) }
            let runtime = PodRuntime(context: context, client: client, mirror: mirror, endpoints: endpoints,
                                     stateDirectory: configuration.stateDirectory, netnsPrefix: configuration.netnsPrefix,
                                     cgroup: configuration.cgroup, executable: configuration.executable, agentSocket: configuration.socketPath, logger: logger)
            // Endpoints whose pod record never made it to disk (the agent stopped mid-start) go.
            await endpoints.removeOrphans(keeping: await runtime.knownContainers)
            let api = AgentAPIServer(socketPath: configuration.socketPath, handler: { await endpoints.handle($0) }, logger: logger)
            let dns = ClusterDNSServer(address: context.gateway, port: 53, names: names, logger: logger)
            logger.info("agent ready", metadata: [
                "node": "\(context.nodeName)", "cluster": "\(context.cluster.name)", "podCIDR": "\(context.podCIDR)",
                "nodeIP": "\(context.nodeIP)", "mtu": "\(context.podMTU)",
                "socketLB": "\(configuration.cgroup ?? "off")", "encryption": "\(configuration.encryption.map { $0.strict ? "wireguard (strict)" : "wireguard" } ?? "off")",
            ])
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await mirror.run(store: client) }
                group.addTask {
                    // A (re)registration reads the key file again: a rotation may have replaced the key.
                    try await registerNode(client, context: context, wireGuardKey: {
                        configuration.encryption == nil ? "" : (try? WireGuardKeyPair.loadOrCreate(at: configuration.wireGuardKeyPath))?.publicKey ?? keys?.publicKey ?? ""
                    })
                }
                if let encryption { group.addTask { try await encryption.run() } }
                group.addTask { try await api.run() }
                group.addTask { await dns.run() }
                group.addTask { try await runtime.run() }
                group.addTask {
                    try await reconcileDatapath(datapath, mirror: mirror, endpoints: endpoints, names: names, observer: observer, context: context, client: client)
                }
                if let observer, let settings = configuration.observer {
                    let reader = try EventReader(mapFD: datapath.eventsFD)
                    let translator = FlowTranslator(nodeName: flowNodeName)
                    group.addTask {
                        try await observer.run(reader: reader, lostEvents: { datapath.counter(UInt32(MER_METRIC_EVENTS_LOST)).packets },
                                               translator: translator)
                    }
                    let server = ObserverServer(address: settings.address, tls: settings.tls, admittedNames: ObserverSettings.admittedNames,
                                                source: observer.buffer, logger: logger)
                    group.addTask {
                        try await server.run { address in logger.info("serving flows", metadata: ["address": "\(address)"]) }
                    }
                }
            }
        }
    }

    // MARK: Node

    /// Reads the cluster settings, the node's underlay address and MTU, and carves (or finds)
    /// the node's pod CIDR: the first /24 of the cluster's pod CIDR no other node holds.
    private func prepareNode(_ client: any KeyValueStore) async throws -> NodeContext {
        let cluster = try await ClusterSettings.load(from: client)
        let (nodeIP, mtu) = try await Self.underlay(configuration.underlayDevice)
        let podCIDR = try await carvePodCIDR(client, cluster: cluster)
        var gatewayBytes = podCIDR.address.bytes
        gatewayBytes[3] |= 1
        let overhead = MeridianMTU.vxlanOverhead + (configuration.encryption == nil ? 0 : MeridianWireGuard.overhead)
        return NodeContext(nodeName: configuration.nodeName, cluster: cluster, nodeIP: nodeIP, podCIDR: podCIDR,
                           gateway: IPAddress(bytes: gatewayBytes)!, podMTU: mtu - overhead, clusterDomain: "cluster.local",
                           tunnelOverhead: overhead)
    }

    private func carvePodCIDR(_ client: any KeyValueStore, cluster: ClusterSettings) async throws -> IPCIDR {
        let size = configuration.nodePodPrefixLength
        guard let clusterCIDR = IPCIDR(cluster.podCIDR), clusterCIDR.family == .ipv4, clusterCIDR.prefixLength < size, (16...29).contains(size) else {
            throw AgentError.podCIDRUnusable(clusterCIDR: cluster.podCIDR, nodePrefixLength: size)
        }
        let owned = try await client.list(prefix: KeyLayout.podCIDRPrefix)
        if let mine = owned.items.first(where: { $0.stringValue == configuration.nodeName }) {
            let text = String(mine.key.dropFirst(KeyLayout.podCIDRPrefix.count)).replacingOccurrences(of: "_", with: "/")
            if let cidr = IPCIDR(text) { return cidr }
        }
        let count = 1 << (size - clusterCIDR.prefixLength)
        let base = clusterCIDR.address.bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        // Index 0 is skipped so node pod CIDRs read 10.C.N.0/24; a node named with a number N
        // asks for index N first, so a lab's layout is predictable.
        let preferred = Int(String(configuration.nodeName.reversed().prefix { $0.isNumber }.reversed())).flatMap { (1..<count).contains($0) ? $0 : nil }
        for index in ([preferred].compactMap { $0 } + Array(1..<count)) {
            let value = base | (UInt32(index) << UInt32(32 - size))
            let bytes = [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
            let candidate = try IPCIDR(address: IPAddress(bytes: bytes)!, prefixLength: size)
            if try await client.create(KeyLayout.podCIDR(candidate.description), Data(configuration.nodeName.utf8)) {
                return candidate
            }
        }
        throw AgentError.podCIDRsExhausted(clusterCIDR: cluster.podCIDR, nodePrefixLength: size, node: configuration.nodeName)
    }

    static func underlay(_ device: String) async throws -> (IPAddress, Int) {
        let output = try await HostCommand.run(["ip", "-o", "-4", "addr", "show", "dev", device])
        guard let range = output.range(of: "inet "), let address = IPAddress(String(output[range.upperBound...].prefix { $0 != "/" })) else {
            throw AgentError.underlayWithoutAddress(device: device)
        }
        let link = try await HostCommand.run(["ip", "-o", "link", "show", "dev", device])
        guard let mtuRange = link.range(of: " mtu "), let mtu = Int(link[mtuRange.upperBound...].prefix { $0.isNumber }) else {
            throw AgentError.underlayMTUUnreadable(device: device)
        }
        return (address, mtu)
    }

    /// Publishes the node record under a lease of `nodeGracePeriod` the agent keeps alive. The
    /// lease is remembered in the state directory: a restarted agent renews the lease its record
    /// is already under, so the node never leaves its peers while the agent is down for less
    /// than the grace period. When the lease is gone (the grace period ran out, or the node was
    /// deleted) a new one is granted and the node registers again.
    private func registerNode(_ client: any KeyValueStore, context: NodeContext, wireGuardKey: @Sendable () -> String) async throws {
        let key = MeshKind.nodes.stateKey(cluster: context.cluster.name, name: context.nodeName)
        let grace = configuration.nodeGracePeriod
        let lease = NodeLeaseFile(path: configuration.nodeLeasePath)
        while true {
            let record = NodeRecord(
                name: context.nodeName, cluster: context.cluster.name,
                ipAddresses: [NodeAddress(type: .internalIP, ip: context.nodeIP.description)],
                ipv4AllocCIDR: context.podCIDR, clusterID: context.cluster.id, wireguardPublicKey: wireGuardKey(), mtu: context.underlayMTU)
            let value = StoreCoding.encode(record)
            do {
                let kept: Bool
                if let saved = lease.id, try await Self.put(key, value, lease: saved, client: client) {
                    kept = true
                } else {
                    let granted = try await client.grantLease(ttl: grace)
                    try await client.put(key, value, lease: granted)
                    lease.id = granted
                    kept = false
                }
                logger.info("node registered", metadata: [
                    "key": "\(key)", "lease": "\(String(lease.id ?? 0, radix: 16))", "lease-kept": "\(kept)", "grace-period": "\(grace)",
                ])
                try await client.keepAlive(lease: lease.id ?? 0, interval: min(grace / 3, .seconds(30)))
            } catch {
                if Task.isCancelled { return }
                if (error as? EtcdError)?.code == .leaseExpired { lease.id = nil }
                logger.warning("node registration lost; registering again", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Writes `value` under an existing lease; false if that lease is gone.
    private static func put(_ key: String, _ value: Data, lease: Int64, client: any KeyValueStore) async throws -> Bool {
        do {
            try await client.put(key, value, lease: lease)
            return true
        } catch where error.code == .leaseExpired {
            return false
        }
    }

    // MARK: Datapath

    /// Keeps the node's maps in step with the records they derive from, doing work in proportion
    /// to what changed: each pass takes the mirror's changes into a `DatapathState`, writes the
    /// ipcache prefixes that moved, recomputes policy only when its inputs moved and services only
    /// when theirs did. Every `resyncInterval` (and after a failed write) it re-reads the maps and
    /// applies the whole state, repairing drift. Each pass first follows label changes, then the
    /// shared maps (which carry the CIDR identities policy needs), then every endpoint's policy,
    /// then publishes what is in force.
    private func reconcileDatapath(_ datapath: any NodeDatapath, mirror: PrefixMirror, endpoints: EndpointManager, names: ServiceNameTable,
                                   observer: FlowObserver?, context: NodeContext, client: any KeyValueStore) async throws {
        var synchronizer = MapSynchronizer(maps: datapath.maps)
        var state = DatapathState(context: context, namesPods: observer != nil)
        let tracker = await mirror.trackChanges()
        var cidrIdentities = CIDRIdentityTable()
        // A restarted agent keeps the numbers the pinned map holds, which endpoints' entries name.
        var ipBlocks = IPBlockTable(existing: MapSynchronizer.readIPBlocks(datapath.maps))
        var policy: PolicySnapshot?
        var cidrEntries: [IPCIDR: IPCacheEntry] = [:]
        var endpointStatuses: [EndpointPolicyStatus] = []
        var published: NodePolicyStatus?
        var conflicts: [IPCIDR: AddressConflict] = [:]
        var reported: [AddressConflictReport] = []
        var lastResync = ContinuousClock.now
        var fullApplyNeeded = true
        try await withThrowingDiscardingTaskGroup { group in
            let (events, continuation) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(1))
            group.addTask {
                for await _ in await mirror.subscribe() { continuation.yield(false) }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: configuration.resyncInterval)
                    continuation.yield(true)
                }
            }
            for await fullResync in events {
                guard await mirror.isSynced else { continue }
                let passStarted = ContinuousClock.now
                let resyncing = fullResync || ContinuousClock.now - lastResync > configuration.resyncInterval || fullApplyNeeded
                if resyncing {
                    synchronizer.resync()
                    lastResync = .now
                }
                for prefix in DatapathState.mirroredPrefixes(cluster: context.cluster.name) {
                    state.apply(await mirror.takeChanges(tracker, prefix: prefix), of: prefix)
                }
                let revision = await mirror.revision(of: KeyLayout.resourcesPrefix)
                let changes = state.refresh()
                if resyncing {
                    await endpoints.republish(missingFrom: state.records[.localEndpoints] ?? [:], identities: state.records[.localIdentities] ?? [:])
                }
                if resyncing || changes.podsOrNamespaces {
                    await endpoints.refreshIdentities(pods: state.records[.pods] ?? [:], namespaces: state.records[.namespaces] ?? [:])
                }
                if state.claims.conflicts != conflicts {
                    for (prefix, conflict) in state.claims.conflicts where conflicts[prefix] != conflict {
                        logger.warning("records claim the same address; one holds it, the others are not programmed", metadata: [
                            "prefix": "\(prefix)", "holder": "\(conflict.winner.debugDescription)",
                            "refused": "\(conflict.losers.sorted().map(\.debugDescription).joined(separator: ", "))",
                        ])
                    }
                    conflicts = state.claims.conflicts
                    reported = conflicts.sorted { $0.key.description < $1.key.description }.prefix(AddressConflictReport.kept)
                        .map { AddressConflictReport(prefix: $0.key.description, holder: $0.value.winner, refused: $0.value.losers.sorted()) }
                }
                let policyChanged = resyncing || policy == nil || changes.policyInputs
                if policyChanged {
                    let computed = PolicySnapshot.compute(
                        PolicySnapshot.Inputs(
                            policies: state.records[.policies] ?? [:],
                            localIdentities: state.records[.localIdentities] ?? [:],
                            remoteIdentities: state.records[.remoteIdentities] ?? [:],
                            namedPorts: state.namedPorts, revision: revision),
                        cluster: context.cluster, cidrIdentities: cidrIdentities, ipBlocks: ipBlocks)
                    cidrIdentities = computed.cidrIdentities
                    ipBlocks = computed.ipBlocks
                    policy = computed
                } else {
                    policy?.revision = revision
                }
                guard let policy else { continue }
                // The CIDR identities' entries depend on the prefixes that moved and on the
                // identities: only those are looked at again.
                let newCIDREntries = state.cidrEntries(policy.cidrIdentities.identities)
                if changes.services {
                    var serviceNames = state.clusterSetNames
                    serviceNames.clusterIPs = state.serviceIPs
                    names.replace(serviceNames)
                }
                // CIDR identities reach the ipcache before entries naming them reach the policy map.
                var programmed = true
                do {
                    let writes: Int
                    if resyncing {
                        var desired = state.desired
                        // Merged only when there is something to merge: it copies the whole ipcache.
                        if !newCIDREntries.isEmpty {
                            desired.ipcache.merge(newCIDREntries, uniquingKeysWith: { cluster, _ in cluster })
                        }
                        desired.ipBlocks = policy.ipBlocks.numbers
                        writes = try synchronizer.apply(desired)
                    } else {
                        var ipcache: [IPCIDR: IPCacheEntry?] = [:]
                        for prefix in changes.ipcache.union(cidrEntries.keys).union(newCIDREntries.keys)
                        where changes.ipcache.contains(prefix) || cidrEntries[prefix] != newCIDREntries[prefix] {
                            ipcache[prefix] = .some(state.claims.entries[prefix] ?? newCIDREntries[prefix])
                        }
                        writes = try synchronizer.apply(ipcache: ipcache, ipBlocks: policy.ipBlocks.numbers,
                                                        services: changes.services
                                                            ? MapSynchronizer.ServiceChanges(frontends: state.services, states: state.backendStates,
                                                                                             changed: changes.frontends, changedStates: changes.backendStates)
                                                            : nil)
                    }
                    fullApplyNeeded = false
                    if writes > 0 {
                        logger.debug("datapath updated", metadata: [
                            "writes": "\(writes)", "services": "\(state.services.count)", "ipcache": "\(synchronizer.ipcache.count)",
                            "full": "\(resyncing)", "ms": "\(Int((ContinuousClock.now - passStarted).inMilliseconds))",
                        ])
                    }
                } catch {
                    logger.error("datapath update failed; will retry at the next change or resync", metadata: ["error": "\(error)"])
                    programmed = false
                    fullApplyNeeded = true
                }
                cidrEntries = newCIDREntries
                if let observer {
                    observer.update(FlowNames.build(
                        pods: state.podNames, identities: policy.resolver.identities,
                        reverseNAT: synchronizer.reverseNAT.mapValues { ($0.address, $0.port) }, serviceIPs: state.serviceIPs,
                        rules: policy.resolver.rules, namedPorts: policy.resolver.namedPorts))
                }
                if policyChanged || changes.localEndpoints || changes.podsOrNamespaces {
                    endpointStatuses = await endpoints.applyPolicy(policy)
                }
                // A failed update keeps the revision last programmed: `apply --wait` must not take this one as done.
                let status = NodePolicyStatus(node: context.nodeName, cluster: context.cluster.name,
                                              revision: programmed ? revision : published?.revision ?? 0,
                                              endpoints: endpointStatuses, addressConflicts: reported.isEmpty ? nil : reported,
                                              observer: configuration.observer?.address.description)
                if status != published {
                    do {
                        try await client.put(KeyLayout.nodeStatus(context.nodeName), StoreCoding.encode(status))
                        published = status
                    } catch {
                        logger.warning("could not publish the node's policy status", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }
}
