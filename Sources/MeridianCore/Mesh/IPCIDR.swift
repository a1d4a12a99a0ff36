/// Why an IP address, prefix or netmask could not be parsed.
public struct IPParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var input: String
    public var reason: String

    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    public var description: String { "invalid IP or prefix \"\(input)\": \(reason)" }
}

/// An IPv4 or IPv6 address, parsed strictly so that records from remote clusters can be checked.
///
/// Parsing accepts dotted quads without leading zeros and RFC 4291 IPv6 text (with `::` and a
/// trailing dotted quad); zones (`%eth0`) are rejected. `description` prints the canonical
/// form: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run compressed).
public struct IPAddress: Sendable, Hashable, Comparable, CodableAsText, CustomStringConvertible, LosslessStringConvertible {
    /// Address family, which fixes the address width.
    public enum Family: Sendable, Hashable {
        case ipv4
        case ipv6

        public var bitWidth: Int { self == .ipv4 ? 32 : 128 }
        public var byteCount: Int { bitWidth / 8 }
    }

    public let family: Family
    /// The address as an integer; IPv4 addresses occupy the low 32 bits.
    let value: UInt128

    init(family: Family, value: UInt128) {
        self.family = family
        self.value = value
    }

    /// An address from its network-order bytes: 4 for IPv4, 16 for IPv6.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: family = .ipv4
        case 16: family = .ipv6
        default: return nil
        }
        value = bytes.reduce(UInt128(0)) { ($0 << 8) | UInt128($1) }
    }

    public init(parsing text: String) throws(IPParseError) {
        if text.utf8.contains(UInt8(ascii: ":")) {
            self.init(family: .ipv6, value: try Self.parseIPv6(text))
        } else {
            self.init(family: .ipv4, value: UInt128(try Self.parseIPv4(Substring(text), whole: text)))
        }
    }

    public init?(_ description: String) {
        guard let parsed = try? IPAddress(parsing: description) else { return nil }
        self = parsed
    }

    /// The address in network byte order.
    public var bytes: [UInt8] {
        (0..<family.byteCount).reversed().map { UInt8(truncatingIfNeeded: value >> UInt128($0 * 8)) }
    }

    /// IPv4 before IPv6, then numeric order.
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        if lhs.family != rhs.family { return lhs.family == .ipv4 }
        return lhs.value < rhs.value
    }

    public var description: String {
        switch family {
        case .ipv4:
            return Self.formatIPv4(UInt32(truncatingIfNeeded: value))
        case .ipv6:
            return Self.formatIPv6(value)
        }
    }


    private static func parseIPv4(_ text: Substring, whole: String) throws(IPParseError) -> UInt32 {
        if let value = wellFormedIPv4(text.utf8) { return value }
        return try explainIPv4(text, whole: whole)
    }

    /// The address of a well-formed dotted quad in one pass without allocating (agents parse
    /// tens of thousands of backend addresses per service change); nil for anything else, which
    /// `explainIPv4` then refuses with its reason.
    private static func wellFormedIPv4(_ bytes: Substring.UTF8View) -> UInt32? {
        var result: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var octets = 0
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                result = result << 8 | octet
                octets += 1
                octet = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                // A leading zero (but a lone 0) is refused, as is a fourth digit.
                guard digits < 3, digits == 0 || octet != 0 else { return nil }
                octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard octet <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets == 3 else { return nil }
        return result << 8 | octet
    }

    private static func explainIPv4(_ text: Substring, whole: String) throws(IPParseError) -> UInt32 {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else {
            throw IPParseError(input: whole, reason: "an IPv4 address has four dot-separated octets")
        }
        var result: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.utf8.count), part.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
                throw IPParseError(input: whole, reason: "octet \"\(part)\" is not a decimal number")
            }
            guard part.utf8.count == 1 || part.utf8.first != UInt8(ascii: "0") else {
                throw IPParseError(input: whole, reason: "octet \"\(part)\" has a leading zero")
            }
            guard let octet = UInt32(part), octet <= 255 else {
                throw IPParseError(input: whole, reason: "octet \"\(part)\" exceeds 255")
            }
            result = result << 8 | octet
        }
        return result
    }

    private static func parseIPv6(_ text: String) throws(IPParseError) -> UInt128 {
        if text.contains("%") {
            throw IPParseError(input: text, reason: "zoned IPv6 addresses are not accepted")
        }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        let compressed: Bool
        if let split = doubleColon(in: Substring(text)) {
            compressed = true
            let before = text[..<split]
            let after = text[text.index(split, offsetBy: 2)...]
            if doubleColon(in: after) != nil {
                throw IPParseError(input: text, reason: "\"::\" may appear only once")
            }
            head = try parseGroups(before, allowIPv4Tail: false, whole: text)
            tail = try parseGroups(after, allowIPv4Tail: true, whole: text)
        } else {
            compressed = false
            head = try parseGroups(Substring(text), allowIPv4Tail: true, whole: text)
        }
        let count = head.count + tail.count
        if compressed ? count > 7 : count != 8 {
            throw IPParseError(input: text, reason: "an IPv6 address has eight 16-bit groups")
        }
        let groups = head + Array(repeating: 0, count: 8 - count) + tail
        return groups.reduce(UInt128(0)) { ($0 << 16) | UInt128($1) }
    }

    private static func doubleColon(in text: Substring) -> String.Index? {
        zip(text.indices, text.dropFirst()).first { text[$0.0] == ":" && $0.1 == ":" }?.0
    }

    private static func parseGroups(
        _ text: Substring, allowIPv4Tail: Bool, whole: String
    ) throws(IPParseError) -> [UInt16] {
        guard !text.isEmpty else { return [] }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var groups: [UInt16] = []
        for (index, part) in parts.enumerated() {
            if allowIPv4Tail, index == parts.count - 1, part.contains(".") {
                let v4 = try parseIPv4(part, whole: whole)
                groups.append(UInt16(v4 >> 16))
                groups.append(UInt16(v4 & 0xFFFF))
                continue
            }
            guard (1...4).contains(part.utf8.count), let group = UInt16(part, radix: 16),
                part.utf8.allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
            else {
                throw IPParseError(input: whole, reason: "group \"\(part)\" is not 1 to 4 hexadecimal digits")
            }
            groups.append(group)
        }
        return groups
    }

    private static func formatIPv4(_ value: UInt32) -> String {
        "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
    }

    private static func formatIPv6(_ value: UInt128) -> String {
        if value >> 32 == 0xFFFF {
            return "::ffff:" + formatIPv4(UInt32(truncatingIfNeeded: value))
        }
        let groups = (0..<8).reversed().map { UInt16(truncatingIfNeeded: value >> UInt128($0 * 16)) }
        var bestStart = -1
        var bestLength = 0
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < 8, groups[index] == 0 { index += 1 }
            if index - start > bestLength {
                bestStart = start
                bestLength = index - start
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestLength >= 2 else { return hex.joined(separator: ":") }
        let before = hex[..<bestStart].joined(separator: ":")
        let after = hex[(bestStart + bestLength)...].joined(separator: ":")
        return before + "::" + after
    }
}

