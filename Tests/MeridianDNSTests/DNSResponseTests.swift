import MeridianDNS
import Testing

@Suite("Responses, byte for byte")
struct DNSResponseTests {
    let responder = ClusterDNSResponder()

    private func respond(_ query: [UInt8], using responder: ClusterDNSResponder = ClusterDNSResponder()) throws -> [UInt8] {
        try #require(responder.response(toQuery: query, lookup: Fixture.lookup))
    }

    @Test func answersDigQueryWithARecordAndOPT() throws {
        let expected = hex("""
            b1e5 | 85 80 | 0001 0001 0000 0001
            """) + Fixture.webQuestion + hex("""
            c00c | 0001 | 0001 | 0000001e | 0004 | 0a60000a
            00 | 0029 | 04d0 | 00 00 0000 | 0000
            """)
        #expect(try respond(Fixture.digQuery) == expected)
    }

    @Test func answersGlibcQueryWithoutOPT() throws {
        let expected = hex("1c2a | 85 80 | 0001 0001 0000 0000") + Fixture.webQuestion
            + hex("c00c | 0001 | 0001 | 0000001e | 0004 | 0a60000a")
        #expect(try respond(Fixture.glibcQuery) == expected)
    }

    @Test func headerBitsOfAnAnswer() throws {
        let response = try DNSMessage(parsing: try respond(Fixture.digQuery))
        #expect(response.header == DNSHeader(
            id: 0xB1E5, isResponse: true, opcode: .query, isAuthoritative: true, isTruncated: false,
            recursionDesired: true, recursionAvailable: true, rcode: .noError))
    }

    @Test func recursionDesiredIsCopiedNotForced() throws {
        let bytes = try respond(queryBytes("web.default.svc.cluster.local", flags: 0x0000))
        #expect(Array(bytes[2...3]) == [0x84, 0x80])
    }

    @Test func ttlFollowsTheResponder() throws {
        let bytes = try respond(Fixture.glibcQuery, using: ClusterDNSResponder(ttl: 0x0102_0304))
        #expect(Array(bytes[53...56]) == [0x01, 0x02, 0x03, 0x04])
    }

    @Test func everyAddressIsAnAnswerPointingAtTheQuestion() throws {
        let question = wireName("db.prod.svc.cluster.local") + hex("0001 0001")
        let expected = hex("1234 | 85 80 | 0001 0002 0000 0000") + question + hex("""
            c00c 0001 0001 0000001e 0004 0a600307
            c00c 0001 0001 0000001e 0004 0a600308
            """)
        #expect(try respond(queryBytes("db.prod.svc.cluster.local")) == expected)
    }

    @Test func questionCaseIsEchoedAndAnswerPointsAtIt() throws {
        let query = queryBytes("WeB.DEFAULT.Svc.cluster.LOCAL", id: 0x0A0B)
        let expected = hex("0a0b | 85 80 | 0001 0001 0000 0000") + Array(query[12...])
            + hex("c00c 0001 0001 0000001e 0004 0a60000a")
        #expect(try respond(query) == expected)
    }

    @Test func trailingDotMakesNoDifferenceOnTheWire() throws {
        #expect(queryBytes("web.default.svc.cluster.local.") == queryBytes("web.default.svc.cluster.local"))
    }

    @Test func aaaaForAnExistingServiceIsNoData() throws {
        let query = queryBytes("web.default.svc.cluster.local", type: 28, id: 0x1C2B)
        let expected = hex("1c2b | 85 80 | 0001 0000 0000 0000") + wireName("web.default.svc.cluster.local") + hex("001c 0001")
        #expect(try respond(query) == expected)
    }

    @Test(arguments: [DNSType.aaaa, .txt, .mx, .srv, .cname, .ptr, .soa, .ns, DNSType(rawValue: 65)])
    func otherTypesForAnExistingServiceAreNoData(type: DNSType) throws {
        let response = try DNSMessage(parsing: try respond(queryBytes("web.default.svc.cluster.local", type: type.rawValue)))
        #expect(response.header.rcode == .noError)
        #expect(response.header.isAuthoritative)
        #expect(response.answers.isEmpty)
        #expect(response.questions.first?.type == type)
    }

    @Test func headlessServiceWithoutAddressesIsNoData() throws {
        let expected = hex("1234 | 85 80 | 0001 0000 0000 0000") + wireName("headless.default.svc.cluster.local") + hex("0001 0001")
        #expect(try respond(queryBytes("headless.default.svc.cluster.local")) == expected)
    }

    @Test func anyQueryGetsTheARecords() throws {
        let response = try DNSMessage(parsing: try respond(queryBytes("web.default.svc.cluster.local", type: 255)))
        #expect(response.answers.map(\.ipv4Address) == [Fixture.webAddress])
    }

    @Test func unknownServiceIsNXDomain() throws {
        let expected = hex("1234 | 85 83 | 0001 0000 0000 0000") + wireName("nope.default.svc.cluster.local") + hex("0001 0001")
        #expect(try respond(queryBytes("nope.default.svc.cluster.local")) == expected)
        #expect(try respond(queryBytes("nope.default.svc.cluster.local", type: 28))[3] == 0x83)
    }

    @Test(arguments: [
        "cluster.local", "svc.cluster.local", "default.svc.cluster.local", "web.default.svc.cluster.local.default.svc.cluster.local",
        "x.web.default.svc.cluster.local", "web.default.pod.cluster.local", "_http._tcp.web.default.svc.cluster.local",
        "web_1.default.svc.cluster.local",
    ])
    func namesInTheZoneThatAreNoServiceAreNXDomain(name: String) throws {
        let bytes = try respond(queryBytes(name))
        #expect(Array(bytes[0...11]) == hex("1234 | 85 83 | 0001 0000 0000 0000"))
        #expect(Array(bytes[12...]) == wireName(name) + hex("0001 0001"))
    }

    @Test(arguments: ["example.com", "web.default", "web.default.svc", "local", "cluster.local.example.com", "notcluster.local"])
    func namesOutsideTheZoneAreRefused(name: String) throws {
        let bytes = try respond(queryBytes(name))
        #expect(Array(bytes[0...11]) == hex("1234 | 81 85 | 0001 0000 0000 0000"))
        #expect(Array(bytes[12...]) == wireName(name) + hex("0001 0001"))
    }

    @Test func refusedKeepsTheOPTRecord() throws {
        let bytes = try respond(queryBytes("example.com", id: 0x7777, edns: opt(payload: 1232)))
        let expected = hex("7777 | 81 85 | 0001 0000 0000 0001") + wireName("example.com") + hex("0001 0001")
            + hex("00 0029 04d0 00 00 0000 0000")
        #expect(bytes == expected)
    }

    @Test func unsyncedServiceCacheIsServFail() throws {
        let expected = hex("1234 | 81 82 | 0001 0000 0000 0000") + wireName("syncing.default.svc.cluster.local") + hex("0001 0001")
        #expect(try respond(queryBytes("syncing.default.svc.cluster.local")) == expected)
    }

    @Test func chaosClassIsRefused() throws {
        let bytes = try respond(queryBytes("version.bind", type: 16, dnsClass: 3))
        #expect(Array(bytes[2...3]) == [0x81, 0x85])
        #expect(try respond(queryBytes("web.default.svc.cluster.local", dnsClass: 3))[3] == 0x85)
    }

    @Test(arguments: [(DNSOpcode.notify, UInt8(0xA1)), (.update, 0xA9), (.status, 0x91), (.inverseQuery, 0x89)])
    func otherOpcodesAreNotImplemented(opcode: DNSOpcode, flagsByte: UInt8) throws {
        let query = queryBytes("web.default.svc.cluster.local", flags: UInt16(opcode.rawValue) << 11 | 0x0100)
        let expected = hex("1234") + [flagsByte, 0x84] + hex("0001 0000 0000 0000") + Array(query[12...])
        #expect(try respond(query) == expected)
    }

    @Test func noQuestionIsFormatError() throws {
        #expect(try respond(header(qd: 0)) == hex("1234 | 81 81 | 0000 0000 0000 0000"))
    }

    @Test func twoQuestionsAreFormatError() throws {
        let query = header(qd: 2) + Fixture.webQuestion + Fixture.webQuestion
        #expect(try respond(query) == hex("1234 | 81 81 | 0002 0000 0000 0000") + Fixture.webQuestion + hex("c00c 0001 0001"))
    }

    @Test func formatErrorEchoingTooManyQuestionsKeepsOnlyTheHeader() throws {
        let compressed = (1..<300).flatMap { _ in hex("c00c 0001 0001") }
        #expect(try respond(header(qd: 300) + Fixture.webQuestion + compressed) == hex("1234 | 83 81 | 0000 0000 0000 0000"))
        let withEDNS = header(qd: 300, ar: 1) + Fixture.webQuestion + compressed + opt(payload: 1232)
        #expect(try respond(withEDNS) == hex("1234 | 83 81 | 0000 0000 0000 0001 | 00 0029 04d0 00 00 0000 0000"))
    }

    @Test func verdictSaysWhyNothingOrFORMERRIsSent() throws {
        let response = try respond(Fixture.glibcQuery)
        #expect(responder.verdict(onDatagram: response, lookup: Fixture.lookup) == .response)
        #expect(responder.verdict(onDatagram: Array(response.prefix(20)), lookup: Fixture.lookup) == .response)
        #expect(responder.verdict(onDatagram: Array(Fixture.glibcQuery.prefix(11)), lookup: Fixture.lookup) == .tooShort)
        #expect(responder.verdict(onDatagram: hex("beef 0100 0001 0000 0000 0000 c00c 0001 0001"), lookup: Fixture.lookup)
            == .formatError(hex("beef | 81 81 | 0000 0000 0000 0000"), .pointerLoop(target: 12, offset: 12)))
        #expect(responder.verdict(onDatagram: Fixture.glibcQuery, lookup: Fixture.lookup) == .answer(response))
    }

    @Test func malformedQueryIsFormatErrorWithItsID() throws {
        #expect(try respond(hex("beef 0100 0001 0000 0000 0000 c00c 0001 0001")) == hex("beef | 81 81 | 0000 0000 0000 0000"))
        #expect(try respond(hex("beef 0000 0001 0000 0000 0000 40")) == hex("beef | 80 81 | 0000 0000 0000 0000"))
    }

    @Test func responsesAndRuntsGetNoReply() throws {
        let response = try respond(Fixture.glibcQuery)
        #expect(responder.response(toQuery: response, lookup: Fixture.lookup) == nil)
        #expect(responder.response(toQuery: Array(response.prefix(20)), lookup: Fixture.lookup) == nil)
        #expect(responder.response(to: try DNSMessage(parsing: response), lookup: Fixture.lookup) == nil)
        #expect(responder.response(toQuery: Array(Fixture.glibcQuery.prefix(11)), lookup: Fixture.lookup) == nil)
    }

    @Test func unknownEDNSVersionIsBadVers() throws {
        let query = queryBytes("web.default.svc.cluster.local", edns: opt(payload: 4096, version: 1))
        let expected = hex("1234 | 81 80 | 0001 0000 0000 0001") + wireName("web.default.svc.cluster.local") + hex("0001 0001")
            + hex("00 0029 04d0 | 01 00 0000 | 0000")
        let bytes = try respond(query)
        #expect(bytes == expected)
        #expect(try DNSMessage(parsing: bytes).header.rcode == .badVersion)
    }

    @Test func dnssecOKIsCopiedIntoTheOPTRecord() throws {
        let bytes = try respond(queryBytes("web.default.svc.cluster.local", edns: opt(payload: 4096, flags: 0x8000)))
        #expect(Array(bytes.suffix(11)) == hex("00 0029 04d0 00 00 8000 0000"))
    }

    @Test func lookupGetsLowerCaseNamesAndOnlyForServiceNames() throws {
        var asked: [ServiceDNSName] = []
        let lookup = { (service: ServiceDNSName) -> ServiceLookupResult in
            asked.append(service)
            return .noSuchService
        }
        for name in ["Web.DEFAULT.svc.Cluster.Local", "example.com", "default.svc.cluster.local", "Api.Prod.SVC.cluster.local."] {
            _ = responder.response(toQuery: queryBytes(name), lookup: lookup)
        }
        #expect(asked == [ServiceDNSName(service: "web", namespace: "default"), ServiceDNSName(service: "api", namespace: "prod")])
    }

    @Test func customDomain() throws {
        let responder = ClusterDNSResponder(domain: try #require(ClusterDomain("mesh.internal")))
        let hit = try respond(queryBytes("web.default.svc.mesh.internal"), using: responder)
        #expect(try DNSMessage(parsing: hit).answers.map(\.ipv4Address) == [Fixture.webAddress])
        #expect(try respond(queryBytes("web.default.svc.cluster.local"), using: responder)[3] == 0x85)
    }
}

