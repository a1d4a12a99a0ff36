import Crypto
import Foundation
import SwiftASN1
import X509

/// A cluster's certificate authority: the root of trust that etcd uses to authenticate both its
/// own admin and the remote clusters that read from it.
///
/// Two clusters are meant to share one CA; comparing `subjectKeyIdentifier` is how mismatched
/// CAs are detected before a connection is attempted, as the Cilium CLI does.
public struct CertificateAuthority: Sendable {
    public let certificatePEM: String
    public let privateKeyPEM: String
    public let subjectKeyIdentifier: [UInt8]
    public let commonName: String

    private let certificate: Certificate
    private let signingKey: Certificate.PrivateKey

    /// How far certificates are back-dated so that a peer whose clock runs slightly behind accepts them.
    static let clockSkewAllowance: TimeInterval = 5 * 60

    /// The instant after which the CA, and hence every certificate it issued, stops being trusted.
    public var notAfter: Date { certificate.notValidAfter }

    private init(certificate: Certificate, signingKey: Certificate.PrivateKey, privateKeyPEM: String, operation: String)
        throws(PKIError)
    {
        self.certificate = certificate
        self.signingKey = signingKey
        self.privateKeyPEM = privateKeyPEM
        self.certificatePEM = try CertificateDecoding.pem(of: certificate, operation: operation)
        self.subjectKeyIdentifier = try CertificateDecoding.subjectKeyIdentifier(of: certificate, operation: operation)
        self.commonName = CertificateDecoding.commonName(of: certificate.subject) ?? ""
    }

