/// The flags and id of a message, without the section counts: those are derived from the
/// sections of `DNSMessage`, so a count can never disagree with what is encoded.
public struct DNSHeader: Sendable, Hashable {
    public var id: UInt16
    /// QR: set in responses.
    public var isResponse: Bool
    public var opcode: DNSOpcode
    /// AA: set when the answer comes from the zone's own data.
    public var isAuthoritative: Bool
    /// TC: the message was cut to fit the transport.
    public var isTruncated: Bool
    /// RD: the client asks for recursion; copied into the response.
    public var recursionDesired: Bool
    /// RA: the server offers recursion.
    public var recursionAvailable: Bool
    /// The full 12-bit code; only the low 4 bits live in the header, the rest in the OPT record.
    public var rcode: DNSResponseCode

    public init(
        id: UInt16,
        isResponse: Bool = false,
        opcode: DNSOpcode = .query,
        isAuthoritative: Bool = false,
        isTruncated: Bool = false,
        recursionDesired: Bool = false,
        recursionAvailable: Bool = false,
        rcode: DNSResponseCode = .noError
    ) {
        self.id = id
        self.isResponse = isResponse
        self.opcode = opcode
        self.isAuthoritative = isAuthoritative
        self.isTruncated = isTruncated
        self.recursionDesired = recursionDesired
        self.recursionAvailable = recursionAvailable
        self.rcode = rcode
    }
}

/// One entry of the question section: what the client wants to know.
public struct DNSQuestion: Sendable, Hashable {
    public var name: DNSName
    public var type: DNSType
    public var dnsClass: DNSClass

    public init(name: DNSName, type: DNSType, dnsClass: DNSClass = .internet) {
        self.name = name
        self.type = type
        self.dnsClass = dnsClass
    }
}

/// A resource record with its RDATA kept as bytes: this server only writes A records, and any
/// record it reads from a query is passed over, so interpreting RDATA would be dead weight.
/// Names inside RDATA are written as given, never compressed.
public struct DNSResourceRecord: Sendable, Hashable {
    public var name: DNSName
    public var type: DNSType
    public var dnsClass: DNSClass
    /// Seconds a cache may keep the record.
    public var ttl: UInt32
    public var data: [UInt8]

    public init(name: DNSName, type: DNSType, dnsClass: DNSClass = .internet, ttl: UInt32, data: [UInt8]) {
        self.name = name
        self.type = type
        self.dnsClass = dnsClass
        self.ttl = ttl
        self.data = data
    }

    /// An IN A record.
    public static func a(name: DNSName, address: IPv4Address, ttl: UInt32) -> DNSResourceRecord {
        DNSResourceRecord(name: name, type: .a, ttl: ttl, data: address.bytes)
    }

    /// The address of an A record; nil for other types or malformed data.
    public var ipv4Address: IPv4Address? {
        type == .a ? IPv4Address(bytes: data) : nil
    }
}

/// The EDNS0 parameters of a message (RFC 6891), kept apart from the additional records because
/// the OPT record is not data: it says how large a UDP response the sender can take.
public struct EDNS: Sendable, Hashable {
    /// The largest UDP payload the sender reassembles; values below 512 mean 512.
    public var udpPayloadSize: UInt16
    public var version: UInt8
    /// DO: the sender wants DNSSEC records; RFC 3225 has responses copy it.
    public var dnssecOK: Bool

    public init(udpPayloadSize: UInt16, version: UInt8 = 0, dnssecOK: Bool = false) {
        self.udpPayloadSize = udpPayloadSize
        self.version = version
        self.dnssecOK = dnssecOK
    }
}

/// A whole DNS message (RFC 1035 §4) as this server reads queries and writes responses.
///
/// Parsing is strict about what could make the server misread a name (bounds, label lengths,
/// name length, compression loops) and lenient about bytes after the last section, which are
/// ignored. EDNS options are skipped and not kept.
public struct DNSMessage: Sendable, Hashable {
    /// The smallest UDP payload every client accepts (RFC 1035 §2.3.4).
    public static let minimumUDPPayloadSize = 512

