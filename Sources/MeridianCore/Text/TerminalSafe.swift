/// Makes text that another party controls safe to print on a terminal or in a log line.
///
/// Names, keys and messages read from a peer cluster may hold escape sequences (ESC, CSI),
/// newlines that forge extra log lines, bidirectional overrides that reorder what is shown, or
/// bytes that are not UTF-8. `escape` keeps printable text as it is and writes everything else
/// as an escape the reader can see: `\u{1B}` for a Unicode scalar, `\xFF` for a byte that is
/// not part of valid UTF-8. A backslash is doubled, so an escape in the output always stands
/// for an escaped character and never for text the peer wrote to look like one.
public enum TerminalSafe {
    /// True for scalars that print as themselves. Refused: controls (C0, DEL, C1), format
    /// characters (bidirectional overrides, zero-width characters), line and paragraph
    /// separators, private-use and unassigned scalars.
    public static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .unassigned:
            false
        default:
            true
        }
    }

    /// True when the text holds a scalar that `isPrintable` refuses.
    public static func containsNonPrintable(_ text: some StringProtocol) -> Bool {
        text.unicodeScalars.contains { !isPrintable($0) }
    }

    /// The text with non-printable scalars escaped and backslashes doubled.
    public static func escape(_ text: some StringProtocol) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars { append(scalar, to: &output) }
        return output
    }

    /// As `escape(_:)`, keeping at most `maxScalars` scalars of the input; a cut is marked
    /// with `…`. Bounds what a long peer string costs a log line or a table cell.
    public static func escape(_ text: some StringProtocol, maxScalars: Int) -> String {
        let scalars = text.unicodeScalars
        guard scalars.count > maxScalars else { return escape(text) }
        var output = ""
        for scalar in scalars.prefix(max(0, maxScalars)) { append(scalar, to: &output) }
        return output + "…"
    }

    /// Raw bytes (an etcd key or value) shown as text: valid UTF-8 is escaped as by
    /// `escape(_:)`, each byte of an invalid sequence is written as `\xNN`.
    public static func escape(utf8 bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        var output = ""
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case let .valid(encoded):
                append(Unicode.UTF8.decode(encoded), to: &output)
                offset += encoded.count
            case let .error(length):
                for byte in bytes[offset..<offset + length] { output += "\\x" + hex(byte) }
                offset += length
            case .emptyInput:
                return output
            }
        }
    }

    private static func append(_ scalar: Unicode.Scalar, to output: inout String) {
        if scalar == "\\" {
            output += "\\\\"
        } else if isPrintable(scalar) {
            output.unicodeScalars.append(scalar)
        } else {
            output += "\\u{" + hex(scalar.value) + "}"
        }
    }

    private static func hex(_ value: some BinaryInteger) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return digits.count < 2 ? "0" + digits : digits
    }
}
