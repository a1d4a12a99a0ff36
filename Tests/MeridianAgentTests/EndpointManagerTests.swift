import CMeridianBPF
import Foundation
import Logging
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianAgent

/// The agent's endpoints on an in-memory store and datapath: addresses, identities, the
/// published ipcache records, the endpoint map and policy, in the order the datapath needs.
@Suite("Endpoint manager")
struct EndpointManagerTests {
    static let cluster = ClusterSettings(name: "cluster1", id: 1, podCIDR: "10.1.0.0/16", serviceCIDR: "10.101.0.0/16",
                                         maxConnectedClusters: 255, clientEndpoints: [], serverName: "etcd.cluster1")
    static let context = NodeContext(nodeName: "node1", cluster: cluster, nodeIP: IPAddress("172.30.1.1")!,
                                     podCIDR: IPCIDR("10.1.1.0/24")!, gateway: IPAddress("10.1.1.1")!, podMTU: 1450,
                                     clusterDomain: "cluster.local")

    struct Node {
        let store = InMemoryKeyValueStore(name: "cluster1")
        let datapath = InMemoryNodeDatapath()
        let directory: String
        let manager: EndpointManager

        init() throws {
            directory = NSTemporaryDirectory() + "meridian-endpoints-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            manager = EndpointManager(context: EndpointManagerTests.context, client: store, datapath: datapath,
                                      stateDirectory: directory, logger: Logger(label: "test.endpoints"))
        }

        func pod(_ name: String, labels: [String: String]) async throws {
            try await store.put(KeyLayout.clusterSettings, StoreCoding.encode(EndpointManagerTests.cluster))
            let manifest = """
                apiVersion: v1
                kind: Namespace
                metadata: {name: default}
                ---
                apiVersion: v1
                kind: Pod
                metadata:
                  name: \(name)
                  labels: {\(labels.map { "\($0.key): \($0.value)" }.joined(separator: ", "))}
                spec:
                  containers: [{name: main, command: [sleep, infinity]}]
                """
            _ = try await ResourceStore(client: store).apply(try ManifestDecoder.decode(manifest, source: "test"), source: "test")
        }

        /// What the CNI plugin asks for a pod: an address, then its endpoint.
        func start(_ pod: String, container: String) async throws -> (address: String, identity: UInt32) {
            let reserved = await manager.handle(.allocateAddress(containerID: container, namespace: "default", pod: pod))
            let address = try #require(reserved.address, "\(reserved.error ?? "")")
            let interface = PodInterfaceDescription(hostInterface: PodInterface.hostInterfaceName(containerID: container),
                                                    networkNamespace: "netns-\(pod)", address: address,
                                                    hostMAC: [2, 0, 0, 0, 0, 1], podMAC: [2, 0, 0, 0, 0, 2])
            let created = await manager.handle(.createEndpoint(EndpointSpec(containerID: container, namespace: "default", pod: pod, interface: interface)))
            return (address, try #require(created.identity, "\(created.error ?? "")"))
        }

        func published(_ address: String) async throws -> IPIdentityPair? {
            let key = MeshKind.endpoints.stateKey(cluster: "cluster1", name: address)
            return try await store.get(key).map { try StoreCoding.decode(IPIdentityPair.self, from: $0.value, key: key) }
        }
    }

