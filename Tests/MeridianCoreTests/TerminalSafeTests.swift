import MeridianCore
import Testing

@Suite("Escaping peer strings for terminals")
struct TerminalSafeTests {
    @Test(arguments: ["node-1", "c2/shop/web", "café", "日本語", "🙂 👍🏽", "a b", ""])
    func printableTextIsKept(text: String) {
        #expect(TerminalSafe.escape(text) == text)
        #expect(!TerminalSafe.containsNonPrintable(text))
    }

    @Test(arguments: [
        ("\u{1B}[31mred", #"\u{1B}[31mred"#),
        ("line\nforged", #"line\u{0A}forged"#),
        ("a\tb\r", #"a\u{09}b\u{0D}"#),
        ("nul\u{0}", #"nul\u{00}"#),
        ("del\u{7F}", #"del\u{7F}"#),
        ("csi\u{9B}2J", #"csi\u{9B}2J"#),
        ("abc\u{202E}fed", #"abc\u{202E}fed"#),
        ("zero\u{200B}width", #"zero\u{200B}width"#),
        ("\u{FEFF}bom", #"\u{FEFF}bom"#),
        ("sep\u{2028}arator", #"sep\u{2028}arator"#),
        ("para\u{2029}", #"para\u{2029}"#),
        ("private\u{E000}", #"private\u{E000}"#),
        ("unassigned\u{378}", #"unassigned\u{378}"#),
    ])
    func nonPrintablesAreEscaped(text: String, escaped: String) {
        #expect(TerminalSafe.escape(text) == escaped)
        #expect(TerminalSafe.containsNonPrintable(text))
    }

    /// A peer cannot write text that reads as an escape: its backslash is doubled.
    @Test func backslashesAreDoubled() {
        #expect(TerminalSafe.escape(#"\u{1B}"#) == #"\\u{1B}"#)
        #expect(TerminalSafe.escape(#"a\b"#) == #"a\\b"#)
        #expect(!TerminalSafe.containsNonPrintable(#"a\b"#))
    }

    @Test func escapedTextIsAlwaysPrintable() {
        let scalars = (UInt32(0)...0x3100).compactMap(Unicode.Scalar.init) + [0xE0001, 0x10FFFF].compactMap(Unicode.Scalar.init)
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        #expect(!TerminalSafe.containsNonPrintable(TerminalSafe.escape(text)))
    }

    @Test func longTextIsCut() {
        #expect(TerminalSafe.escape("abcdef", maxScalars: 3) == "abc…")
        #expect(TerminalSafe.escape("abc", maxScalars: 3) == "abc")
        #expect(TerminalSafe.escape("\u{1B}\u{1B}\u{1B}", maxScalars: 2) == #"\u{1B}\u{1B}…"#)
    }

    @Test(arguments: [
        ([0x6E, 0x6F, 0x64, 0x65], "node"),
        ([0x66, 0xFF, 0x6F], #"f\xFFo"#),
        ([0xC3, 0xA9, 0x1B], #"é\u{1B}"#),
        ([0xC0, 0xAF], #"\xC0\xAF"#),
        ([0xED, 0xA0, 0x80], #"\xED\xA0\x80"#),
        ([0x61, 0xE2, 0x82], #"a\xE2\x82"#),
    ] as [([UInt8], String)])
    func bytesAreShownAsUTF8WithInvalidBytesEscaped(bytes: [UInt8], shown: String) {
        #expect(TerminalSafe.escape(utf8: bytes) == shown)
    }
}
