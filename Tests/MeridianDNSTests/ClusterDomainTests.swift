import MeridianDNS
import Testing

@Suite("Service name rule")
struct ClusterDomainTests {
    let domain = ClusterDomain.default

    @Test func defaultDomainIsClusterLocal() {
        #expect(domain.description == "cluster.local")
        #expect(domain.name == DNSName("cluster.local"))
    }

    @Test(arguments: [
        "web.default.svc.cluster.local", "web.default.svc.cluster.local.", "WEB.Default.SVC.Cluster.LOCAL",
        "Web.default.svc.cluster.local.",
    ])
    func serviceNames(name: String) {
        #expect(domain.resolve(name) == .service(ServiceDNSName(service: "web", namespace: "default")))
    }

    @Test func serviceNameFromWireName() throws {
        let name = try #require(DNSName(labels: [Array("My-Svc".utf8), Array("Kube-System".utf8), Array("svc".utf8), Array("cluster".utf8), Array("local".utf8)]))
        #expect(domain.resolve(name) == .service(ServiceDNSName(service: "my-svc", namespace: "kube-system")))
    }

    @Test(arguments: [
        "cluster.local", "cluster.local.", "svc.cluster.local", "default.svc.cluster.local", "a.b.c.svc.cluster.local",
        "web.default.pod.cluster.local", "web.default.svcx.cluster.local", "1-2-3-4.default.pod.cluster.local",
        "_http._tcp.web.default.svc.cluster.local", "web_1.default.svc.cluster.local", "-web.default.svc.cluster.local",
        "web-.default.svc.cluster.local", "web.-ns.svc.cluster.local", "w\u{e9}b.default.svc.cluster.local",
    ])
    func namesInTheZoneThatAreNoService(name: String) {
        #expect(domain.resolve(name) == .nonexistent)
    }

    @Test(arguments: [
        "web", "web.default", "web.default.svc", "example.com", "local", ".", "cluster.local.example.com", "mycluster.local",
        "web.default.svc.cluster.localhost", "a..b", "",
    ])
    func namesOutsideTheZone(name: String) {
        #expect(domain.resolve(name) == .notInZone)
    }

    @Test func customDomainIsStoredLowerCase() throws {
        let custom = try #require(ClusterDomain("Mesh.Example."))
        #expect(custom.description == "mesh.example")
        #expect(custom.resolve("db.prod.svc.mesh.example") == .service(ServiceDNSName(service: "db", namespace: "prod")))
        #expect(custom.resolve("db.prod.svc.cluster.local") == .notInZone)
    }

    @Test(arguments: ["", ".", "a..b", String(repeating: "x", count: 64) + ".local"])
    func invalidDomains(text: String) {
        #expect(ClusterDomain(text) == nil)
    }

