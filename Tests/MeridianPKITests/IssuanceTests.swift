import Crypto
import Foundation
import MeridianPKI
import SwiftASN1
import Testing
import X509

@Suite struct IssuanceTests {
    @Test func leafVerifiesAgainstItsOwnAuthorityOnly() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let stranger = try CertificateAuthority.create(commonName: "cluster-a CA")
        let leaf = try authority.issue(CertificateRequest(commonName: "remote-cluster-b", usage: .client))

        #expect(CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: authority.certificatePEM))
        #expect(!CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: stranger.certificatePEM))

        let bundle = stranger.certificatePEM + "\n" + authority.certificatePEM
        #expect(CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: bundle))
    }

    @Test func expiredLeafFailsVerification() throws {
        let start = Date().addingTimeInterval(-2 * 86_400)
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA", now: start.addingTimeInterval(-86_400))
        let leaf = try authority.issue(
            CertificateRequest(commonName: "remote-cluster-b", usage: .client, validity: .seconds(60), notBefore: start)
        )

        #expect(!CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: authority.certificatePEM))
        #expect(
            CertificateInspection.verify(
                certificatePEM: leaf.certificatePEM,
                issuedBy: authority.certificatePEM,
                at: start.addingTimeInterval(30)
            ),
            "inside its window the same certificate is fine, so the failure above is the expiry"
        )
        #expect(abs(leaf.notAfter.timeIntervalSince(start) - 60) < 1)
    }

    @Test func leafIsRejectedOnceItsAuthorityExpires() throws {
        let now = Date()
        let authority = try CertificateAuthority.create(commonName: "short-lived CA", validity: .days(1), now: now)
        let leaf = try authority.issue(CertificateRequest(commonName: "root", usage: .client), now: now)
        let later = now.addingTimeInterval(2 * 86_400)

        #expect(
            !CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: authority.certificatePEM, at: later)
        )
        #expect(throws: PKIError.self) {
            try authority.issue(CertificateRequest(commonName: "root", usage: .client), now: later)
        }
    }

    @Test func serverLeafCarriesNamesUsagesAndKeyIdentifiers() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let issued = try authority.issue(serverRequest)
        let leaf = try parse(issued.certificatePEM)
        let caCertificate = try parse(authority.certificatePEM)

        #expect(issued.commonName == "etcd-server")
        #expect(try CertificateInspection.commonName(ofCertificatePEM: issued.certificatePEM) == "etcd-server")
        #expect(leaf.issuer == caCertificate.subject)
        #expect(leaf.signatureAlgorithm == .ecdsaWithSHA256)

        let names = try #require(try leaf.extensions.subjectAlternativeNames)
        let dnsNames = names.compactMap { name -> String? in
            if case .dnsName(let dns) = name { return dns }
            return nil
        }
        let ipAddresses = names.compactMap { name -> [UInt8]? in
            if case .ipAddress(let octets) = name { return Array(octets.bytes) }
            return nil
        }
        #expect(dnsNames == ["localhost", "etcd.cluster-a.meridian"])
        #expect(ipAddresses == [[127, 0, 0, 1], [UInt8](repeating: 0, count: 15) + [1]])

        let usages = try #require(try leaf.extensions.extendedKeyUsage)
        #expect(Array(usages) == [.serverAuth, .clientAuth])

        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        let keyUsage = try #require(try leaf.extensions.keyUsage)
        #expect(keyUsage.digitalSignature)
        #expect(!keyUsage.keyCertSign)

        let authorityKeyIdentifier = try #require(try leaf.extensions.authorityKeyIdentifier)
        #expect(authorityKeyIdentifier.keyIdentifier.map(Array.init) == authority.subjectKeyIdentifier)
        #expect(try leaf.extensions.subjectKeyIdentifier != nil)
    }

    @Test(arguments: [
        (CertificateRequest.Usage.server, [ExtendedKeyUsage.Usage.serverAuth]),
        (.client, [.clientAuth]),
        (.serverAndClient, [.serverAuth, .clientAuth]),
    ])
    func extendedKeyUsageFollowsRequestedUsage(usage: CertificateRequest.Usage, expected: [ExtendedKeyUsage.Usage])
        throws
    {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let leaf = try parse(try authority.issue(CertificateRequest(commonName: "peer", usage: usage)).certificatePEM)

        #expect(try leaf.extensions.extendedKeyUsage.map(Array.init) == expected)
        #expect(try leaf.extensions.subjectAlternativeNames == nil, "no names requested, no SAN extension")
    }

    @Test func validityIsBackdatedAndCappedByTheAuthority() throws {
        let now = Date()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA", validity: .days(100), now: now)

        let ordinary = try authority.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(7)), now: now)
        let ordinaryCertificate = try parse(ordinary.certificatePEM)
        #expect(abs(ordinaryCertificate.notValidBefore.timeIntervalSince(now) + 300) < 1.5)
        #expect(abs(ordinary.notAfter.timeIntervalSince(now) - 7 * 86_400) < 1.5)
        #expect(ordinary.notAfter == ordinaryCertificate.notValidAfter)
        #expect(try CertificateInspection.notAfter(ofCertificatePEM: ordinary.certificatePEM) == ordinary.notAfter)

        let greedy = try authority.issue(CertificateRequest(commonName: "root", usage: .client, validity: .days(1000)), now: now)
        #expect(greedy.notAfter == authority.notAfter)
    }

    @Test func serialNumbersArePositiveTwentyOctetsAndDistinct() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        var serials: Set<[UInt8]> = []
        for _ in 0..<8 {
            let bytes = Array(try parse(try authority.issue(serverRequest).certificatePEM).serialNumber.bytes)
            #expect(bytes.count == 20)
            #expect(bytes[0] & 0x80 == 0)
            #expect(bytes[0] != 0)
            serials.insert(bytes)
        }
        #expect(serials.count == 8)
    }

    @Test func privateKeyIsPKCS8P256MatchingTheCertificate() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let issued = try authority.issue(serverRequest)

        let document = try PEMDocument(pemString: issued.privateKeyPEM)
        #expect(document.discriminator == "PRIVATE KEY")
        let key = try P256.Signing.PrivateKey(pemRepresentation: issued.privateKeyPEM)
        #expect(Certificate.PublicKey(key.publicKey) == (try parse(issued.certificatePEM)).publicKey)
    }

    @Test func invalidRequestsAreRefused() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let invalid = [
            CertificateRequest(commonName: "", usage: .client),
            CertificateRequest(commonName: "etcd", usage: .server, ipAddresses: ["127.0.0.256"]),
            CertificateRequest(commonName: "etcd", usage: .server, ipAddresses: ["localhost"]),
            CertificateRequest(commonName: "etcd", usage: .server, dnsNames: ["has space"]),
            CertificateRequest(commonName: "etcd", usage: .server, validity: .seconds(0)),
            CertificateRequest(commonName: "etcd", usage: .server, validity: .seconds(-5)),
        ]
        for request in invalid {
            #expect(throws: PKIError.self, "\(request)") { try authority.issue(request) }
        }
    }

    @Test func verifyTreatsGarbageAsUnverified() throws {
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let leaf = try authority.issue(serverRequest)

        #expect(!CertificateInspection.verify(certificatePEM: "garbage", issuedBy: authority.certificatePEM))
        #expect(!CertificateInspection.verify(certificatePEM: leaf.certificatePEM, issuedBy: ""))
        #expect(!CertificateInspection.verify(certificatePEM: authority.certificatePEM, issuedBy: leaf.certificatePEM))
        #expect(throws: PKIError.self) { try CertificateInspection.commonName(ofCertificatePEM: leaf.privateKeyPEM) }
    }
}
