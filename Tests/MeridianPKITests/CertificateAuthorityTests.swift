import Crypto
import Foundation
import MeridianPKI
import Testing
import X509

@Suite struct CertificateAuthorityTests {
    @Test func createdAuthorityRoundTripsThroughPEM() throws {
        let created = try CertificateAuthority.create(commonName: "cluster-a CA")
        let loaded = try CertificateAuthority(
            certificatePEM: created.certificatePEM,
            privateKeyPEM: created.privateKeyPEM
        )

        #expect(loaded.certificatePEM == created.certificatePEM)
        #expect(loaded.privateKeyPEM == created.privateKeyPEM)
        #expect(loaded.commonName == "cluster-a CA")
        #expect(loaded.subjectKeyIdentifier == created.subjectKeyIdentifier)
        #expect(loaded.notAfter == created.notAfter)

        let leaf = try loaded.issue(CertificateRequest(commonName: "root", usage: .client))
        #expect(CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: created.certificatePEM))
    }

    @Test func authorityCertificateIsASelfSignedP256CA() throws {
        let now = Date()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA", validity: .days(10), now: now)
        let certificate = try parse(authority.certificatePEM)

        #expect(certificate.version == .v3)
        #expect(certificate.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(P256.Signing.PublicKey(certificate.publicKey) != nil)
        #expect(certificate.subject == certificate.issuer)
        #expect(certificate.publicKey.isValidSignature(certificate.signature, for: certificate))
        #expect(try certificate.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: nil))
        #expect(certificate.extensions[oid: .X509ExtensionID.basicConstraints]?.critical == true)
        #expect(certificate.extensions[oid: .X509ExtensionID.keyUsage]?.critical == true)

        let keyUsage = try #require(try certificate.extensions.keyUsage)
        #expect(keyUsage.keyCertSign)
        #expect(keyUsage.cRLSign)

        let identifier = try #require(try certificate.extensions.subjectKeyIdentifier)
        #expect(Array(identifier.keyIdentifier) == authority.subjectKeyIdentifier)

        #expect(abs(certificate.notValidBefore.timeIntervalSince(now) + 300) < 1.5)
        #expect(abs(certificate.notValidAfter.timeIntervalSince(now) - 10 * 86_400) < 1.5)
        #expect(try CertificateInspection.commonName(ofCertificatePEM: authority.certificatePEM) == "cluster-a CA")
    }

    @Test func subjectKeyIdentifierDistinguishesAuthoritiesAndSurvivesReload() throws {
        let first = try CertificateAuthority.create(commonName: "Meridian CA")
        let second = try CertificateAuthority.create(commonName: "Meridian CA")

        #expect(first.subjectKeyIdentifier.count == 20)
        #expect(first.subjectKeyIdentifier != second.subjectKeyIdentifier)

        let reloaded = try CertificateAuthority(certificatePEM: first.certificatePEM, privateKeyPEM: first.privateKeyPEM)
        #expect(reloaded.subjectKeyIdentifier == first.subjectKeyIdentifier)
        #expect(
            try CertificateInspection.subjectKeyIdentifier(ofCertificatePEM: first.certificatePEM)
                == first.subjectKeyIdentifier
        )
    }

    @Test func loadingWithAnotherAuthoritysKeyThrows() throws {
        let first = try CertificateAuthority.create(commonName: "first")
        let second = try CertificateAuthority.create(commonName: "second")

        let error = #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: first.certificatePEM, privateKeyPEM: second.privateKeyPEM)
        }
        #expect(error?.message.contains("does not match") == true)
        #expect(error?.operation == "load CA")
    }

    @Test func loadingALeafAsAuthorityThrows() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let leaf = try authority.issue(serverRequest)

        let error = #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM)
        }
        #expect(error?.message.contains("not a CA") == true)
    }

    @Test func loadingMalformedPEMThrows() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")

        #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: "not a certificate", privateKeyPEM: authority.privateKeyPEM)
        }
        #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: authority.certificatePEM, privateKeyPEM: authority.certificatePEM)
        }
        let truncated = authority.certificatePEM.replacingOccurrences(of: "\n", with: "").dropLast(80)
        #expect(throws: PKIError.self) {
            try CertificateAuthority(certificatePEM: String(truncated), privateKeyPEM: authority.privateKeyPEM)
        }
    }

    @Test func creationRejectsEmptyNameAndNonPositiveValidity() {
        #expect(throws: PKIError.self) { try CertificateAuthority.create(commonName: "") }
        #expect(throws: PKIError.self) { try CertificateAuthority.create(commonName: "CA", validity: .zero) }
    }

    @Test func descriptionsDoNotRevealPrivateKeys() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let leaf = try authority.issue(serverRequest)

        for text in [String(describing: authority), String(reflecting: authority), "\(leaf)", String(reflecting: leaf)] {
            #expect(!text.contains("PRIVATE KEY"))
            #expect(text.contains("redacted"))
        }
    }
}
