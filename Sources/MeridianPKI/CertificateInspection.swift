import Foundation
import X509

/// Read-only questions about certificates that arrive without their keys, such as a remote
/// cluster's CA or the client certificate a peer presents: who is it, when does it expire, and
/// does our CA vouch for it right now.
public enum CertificateInspection {
    /// The subject's common name, which etcd uses as the RBAC user name.
    public static func commonName(ofCertificatePEM pem: String) throws(PKIError) -> String {
        let operation = "read certificate common name"
        let certificate = try CertificateDecoding.firstCertificate(in: pem, operation: operation)
        guard let name = CertificateDecoding.commonName(of: certificate.subject) else {
            throw PKIError(operation: operation, message: "certificate subject has no commonName")
        }
        return name
    }

    /// The subject's common name of a parsed certificate (a TLS peer's), if it has one.
    public static func commonName(of certificate: Certificate) -> String? {
        CertificateDecoding.commonName(of: certificate.subject)
    }

    public static func notAfter(ofCertificatePEM pem: String) throws(PKIError) -> Date {
        try CertificateDecoding.firstCertificate(in: pem, operation: "read certificate expiry").notValidAfter
    }

    /// Same value as `CertificateAuthority.subjectKeyIdentifier`, for a CA known only by its certificate.
    public static func subjectKeyIdentifier(ofCertificatePEM pem: String) throws(PKIError) -> [UInt8] {
        let operation = "read certificate subject key identifier"
        let certificate = try CertificateDecoding.firstCertificate(in: pem, operation: operation)
        return try CertificateDecoding.subjectKeyIdentifier(of: certificate, operation: operation)
    }

    /// True when `certificatePEM` is signed by a CA certificate found in `ca` (which may be a
    /// bundle) and both certificates are within their validity windows at `at`.
    ///
    /// Any parse failure counts as "not verified".
    public static func verify(certificatePEM: String, issuedBy ca: String, at date: Date = Date()) -> Bool {
        let operation = "verify certificate"
        guard
            let leaf = try? CertificateDecoding.firstCertificate(in: certificatePEM, operation: operation),
            let authorities = try? CertificateDecoding.certificates(in: ca, operation: operation),
            CertificateDecoding.isValid(leaf, at: date)
        else {
            return false
        }
        return authorities.contains { authority in
            authority.subject == leaf.issuer
                && CertificateDecoding.isCertificateAuthority(authority)
                && CertificateDecoding.isValid(authority, at: date)
                && authority.publicKey.isValidSignature(leaf.signature, for: leaf)
        }
    }
}
