import Foundation

/// Describes one leaf certificate for a cluster CA to issue: the etcd server certificate,
/// the admin client, or a remote cluster's read-only client.
///
/// etcd maps a client certificate's common name to an RBAC user, so `commonName` is an
/// authorization decision, not a label.
public struct CertificateRequest: Sendable, Hashable {
    /// Which side of a TLS handshake the certificate may authenticate; becomes the ExtendedKeyUsage extension.
    public enum Usage: Sendable, Hashable {
        case server
        case client
        case serverAndClient
    }

    public var commonName: String
    public var usage: Usage
    /// DNS subjectAltNames; Go ignores the common name for host verification, so servers need these.
    public var dnsNames: [String]
    /// IP subjectAltNames in textual form, IPv4 ("127.0.0.1") or IPv6 ("::1").
    public var ipAddresses: [String]
    /// Lifetime, counted from `notBefore` when it is given and from the issuing time otherwise.
    public var validity: Duration
    /// Overrides the issuer's back-dated start; lets tests mint certificates that are already expired.
    public var notBefore: Date?

    public init(
        commonName: String,
        usage: Usage,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        validity: Duration = .days(365),
        notBefore: Date? = nil
    ) {
        self.commonName = commonName
        self.usage = usage
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.validity = validity
        self.notBefore = notBefore
    }
}