/// An IP prefix such as `10.244.1.0/24` or `fd00:10:244::/64`.
///
/// Pod CIDRs of different clusters must not overlap (the ipcache and tunnel map are keyed by IP),
/// so the mesh checks them with `overlaps(_:)`. The stored address is always the network
/// address: host bits given in the input are cleared, as Go's `ParseCIDR` does.
public struct IPCIDR: Sendable, Hashable, Comparable, CodableAsText, CustomStringConvertible, LosslessStringConvertible {
    /// The network address (host bits zero).
    public let address: IPAddress
    public let prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) throws(IPParseError) {
        guard (0...address.family.bitWidth).contains(prefixLength) else {
            throw IPParseError(
                input: "\(address)/\(prefixLength)",
                reason: "prefix length must be in 0...\(address.family.bitWidth)")
        }
        self.address = IPAddress(
            family: address.family, value: address.value & Self.maskValue(address.family, prefixLength))
        self.prefixLength = prefixLength
    }

    /// Parses `address/length`.
    public init(parsing text: String) throws(IPParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw IPParseError(input: text, reason: "expected address/prefix-length")
        }
        let address = try IPAddress(parsing: String(parts[0]))
        let digits = parts[1].utf8
        guard (1...3).contains(digits.count), digits.allSatisfy({ (0x30...0x39).contains($0) }),
            digits.count == 1 || digits.first != UInt8(ascii: "0"), let length = Int(parts[1])
        else {
            throw IPParseError(input: text, reason: "prefix length \"\(parts[1])\" is not a decimal number")
        }
        try self.init(address: address, prefixLength: length)
    }

    /// A prefix from an address and a netmask in network-order bytes (Go's `net.IPNet`).
    ///
    /// The mask must be contiguous ones followed by zeros. A 16-byte mask on an IPv4 address is
    /// accepted when its first 12 bytes are all ones (Go's IPv4-in-IPv6 mask form).
    public init(address: IPAddress, mask: [UInt8]) throws(IPParseError) {
        var maskBytes = mask
        if address.family == .ipv4, maskBytes.count == 16, maskBytes.prefix(12).allSatisfy({ $0 == 0xFF }) {
            maskBytes = Array(maskBytes.suffix(4))
        }
        guard maskBytes.count == address.family.byteCount else {
            throw IPParseError(
                input: "\(address) mask \(mask)",
                reason: "a \(address.family == .ipv4 ? "IPv4" : "IPv6") mask has \(address.family.byteCount) bytes")
        }
        guard let length = Self.prefixLength(ofMask: maskBytes) else {
            throw IPParseError(input: "\(address) mask \(mask)", reason: "netmask is not contiguous")
        }
        try self.init(address: address, prefixLength: length)
    }

    public init?(_ description: String) {
        guard let parsed = try? IPCIDR(parsing: description) else { return nil }
        self = parsed
    }

    public var family: IPAddress.Family { address.family }

    /// The netmask in network byte order (4 or 16 bytes).
    public var maskBytes: [UInt8] {
        IPAddress(family: family, value: Self.maskValue(family, prefixLength)).bytes
    }

    /// The highest address inside the prefix.
    public var lastAddress: IPAddress {
        let hostBits = Self.maskValue(family, prefixLength) ^ Self.allOnes(family)
        return IPAddress(family: family, value: address.value | hostBits)
    }

    public func contains(_ ip: IPAddress) -> Bool {
        ip.family == family && ip.value & Self.maskValue(family, prefixLength) == address.value
    }

    /// True when every address of `other` is inside this prefix.
    public func contains(_ other: IPCIDR) -> Bool {
        other.prefixLength >= prefixLength && contains(other.address)
    }

    /// True when the two prefixes share at least one address.
    public func overlaps(_ other: IPCIDR) -> Bool {
        contains(other.address) || other.contains(address)
    }

    public static func < (lhs: IPCIDR, rhs: IPCIDR) -> Bool {
        lhs.address != rhs.address ? lhs.address < rhs.address : lhs.prefixLength < rhs.prefixLength
    }

    public var description: String { "\(address)/\(prefixLength)" }


    /// The prefix length of a contiguous netmask, or nil when the mask has holes.
    public static func prefixLength(ofMask mask: [UInt8]) -> Int? {
        var length = 0
        var seenZero = false
        for byte in mask {
            for bit in (0..<8).reversed() {
                if byte & (1 << bit) != 0 {
                    if seenZero { return nil }
                    length += 1
                } else {
                    seenZero = true
                }
            }
        }
        return length
    }

    private static func allOnes(_ family: IPAddress.Family) -> UInt128 {
        family == .ipv4 ? UInt128(UInt32.max) : UInt128.max
    }

    private static func maskValue(_ family: IPAddress.Family, _ prefixLength: Int) -> UInt128 {
        let hostBits = family.bitWidth - prefixLength
        guard hostBits < family.bitWidth else { return 0 }
        return (allOnes(family) >> UInt128(hostBits)) << UInt128(hostBits)
    }
}

/// A value stored in JSON as its text (`"10.1.0.5"`, `"10.1.0.0/16"`), parsed strictly on decode.
public protocol CodableAsText: Codable, CustomStringConvertible {
    init(parsing text: String) throws(IPParseError)
}

extension CodableAsText {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