@Suite("Truncation to the client's UDP size")
struct DNSTruncationTests {
    private static func manyAddresses(_ count: Int) -> (ServiceDNSName) -> ServiceLookupResult {
        { _ in .addresses((0..<count).map { IPv4Address(10, 0, UInt8($0 / 256), UInt8($0 % 256)) }) }
    }

    @Test func withoutEDNSTheLimitIs512() throws {
        let bytes = try #require(ClusterDNSResponder().response(toQuery: Fixture.glibcQuery, lookup: Self.manyAddresses(40)))
        #expect(bytes.count == 12 + 35 + 29 * 16)
        #expect(Array(bytes[0...11]) == hex("1c2a | 87 80 | 0001 001d 0000 0000"))
        let response = try DNSMessage(parsing: bytes)
        #expect(response.header.isTruncated)
        #expect(response.answers.count == 29)
        #expect(response.answers.last?.ipv4Address == IPv4Address(10, 0, 0, 28))
    }

    @Test func withEDNSTheOPTRecordStays() throws {
        let bytes = try #require(ClusterDNSResponder().response(toQuery: Fixture.digQuery, lookup: Self.manyAddresses(100)))
        #expect(bytes.count == 12 + 35 + 73 * 16 + 11)
        #expect(Array(bytes[0...11]) == hex("b1e5 | 87 80 | 0001 0049 0000 0001"))
        #expect(Array(bytes.suffix(11)) == hex("00 0029 04d0 00 00 0000 0000"))
        let response = try DNSMessage(parsing: bytes)
        #expect(response.answers.count == 73)
        #expect(response.edns == EDNS(udpPayloadSize: 1232))
    }

