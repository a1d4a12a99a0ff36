import MeridianCore

/// Crafted Ethernet frames for BPF_PROG_TEST_RUN (program tests and the policy lookup
/// benchmark), and an RFC 1071 checksum written apart from the programs' own, to verify what
/// they wrote.
public enum CraftedFrames {
    public static let podMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x05]
    public static let gatewayMAC: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]

    public struct TCPFlags: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let fin = TCPFlags(rawValue: 0x01)
        public static let syn = TCPFlags(rawValue: 0x02)
        public static let rst = TCPFlags(rawValue: 0x04)
        public static let ack = TCPFlags(rawValue: 0x10)
    }

    public static func ip(_ text: String) -> [UInt8] { IPAddress(text)!.bytes }

    public static func ethernet(_ etherType: UInt16, payload: [UInt8], src: [UInt8] = podMAC, dst: [UInt8] = gatewayMAC) -> [UInt8] {
        dst + src + be16(etherType) + payload
    }

    public static func ipv4(src: String, dst: String, proto: UInt8, payload: [UInt8], ttl: UInt8 = 64, id: UInt16 = 0x1234,
                     fragmentField: UInt16 = 0x4000) -> [UInt8] {
        var header: [UInt8] = [0x45, 0] + be16(UInt16(20 + payload.count)) + be16(id) + be16(fragmentField) + [ttl, proto, 0, 0]
        header += ip(src) + ip(dst)
        let sum = checksum(header)
        header[10] = UInt8(sum >> 8)
        header[11] = UInt8(sum & 0xFF)
        return header + payload
    }

    public static func tcp(src: String, dst: String, sport: UInt16, dport: UInt16, flags: TCPFlags, payload: [UInt8] = [], ttl: UInt8 = 64) -> [UInt8] {
        var segment = be16(sport) + be16(dport) + be32(1000) + be32(flags.contains(.ack) ? 1 : 0) + [0x50, flags.rawValue] + be16(65535) + [0, 0, 0, 0]
        segment += payload
        let sum = checksum(pseudoHeader(src: ip(src), dst: ip(dst), proto: 6, length: segment.count) + segment)
        segment[16] = UInt8(sum >> 8)
        segment[17] = UInt8(sum & 0xFF)
        return ethernet(0x0800, payload: ipv4(src: src, dst: dst, proto: 6, payload: segment, ttl: ttl))
    }

    public static func udp(src: String, dst: String, sport: UInt16, dport: UInt16, payload: [UInt8], zeroChecksum: Bool = false) -> [UInt8] {
        var datagram = be16(sport) + be16(dport) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
        if !zeroChecksum {
            var sum = checksum(pseudoHeader(src: ip(src), dst: ip(dst), proto: 17, length: datagram.count) + datagram)
            if sum == 0 { sum = 0xFFFF }
            datagram[6] = UInt8(sum >> 8)
            datagram[7] = UInt8(sum & 0xFF)
        }
        return ethernet(0x0800, payload: ipv4(src: src, dst: dst, proto: 17, payload: datagram))
    }

    /// An SCTP packet holding one INIT chunk, the first packet of an association, with its
    /// CRC32c checksum (crafted: this kernel has no SCTP sockets to send one).
    public static func sctpInit(src: String, dst: String, sport: UInt16, dport: UInt16) -> [UInt8] {
        let initChunk: [UInt8] = [1, 0] + be16(20) + be32(0x5EED_0001) + be32(65536) + be16(10) + be16(10) + be32(1)
        var packet = be16(sport) + be16(dport) + be32(0) + [0, 0, 0, 0] + initChunk
        let sum = crc32c(packet)
        // Stored least significant byte first, as RFC 9260 appendix A gives it.
        packet[8] = UInt8(sum & 0xFF)
        packet[9] = UInt8(sum >> 8 & 0xFF)
        packet[10] = UInt8(sum >> 16 & 0xFF)
        packet[11] = UInt8(sum >> 24)
        return ethernet(0x0800, payload: ipv4(src: src, dst: dst, proto: 132, payload: packet))
    }

    /// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), SCTP's checksum.
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? crc >> 1 ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    public static func arpRequest(senderIP: String, targetIP: String) -> [UInt8] {
        let body: [UInt8] = be16(1) + be16(0x0800) + [6, 4] + be16(1) + podMAC + ip(senderIP) + [0, 0, 0, 0, 0, 0] + ip(targetIP)
        return ethernet(0x0806, payload: body, dst: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    public static func pseudoHeader(src: [UInt8], dst: [UInt8], proto: UInt8, length: Int) -> [UInt8] {
        src + dst + [0, proto] + be16(UInt16(length))
    }

    /// The one's-complement checksum of RFC 1071.
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    public static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    public static func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
}
