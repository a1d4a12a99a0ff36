import MeridianDNS
import Testing

@Suite("Parsing queries")
struct DNSParsingTests {
    @Test func digQuery() throws {
        let message = try DNSMessage(parsing: Fixture.digQuery)
        #expect(message.header == DNSHeader(id: 0xB1E5, recursionDesired: true))
        #expect(message.questions == [DNSQuestion(name: try #require(DNSName("web.default.svc.cluster.local")), type: .a)])
        #expect(message.questions[0].name.labels.map { String(decoding: $0, as: UTF8.self) } == ["web", "default", "svc", "cluster", "local"])
        #expect(message.questions[0].dnsClass == .internet)
        #expect(message.edns == EDNS(udpPayloadSize: 1232, version: 0, dnssecOK: false))
        #expect(message.answers.isEmpty && message.authorities.isEmpty && message.additionals.isEmpty)
        #expect(message.maxUDPResponseSize == 1232)
    }

    @Test func glibcQueryWithoutEDNS() throws {
        let message = try DNSMessage(parsing: Fixture.glibcQuery)
        #expect(message.header == DNSHeader(id: 0x1C2A, recursionDesired: true))
        #expect(message.questions.count == 1)
        #expect(message.edns == nil)
        #expect(message.maxUDPResponseSize == 512)
    }