    @Test func aLargerClientBufferIsCappedAtTheServerSize() throws {
        let query = queryBytes("web.default.svc.cluster.local", edns: opt(payload: 4096))
        let bytes = try #require(ClusterDNSResponder().response(toQuery: query, lookup: Self.manyAddresses(100)))
        #expect(bytes.count == 12 + 35 + 73 * 16 + 11)
        let larger = try #require(ClusterDNSResponder(udpPayloadSize: 4096).response(toQuery: query, lookup: Self.manyAddresses(100)))
        #expect(larger.count == 12 + 35 + 100 * 16 + 11)
        #expect(larger[2] & 0x02 == 0)
    }

    @Test func whatFitsIsNotTruncated() throws {
        let bytes = try #require(ClusterDNSResponder().response(toQuery: Fixture.glibcQuery, lookup: Self.manyAddresses(29)))
        #expect(bytes.count == 511)
        #expect(bytes[2] & 0x02 == 0)
    }

    @Test func authorityAndAdditionalRecordsGoFirst() throws {
        let name = try #require(DNSName("web.default.svc.cluster.local"))
        let message = DNSMessage(
            header: DNSHeader(id: 1, isResponse: true),
            questions: [DNSQuestion(name: name, type: .a)],
            answers: [.a(name: name, address: Fixture.webAddress, ttl: 30)],
            authorities: [DNSResourceRecord(name: name, type: .txt, ttl: 30, data: Array(repeating: 0x41, count: 600))]
        )
        let bytes = message.encoded(maxSize: 512)
        #expect(bytes.count == 12 + 35 + 16)
        #expect(Array(bytes[0...11]) == hex("0001 | 82 00 | 0001 0001 0000 0000"))
    }
}

