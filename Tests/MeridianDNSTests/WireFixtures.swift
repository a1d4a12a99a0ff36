import MeridianDNS

/// Bytes from hex text; spaces, newlines and `|` are ignored so fixtures can be laid out field by field.
func hex(_ text: String) -> [UInt8] {
    let digits = text.filter(\.isHexDigit)
    precondition(digits.count.isMultiple(of: 2), "odd number of hex digits in \(text)")
    var bytes: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        bytes.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

func be16(_ value: UInt16) -> [UInt8] {
    [UInt8(value >> 8), UInt8(value & 0xFF)]
}

/// An uncompressed wire name, encoded here rather than by the codec under test.
func wireName(_ text: String) -> [UInt8] {
    text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
}

func header(id: UInt16 = 0x1234, flags: UInt16 = 0x0100, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) -> [UInt8] {
    be16(id) + be16(flags) + be16(qd) + be16(an) + be16(ns) + be16(ar)
}

/// An OPT pseudo-record: root owner, TYPE 41, CLASS = payload size, TTL = extended rcode, version, flags.
func opt(payload: UInt16 = 1232, extendedRCode: UInt8 = 0, version: UInt8 = 0, flags: UInt16 = 0, data: [UInt8] = []) -> [UInt8] {
    [0] + be16(41) + be16(payload) + [extendedRCode, version] + be16(flags) + be16(UInt16(data.count)) + data
}

/// A query as a stub resolver sends it: RD set, one question, an OPT record when `edns` is given.
func queryBytes(
    _ name: String, type: UInt16 = 1, dnsClass: UInt16 = 1, id: UInt16 = 0x1234, flags: UInt16 = 0x0100, edns: [UInt8]? = nil
) -> [UInt8] {
    header(id: id, flags: flags, ar: edns == nil ? 0 : 1) + wireName(name) + be16(type) + be16(dnsClass) + (edns ?? [])
}

enum Fixture {
    /// The question `web.default.svc.cluster.local IN A`: 31 name bytes, QTYPE, QCLASS.
    static let webQuestion = hex("""
        03 776562 07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00
        0001 0001
        """)

    /// `dig web.default.svc.cluster.local` (BIND 9.18 defaults), as `dig +qr` shows it: flags
    /// `rd ad`, one question, and an OPT record with UDP size 1232 and an 8-byte client COOKIE.
    static let digQuery = hex("""
        b1e5 | 0120 | 0001 0000 0000 0001
        """) + webQuestion + hex("""
        00 | 0029 | 04d0 | 00 00 0000 | 000c | 000a 0008 0123456789abcdef
        """)

    /// glibc's res_mkquery for getaddrinfo without `options edns0`: RD only, no additional records.
    static let glibcQuery = hex("1c2a | 0100 | 0001 0000 0000 0000") + webQuestion

    static let webAddress = IPv4Address(10, 96, 0, 10)

    static let services: [ServiceDNSName: ServiceLookupResult] = [
        ServiceDNSName(service: "web", namespace: "default"): .addresses([webAddress]),
        ServiceDNSName(service: "db", namespace: "prod"): .addresses([IPv4Address(10, 96, 3, 7), IPv4Address(10, 96, 3, 8)]),
        ServiceDNSName(service: "headless", namespace: "default"): .addresses([]),
        ServiceDNSName(service: "syncing", namespace: "default"): .unavailable,
    ]

    static func lookup(_ service: ServiceDNSName) -> ServiceLookupResult {
        services[service] ?? .noSuchService
    }
}
