/// An IPv4 address as A-record data. Its own small type rather than MeridianCore's `IPAddress`
/// so that this target stays free of dependencies; convert through `bytes`.
public struct IPv4Address: Sendable, Hashable, CustomStringConvertible {
    private var value: UInt32

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Nil unless there are exactly four bytes, in network order.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Parses a dotted quad; leading zeros are refused since some parsers read them as octal.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard part.count <= 3, part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber),
                  part == "0" || !part.hasPrefix("0"), let octet = UInt8(part)
            else { return nil }
            octets.append(octet)
        }
        self.init(bytes: octets)
    }

    /// The four bytes in network order, as they appear in RDATA.
    public var bytes: [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    public var description: String {
        bytes.map(String.init).joined(separator: ".")
    }
}
