import MeridianCore
import Testing

/// How NetworkPolicy `ipBlock` compiles: to an address peer that selects pods too (upstream
/// Kubernetes), kept apart from Cilium's CIDR peers (outside the clusters only); its prefixes
/// numbered for the node's ipBlock map; and the endpoint entries for those numbers, which,
/// looked up the way the datapath does (longest prefix of the peer's address, then the policy
/// map), must give the model's answer for every address.
@Suite("NetworkPolicy ipBlock compilation")
struct IPBlockCompilationTests {
    static func cidr(_ text: String) -> IPCIDR { IPCIDR(text)! }
    static func address(_ text: String) -> IPAddress { IPAddress(text)! }

    static let settings = PolicySettings(clusterName: "cluster1")

    static func rules(_ yaml: String) throws -> [PolicyRule] {
        PolicyCompiler.rules(for: try ManifestDecoder.decode(yaml, source: "test.yaml"), settings: settings)
    }

    static let networkPolicy = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: blocks, namespace: alpha}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress:
          - from:
            - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.0/24, 10.1.3.7/32]}
            ports: [{port: 8080}]
          egress:
          - to:
            - ipBlock: {cidr: 10.2.0.5/32}
            - ipBlock: {cidr: "fd00::/64"}
          - to:
            - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}
            ports: [{protocol: UDP, port: 53}]
        """

    static let ciliumPolicy = """
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: cidrs, namespace: alpha}
        spec:
          endpointSelector: {matchLabels: {app: web}}
          ingress:
          - fromCIDR: [10.1.0.0/16]
          - fromCIDRSet: [{cidr: 172.30.0.0/16, except: [172.30.1.0/24]}]
        """

    @Test("a NetworkPolicy ipBlock becomes an ipBlock peer with its holes; Cilium's CIDR rules stay CIDR peers")
    func peersStayApart() throws {
        let np = try Self.rules(Self.networkPolicy)
        let ingress = try #require(np.first { $0.direction == .ingress })
        #expect(ingress.peers == [.ipBlock(CIDRPeer(cidr: Self.cidr("10.1.0.0/16"),
                                                    except: [Self.cidr("10.1.2.0/24"), Self.cidr("10.1.3.7/32")]))])
        #expect(ingress.peers.allSatisfy { $0.isAddressBlock })
        let cnp = try Self.rules(Self.ciliumPolicy)
        #expect(cnp.flatMap(\.peers) == [
            .cidr(CIDRPeer(cidr: Self.cidr("10.1.0.0/16"))),
            .cidr(CIDRPeer(cidr: Self.cidr("172.30.0.0/16"), except: [Self.cidr("172.30.1.0/24")])),
        ])
    }

    @Test("the ipBlock map takes the IPv4 blocks and holes of ipBlock peers only; CIDR identities only Cilium's")
    func prefixSets() throws {
        let rules = try Self.rules(Self.networkPolicy) + Self.rules(Self.ciliumPolicy)
        #expect(IPBlockTable.prefixes(in: rules) == Set([
            "10.1.0.0/16", "10.1.2.0/24", "10.1.3.7/32", "10.2.0.5/32", "0.0.0.0/0", "10.0.0.0/8",
        ].map(Self.cidr)))
        #expect(CIDRIdentityTable.prefixes(in: rules) == Set(["10.1.0.0/16", "172.30.0.0/16", "172.30.1.0/24"].map(Self.cidr)))
    }

    @Test("ipBlock numbers start at 1 << 30, are kept while in use, and a freed number is not handed out again")
    func numbering() {
        var table = IPBlockTable()
        table.update(wanted: [Self.cidr("10.1.0.0/16"), Self.cidr("10.1.2.0/24")])
        let wide = table.numbers[Self.cidr("10.1.0.0/16")]
        let narrow = table.numbers[Self.cidr("10.1.2.0/24")]
        #expect(Set([wide, narrow].compactMap { $0 }) == [IPBlockTable.firstIdentity, IPBlockTable.firstIdentity + 1])
        #expect(IPBlockTable.firstIdentity > CIDRIdentityTable.firstIdentity + 16_000_000, "clear of CIDR identities")
        table.update(wanted: [Self.cidr("10.1.2.0/24"), Self.cidr("192.0.2.0/24")])
        #expect(table.numbers[Self.cidr("10.1.2.0/24")] == narrow, "a prefix still in use keeps its number")
        #expect(table.numbers[Self.cidr("10.1.0.0/16")] == nil)
        let fresh = table.numbers[Self.cidr("192.0.2.0/24")]
        #expect(fresh == IPBlockTable.firstIdentity + 2, "the freed number \(String(describing: wide)) is not reused at once")
    }

    @Test("a table made from what the pinned map holds keeps those numbers and numbers new prefixes above them")
    func restart() {
        let pinned = [Self.cidr("10.1.0.0/16"): IPBlockTable.firstIdentity + 7, Self.cidr("10.9.0.0/16"): 5]
        var table = IPBlockTable(existing: pinned)
        #expect(table.numbers == [Self.cidr("10.1.0.0/16"): IPBlockTable.firstIdentity + 7], "numbers outside the range are dropped")
        table.update(wanted: [Self.cidr("10.1.0.0/16"), Self.cidr("10.2.0.0/16")])
        #expect(table.numbers[Self.cidr("10.1.0.0/16")] == IPBlockTable.firstIdentity + 7)
        #expect(table.numbers[Self.cidr("10.2.0.0/16")] == IPBlockTable.firstIdentity + 8)
    }

    @Test("an ipBlock peer selects the numbers of the prefixes inside its block that none of its holes covers")
    func selection() {
        var table = IPBlockTable()
        table.update(wanted: Set(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.2.0.0/16", "0.0.0.0/0"].map(Self.cidr)))
        let number = { table.numbers[Self.cidr($0)]! }
        let peer = CIDRPeer(cidr: Self.cidr("10.0.0.0/8"), except: [Self.cidr("10.1.2.0/24")])
        #expect(table.identities(selectedBy: peer) == ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"].map(number).sorted())
        #expect(table.number(for: Self.address("10.1.2.3")) == number("10.1.2.3/32"))
        #expect(table.number(for: Self.address("10.1.2.4")) == number("10.1.2.0/24"))
        #expect(table.number(for: Self.address("192.0.2.1")) == number("0.0.0.0/0"))
    }

    @Test("resolution puts ipBlock peers in ipBlockEntries, for every peer identity, and the model matches pods by address")
    func resolution() throws {
        let web = LabelSet.podIdentityLabels(podLabels: ["app": "web"], namespace: "alpha", namespaceLabels: [:],
                                             serviceAccount: nil, cluster: "cluster1")
        let client = LabelSet.podIdentityLabels(podLabels: ["app": "client"], namespace: "alpha", namespaceLabels: [:],
                                                serviceAccount: nil, cluster: "cluster1")
        let remote = LabelSet.podIdentityLabels(podLabels: ["app": "client"], namespace: "alpha", namespaceLabels: [:],
                                                serviceAccount: nil, cluster: "cluster2")
        let resolver = PolicyResolver(rules: try Self.rules(Self.networkPolicy),
                                      identities: [65_800: web, 65_801: client, 131_300: remote], localCluster: "cluster1")
        let policy = resolver.resolve(identity: 65_800)
        #expect(policy.ingress.entries.isEmpty && policy.ingress.cidrEntries.isEmpty)
        #expect(policy.ingress.ipBlockEntries.count == 1)
        let ingress = policy.ingress
        #expect(ingress.allows(remoteIdentity: 65_801, remoteLabels: client, remoteIP: Self.address("10.1.1.5"), protocol: 6, port: 8080))
        #expect(!ingress.allows(remoteIdentity: 65_801, remoteLabels: client, remoteIP: Self.address("10.1.2.5"), protocol: 6, port: 8080),
                "the same identity inside a hole")
        #expect(!ingress.allows(remoteIdentity: 65_801, remoteLabels: client, remoteIP: Self.address("10.1.3.7"), protocol: 6, port: 8080))
        #expect(!ingress.allows(remoteIdentity: 65_801, remoteLabels: client, remoteIP: Self.address("10.1.1.5"), protocol: 6, port: 8081))
        #expect(!ingress.allows(remoteIdentity: 65_801, remoteLabels: client, protocol: 6, port: 8080), "no address, no ipBlock match")
        let egress = policy.egress
        #expect(egress.allows(remoteIdentity: 131_300, remoteLabels: remote, remoteIP: Self.address("10.2.0.5"), protocol: 6, port: 443),
                "a remote cluster's pod by its address")
        #expect(!egress.allows(remoteIdentity: 131_300, remoteLabels: remote, remoteIP: Self.address("10.2.0.6"), protocol: 6, port: 443))
        #expect(egress.allows(remoteIdentity: 2, remoteIP: Self.address("192.0.2.1"), protocol: 17, port: 53))
        #expect(!egress.allows(remoteIdentity: 65_801, remoteLabels: client, remoteIP: Self.address("10.1.1.5"), protocol: 17, port: 53),
                "0.0.0.0/0 except 10.0.0.0/8 leaves pods in 10/8 out")
    }

    /// The datapath's decision, written out as `bpf/lib/policy.h` makes it: the longest entry of
    /// the exact identity, of identity 0, and of the ipBlock number of the peer's address; any
    /// deny drops, else any entry allows, else the direction's enforcement decides.
    static func datapathVerdict(
        _ program: (enforced: Bool, entries: [PolicyMapEntry]), table: IPBlockTable,
        identity: UInt32, address: IPAddress, protocol probe: UInt8, port: UInt16
    ) -> Bool {
        guard program.enforced else { return true }
        func longest(_ id: UInt32) -> PolicyMapEntry? {
            program.entries.filter { $0.remoteIdentity == id && $0.matches(protocol: probe, port: port) }
                .max { $0.prefixLength < $1.prefixLength }
        }
        let found = [longest(identity), longest(0), table.number(for: address).flatMap(longest)].compactMap { $0 }
        if found.contains(where: \.deny) { return false }
        return !found.isEmpty
    }

    @Test("looked up as the datapath does, the programmed entries give the model's answer for every address and port")
    func programAgreesWithModel() throws {
        let deny = """
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata: {name: deny-ssh, namespace: alpha}
            spec:
              endpointSelector: {matchLabels: {app: web}}
              ingressDeny:
              - fromEntities: [all]
                toPorts: [{ports: [{port: "22", protocol: TCP}]}]
            """
        let extra = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: more-blocks, namespace: alpha}
            spec:
              podSelector: {}
              ingress:
              - from:
                - ipBlock: {cidr: 10.1.2.0/23, except: [10.1.3.0/25]}
                ports: [{port: 22}, {port: 9000, endPort: 9010}]
              - from:
                - podSelector: {matchLabels: {app: client}}
                ports: [{port: 8081}]
            """
        let rules = try Self.rules(Self.networkPolicy) + Self.rules(deny) + Self.rules(extra)
        let web = LabelSet.podIdentityLabels(podLabels: ["app": "web"], namespace: "alpha", namespaceLabels: [:],
                                             serviceAccount: nil, cluster: "cluster1")
        let client = LabelSet.podIdentityLabels(podLabels: ["app": "client"], namespace: "alpha", namespaceLabels: [:],
                                                serviceAccount: nil, cluster: "cluster1")
        let resolver = PolicyResolver(rules: rules, identities: [65_800: web, 65_801: client], localCluster: "cluster1")
        var table = IPBlockTable()
        table.update(wanted: IPBlockTable.prefixes(in: rules))
        let policy = resolver.resolve(identity: 65_800)
        var checked = 0
        for direction in TrafficDirection.allCases {
            let side = policy[direction]
            let program = side.datapathProgram(cidrIdentities: CIDRIdentityTable(), ipBlocks: table)
            for third in [0, 1, 2, 3, 4] {
                for last in stride(from: 0, through: 255, by: 3) {
                    let address = Self.address("10.1.\(third).\(last)")
                    for (probe, port) in [(UInt8(6), UInt16(8080)), (6, 8081), (6, 22), (6, 9005), (6, 9011), (17, 53), (6, 443)] {
                        for identity in [UInt32(65_801), 2] {
                            let labels = identity == 2 ? LabelSet() : client
                            let model = side.allows(remoteIdentity: identity, remoteLabels: labels, remoteIP: address, protocol: probe, port: port)
                            let datapath = Self.datapathVerdict(program, table: table, identity: identity, address: address,
                                                                protocol: probe, port: port)
                            #expect(model == datapath, "\(direction) from \(identity) at \(address) \(port)/\(probe): model \(model)")
                            checked += 1
                        }
                    }
                }
            }
        }
        #expect(checked > 10_000)
    }
}
