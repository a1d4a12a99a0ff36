import CMeridianBPF
import Foundation
import Logging
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianStore

/// One pod's endpoint as the agent keeps it: its address, interface and identity.
struct EndpointRecord: Codable, Sendable, Hashable {
    var containerID: String
    var namespace: String
    var pod: String
    var address: String
    var interface: PodInterfaceDescription?
    var identity: UInt32?
    var endpointID: UInt16
    /// The identity's labels (Cilium's label string), to notice when the pod's or its
    /// namespace's labels change.
    var labels: String?
    var namedPorts: [NamedPort]?
}

/// Owns the node's pod addresses and endpoints: hands out addresses from the node's pod CIDR,
/// programs the endpoints map and the veth's programs, allocates the pod's identity and
/// publishes its ipcache record (`cilium/state/ip/v1/default/<ip>`) for the rest of the
/// cluster and for peers. It follows label changes with a new identity, and programs each
/// endpoint's policy map entries and enforcement flags, before a new endpoint's first packet.
/// Its state is kept in a file so a restarted agent knows its pods.
actor EndpointManager {
    private let context: NodeContext
    private let client: any KeyValueStore
    private let datapath: any NodeDatapath
    private let stateFile: String
    private let logger: Logger
    private var endpoints: [String: EndpointRecord] = [:]
    private var policy: PolicySnapshot?
    /// What the policy map holds per endpoint ID.
    private var programmed: [UInt16: EndpointPolicyProgram] = [:]

    init(context: NodeContext, client: any KeyValueStore, datapath: any NodeDatapath, stateDirectory: String, logger: Logger) {
        self.context = context
        self.client = client
        self.datapath = datapath
        self.stateFile = stateDirectory + "/endpoints.json"
        self.logger = logger
        if let data = FileManager.default.contents(atPath: stateFile),
           let saved = try? JSONDecoder().decode([String: EndpointRecord].self, from: data) {
            endpoints = saved
        }
    }

    var all: [EndpointRecord] { Array(endpoints.values) }

    /// Deletes endpoints whose container the pod runtime does not know (left by an agent that
    /// stopped between a CNI ADD and recording the pod).
    func removeOrphans(keeping containers: Set<String>) async {
        for containerID in endpoints.keys where !containers.contains(containerID) {
            logger.info("removing an endpoint no pod owns", metadata: ["container": "\(containerID)"])
            await delete(containerID: containerID)
        }
    }

    /// Re-attaches programs to every known endpoint's veth (after an agent restart the maps are
    /// still pinned; the programs are new objects and replace the old ones in place).
    func restore() async {
        for (key, value) in datapath.maps.policy.entries() {
            programmed[UInt16(bigEndian: key.endpoint_id), default: EndpointPolicyProgram()].entries[PolicyMapKey(key)] = value.deny != 0
        }
        for (_, value) in datapath.maps.endpoints.entries() {
            programmed[value.endpoint_id, default: EndpointPolicyProgram()].flags = value.flags
        }
        for record in endpoints.values {
            guard let interface = record.interface else { continue }
            do {
                try datapath.attachEndpoint(hostInterface: interface.hostInterface)
                try writeEndpointMap(record)
            } catch {
                logger.warning("could not restore endpoint; dropping it", metadata: ["pod": "\(record.namespace)/\(record.pod)", "error": "\(error)"])
                await delete(containerID: record.containerID)
            }
        }
    }

    func handle(_ request: AgentRequest) async -> AgentResponse {
        do {
            switch request {
            case let .allocateAddress(containerID, namespace, pod):
                let address = try allocate(containerID: containerID, namespace: namespace, pod: pod)
                return AgentResponse(address: address.description, gateway: context.gateway.description, mtu: context.podMTU,
                                     dnsServer: context.gateway.description, dnsSearch: context.dnsSearch(namespace: namespace))
            case let .createEndpoint(spec):
                let identity = try await create(spec)
                return AgentResponse(address: spec.interface.address, gateway: context.gateway.description, mtu: context.podMTU, identity: identity)
            case let .deleteEndpoint(containerID):
                await delete(containerID: containerID)
                return AgentResponse()
            case let .checkEndpoint(containerID):
                guard let record = endpoints[containerID], let identity = record.identity,
                      let ip = IPAddress(record.address)?.datapathValue,
                      datapath.maps.endpoints.lookup(mer_endpoint_key(ip4: ip)) != nil
                else { return AgentResponse(error: "endpoint of container \(containerID) is not programmed") }
                return AgentResponse(address: record.address, identity: identity)
            }
        } catch {
            return AgentResponse(error: "\(error)")
        }
    }

    /// The identity of a pod's endpoint, if it has one.
    func endpoint(namespace: String, pod: String) -> EndpointRecord? {
        endpoints.values.first { $0.namespace == namespace && $0.pod == pod && $0.identity != nil }
    }

    private func allocate(containerID: String, namespace: String, pod: String) throws -> IPAddress {
        if let existing = endpoints[containerID], let address = IPAddress(existing.address) { return address }
        let used = Set(endpoints.values.map(\.address))
        let base = context.podCIDR.address.bytes
        let hostBits = 32 - context.podCIDR.prefixLength
        let size = hostBits >= 31 ? 0 : (1 << hostBits)
        // .0 is the network, .1 the gateway, the last the broadcast address.
        for offset in stride(from: 2, to: size - 1, by: 1) {
            var bytes = base
            var carry = offset
            for index in (0..<4).reversed() where carry > 0 {
                let sum = Int(bytes[index]) + carry
                bytes[index] = UInt8(sum & 0xFF)
                carry = sum >> 8
            }
            let candidate = IPAddress(bytes: bytes)!
            if !used.contains(candidate.description) {
                let ids = Set(endpoints.values.map(\.endpointID))
                let endpointID = (UInt16(1)...UInt16.max).first { !ids.contains($0) } ?? 0
                endpoints[containerID] = EndpointRecord(containerID: containerID, namespace: namespace, pod: pod,
                                                        address: candidate.description, endpointID: endpointID)
                try save()
                return candidate
            }
        }
        throw AgentError.podAddressesExhausted(podCIDR: context.podCIDR.description, node: context.nodeName, inUse: endpoints.count)
    }

    private func create(_ spec: EndpointSpec) async throws -> UInt32 {
        guard var record = endpoints[spec.containerID], record.address == spec.interface.address else {
            throw AgentError.addressNotReserved(container: spec.containerID, address: spec.interface.address)
        }
        record.interface = spec.interface
        let (labels, namedPorts) = try await identityLabels(namespace: spec.namespace, pod: spec.pod)
        let allocator = IdentityAllocator(client: client, clusterID: context.cluster.id, layout: context.identityLayout)
        let identity = try await allocator.allocate(labels)
        // The actor may have served a DEL for this container while it waited on etcd.
        guard endpoints[spec.containerID]?.address == record.address else {
            throw AgentError.endpointDeletedWhileCreated(container: spec.containerID)
        }
        record.identity = identity
        record.labels = labels.ciliumString
        record.namedPorts = namedPorts
        // Policy first: the endpoint's first packet already meets its entries and flags.
        try programPolicy(record, labels: labels)
        try writeEndpointMap(record)
        try datapath.attachEndpoint(hostInterface: spec.interface.hostInterface)
        endpoints[spec.containerID] = record
        try save()
        try await publish(record)
        logger.info("endpoint created", metadata: ["pod": "\(spec.namespace)/\(spec.pod)", "ip": "\(record.address)", "identity": "\(identity)"])
        return identity
    }

    /// Publishes again the records of this node's endpoints that the store lacks or holds with
    /// another identity or node (a publish that failed, a record deleted by hand). Peers and the
    /// identity collector go by these records, so they must not stay missing until the pod changes.
    /// An identity record of theirs that went missing meanwhile is written back (with its label
    /// index, where free); one whose number now holds other labels makes the endpoint allocate
    /// afresh on the next label check.
    func republish(missingFrom published: [String: Data], identities: [String: Data]) async {
        for (containerID, record) in endpoints {
            guard let identity = record.identity else { continue }
            if let labels = record.labels {
                let idKey = MeshKind.identities.stateKey(cluster: "", name: "\(identity)")
                switch identities[idKey].map({ String(decoding: $0, as: UTF8.self) }) {
                case nil:
                    do {
                        if try await client.create(idKey, Data(labels.utf8)) {
                            _ = try await client.create(KeyLayout.identityIndex(labels), Data("\(identity)".utf8))
                            logger.info("identity record restored", metadata: ["identity": "\(identity)", "labels": "\(labels)"])
                        }
                    } catch {
                        logger.warning("could not restore an identity record; will retry", metadata: ["identity": "\(identity)", "error": "\(error)"])
                    }
                case labels?:
                    break
                case _?:
                    endpoints[containerID]?.labels = nil
                    continue
                }
            }
            let key = MeshKind.endpoints.stateKey(cluster: context.cluster.name, name: record.address)
            if let data = published[key], let pair = try? StoreCoding.decode(IPIdentityPair.self, from: data, key: key),
               pair.id == identity, pair.hostIP == context.nodeIP.description { continue }
            do {
                try await publish(record)
                logger.info("endpoint record published again", metadata: ["pod": "\(record.namespace)/\(record.pod)", "ip": "\(record.address)"])
            } catch {
                logger.warning("could not publish an endpoint record; will retry", metadata: ["ip": "\(record.address)", "error": "\(error)"])
            }
        }
    }

    private func publish(_ record: EndpointRecord) async throws {
        guard let identity = record.identity else { return }
        let pair = IPIdentityPair(
            ip: record.address, hostIP: context.nodeIP.description, id: identity, key: 0, metadata: "",
            k8sNamespace: record.namespace, k8sPodName: record.pod, namedPorts: record.namedPorts?.isEmpty == false ? record.namedPorts : nil)
        try await client.put(MeshKind.endpoints.stateKey(cluster: context.cluster.name, name: record.address), StoreCoding.encode(pair))
    }

    // MARK: Labels and policy

    /// Gives endpoints whose pod or namespace labels changed the identity of their new labels:
    /// the endpoint map, the policy entries and the published ipcache record follow, without
    /// restarting the pod. `pods` and `namespaces` are the mirrored resource records.
    func refreshIdentities(pods: [String: Data], namespaces: [String: Data]) async {
        for (containerID, record) in endpoints {
            guard let current = record.identity,
                  let podData = pods[KeyLayout.resource(plural: ResourceKind.pod.plural, namespace: record.namespace, name: record.pod)],
                  case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: podData, key: record.pod) else { continue }
            var namespaceLabels: [String: String] = [:]
            if let data = namespaces[KeyLayout.resource(plural: ResourceKind.namespace.plural, namespace: nil, name: record.namespace)],
               case let .namespace(ns)? = try? StoreCoding.decode(KubernetesObject.self, from: data, key: record.namespace) {
                namespaceLabels = ns.metadata.labels
            }
            let labels = podLabels(pod, namespace: record.namespace, namespaceLabels: namespaceLabels)
            guard labels.ciliumString != record.labels else { continue }
            do {
                let identity = try await IdentityAllocator(client: client, clusterID: context.cluster.id, layout: context.identityLayout).allocate(labels)
                guard var updated = endpoints[containerID], updated.address == record.address else { continue }
                updated.identity = identity
                updated.labels = labels.ciliumString
                try programPolicy(updated, labels: labels)
                try writeEndpointMap(updated)
                endpoints[containerID] = updated
                try save()
                try await publish(updated)
                if identity != current {
                    logger.info("labels changed; endpoint has a new identity", metadata: [
                        "pod": "\(record.namespace)/\(record.pod)", "from": "\(current)", "to": "\(identity)"])
                }
            } catch {
                logger.warning("could not follow a label change; will retry", metadata: ["pod": "\(record.namespace)/\(record.pod)", "error": "\(error)"])
            }
        }
    }

    /// Programs every endpoint for a new policy snapshot; returns what is in force per endpoint.
    func applyPolicy(_ snapshot: PolicySnapshot) -> [EndpointPolicyStatus] {
        policy = snapshot
        var status: [EndpointPolicyStatus] = []
        for record in endpoints.values.sorted(by: { $0.endpointID < $1.endpointID }) {
            guard let identity = record.identity else { continue }
            do {
                let before = datapath.maps.endpoints.lookup(mer_endpoint_key(ip4: IPAddress(record.address)?.datapathValue ?? 0))?.flags
                try programPolicy(record, labels: record.labels.flatMap { try? LabelSet(ciliumString: $0) })
                if programmed[record.endpointID]?.flags != before { try writeEndpointMap(record) }
            } catch {
                logger.error("could not program the endpoint's policy", metadata: ["pod": "\(record.namespace)/\(record.pod)", "error": "\(error)"])
            }
            let program = programmed[record.endpointID] ?? EndpointPolicyProgram()
            status.append(EndpointPolicyStatus(
                namespace: record.namespace, pod: record.pod, identity: identity, endpointID: record.endpointID,
                ingressEnforced: program.flags & UInt16(MER_ENDPOINT_F_INGRESS_ENFORCED) != 0,
                egressEnforced: program.flags & UInt16(MER_ENDPOINT_F_EGRESS_ENFORCED) != 0,
                ingressEntries: program.count(direction: UInt8(MER_POLICY_INGRESS)),
                egressEntries: program.count(direction: UInt8(MER_POLICY_EGRESS))))
        }
        return status
    }

    /// Brings the endpoint's policy entries to what the snapshot says without a moment of wrong
    /// drops: new and changed entries first; then, if a direction stops being enforced, its flag
    /// is cleared in the endpoint map before its entries go; stale entries last. A direction that
    /// becomes enforced gets its flag from the caller's `writeEndpointMap`, after its entries.
    /// Without a snapshot yet, nothing changes.
    private func programPolicy(_ record: EndpointRecord, labels: LabelSet?) throws {
        guard let policy, let identity = record.identity else { return }
        let wanted = policy.program(identity: identity, labels: labels, namedPorts: record.namedPorts ?? [])
        let current = programmed[record.endpointID] ?? EndpointPolicyProgram()
        for (key, deny) in wanted.entries where current.entries[key] != deny {
            var value = mer_policy_entry()
            value.deny = deny ? 1 : 0
            try datapath.maps.policy.update(key.datapathKey(endpointID: record.endpointID), value)
            programmed[record.endpointID, default: EndpointPolicyProgram()].entries[key] = deny
        }
        let kept = current.flags & wanted.flags
        if kept != current.flags {
            programmed[record.endpointID, default: EndpointPolicyProgram()].flags = kept
            try writeEndpointMap(record)
        }
        for key in current.entries.keys where wanted.entries[key] == nil {
            _ = try datapath.maps.policy.delete(key.datapathKey(endpointID: record.endpointID))
            programmed[record.endpointID]?.entries[key] = nil
        }
        programmed[record.endpointID, default: EndpointPolicyProgram()].flags = wanted.flags
    }

    private func forgetPolicy(endpointID: UInt16) {
        for key in (programmed.removeValue(forKey: endpointID)?.entries.keys).map(Array.init) ?? [] {
            _ = try? datapath.maps.policy.delete(key.datapathKey(endpointID: endpointID))
        }
    }

    func delete(containerID: String) async {
        guard let record = endpoints.removeValue(forKey: containerID) else { return }
        if let ip = IPAddress(record.address)?.datapathValue {
            _ = try? datapath.maps.endpoints.delete(mer_endpoint_key(ip4: ip))
        }
        forgetPolicy(endpointID: record.endpointID)
        _ = try? await client.delete(MeshKind.endpoints.stateKey(cluster: context.cluster.name, name: record.address))
        try? save()
        logger.info("endpoint deleted", metadata: ["pod": "\(record.namespace)/\(record.pod)", "ip": "\(record.address)"])
    }

    private func writeEndpointMap(_ record: EndpointRecord) throws {
        guard let interface = record.interface, let identity = record.identity,
              let ip = IPAddress(record.address)?.datapathValue else { return }
        var info = mer_endpoint_info()
        info.ifindex = UInt32(try datapath.interfaceIndex(interface.hostInterface))
        info.identity = identity
        info.endpoint_id = record.endpointID
        info.flags = programmed[record.endpointID]?.flags ?? 0
        withUnsafeMutableBytes(of: &info.mac) { $0.copyBytes(from: interface.podMAC.prefix(6)) }
        withUnsafeMutableBytes(of: &info.node_mac) { $0.copyBytes(from: interface.hostMAC.prefix(6)) }
        try datapath.maps.endpoints.update(mer_endpoint_key(ip4: ip), info)
    }

    /// The pod's identity labels and named ports, read from the store.
    private func identityLabels(namespace: String, pod: String) async throws -> (LabelSet, [NamedPort]) {
        let store = ResourceStore(client: client)
        guard case let .pod(object)? = try await store.get(.pod, namespace: namespace, name: pod) else {
            throw AgentError.podNotFound(namespace: namespace, pod: pod)
        }
        var namespaceLabels: [String: String] = [:]
        if case let .namespace(ns)? = try await store.get(.namespace, namespace: nil, name: namespace) {
            namespaceLabels = ns.metadata.labels
        }
        let namedPorts = object.spec.containers.flatMap(\.ports).compactMap { port -> NamedPort? in
            guard let name = port.name, let number = UInt16(exactly: port.containerPort),
                  let l4 = L4Protocol(rawValue: port.protocol.rawValue) else { return nil }
            return NamedPort(name: name, port: number, protocol: l4)
        }
        return (podLabels(object, namespace: namespace, namespaceLabels: namespaceLabels), namedPorts)
    }

    private func podLabels(_ pod: Pod, namespace: String, namespaceLabels: [String: String]) -> LabelSet {
        var namespaceLabels = namespaceLabels
        namespaceLabels[LabelKeys.namespaceMetadataName] = namespace
        return LabelSet.podIdentityLabels(podLabels: pod.metadata.labels, namespace: namespace, namespaceLabels: namespaceLabels,
                                          serviceAccount: nil, cluster: context.cluster.name)
    }

    private func save() throws {
        let data = try JSONEncoder().encode(endpoints)
        try data.write(to: URL(fileURLWithPath: stateFile), options: .atomic)
    }
}
