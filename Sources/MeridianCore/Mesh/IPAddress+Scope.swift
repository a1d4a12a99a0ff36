/// Address classes that can never be a peer node's or tunnel endpoint's address.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is classed by the IPv4 address it stands
/// for, so `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
extension IPAddress {
    /// The IPv4 address inside an IPv4-mapped IPv6 address; nil for any other address.
    public var mappedIPv4: IPAddress? {
        guard family == .ipv6, value >> 32 == 0xFFFF else { return nil }
        return IPAddress(family: .ipv4, value: value & 0xFFFF_FFFF)
    }

    /// `0.0.0.0` or `::`: "any address", which sockets and routes read as a wildcard.
    public var isUnspecified: Bool {
        if let mappedIPv4 { return mappedIPv4.isUnspecified }
        return value == 0
    }

    /// `127.0.0.0/8` or `::1`: the host itself.
    public var isLoopback: Bool {
        if let mappedIPv4 { return mappedIPv4.isLoopback }
        return family == .ipv4 ? value >> 24 == 127 : value == 1
    }

    /// `224.0.0.0/4` or `ff00::/8`.
    public var isMulticast: Bool {
        if let mappedIPv4 { return mappedIPv4.isMulticast }
        return family == .ipv4 ? value >> 28 == 0xE : value >> 120 == 0xFF
    }

    /// `255.255.255.255`, the limited broadcast address (IPv6 has no broadcast).
    public var isLimitedBroadcast: Bool {
        if let mappedIPv4 { return mappedIPv4.isLimitedBroadcast }
        return family == .ipv4 && value == 0xFFFF_FFFF
    }
}