    @Test func resolvConfForAPod() {
        #expect(domain.resolvConf(nameserver: IPv4Address(10, 96, 0, 10), namespace: "shop") == """
            nameserver 10.96.0.10
            search shop.svc.cluster.local svc.cluster.local cluster.local
            options ndots:5

            """)
    }

    @Test func resolvConfWithACustomDomain() throws {
        let custom = try #require(ClusterDomain("mesh.example."))
        #expect(custom.resolvConf(nameserver: IPv4Address(169, 254, 20, 10), namespace: "kube-system") ==
            "nameserver 169.254.20.10\nsearch kube-system.svc.mesh.example svc.mesh.example mesh.example\noptions ndots:5\n")
    }

    @Test func searchPathTurnsShortNamesIntoServiceNames() throws {
        let conf = domain.resolvConf(nameserver: IPv4Address(10, 96, 0, 10), namespace: "default")
        let searchLine = try #require(conf.split(separator: "\n").first { $0.hasPrefix("search ") })
        let searchDomains = searchLine.split(separator: " ").dropFirst().map(String.init)
        func tried(_ short: String) -> [ServiceNameResolution] {
            searchDomains.map { domain.resolve("\(short).\($0)") }
        }
        let web = ServiceNameResolution.service(ServiceDNSName(service: "web", namespace: "default"))
        #expect(tried("web") == [web, .nonexistent, .nonexistent])
        #expect(tried("web.default") == [.nonexistent, web, .nonexistent])
        #expect(tried("web.default.svc") == [.nonexistent, .nonexistent, web])
    }

    @Test func serviceNameDescription() {
        #expect(ServiceDNSName(service: "web", namespace: "default").description == "default/web")
    }
}

@Suite("DNSName")
struct DNSNameTests {
    @Test func textWithAndWithoutTrailingDot() throws {
        let withDot = try #require(DNSName("web.default.svc.cluster.local."))
        let without = try #require(DNSName("web.default.svc.cluster.local"))
        #expect(withDot == without)
        #expect(withDot.labels == without.labels)
        #expect(without.labels.count == 5)
        #expect(without.wireLength == 31)
        #expect(without.description == "web.default.svc.cluster.local.")
    }

    @Test func root() throws {
        #expect(DNSName(".") == .root)
        #expect(DNSName.root.isRoot)
        #expect(DNSName.root.wireLength == 1)
        #expect(DNSName.root.description == ".")
    }

    @Test(arguments: ["", "..", "a..b", ".a", String(repeating: "a", count: 64) + ".b"])
    func invalidText(text: String) {
        #expect(DNSName(text) == nil)
    }

    @Test func labelAndNameLimits() {
        #expect(DNSName(labels: [Array(repeating: 0x61, count: 63)]) != nil)
        #expect(DNSName(labels: [Array(repeating: 0x61, count: 64)]) == nil)
        #expect(DNSName(labels: [[]]) == nil)
        let label63 = [UInt8](repeating: 0x61, count: 63)
        #expect(DNSName(labels: [label63, label63, label63, Array(repeating: 0x62, count: 61)])?.wireLength == 255)
        #expect(DNSName(labels: [label63, label63, label63, Array(repeating: 0x62, count: 62)]) == nil)
    }

    @Test func equalityAndHashingIgnoreASCIICase() throws {
        let upper = try #require(DNSName("WEB.Default.svc"))
        let lower = try #require(DNSName("web.default.svc"))
        #expect(upper == lower)
        #expect(Set([upper, lower]).count == 1)
        #expect(upper.labels != lower.labels)
        #expect(upper.lowercased().labels == lower.labels)
        #expect(DNSName(labels: [[0xC9]]) != DNSName(labels: [[0xE9]]))
    }

    @Test func subdomains() throws {
        let zone = try #require(DNSName("cluster.local"))
        #expect(try #require(DNSName("a.b.svc.Cluster.Local")).isSubdomain(of: zone))
        #expect(zone.isSubdomain(of: zone))
        #expect(zone.isSubdomain(of: .root))
        #expect(!(try #require(DNSName("mycluster.local"))).isSubdomain(of: zone))
        #expect(!(try #require(DNSName("local"))).isSubdomain(of: zone))
    }

    @Test func descriptionEscapesWhatCouldForgeLogLines() throws {
        let name = try #require(DNSName(labels: [Array("a.b".utf8), [0x0A, 0x20, 0x5C, 0xFF]]))
        #expect(name.description == #"a\.b.\010\032\\\255."#)
    }
}

@Suite("IPv4Address")
struct IPv4AddressTests {
    @Test func parseAndPrint() throws {
        let address = try #require(IPv4Address("10.96.0.10"))
        #expect(address == IPv4Address(10, 96, 0, 10))
        #expect(address.bytes == [10, 96, 0, 10])
        #expect(address.description == "10.96.0.10")
        #expect(IPv4Address("255.255.255.255")?.bytes == [255, 255, 255, 255])
        #expect(IPv4Address("0.0.0.0")?.bytes == [0, 0, 0, 0])
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "a.b.c.d", "1..3.4", "+1.2.3.4", "\u{661}.2.3.4", " 1.2.3.4"])
    func invalidText(text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test func fromBytes() {
        #expect(IPv4Address(bytes: [192, 168, 1, 2]) == IPv4Address(192, 168, 1, 2))
        #expect(IPv4Address(bytes: [1, 2, 3]) == nil)
        #expect(IPv4Address(bytes: [1, 2, 3, 4, 5]) == nil)
    }
}

/// `clusterset.local`, the Multi-Cluster Services zone (KEP-1645): services and, for headless
/// imports, `<hostname>.<cluster>.<service>.<namespace>.svc.clusterset.local`.
@Suite("Clusterset names")
struct ClusterSetDomainTests {
    let domain = ClusterDomain.clusterSet

    @Test func serviceAndBackendNames() {
        #expect(domain.description == "clusterset.local")
        #expect(domain.resolve("web.default.svc.clusterset.local.", zone: .clusterSet)
            == .service(ServiceDNSName(service: "web", namespace: "default", zone: .clusterSet)))
        #expect(domain.resolve("DB-0.Cluster2.db.shop.svc.clusterset.local", zone: .clusterSet)
            == .service(ServiceDNSName(service: "db", namespace: "shop", zone: .clusterSet,
                                       backend: .init(hostname: "db-0", cluster: "cluster2"))))
    }

    @Test(arguments: ["cluster2.db.shop.svc.clusterset.local", "a.b.c.db.shop.svc.clusterset.local", "db-0.cluster_2.db.shop.svc.clusterset.local",
                      "db-0.cluster2.db.shop.pod.clusterset.local"])
    func namesThatAreNoServiceOrBackend(name: String) {
        #expect(domain.resolve(name, zone: .clusterSet) == .nonexistent)
    }

    @Test("the cluster zone has no per-backend names")
    func clusterZoneHasNoBackendNames() {
        #expect(ClusterDomain.default.resolve("db-0.cluster2.db.shop.svc.cluster.local") == .nonexistent)
    }

    @Test("the responder answers both zones and keeps them apart")
    func responderAnswersBothZones() throws {
        let responder = ClusterDNSResponder()
        let clusterSetIP = try #require(IPv4Address("10.101.0.20"))
        let clusterIP = try #require(IPv4Address("10.101.0.10"))
        let lookup = { (name: ServiceDNSName) -> ServiceLookupResult in
            switch (name.zone, name.backend) {
            case (.cluster, _): name.service == "web" ? .addresses([clusterIP]) : .noSuchService
            case (.clusterSet, nil): name.service == "web" ? .addresses([clusterSetIP]) : .noSuchService
            case (.clusterSet, _?): .noSuchService
            }
        }
        func answer(_ name: String, _ responder: ClusterDNSResponder = responder) throws -> DNSMessage {
            try DNSMessage(parsing: try #require(responder.response(toQuery: queryBytes(name), lookup: lookup)))
        }
        #expect(try answer("web.default.svc.clusterset.local").answers.map(\.ipv4Address) == [clusterSetIP])
        #expect(try answer("web.default.svc.cluster.local").answers.map(\.ipv4Address) == [clusterIP])
        #expect(try answer("web.default.svc.clusterset.local", ClusterDNSResponder(clusterSetDomain: nil)).header.rcode == .refused)
    }
}