    /// Generates a new P-256 key and a self-signed CA certificate for it.
    public static func create(
        commonName: String,
        validity: Duration = .days(3650),
        now: Date = Date()
    ) throws(PKIError) -> CertificateAuthority {
        let operation = "create CA"
        guard !commonName.isEmpty else {
            throw PKIError(operation: operation, message: "common name must not be empty")
        }
        let lifetime = validity.timeInterval
        guard lifetime > 0 else {
            throw PKIError(operation: operation, message: "validity must be positive, got \(validity)")
        }

        let key = P256.Signing.PrivateKey()
        let signingKey = Certificate.PrivateKey(key)
        let publicKey = signingKey.publicKey
        let certificate = try PKIError.wrapping(operation) {
            let name = try DistinguishedName { CommonName(commonName) }
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            }
            return try Certificate(
                version: .v3,
                serialNumber: randomSerialNumber(),
                publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-clockSkewAllowance),
                notValidAfter: now.addingTimeInterval(lifetime),
                issuer: name,
                subject: name,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions,
                issuerPrivateKey: signingKey
            )
        }
        return try CertificateAuthority(
            certificate: certificate,
            signingKey: signingKey,
            privateKeyPEM: key.pemRepresentation,
            operation: operation
        )
    }

    /// Loads a CA persisted earlier (or created by another tool), refusing a key that does not
    /// belong to the certificate or a certificate that is not allowed to sign others.
    public init(certificatePEM: String, privateKeyPEM: String) throws(PKIError) {
        let operation = "load CA"
        let certificate = try CertificateDecoding.firstCertificate(in: certificatePEM, operation: operation)
        let signingKey = try CertificateDecoding.privateKey(in: privateKeyPEM, operation: operation)
        guard signingKey.publicKey == certificate.publicKey else {
            throw PKIError(operation: operation, message: "private key does not match the CA certificate")
        }
        guard CertificateDecoding.isCertificateAuthority(certificate) else {
            throw PKIError(
                operation: operation,
                message: "certificate is not a CA (needs BasicConstraints cA=true and, if KeyUsage is present, keyCertSign)"
            )
        }
        try self.init(
            certificate: certificate,
            signingKey: signingKey,
            privateKeyPEM: privateKeyPEM,
            operation: operation
        )
    }

    /// Issues a leaf certificate with a newly generated P-256 key.
    ///
    /// Unless `request.notBefore` is set, the certificate starts `clockSkewAllowance` before `now`
    /// and lasts `request.validity` from `now`; it never outlives the CA.
    public func issue(_ request: CertificateRequest, now: Date = Date()) throws(PKIError) -> IssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let leaf = try sign(request, publicKey: Certificate.PublicKey(key.publicKey), now: now)
        return IssuedCertificate(
            certificatePEM: leaf.certificatePEM, privateKeyPEM: key.pemRepresentation, notAfter: leaf.notAfter,
            commonName: request.commonName)
    }

    /// Issues a leaf certificate for a key pair the CA never sees: only its public half
    /// (`publicKeyPEM`, a "PUBLIC KEY" PEM) is certified. Used for peer credentials, whose private
    /// key is generated by the administrator who connects the clusters.
    public func issue(
        _ request: CertificateRequest, publicKeyPEM: String, now: Date = Date()
    ) throws(PKIError) -> (certificatePEM: String, notAfter: Date) {
        let publicKey = try PKIError.wrapping("read public key for \"\(request.commonName)\"") {
            try Certificate.PublicKey(pemEncoded: publicKeyPEM)
        }
        return try sign(request, publicKey: publicKey, now: now)
    }

    private func sign(
        _ request: CertificateRequest, publicKey: Certificate.PublicKey, now: Date
    ) throws(PKIError) -> (certificatePEM: String, notAfter: Date) {
        let operation = "issue certificate for \"\(request.commonName)\""
        guard !request.commonName.isEmpty else {
            throw PKIError(operation: operation, message: "common name must not be empty")
        }
        let lifetime = request.validity.timeInterval
        guard lifetime > 0 else {
            throw PKIError(operation: operation, message: "validity must be positive, got \(request.validity)")
        }
        guard CertificateDecoding.isValid(certificate, at: now) else {
            throw PKIError(
                operation: operation,
                message: "CA \"\(commonName)\" is not valid at \(now) (valid \(certificate.notValidBefore) to \(certificate.notValidAfter))"
            )
        }

        let notBefore = request.notBefore ?? now.addingTimeInterval(-Self.clockSkewAllowance)
        let notAfter = min((request.notBefore ?? now).addingTimeInterval(lifetime), certificate.notValidAfter)
        guard notBefore < notAfter else {
            throw PKIError(operation: operation, message: "validity window is empty once capped at the CA's expiry")
        }
        let alternativeNames = try Self.alternativeNames(for: request, operation: operation)
        let leaf = try PKIError.wrapping(operation) {
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(Self.extendedKeyUsages(for: request.usage))
                if !alternativeNames.isEmpty {
                    SubjectAlternativeNames(alternativeNames)
                }
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: subjectKeyIdentifier[...])
            }
            return try Certificate(
                version: .v3,
                serialNumber: Self.randomSerialNumber(),
                publicKey: publicKey,
                notValidBefore: notBefore,
                notValidAfter: notAfter,
                issuer: certificate.subject,
                subject: try DistinguishedName { CommonName(request.commonName) },
                extensions: extensions,
                issuerPrivateKey: signingKey
            )
        }
        return (try CertificateDecoding.pem(of: leaf, operation: operation), leaf.notValidAfter)
    }

    private static func extendedKeyUsages(for usage: CertificateRequest.Usage) -> [ExtendedKeyUsage.Usage] {
        switch usage {
        case .server: [.serverAuth]
        case .client: [.clientAuth]
        case .serverAndClient: [.serverAuth, .clientAuth]
        }
    }

    private static func alternativeNames(
        for request: CertificateRequest,
        operation: String
    ) throws(PKIError) -> [GeneralName] {
        var names: [GeneralName] = []
        for dnsName in request.dnsNames {
            guard !dnsName.isEmpty, dnsName.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw PKIError(operation: operation, message: "invalid DNS name \"\(dnsName)\"")
            }
            names.append(.dnsName(dnsName))
        }
        for address in request.ipAddresses {
            guard let bytes = IPAddress.bytes(of: address) else {
                throw PKIError(operation: operation, message: "invalid IP address \"\(address)\"")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        return names
    }

    /// 20 octets (the RFC 5280 maximum) with the top bit cleared so the INTEGER stays positive,
    /// and the next bit set so the length is fixed: 158 bits of randomness.
    private static func randomSerialNumber() -> Certificate.SerialNumber {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<20).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        bytes[0] = (bytes[0] & 0x3F) | 0x40
        return Certificate.SerialNumber(bytes: bytes)
    }
}

extension CertificateAuthority: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        let identifier = subjectKeyIdentifier.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: ":")
        return "CertificateAuthority(commonName: \(commonName), subjectKeyIdentifier: \(identifier), notAfter: \(notAfter), privateKey: <redacted>)"
    }

    public var debugDescription: String { description }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
