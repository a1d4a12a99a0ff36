import Foundation
import MeridianPKI
import Testing

private let opensslPath = "/usr/bin/openssl"

/// An independent implementation checks our DER: if OpenSSL accepts the chain, encoding slips are unlikely.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: opensslPath)))
struct OpenSSLInteropTests {
    struct Outcome {
        var status: Int32
        var output: String
    }

    func openssl(_ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: opensslPath)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    @Test func opensslVerifiesIssuedLeavesAndRejectsForeignOnes() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let stranger = try CertificateAuthority.create(commonName: "cluster-a CA")
        let server = try authority.issue(serverRequest)
        let client = try authority.issue(CertificateRequest(commonName: "remote-cluster-b", usage: .client))

        try PEMFiles.writeCertificate(authority.certificatePEM, to: scratch.path("ca.pem"))
        try PEMFiles.writeCertificate(stranger.certificatePEM, to: scratch.path("other-ca.pem"))
        try PEMFiles.write(
            certificatePEM: server.certificatePEM,
            to: scratch.path("server.pem"),
            privateKeyPEM: server.privateKeyPEM,
            to: scratch.path("server-key.pem")
        )
        try PEMFiles.writeCertificate(client.certificatePEM, to: scratch.path("client.pem"))

        let plain = try openssl(["verify", "-CAfile", scratch.path("ca.pem"), scratch.path("server.pem")])
        #expect(plain.status == 0, "\(plain.output)")

        let asServer = try openssl([
            "verify", "-purpose", "sslserver", "-CAfile", scratch.path("ca.pem"), scratch.path("server.pem"),
        ])
        #expect(asServer.status == 0, "\(asServer.output)")

        let asClient = try openssl([
            "verify", "-purpose", "sslclient", "-CAfile", scratch.path("ca.pem"), scratch.path("client.pem"),
        ])
        #expect(asClient.status == 0, "\(asClient.output)")

        let clientAsServer = try openssl([
            "verify", "-purpose", "sslserver", "-CAfile", scratch.path("ca.pem"), scratch.path("client.pem"),
        ])
        #expect(clientAsServer.status != 0, "a client-only certificate must not pass as a server")

        let foreign = try openssl(["verify", "-CAfile", scratch.path("other-ca.pem"), scratch.path("server.pem")])
        #expect(foreign.status != 0, "\(foreign.output)")
    }

    @Test func opensslRejectsAnExpiredLeaf() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let expired = try authority.issue(
            CertificateRequest(
                commonName: "remote-cluster-b",
                usage: .client,
                validity: .seconds(60),
                notBefore: Date().addingTimeInterval(-86_400)
            )
        )
        try PEMFiles.writeCertificate(authority.certificatePEM, to: scratch.path("ca.pem"))
        try PEMFiles.writeCertificate(expired.certificatePEM, to: scratch.path("expired.pem"))

        let result = try openssl(["verify", "-CAfile", scratch.path("ca.pem"), scratch.path("expired.pem")])
        #expect(result.status != 0)
        #expect(result.output.contains("expired"), "\(result.output)")
    }

    @Test func opensslShowsTheExpectedFields() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let server = try authority.issue(serverRequest)
        try PEMFiles.writeCertificate(authority.certificatePEM, to: scratch.path("ca.pem"))
        try PEMFiles.writeCertificate(server.certificatePEM, to: scratch.path("server.pem"))

        let leafText = try openssl(["x509", "-noout", "-text", "-in", scratch.path("server.pem")])
        #expect(leafText.status == 0)
        for fragment in [
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
            "DNS:localhost",
            "DNS:etcd.cluster-a.meridian",
            "ecdsa-with-SHA256",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "CA:FALSE",
            "Subject: CN = etcd-server",
            "NIST CURVE: P-256",
        ] {
            #expect(leafText.output.contains(fragment), "missing \(fragment)")
        }

        let caText = try openssl(["x509", "-noout", "-text", "-in", scratch.path("ca.pem")])
        #expect(caText.output.contains("CA:TRUE"))
        #expect(caText.output.contains("Certificate Sign, CRL Sign"))
        let hexIdentifier = authority.subjectKeyIdentifier
            .map { byte in
                let digits = String(byte, radix: 16, uppercase: true)
                return digits.count == 1 ? "0" + digits : digits
            }
            .joined(separator: ":")
        #expect(caText.output.contains(hexIdentifier), "OpenSSL shows the same subject key identifier")
    }

    @Test func opensslReadsOurKeysAndWeReadItsSEC1Form() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        try PEMFiles.write(
            certificatePEM: authority.certificatePEM,
            to: scratch.path("ca.pem"),
            privateKeyPEM: authority.privateKeyPEM,
            to: scratch.path("ca-key.pem")
        )

        let keyPublic = try openssl(["pkey", "-in", scratch.path("ca-key.pem"), "-pubout"])
        let certificatePublic = try openssl(["x509", "-in", scratch.path("ca.pem"), "-noout", "-pubkey"])
        #expect(keyPublic.status == 0)
        #expect(keyPublic.output == certificatePublic.output)

        let sec1 = try openssl(["ec", "-in", scratch.path("ca-key.pem")])
        #expect(sec1.status == 0)
        let sec1PEM = sec1.output
            .split(separator: "\n")
            .drop { !$0.hasPrefix("-----BEGIN") }
            .joined(separator: "\n")
        #expect(sec1PEM.contains("BEGIN EC PRIVATE KEY"))
        let reloaded = try CertificateAuthority(certificatePEM: authority.certificatePEM, privateKeyPEM: sec1PEM)
        #expect(reloaded.subjectKeyIdentifier == authority.subjectKeyIdentifier)
    }
}
