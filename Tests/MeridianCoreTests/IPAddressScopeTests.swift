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
