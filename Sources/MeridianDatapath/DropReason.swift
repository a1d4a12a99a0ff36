import CMeridianBPF

/// The names of the datapath's drop reasons (the numbers of `abi.h`, which are Cilium's), as
/// metrics and monitors print them: Cilium's flow names where Cilium has the reason, and
/// Meridian's own for the checks it adds.
public enum DropReason {
    public static let names: [UInt32: String] = [
        UInt32(MER_DROP_INVALID_SIP): "INVALID_SOURCE_IP",
        UInt32(MER_DROP_POLICY): "POLICY_DENIED",
        UInt32(MER_DROP_INVALID): "INVALID_PACKET_DROPPED",
        UInt32(MER_DROP_CT_INVALID_HDR): "CT_TRUNCATED_OR_INVALID_HEADER",
        UInt32(MER_DROP_UNKNOWN_L3): "UNSUPPORTED_L3_PROTOCOL",
        UInt32(MER_DROP_WRITE_ERROR): "ERROR_WRITING_TO_PACKET",
        UInt32(MER_DROP_UNKNOWN_L4): "UNKNOWN_L4_PROTOCOL",
        UInt32(MER_DROP_NO_TUNNEL_KEY): "NO_TUNNEL_KEY",
        UInt32(MER_DROP_UNROUTABLE): "UNROUTABLE",
        UInt32(MER_DROP_CSUM_L3): "INVALID_L3_CHECKSUM",
        UInt32(MER_DROP_CSUM_L4): "INVALID_L4_CHECKSUM",
        UInt32(MER_DROP_CT_CREATE_FAILED): "CT_CANNOT_CREATE_ENTRY",
        UInt32(MER_DROP_FRAG_NOSUPPORT): "FRAGMENTS_NOT_SUPPORTED",
        UInt32(MER_DROP_NO_SERVICE): "SERVICE_BACKEND_NOT_FOUND",
        UInt32(MER_DROP_NO_TUNNEL_ENDPOINT): "NO_TUNNEL_ENDPOINT",
        UInt32(MER_DROP_UNSUPPORTED_L2): "UNSUPPORTED_L2_PROTOCOL",
        UInt32(MER_DROP_INVALID_IDENTITY): "INVALID_IDENTITY",
        UInt32(MER_DROP_UNKNOWN_SENDER): "UNKNOWN_SENDER",
        UInt32(MER_DROP_POLICY_DENY): "POLICY_DENY",
        UInt32(MER_DROP_UNENCRYPTED_TRAFFIC): "UNENCRYPTED_TRAFFIC",
        UInt32(MER_DROP_TTL_EXCEEDED): "TTL_EXCEEDED",
        UInt32(MER_DROP_HOST_NOT_READY): "HOST_NOT_READY",
        UInt32(MER_DROP_RESERVED_IDENTITY_FROM_NODE): "RESERVED_IDENTITY_FROM_NODE",
        UInt32(MER_DROP_SOURCE_NOT_OWNED_BY_SENDER): "SOURCE_NOT_OWNED_BY_SENDER",
        UInt32(MER_DROP_UNENCRYPTED_INGRESS): "UNENCRYPTED_INGRESS",
    ]

    /// The reason's name, or `REASON_<n>` for a number this build does not know.
    public static func name(_ reason: UInt32) -> String { names[reason] ?? "REASON_\(reason)" }
}
