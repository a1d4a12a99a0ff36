import Crypto
import Foundation
import SwiftASN1
import X509

/// A P-256 key pair generated where its private half is to be used, so that a CA can certify the
/// public half without ever holding the private one (peer credentials: the administrator's
/// `clustermesh connect` generates it, the exporting control plane signs it).
public struct ClientKeyPair: Sendable {
    /// PKCS#8 ("PRIVATE KEY") PEM, as etcd clients and NIOSSL accept it.
    public let privateKeyPEM: String
    /// SubjectPublicKeyInfo ("PUBLIC KEY") PEM.
    public let publicKeyPEM: String

    public static func generate() -> ClientKeyPair {
        let key = P256.Signing.PrivateKey()
        return ClientKeyPair(privateKeyPEM: key.pemRepresentation, publicKeyPEM: key.publicKey.pemRepresentation)
    }

    private init(privateKeyPEM: String, publicKeyPEM: String) {
        self.privateKeyPEM = privateKeyPEM
        self.publicKeyPEM = publicKeyPEM
    }
}

extension ClientKeyPair: CustomStringConvertible {
    public var description: String { "ClientKeyPair(privateKey: <redacted>)" }
}

/// The SHA-256 of a certificate's DER encoding, in lowercase hex: what a server compares a
/// presented client certificate against to accept exactly the one it issued, and no other
/// certificate the same CA signed.
public enum CertificateFingerprint {
    public static func of(_ certificate: Certificate) throws(PKIError) -> String {
        let der = try PKIError.wrapping("fingerprint certificate") {
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            return serializer.serializedBytes
        }
        return SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined()
    }

    public static func of(certificatePEM pem: String) throws(PKIError) -> String {
        try of(CertificateDecoding.firstCertificate(in: pem, operation: "fingerprint certificate"))
    }
}
