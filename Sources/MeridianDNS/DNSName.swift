/// A domain name as a sequence of labels, the unit DNS compares, compresses and delegates on.
///
/// Labels keep the bytes and case they arrived with, because resolvers that randomise query case
/// (DNS 0x20) expect the question echoed verbatim. Equality and hashing ignore ASCII case, as
/// RFC 4343 requires, so `Web.Default.svc` and `web.default.svc` are the same key.
public struct DNSName: Sendable, Hashable, CustomStringConvertible {
    /// The longest a label may be (RFC 1035 §2.3.4).
    public static let maxLabelLength = 63
    /// The longest a name may be in wire form, length bytes and root byte included.
    public static let maxWireLength = 255

    public static let root = DNSName(unchecked: [])

    /// Labels from the leftmost (most specific) to the one just below the root.
    public let labels: [[UInt8]]

    init(unchecked labels: [[UInt8]]) {
        self.labels = labels
    }

    /// Nil when a label is empty or longer than 63 bytes, or the name exceeds 255 bytes.
    public init?(labels: [[UInt8]]) {
        guard labels.allSatisfy({ !$0.isEmpty && $0.count <= Self.maxLabelLength }) else { return nil }
        let name = DNSName(unchecked: labels)
        guard name.wireLength <= Self.maxWireLength else { return nil }
        self = name
    }

    /// Parses dotted text such as `web.default.svc.cluster.local` with or without the final dot;
    /// `.` alone is the root. Labels are taken literally: there are no `\` escapes.
    public init?(_ text: String) {
        if text == "." {
            self = .root
            return
        }
        var body = Substring(text)
        if body.hasSuffix(".") { body = body.dropLast() }
        guard !body.isEmpty else { return nil }
        self.init(labels: body.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) })
    }

    public var isRoot: Bool { labels.isEmpty }

    /// Bytes this name takes uncompressed on the wire.
    public var wireLength: Int { labels.reduce(1) { $0 + $1.count + 1 } }

    /// The same name with ASCII letters folded to lower case.
    public func lowercased() -> DNSName {
        DNSName(unchecked: labels.map(Self.lowercased))
    }

    /// True when this name equals `ancestor` or lies below it, ignoring case.
    public func isSubdomain(of ancestor: DNSName) -> Bool {
        guard labels.count >= ancestor.labels.count else { return false }
        return zip(labels.suffix(ancestor.labels.count), ancestor.labels).allSatisfy { Self.equalIgnoringCase($0, $1) }
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.labels.count == rhs.labels.count && zip(lhs.labels, rhs.labels).allSatisfy { equalIgnoringCase($0, $1) }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(labels.count)
        for label in labels {
            hasher.combine(label.count)
            for byte in label { hasher.combine(Self.lowercased(byte)) }
        }
    }

    /// Presentation form with the final dot; dots, backslashes and unprintable bytes inside a
    /// label are escaped (RFC 1035 §5.1) so a hostile name cannot forge log lines.
    public var description: String {
        if isRoot { return "." }
        var text = ""
        for label in labels {
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    text.append("\\")
                    text.append(Character(Unicode.Scalar(byte)))
                case 0x21...0x7E:
                    text.append(Character(Unicode.Scalar(byte)))
                default:
                    let digits = String(byte)
                    text += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
            text.append(".")
        }
        return text
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    static func lowercased(_ label: [UInt8]) -> [UInt8] {
        label.map(lowercased)
    }

    static func equalIgnoringCase(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        lhs.count == rhs.count && zip(lhs, rhs).allSatisfy { lowercased($0) == lowercased($1) }
    }
}
