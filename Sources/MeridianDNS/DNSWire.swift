struct DNSWireReader {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func readMessage() throws(DNSWireError) -> DNSMessage {
        guard bytes.count >= 12 else { throw .truncated(.header, offset: 0) }
        var header = Self.header(bytes)
        let questionCount = readUInt16At(4)
        let answerCount = readUInt16At(6)
        let authorityCount = readUInt16At(8)
        let additionalCount = readUInt16At(10)
        offset = 12

        var questions: [DNSQuestion] = []
        for _ in 0..<questionCount {
            let name = try readName()
            try require(4, for: .question)
            questions.append(DNSQuestion(name: name, type: DNSType(rawValue: readUInt16()), dnsClass: DNSClass(rawValue: readUInt16())))
        }
        var answers: [DNSResourceRecord] = []
        for _ in 0..<answerCount {
            answers.append(try readRecord().record)
        }
        var authorities: [DNSResourceRecord] = []
        for _ in 0..<authorityCount {
            authorities.append(try readRecord().record)
        }
        var additionals: [DNSResourceRecord] = []
        var edns: EDNS?
        for _ in 0..<additionalCount {
            let (record, start) = try readRecord()
            guard record.type == .opt else {
                additionals.append(record)
                continue
            }
            guard edns == nil else { throw .multipleOPTRecords(offset: start) }
            guard record.name.isRoot else { throw .optOwnerNotRoot(offset: start) }
            header.rcode = DNSResponseCode(rawValue: UInt16(record.ttl >> 24) << 4 | header.rcode.rawValue)
            edns = EDNS(
                udpPayloadSize: record.dnsClass.rawValue,
                version: UInt8(truncatingIfNeeded: record.ttl >> 16),
                dnssecOK: record.ttl & 0x8000 != 0
            )
        }
        return DNSMessage(
            header: header, questions: questions, answers: answers, authorities: authorities,
            additionals: additionals, edns: edns
        )
    }

    /// The header flags of a message known to be at least 12 bytes long.
    static func header(_ bytes: [UInt8]) -> DNSHeader {
        DNSHeader(
            id: UInt16(bytes[0]) << 8 | UInt16(bytes[1]),
            isResponse: bytes[2] & 0x80 != 0,
            opcode: DNSOpcode(rawValue: bytes[2] >> 3),
            isAuthoritative: bytes[2] & 0x04 != 0,
            isTruncated: bytes[2] & 0x02 != 0,
            recursionDesired: bytes[2] & 0x01 != 0,
            recursionAvailable: bytes[3] & 0x80 != 0,
            rcode: DNSResponseCode(rawValue: UInt16(bytes[3] & 0x0F))
        )
    }

    private mutating func readRecord() throws(DNSWireError) -> (record: DNSResourceRecord, start: Int) {
        let start = offset
        let name = try readName()
        try require(10, for: .record)
        let type = DNSType(rawValue: readUInt16())
        let dnsClass = DNSClass(rawValue: readUInt16())
        let ttl = UInt32(readUInt16()) << 16 | UInt32(readUInt16())
        let length = Int(readUInt16())
        try require(length, for: .recordData)
        let data = Array(bytes[offset..<offset + length])
        offset += length
        return (DNSResourceRecord(name: name, type: type, dnsClass: dnsClass, ttl: ttl, data: data), start)
    }

    /// Reads the name at `offset`, following compression pointers (RFC 1035 §4.1.4), and leaves
    /// `offset` after the name's bytes at this position, that is after the first pointer if any.
    mutating func readName() throws(DNSWireError) -> DNSName {
        let start = offset
        var position = offset
        var labels: [[UInt8]] = []
        var wireLength = 1
        var resumeAt: Int?
        var jumpedTo: Set<Int> = []
        while true {
            guard position < bytes.count else { throw .truncated(.name, offset: position) }
            let length = Int(bytes[position])
            switch length >> 6 {
            case 0b00 where length == 0:
                offset = resumeAt ?? position + 1
                return DNSName(unchecked: labels)
            case 0b00:
                let end = position + 1 + length
                guard end <= bytes.count else { throw .truncated(.label, offset: position) }
                wireLength += 1 + length
                guard wireLength <= DNSName.maxWireLength else { throw .nameTooLong(offset: start) }
                labels.append(Array(bytes[position + 1..<end]))
                position = end
            case 0b11:
                guard position + 1 < bytes.count else { throw .truncated(.compressionPointer, offset: position) }
                let target = (length & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < bytes.count else { throw .pointerOutOfRange(target: target, offset: position) }
                guard jumpedTo.insert(target).inserted else { throw .pointerLoop(target: target, offset: position) }
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
            default:
                throw .labelTooLong(length: length, offset: position)
            }
        }
    }

    private func require(_ count: Int, for element: DNSWireError.Element) throws(DNSWireError) {
        guard bytes.count - offset >= count else { throw .truncated(element, offset: offset) }
    }

    private func readUInt16At(_ position: Int) -> UInt16 {
        UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }

    private mutating func readUInt16() -> UInt16 {
        defer { offset += 2 }
        return readUInt16At(offset)
    }
}

struct DNSWireWriter {
    static let headerLength = 12
    /// Root owner, TYPE, CLASS, TTL and an empty RDLENGTH.
    static let optRecordLength = 11
    /// Compression pointers hold 14 bits, so later names can only point below this.
    private static let pointerLimit = 0x4000

    private(set) var bytes: [UInt8] = []
    /// Where the question section ends (index 0) and where each answer ends (index k), so that a
    /// too-large message can be cut after any whole answer.
    private(set) var answerEnds: [Int] = []
    private var nameOffsets: [ArraySlice<[UInt8]>: Int] = [:]

    mutating func write(_ message: DNSMessage) {
        let header = message.header
        appendUInt16(header.id)
        var flags: UInt8 = header.opcode.rawValue << 3
        if header.isResponse { flags |= 0x80 }
        if header.isAuthoritative { flags |= 0x04 }
        if header.isTruncated { flags |= 0x02 }
        if header.recursionDesired { flags |= 0x01 }
        bytes.append(flags)
        bytes.append((header.recursionAvailable ? 0x80 : 0) | UInt8(header.rcode.rawValue & 0x0F))
        appendUInt16(UInt16(clamping: message.questions.count))
        appendUInt16(UInt16(clamping: message.answers.count))
        appendUInt16(UInt16(clamping: message.authorities.count))
        appendUInt16(UInt16(clamping: message.additionals.count + (message.edns == nil ? 0 : 1)))

        for question in message.questions {
            write(question.name)
            appendUInt16(question.type.rawValue)
            appendUInt16(question.dnsClass.rawValue)
        }
        answerEnds = [bytes.count]
        for record in message.answers {
            write(record)
            answerEnds.append(bytes.count)
        }
        for record in message.authorities + message.additionals {
            write(record)
        }
        if let edns = message.edns {
            Self.appendOPT(edns, rcode: header.rcode, to: &bytes)
        }
    }

    private mutating func write(_ record: DNSResourceRecord) {
        write(record.name)
        appendUInt16(record.type.rawValue)
        appendUInt16(record.dnsClass.rawValue)
        appendUInt16(UInt16(truncatingIfNeeded: record.ttl >> 16))
        appendUInt16(UInt16(truncatingIfNeeded: record.ttl))
        appendUInt16(UInt16(clamping: record.data.count))
        bytes += record.data.prefix(Int(UInt16.max))
    }

    /// Writes `name`, replacing its longest suffix already in the message by a pointer. Suffixes
    /// match ignoring case, so the pointed-to spelling (usually the question's) is what is read back.
    private mutating func write(_ name: DNSName) {
        let folded = name.labels.map(DNSName.lowercased)
        for index in folded.indices {
            let suffix = folded[index...]
            if let target = nameOffsets[suffix] {
                appendUInt16(0xC000 | UInt16(target))
                return
            }
            if bytes.count < Self.pointerLimit {
                nameOffsets[suffix] = bytes.count
            }
            bytes.append(UInt8(name.labels[index].count))
            bytes += name.labels[index]
        }
        bytes.append(0)
    }

    private mutating func appendUInt16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    static func appendOPT(_ edns: EDNS, rcode: DNSResponseCode, to bytes: inout [UInt8]) {
        bytes += [
            0,
            UInt8(DNSType.opt.rawValue >> 8), UInt8(truncatingIfNeeded: DNSType.opt.rawValue),
            UInt8(edns.udpPayloadSize >> 8), UInt8(truncatingIfNeeded: edns.udpPayloadSize),
            UInt8(rcode.rawValue >> 4), edns.version, edns.dnssecOK ? 0x80 : 0, 0,
            0, 0,
        ]
    }

    static func setUInt16(_ value: UInt16, at position: Int, in bytes: inout [UInt8]) {
        bytes[position] = UInt8(value >> 8)
        bytes[position + 1] = UInt8(truncatingIfNeeded: value)
    }
}
