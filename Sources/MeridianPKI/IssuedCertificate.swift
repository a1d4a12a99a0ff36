import Foundation

/// A freshly issued leaf certificate together with the private key that was generated for it,
/// ready to be handed to etcd or a client via `PEMFiles`.
public struct IssuedCertificate: Sendable {
    public let certificatePEM: String
    /// PKCS#8 ("PRIVATE KEY") encoding of a P-256 key, as accepted by Go's `tls.LoadX509KeyPair`.
    public let privateKeyPEM: String
    /// The expiry as encoded in the certificate (whole seconds, capped at the CA's own expiry).
    public let notAfter: Date
    public let commonName: String

    public init(certificatePEM: String, privateKeyPEM: String, notAfter: Date, commonName: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.notAfter = notAfter
        self.commonName = commonName
    }
}

extension IssuedCertificate: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "IssuedCertificate(commonName: \(commonName), notAfter: \(notAfter), privateKey: <redacted>)"
    }

    public var debugDescription: String { description }
}