    @Test func headerFlagBits() throws {
        let message = try DNSMessage(parsing: header(id: 0xFFFF, flags: 0xFF8F, qd: 0))
        #expect(message.header == DNSHeader(
            id: 0xFFFF, isResponse: true, opcode: DNSOpcode(rawValue: 15), isAuthoritative: true, isTruncated: true,
            recursionDesired: true, recursionAvailable: true, rcode: DNSResponseCode(rawValue: 15)))
        #expect(try DNSMessage(parsing: header(flags: 0x2800, qd: 0)).header.opcode == .update)
        #expect(try DNSMessage(parsing: header(flags: 0x0000, qd: 0)).header == DNSHeader(id: 0x1234))
    }

    @Test func ednsFields() throws {
        let message = try DNSMessage(parsing: queryBytes("web.default.svc.cluster.local", edns: opt(payload: 4096, version: 0, flags: 0x8000)))
        #expect(message.edns == EDNS(udpPayloadSize: 4096, dnssecOK: true))
        #expect(message.maxUDPResponseSize == 4096)
    }

    @Test func ednsPayloadBelow512CountsAs512() throws {
        let message = try DNSMessage(parsing: queryBytes("web.default.svc.cluster.local", edns: opt(payload: 100)))
        #expect(message.edns?.udpPayloadSize == 100)
        #expect(message.maxUDPResponseSize == 512)
    }

    @Test func extendedRCodeCombinesHeaderAndOPT() throws {
        let bytes = header(flags: 0x8003, qd: 0, ar: 1) + opt(extendedRCode: 1)
        let message = try DNSMessage(parsing: bytes)
        #expect(message.header.rcode == DNSResponseCode(rawValue: 0x13))
        #expect(try DNSMessage(parsing: header(flags: 0x8000, qd: 0, ar: 1) + opt(extendedRCode: 1)).header.rcode == .badVersion)
    }

    @Test func compressedQuestionNames() throws {
        let bytes = header(qd: 3) + Fixture.webQuestion
            + hex("c00c 001c 0001")
            + hex("03 617069 c010 0001 0001")
        let message = try DNSMessage(parsing: bytes)
        #expect(message.questions.map(\.name) == [
            DNSName("web.default.svc.cluster.local"), DNSName("web.default.svc.cluster.local"), DNSName("api.default.svc.cluster.local"),
        ])
        #expect(message.questions.map(\.type) == [.a, .aaaa, .a])
    }

    @Test func caseIsPreservedInLabels() throws {
        let message = try DNSMessage(parsing: queryBytes("WeB.DeFault.svc.CLUSTER.local"))
        #expect(message.questions[0].name.labels[0] == Array("WeB".utf8))
        #expect(message.questions[0].name == DNSName("web.default.svc.cluster.local"))
    }

    @Test func trailingBytesAreIgnored() throws {
        let message = try DNSMessage(parsing: Fixture.glibcQuery + [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(message == (try DNSMessage(parsing: Fixture.glibcQuery)))
    }

    @Test func recordsInEverySectionAreRead() throws {
        let bytes = header(flags: 0x8180, an: 1, ns: 1, ar: 2) + Fixture.webQuestion
            + hex("c00c 0001 0001 0000001e 0004 0a60000a")
            + hex("c01c 0006 0001 00000e10 0002 abcd")
            + hex("00 0010 0003 00000000 0000")
            + opt(payload: 1232, data: hex("000a 0008 0123456789abcdef"))
        let message = try DNSMessage(parsing: bytes)
        #expect(message.answers == [.a(name: try #require(DNSName("web.default.svc.cluster.local")), address: Fixture.webAddress, ttl: 30)])
        #expect(message.answers.first?.ipv4Address == Fixture.webAddress)
        #expect(message.authorities == [DNSResourceRecord(name: try #require(DNSName("cluster.local")), type: .soa, ttl: 3600, data: [0xAB, 0xCD])])
        #expect(message.additionals == [DNSResourceRecord(name: .root, type: .txt, dnsClass: .chaos, ttl: 0, data: [])])
        #expect(message.edns == EDNS(udpPayloadSize: 1232))
    }
}

@Suite("Rejecting malformed messages")
struct DNSMalformedInputTests {
    private func parseError(_ bytes: [UInt8]) -> DNSWireError? {
        do {
            _ = try DNSMessage(parsing: bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [0, 1, 11])
    func truncatedHeader(length: Int) {
        #expect(parseError(Array(Fixture.glibcQuery.prefix(length))) == .truncated(.header, offset: 0))
    }

    @Test func nameWithoutRootByte() {
        #expect(parseError(header() + hex("03 776562")) == .truncated(.name, offset: 16))
    }

    @Test func labelCutShort() {
        #expect(parseError(header() + hex("07 646566")) == .truncated(.label, offset: 12))
    }

    @Test func questionFieldsCutShort() {
        #expect(parseError(header() + wireName("web") + hex("0001")) == .truncated(.question, offset: 17))
        #expect(parseError(header(qd: 2) + wireName("web") + hex("0001 0001")) == .truncated(.name, offset: 21))
    }

    @Test(arguments: [(UInt8(0x40), 64), (0x7F, 127), (0x80, 128), (0xBF, 191)])
    func labelLongerThan63(lengthByte: UInt8, length: Int) {
        #expect(parseError(header() + [lengthByte] + Array(repeating: 0x61, count: 200) + [0]) == .labelTooLong(length: length, offset: 12))
    }

    @Test func labelOf63IsAccepted() throws {
        let label = String(repeating: "a", count: 63)
        let message = try DNSMessage(parsing: queryBytes("\(label).cluster.local"))
        #expect(message.questions[0].name.labels[0].count == 63)
    }

    @Test func nameOf255BytesIsAcceptedAnd256Rejected() throws {
        let a63 = String(repeating: "a", count: 63)
        let longest = "\(a63).\(a63).\(a63).\(String(repeating: "b", count: 61))"
        #expect(wireName(longest).count == 255)
        #expect(try DNSMessage(parsing: queryBytes(longest)).questions[0].name.wireLength == 255)

        let tooLong = "\(a63).\(a63).\(a63).\(String(repeating: "b", count: 62))"
        #expect(wireName(tooLong).count == 256)
        #expect(parseError(queryBytes(tooLong)) == .nameTooLong(offset: 12))
    }

    @Test func nameTooLongOnlyAfterFollowingPointers() {
        let label63 = [UInt8(63)] + Array(repeating: UInt8(ascii: "x"), count: 63)
        let question = hex("c0 12") + hex("0001 0001")
        var bytes = header() + question
        for hop in 0..<4 {
            let next = 18 + (hop + 1) * 66
            bytes += label63 + (hop < 3 ? be16(0xC000 | UInt16(next)) : [0])
        }
        #expect(parseError(bytes) == .nameTooLong(offset: 12))
    }

    @Test func pointerToItself() {
        #expect(parseError(header() + hex("c00c 0001 0001")) == .pointerLoop(target: 12, offset: 12))
    }

    @Test func pointerLoopThroughALabel() {
        #expect(parseError(header() + hex("01 61 c00c 0001 0001")) == .pointerLoop(target: 12, offset: 14))
    }

    @Test func pointerLoopBetweenTwoNames() {
        let bytes = header(qd: 2) + hex("01 61 c014 0001 0001") + hex("01 62 c00c 0001 0001")
        #expect(parseError(bytes) == .pointerLoop(target: 20, offset: 14))
    }

    @Test func pointerPastTheEnd() {
        #expect(parseError(header() + hex("c0ff 0001 0001")) == .pointerOutOfRange(target: 0xFF, offset: 12))
        #expect(parseError(header() + hex("03 776562 ff00 0001 0001")) == .pointerOutOfRange(target: 0x3F00, offset: 16))
        #expect(parseError(header() + hex("c012 0001 0001")) == .pointerOutOfRange(target: 18, offset: 12))
    }

    @Test func pointerMissingSecondByte() {
        #expect(parseError(header() + hex("c0")) == .truncated(.compressionPointer, offset: 12))
    }

    @Test func recordFieldsCutShort() {
        let bytes = header(ar: 1) + Fixture.webQuestion + hex("00 0029 04d0 0000")
        #expect(parseError(bytes) == .truncated(.record, offset: 48))
    }

    @Test func recordDataCutShort() {
        let bytes = header(ar: 1) + Fixture.webQuestion + hex("00 0029 04d0 00000000 000c 000a 0008 0123")
        #expect(parseError(bytes) == .truncated(.recordData, offset: 58))
    }

    @Test func answerCountLargerThanMessage() {
        #expect(parseError(header(an: 0xFFFF) + Fixture.webQuestion) == .truncated(.name, offset: 47))
    }

    @Test func twoOPTRecords() {
        let bytes = header(ar: 2) + Fixture.webQuestion + opt() + opt()
        #expect(parseError(bytes) == .multipleOPTRecords(offset: 58))
    }

    @Test func optOwnedByANameOtherThanRoot() {
        let bytes = header(ar: 1) + Fixture.webQuestion + hex("c00c 0029 04d0 00000000 0000")
        #expect(parseError(bytes) == .optOwnerNotRoot(offset: 47))
    }

    @Test func errorsSayWhatAndWhere() {
        let error = DNSWireError.pointerLoop(target: 12, offset: 14)
        #expect(error.offset == 14)
        #expect(error.description == "compression pointer at offset 14 loops back to 12")
        #expect(DNSWireError.truncated(.recordData, offset: 58).description == "message ends inside record data at offset 58")
        #expect(DNSWireError.labelTooLong(length: 64, offset: 12).description == "label length 64 > 63 at offset 12")
    }
}