    @Test("an endpoint gets the first free address, a cluster-scoped identity, its published record, its map entry and its programs")
    func createEndpoint() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (address, identity) = try await node.start("web", container: "c-web")
        #expect(address == "10.1.1.2")
        #expect(IdentityLayout(maxConnectedClusters: .c255).clusterID(of: identity) == ClusterID(1))
        let pair = try #require(try await node.published(address))
        #expect(pair.id == identity && pair.hostIP == "172.30.1.1" && pair.k8sPodName == "web")
        let entry = try #require(node.datapath.endpoints.lookup(mer_endpoint_key(ip4: IPAddress(address)!.datapathValue!)))
        #expect(entry.identity == identity)
        #expect(entry.ifindex == UInt32(try node.datapath.interfaceIndex(PodInterface.hostInterfaceName(containerID: "c-web"))))
        #expect(node.datapath.attachments == ["endpoint \(PodInterface.hostInterfaceName(containerID: "c-web"))"])
        let checked = await node.manager.handle(.checkEndpoint(containerID: "c-web"))
        #expect(checked.identity == identity && checked.error == nil)
        let second = try await node.start("web", container: "c-web-2")
        #expect(second.address == "10.1.1.3" && second.identity == identity, "same labels, same identity")
    }

    @Test("deleting an endpoint removes its map entry and its published record; a second delete is harmless")
    func deleteEndpoint() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (address, _) = try await node.start("web", container: "c-web")
        _ = await node.manager.handle(.deleteEndpoint(containerID: "c-web"))
        _ = await node.manager.handle(.deleteEndpoint(containerID: "c-web"))
        #expect(node.datapath.endpoints.count == 0)
        #expect(try await node.published(address) == nil)
        let checked = await node.manager.handle(.checkEndpoint(containerID: "c-web"))
        #expect(checked.error != nil)
    }

    @Test("a label change gives the endpoint the identity of its new labels, in its map entry and its published record")
    func followsLabels() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (address, before) = try await node.start("web", container: "c-web")
        try await node.pod("web", labels: ["app": "web", "tier": "front"])
        let resources = try await node.store.list(prefix: KeyLayout.resourcesPrefix).items
        func records(_ plural: String) -> [String: Data] {
            Dictionary(uniqueKeysWithValues: resources.filter { $0.key.hasPrefix(KeyLayout.resources(plural: plural)) }.map { ($0.key, $0.value) })
        }
        await node.manager.refreshIdentities(pods: records(ResourceKind.pod.plural), namespaces: records(ResourceKind.namespace.plural))
        let after = try #require(try await node.published(address)?.id)
        #expect(after != before)
        #expect(node.datapath.endpoints.lookup(mer_endpoint_key(ip4: IPAddress(address)!.datapathValue!))?.identity == after)
    }

    @Test("records the store lost are published again, the identity record with them")
    func republishes() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (address, identity) = try await node.start("web", container: "c-web")
        let identityKey = MeshKind.identities.stateKey(cluster: "", name: "\(identity)")
        try await node.store.delete(MeshKind.endpoints.stateKey(cluster: "cluster1", name: address))
        try await node.store.delete(identityKey)
        await node.manager.republish(missingFrom: [:], identities: [:])
        #expect(try await node.published(address)?.id == identity)
        #expect(try await node.store.get(identityKey) != nil)
    }

    @Test("a policy selecting the pod: its entries are in the policy map before the endpoint's enforced flag")
    func policyBeforeFlags() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (address, identity) = try await node.start("web", container: "c-web")
        let policy = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: web, namespace: default}
            spec:
              podSelector: {matchLabels: {app: web}}
              ingress:
              - from: [{podSelector: {matchLabels: {app: client}}}]
                ports: [{port: 8080}]
            """
        let objects = try ManifestDecoder.decode(policy, source: "test")
        let records = Dictionary(uniqueKeysWithValues: objects.map { (ResourceStore.key(for: $0), StoreCoding.encode($0)) })
        let labels = try #require(try await node.store.get(MeshKind.identities.stateKey(cluster: "", name: "\(identity)")))
        let snapshot = PolicySnapshot.compute(
            PolicySnapshot.Inputs(policies: records,
                                  localIdentities: [labels.key: labels.value,
                                                    MeshKind.identities.stateKey(cluster: "", name: "65600"):
                                                        Data(StateFixtures.identityLabels(app: "client", cluster: "cluster1").utf8)],
                                  remoteIdentities: [:], namedPorts: [:], revision: 1),
            cluster: Self.cluster, cidrIdentities: CIDRIdentityTable(), ipBlocks: IPBlockTable())
        node.datapath.log.clear()
        let status = await node.manager.applyPolicy(snapshot)
        #expect(status.first?.ingressEnforced == true && status.first?.egressEnforced == false)
        let flags = node.datapath.endpoints.lookup(mer_endpoint_key(ip4: IPAddress(address)!.datapathValue!))?.flags ?? 0
        #expect(flags & UInt16(MER_ENDPOINT_F_INGRESS_ENFORCED) != 0)
        let log = node.datapath.log.all
        let firstEndpointWrite = try #require(log.firstIndex { $0.hasPrefix("update \(MER_MAP_ENDPOINTS)") })
        #expect(log[..<firstEndpointWrite].contains { $0.hasPrefix("update \(MER_MAP_POLICY)") }, "\(log)")
        #expect(node.datapath.policy.count == 1, "the client identity on port 8080")
    }
}

extension EndpointManagerTests {
    @Test("an ipBlock policy programs entries under the snapshot's ipBlock numbers, for the prefixes inside the block and outside its hole")
    func ipBlockEntries() async throws {
        let node = try Node()
        defer { try? FileManager.default.removeItem(atPath: node.directory) }
        try await node.pod("web", labels: ["app": "web"])
        let (_, identity) = try await node.start("web", container: "c-web")
        let policy = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: web, namespace: default}
            spec:
              podSelector: {matchLabels: {app: web}}
              ingress:
              - from: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.0/24]}}]
                ports: [{port: 8080}]
            """
        let objects = try ManifestDecoder.decode(policy, source: "test")
        let records = Dictionary(uniqueKeysWithValues: objects.map { (ResourceStore.key(for: $0), StoreCoding.encode($0)) })
        let labels = try #require(try await node.store.get(MeshKind.identities.stateKey(cluster: "", name: "\(identity)")))
        let snapshot = PolicySnapshot.compute(
            PolicySnapshot.Inputs(policies: records, localIdentities: [labels.key: labels.value], remoteIdentities: [:], namedPorts: [:],
                                  revision: 1),
            cluster: Self.cluster, cidrIdentities: CIDRIdentityTable(), ipBlocks: IPBlockTable())
        let block = try #require(snapshot.ipBlocks.numbers[IPCIDR("10.1.0.0/16")!])
        let hole = try #require(snapshot.ipBlocks.numbers[IPCIDR("10.1.2.0/24")!])
        _ = await node.manager.applyPolicy(snapshot)
        let identities = Set(node.datapath.policy.entries().map { UInt32(bigEndian: $0.key.identity) })
        #expect(identities == [block], "an entry for the block's number only; none for the hole's (\(hole))")
        #expect(node.datapath.policy.entries().allSatisfy { $0.key.direction == UInt8(MER_POLICY_INGRESS) && UInt16(bigEndian: $0.key.dport) == 8080 })
    }
}
