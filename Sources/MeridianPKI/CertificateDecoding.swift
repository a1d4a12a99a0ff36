import Crypto
import Foundation
import SwiftASN1
import X509

/// Shared PEM and X.509 parsing used by loading, issuing and inspection.
enum CertificateDecoding {
    static let certificateLabel = "CERTIFICATE"

    static func documents(in pem: String, operation: String) throws(PKIError) -> [PEMDocument] {
        let documents = try PKIError.wrapping(operation) { try PEMDocument.parseMultiple(pemString: pem) }
        guard !documents.isEmpty else {
            throw PKIError(operation: operation, message: "no PEM block found")
        }
        return documents
    }

    static func certificates(in pem: String, operation: String) throws(PKIError) -> [Certificate] {
        let blocks = try documents(in: pem, operation: operation).filter { $0.discriminator == certificateLabel }
        guard !blocks.isEmpty else {
            throw PKIError(operation: operation, message: "no \(certificateLabel) PEM block found")
        }
        return try PKIError.wrapping(operation) {
            try blocks.map { try Certificate(derEncoded: $0.derBytes) }
        }
    }

    static func firstCertificate(in pem: String, operation: String) throws(PKIError) -> Certificate {
        try certificates(in: pem, operation: operation)[0]
    }

    /// Accepts PKCS#8, SEC1 and PKCS#1 blocks, skipping companions such as "EC PARAMETERS".
    static func privateKey(in pem: String, operation: String) throws(PKIError) -> Certificate.PrivateKey {
        let keyBlocks = try documents(in: pem, operation: operation).filter {
            $0.discriminator.hasSuffix("PRIVATE KEY")
        }
        guard keyBlocks.count == 1 else {
            throw PKIError(
                operation: operation,
                message: "expected exactly one PRIVATE KEY PEM block, found \(keyBlocks.count)"
            )
        }
        return try PKIError.wrapping(operation) { try Certificate.PrivateKey(pemDocument: keyBlocks[0]) }
    }

    static func pem(of certificate: Certificate, operation: String) throws(PKIError) -> String {
        try PKIError.wrapping(operation) { try certificate.serializeAsPEM().pemString }
    }

    /// Follows Go's `pkix.Name`, where the last commonName attribute wins.
    static func commonName(of name: DistinguishedName) -> String? {
        var found: String?
        for relativeName in name {
            for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
                if let value = String(attribute.value) {
                    found = value
                }
            }
        }
        return found
    }

    /// The certificate's own SKI extension when present, otherwise the RFC 5280 method-1 hash of its key.
    static func subjectKeyIdentifier(of certificate: Certificate, operation: String) throws(PKIError) -> [UInt8] {
        let declared = try PKIError.wrapping(operation) { try certificate.extensions.subjectKeyIdentifier }
        let identifier = declared ?? SubjectKeyIdentifier(hash: certificate.publicKey)
        return Array(identifier.keyIdentifier)
    }

    static func isCertificateAuthority(_ certificate: Certificate) -> Bool {
        guard case .isCertificateAuthority = try? certificate.extensions.basicConstraints else {
            return false
        }
        if let keyUsage = try? certificate.extensions.keyUsage, !keyUsage.keyCertSign {
            return false
        }
        return true
    }

    static func isValid(_ certificate: Certificate, at date: Date) -> Bool {
        certificate.notValidBefore <= date && date <= certificate.notValidAfter
    }
}