    public var header: DNSHeader
    public var questions: [DNSQuestion]
    public var answers: [DNSResourceRecord]
    public var authorities: [DNSResourceRecord]
    /// Additional records other than OPT.
    public var additionals: [DNSResourceRecord]
    /// Present when the message has an OPT record.
    public var edns: EDNS?

    public init(
        header: DNSHeader,
        questions: [DNSQuestion] = [],
        answers: [DNSResourceRecord] = [],
        authorities: [DNSResourceRecord] = [],
        additionals: [DNSResourceRecord] = [],
        edns: EDNS? = nil
    ) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    public init(parsing bytes: [UInt8]) throws(DNSWireError) {
        var reader = DNSWireReader(bytes: bytes)
        self = try reader.readMessage()
    }

    /// The largest UDP response the sender of this query accepts: 512 without EDNS.
    public var maxUDPResponseSize: Int {
        max(Self.minimumUDPPayloadSize, Int(edns?.udpPayloadSize ?? 0))
    }

    /// The message in wire form, names compressed against earlier names.
    public func encoded() -> [UInt8] {
        var writer = DNSWireWriter()
        writer.write(self)
        return writer.bytes
    }

    /// The message in wire form, cut to at most `maxSize` bytes when it is larger: answers are
    /// kept while they fit, authority and additional records are dropped, the OPT record stays
    /// and TC is set so the client knows the answer is incomplete. If even the questions do not
    /// fit (one always does in 512 bytes, so only a FORMERR echoing many can be that large), they
    /// go too, leaving the header and the OPT record: no response exceeds what the client takes.
    public func encoded(maxSize: Int) -> [UInt8] {
        var writer = DNSWireWriter()
        writer.write(self)
        guard writer.bytes.count > maxSize else { return writer.bytes }
        let optLength = edns == nil ? 0 : DNSWireWriter.optRecordLength
        let keptAnswers = writer.answerEnds.lastIndex { $0 + optLength <= maxSize }
        var truncated = writer.bytes
        truncated.removeSubrange((keptAnswers.map { writer.answerEnds[$0] } ?? DNSWireWriter.headerLength)...)
        if keptAnswers == nil {
            DNSWireWriter.setUInt16(0, at: 4, in: &truncated)
        }
        DNSWireWriter.setUInt16(UInt16(keptAnswers ?? 0), at: 6, in: &truncated)
        DNSWireWriter.setUInt16(0, at: 8, in: &truncated)
        DNSWireWriter.setUInt16(edns == nil ? 0 : 1, at: 10, in: &truncated)
        truncated[2] |= 0x02
        if let edns {
            DNSWireWriter.appendOPT(edns, rcode: header.rcode, to: &truncated)
        }
        return truncated
    }
}

extension DNSMessage {
    /// A response echoing the query's id, opcode, RD bit and questions, with RA set (as cluster
    /// resolvers do) and an OPT record, advertising `udpPayloadSize`, exactly when the query had one.
    public static func response(
        to query: DNSMessage,
        rcode: DNSResponseCode,
        authoritative: Bool,
        answers: [DNSResourceRecord] = [],
        udpPayloadSize: UInt16 = 1232
    ) -> DNSMessage {
        DNSMessage(
            header: DNSHeader(
                id: query.header.id,
                isResponse: true,
                opcode: query.header.opcode,
                isAuthoritative: authoritative,
                recursionDesired: query.header.recursionDesired,
                recursionAvailable: true,
                rcode: rcode
            ),
            questions: query.questions,
            answers: answers,
            edns: query.edns.map { EDNS(udpPayloadSize: udpPayloadSize, dnssecOK: $0.dnssecOK) }
        )
    }
}
