/// A block of ports that shares its top `prefixLength` bits, the unit an LPM-keyed policy map
/// can hold in one entry. Port ranges (`endPort`) must be cut into such blocks, as Cilium does,
/// because the map cannot store an arbitrary range.
public struct PortPrefix: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The first port of the block; its low `16 - prefixLength` bits are zero.
    public var port: UInt16
    /// How many leading bits of the port are fixed: 16 for one port, 0 for every port.
    public var prefixLength: UInt8

    public init(port: UInt16, prefixLength: UInt8) {
        self.port = port
        self.prefixLength = prefixLength
    }

    public var first: UInt16 { port }

    public var last: UInt16 { port | UInt16(truncatingIfNeeded: (UInt32(1) << UInt32(16 - prefixLength)) - 1) }

    public func contains(_ candidate: UInt16) -> Bool {
        (first...last).contains(candidate)
    }

    /// True when every port of `other` is inside this block.
    public func covers(_ other: PortPrefix) -> Bool {
        prefixLength <= other.prefixLength && contains(other.port)
    }

    /// The smallest list of blocks whose union is exactly `first...last`, in port order.
    ///
    /// Greedy from the low end: each block is the largest power-of-two size that starts aligned
    /// at the current port and does not pass `last`. So 8080-8083 is one block `8080/14`;
    /// 8080-8090 is `8080/13` (8080-8087), `8088/15` (8088-8089), `8090/16`; 1-65535 is sixteen
    /// blocks `1/16, 2/15, 4/14, ..., 32768/1`; 0-65535 is `0/0`.
    ///
    /// - Precondition: `first <= last`.
    public static func decompose(_ first: UInt16, _ last: UInt16) -> [PortPrefix] {
        precondition(first <= last, "port range \(first)-\(last) is empty")
        var blocks: [PortPrefix] = []
        var start = UInt32(first)
        let end = UInt32(last)
        while start <= end {
            var size: UInt32 = start == 0 ? 1 << 16 : start & (~start &+ 1)
            while start + size - 1 > end { size >>= 1 }
            blocks.append(PortPrefix(port: UInt16(start), prefixLength: UInt8(16 - size.trailingZeroBitCount)))
            start += size
        }
        return blocks
    }

    public static func < (lhs: PortPrefix, rhs: PortPrefix) -> Bool {
        (lhs.port, lhs.prefixLength) < (rhs.port, rhs.prefixLength)
    }

    /// `port/prefixLength`, as in `8080/14`.
    public var description: String { "\(port)/\(prefixLength)" }
}