@Suite("Encoding")
struct DNSEncodingTests {
    @Test func sharedSuffixesAreCompressed() throws {
        let web = try #require(DNSName("web.default.svc.cluster.local"))
        let api = try #require(DNSName("API.Default.svc.cluster.local"))
        let kube = try #require(DNSName("kubernetes.default.svc.cluster.local"))
        let message = DNSMessage(
            header: DNSHeader(id: 0x0102, isResponse: true, isAuthoritative: true),
            questions: [DNSQuestion(name: web, type: .a)],
            answers: [.a(name: api, address: IPv4Address(10, 96, 0, 1), ttl: 5), .a(name: kube, address: IPv4Address(10, 96, 0, 2), ttl: 5)],
            additionals: [DNSResourceRecord(name: .root, type: .txt, ttl: 0, data: [])]
        )
        let expected = hex("0102 | 84 00 | 0001 0002 0000 0001") + Fixture.webQuestion + hex("""
            03 415049 c010 | 0001 0001 00000005 0004 0a600001
            0a 6b756265726e65746573 c010 | 0001 0001 00000005 0004 0a600002
            00 | 0010 0001 00000000 0000
            """)
        let bytes = message.encoded()
        #expect(bytes == expected)
        #expect(try DNSMessage(parsing: bytes) == message)
    }

    @Test func roundTripOfAParsedQuery() throws {
        let message = try DNSMessage(parsing: Fixture.glibcQuery)
        #expect(message.encoded() == Fixture.glibcQuery)
    }

    @Test func reencodingDropsADBitAndEDNSOptions() throws {
        let message = try DNSMessage(parsing: Fixture.digQuery)
        #expect(message.encoded() == hex("b1e5 | 0100 | 0001 0000 0000 0001") + Fixture.webQuestion + hex("00 0029 04d0 00 00 0000 0000"))
    }

    @Test func responseBuilderEchoesTheQuery() throws {
        let query = try DNSMessage(parsing: Fixture.digQuery)
        let response = DNSMessage.response(to: query, rcode: .refused, authoritative: false, udpPayloadSize: 1400)
        #expect(response.header == DNSHeader(id: 0xB1E5, isResponse: true, recursionDesired: true, recursionAvailable: true, rcode: .refused))
        #expect(response.questions == query.questions)
        #expect(response.answers.isEmpty)
        #expect(response.edns == EDNS(udpPayloadSize: 1400))
    }
}
