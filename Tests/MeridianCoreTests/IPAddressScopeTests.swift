import MeridianCore
import Testing

@Suite("Address classes")
struct IPAddressScopeTests {
    struct Classes: Equatable, CustomStringConvertible {
        var unspecified = false
        var loopback = false
        var multicast = false
        var broadcast = false

        init(_ address: IPAddress) {
            unspecified = address.isUnspecified
            loopback = address.isLoopback
            multicast = address.isMulticast
            broadcast = address.isLimitedBroadcast
        }

        init(unspecified: Bool = false, loopback: Bool = false, multicast: Bool = false, broadcast: Bool = false) {
            self.unspecified = unspecified
            self.loopback = loopback
            self.multicast = multicast
            self.broadcast = broadcast
        }

        var description: String { "u\(unspecified) l\(loopback) m\(multicast) b\(broadcast)" }
    }

    @Test(arguments: [
        ("0.0.0.0", Classes(unspecified: true)), ("::", Classes(unspecified: true)),
        ("::ffff:0.0.0.0", Classes(unspecified: true)),
        ("127.0.0.1", Classes(loopback: true)), ("127.255.255.254", Classes(loopback: true)),
        ("::1", Classes(loopback: true)), ("::ffff:127.0.0.1", Classes(loopback: true)),
        ("224.0.0.1", Classes(multicast: true)), ("239.255.255.255", Classes(multicast: true)),
        ("ff02::1", Classes(multicast: true)), ("::ffff:224.0.0.5", Classes(multicast: true)),
        ("255.255.255.255", Classes(broadcast: true)), ("::ffff:255.255.255.255", Classes(broadcast: true)),
        ("10.2.1.7", Classes()), ("172.30.2.1", Classes()), ("223.255.255.255", Classes()),
        ("240.0.0.1", Classes()), ("::2", Classes()), ("fe80::1", Classes()), ("fd00:2::7", Classes()),
        ("126.255.255.255", Classes()), ("128.0.0.1", Classes()), ("0.0.0.1", Classes()),
    ])
    func classes(ip: String, expected: Classes) throws {
        #expect(Classes(try #require(IPAddress(ip))) == expected)
    }

    @Test func mappedIPv4() throws {
        #expect(try #require(IPAddress("::ffff:10.2.1.7")).mappedIPv4 == IPAddress("10.2.1.7"))
        #expect(try #require(IPAddress("fd00::a02:107")).mappedIPv4 == nil)
        #expect(try #require(IPAddress("10.2.1.7")).mappedIPv4 == nil)
    }
}

@Suite("IPv4 parsing")
struct IPv4ParsingTests {
    /// Octet texts and their values when valid: leading zeros, a fourth digit, values past
    /// 255, empty octets and signs are refused.
    static let octets: [(String, UInt32?)] = [
        ("0", 0), ("1", 1), ("9", 9), ("10", 10), ("99", 99), ("100", 100), ("255", 255),
        ("00", nil), ("01", nil), ("007", nil), ("256", nil), ("999", nil), ("1000", nil), ("", nil), ("a", nil), ("-1", nil), ("+1", nil), (" 1", nil),
    ]

    @Test("every dotted quad of valid and invalid octets parses exactly when each octet is valid, to the value of its octets")
    func quads() {
        var checked = 0
        for a in Self.octets {
            for b in Self.octets {
                for c in Self.octets {
                    for d in Self.octets {
                        let text = [a.0, b.0, c.0, d.0].joined(separator: ".")
                        let expected: [UInt8]? = if let a = a.1, let b = b.1, let c = c.1, let d = d.1 {
                            [a, b, c, d].map { UInt8($0) }
                        } else { nil }
                        #expect(IPAddress(text)?.bytes == expected, "\(text)")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == Self.octets.count * Self.octets.count * Self.octets.count * Self.octets.count)
    }

    @Test("three or five octets, a trailing or leading dot, and a refusal's reason names the octet", arguments: [
        "1.2.3", "1.2.3.4.5", "1.2.3.4.", ".1.2.3.4", "1..2.3", "",
    ])
    func shapes(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func reasons() {
        let tooLarge = #expect(throws: IPParseError.self) { try IPAddress(parsing: "10.0.0.256") }
        #expect(tooLarge?.reason.contains("\"256\" exceeds 255") == true, "\(String(describing: tooLarge))")
        let leadingZero = #expect(throws: IPParseError.self) { try IPAddress(parsing: "10.01.0.1") }
        #expect(leadingZero?.reason.contains("\"01\" has a leading zero") == true, "\(String(describing: leadingZero))")
    }
}
