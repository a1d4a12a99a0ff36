import Testing
@testable import MeridianCore

@Suite("Policy port ranges")
struct PolicyPortPrefixTests {
    private static func blocks(_ text: String) -> [PortPrefix] {
        text.split(separator: " ").map { item in
            let parts = item.split(separator: "/")
            return PortPrefix(port: UInt16(parts[0])!, prefixLength: UInt8(parts[1])!)
        }
    }

    @Test(arguments: [
        (UInt16(80), UInt16(80), "80/16"),
        (8080, 8083, "8080/14"),
        (8080, 8090, "8080/13 8088/15 8090/16"),
        (8081, 8084, "8081/16 8082/15 8084/16"),
        (0, 65535, "0/0"),
        (0, 0, "0/16"),
        (65535, 65535, "65535/16"),
        (1024, 65535, "1024/6 2048/5 4096/4 8192/3 16384/2 32768/1"),
        (32768, 65535, "32768/1"),
        (30000, 32767, "30000/12 30016/10 30080/9 30208/7 30720/5"),
    ])
    func decomposition(first: UInt16, last: UInt16, expected: String) {
        #expect(PortPrefix.decompose(first, last) == Self.blocks(expected))
    }

    @Test func fullRangeFromOneIsSixteenBlocks() {
        let blocks = PortPrefix.decompose(1, 65535)
        #expect(blocks.count == 16)
        #expect(blocks.map(\.prefixLength) == Array((1...16).reversed()).map(UInt8.init))
        #expect(blocks.map(\.port) == (0..<16).map { UInt16(1) << UInt16($0) })
    }

    @Test(arguments: [(UInt16(1), UInt16(1)), (1, 65535), (8080, 8090), (100, 1000), (32000, 32767), (0, 65535), (65534, 65535), (7, 9)])
    func blocksCoverTheRangeExactlyAndAreAligned(first: UInt16, last: UInt16) {
        let blocks = PortPrefix.decompose(first, last)
        var next = UInt32(first)
        for block in blocks {
            #expect(UInt32(block.first) == next)
            let size = UInt32(1) << UInt32(16 - block.prefixLength)
            #expect(UInt32(block.port) % size == 0)
            #expect(UInt32(block.last) == UInt32(block.first) + size - 1)
            next = UInt32(block.last) + 1
        }
        #expect(next == UInt32(last) + 1)
    }

    @Test func blockContainmentAndCovering() {
        let block = PortPrefix(port: 8080, prefixLength: 14)
        #expect(block.first == 8080 && block.last == 8083)
        #expect(block.contains(8083) && !block.contains(8084) && !block.contains(8079))
        #expect(block.covers(PortPrefix(port: 8082, prefixLength: 15)))
        #expect(!block.covers(PortPrefix(port: 8080, prefixLength: 13)))
        #expect(PortPrefix(port: 0, prefixLength: 0).covers(block))
        #expect(block.description == "8080/14")
    }
}
