import Foundation
import MeridianCore
import MeridianDatapath
import MeridianTestSupport

/// The program tests' name for the crafted frames.
typealias Packets = CraftedFrames

/// A parsed view of an IPv4 frame the program returned.
struct ParsedFrame {
    let bytes: [UInt8]

    var ethDst: [UInt8] { Array(bytes[0..<6]) }
    var ethSrc: [UInt8] { Array(bytes[6..<12]) }
    var ipHeader: [UInt8] { Array(bytes[14..<34]) }
    var ttl: UInt8 { bytes[22] }
    var proto: UInt8 { bytes[23] }
    var source: String { IPAddress(bytes: bytes[26..<30])!.description }
    var destination: String { IPAddress(bytes: bytes[30..<34])!.description }
    var l4: [UInt8] { Array(bytes[34...]) }
    var sourcePort: UInt16 { UInt16(bytes[34]) << 8 | UInt16(bytes[35]) }
    var destinationPort: UInt16 { UInt16(bytes[36]) << 8 | UInt16(bytes[37]) }

    var ipChecksumValid: Bool { Packets.checksum(ipHeader) == 0 }

    /// Verifies the TCP or UDP checksum over the pseudo-header; a UDP checksum of 0 means none.
    var l4ChecksumValid: Bool {
        if proto == 17 && bytes[40] == 0 && bytes[41] == 0 { return true }
        let pseudo = Packets.pseudoHeader(src: Array(bytes[26..<30]), dst: Array(bytes[30..<34]), proto: proto, length: l4.count)
        return Packets.checksum(pseudo + l4) == 0
    }
}
