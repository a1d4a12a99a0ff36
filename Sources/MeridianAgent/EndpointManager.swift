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
}

/// Owns the node's pod addresses and endpoints: hands out addresses from the node's pod CIDR,
/// programs the endpoints map and the veth's programs, allocates the pod's identity and
/// publishes its ipcache record (`cilium/state/ip/v1/default/<ip>`) for the rest of the
/// cluster and for peers. Its state is kept in a file so a restarted agent knows its pods.
actor EndpointManager {
    private let context: NodeContext
    private let client: EtcdClient
    private let datapath: NodeDatapath
    private let stateFile: String
    private let logger: Logger
    private var endpoints: [String: EndpointRecord] = [:]

    init(context: NodeContext, client: EtcdClient, datapath: NodeDatapath, stateDirectory: String, logger: Logger) {
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
                      datapath.endpoints.lookup(mer_endpoint_key(ip4: ip)) != nil
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
        throw AgentAPIError("pod CIDR \(context.podCIDR) of node \(context.nodeName) is exhausted (\(endpoints.count) addresses in use)")
    }

    private func create(_ spec: EndpointSpec) async throws -> UInt32 {
        guard var record = endpoints[spec.containerID], record.address == spec.interface.address else {
            throw AgentAPIError("container \(spec.containerID) has no address \(spec.interface.address) reserved on this node")
        }
        record.interface = spec.interface
        let labels = try await identityLabels(namespace: spec.namespace, pod: spec.pod)
        let allocator = IdentityAllocator(client: client, clusterID: context.cluster.id, layout: context.identityLayout)
        let identity = try await allocator.allocate(labels)
        // The actor may have served a DEL for this container while it waited on etcd.
        guard endpoints[spec.containerID]?.address == record.address else {
            throw AgentAPIError("container \(spec.containerID) was deleted while its endpoint was being created")
        }
        record.identity = identity
        try writeEndpointMap(record)
        try datapath.attachEndpoint(hostInterface: spec.interface.hostInterface)
        endpoints[spec.containerID] = record
        try save()
        let pair = IPIdentityPair(
            ip: record.address, hostIP: context.nodeIP.description, id: identity, key: 0, metadata: "",
            k8sNamespace: spec.namespace, k8sPodName: spec.pod)
        try await client.put(MeshKind.endpoints.stateKey(cluster: context.cluster.name, name: record.address), StoreCoding.encode(pair))
        logger.info("endpoint created", metadata: ["pod": "\(spec.namespace)/\(spec.pod)", "ip": "\(record.address)", "identity": "\(identity)"])
        return identity
    }

    func delete(containerID: String) async {
        guard let record = endpoints.removeValue(forKey: containerID) else { return }
        if let ip = IPAddress(record.address)?.datapathValue {
            _ = try? datapath.endpoints.delete(mer_endpoint_key(ip4: ip))
        }
        _ = try? await client.delete(MeshKind.endpoints.stateKey(cluster: context.cluster.name, name: record.address))
        try? save()
        logger.info("endpoint deleted", metadata: ["pod": "\(record.namespace)/\(record.pod)", "ip": "\(record.address)"])
    }

    private func writeEndpointMap(_ record: EndpointRecord) throws {
        guard let interface = record.interface, let identity = record.identity,
              let ip = IPAddress(record.address)?.datapathValue else { return }
        var info = mer_endpoint_info()
        info.ifindex = UInt32(try TrafficControl.interfaceIndex(interface.hostInterface))
        info.identity = identity
        info.endpoint_id = record.endpointID
        withUnsafeMutableBytes(of: &info.mac) { $0.copyBytes(from: interface.podMAC.prefix(6)) }
        withUnsafeMutableBytes(of: &info.node_mac) { $0.copyBytes(from: interface.hostMAC.prefix(6)) }
        try datapath.endpoints.update(mer_endpoint_key(ip4: ip), info)
    }

    private func identityLabels(namespace: String, pod: String) async throws -> LabelSet {
        let store = ResourceStore(client: client)
        guard case let .pod(object)? = try await store.get(.pod, namespace: namespace, name: pod) else {
            throw AgentAPIError("pod \(namespace)/\(pod) does not exist")
        }
        var namespaceLabels: [String: String] = [:]
        if case let .namespace(ns)? = try await store.get(.namespace, namespace: nil, name: namespace) {
            namespaceLabels = ns.metadata.labels
        }
        namespaceLabels[LabelKeys.namespaceMetadataName] = namespace
        return LabelSet.podIdentityLabels(podLabels: object.metadata.labels, namespace: namespace, namespaceLabels: namespaceLabels,
                                          serviceAccount: nil, cluster: context.cluster.name)
    }

    private func save() throws {
        let data = try JSONEncoder().encode(endpoints)
        try data.write(to: URL(fileURLWithPath: stateFile), options: .atomic)
    }
}
