import Foundation
import MeridianPKI
import Testing

@Suite struct PEMFilesTests {
    @Test func keyIsOwnerOnlyAndCertificateIsWorldReadable() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let issued = try authority.issue(serverRequest)
        let certPath = scratch.path("etcd/pki/server.crt")
        let keyPath = scratch.path("etcd/pki/private/server.key")

        try PEMFiles.write(certificatePEM: issued.certificatePEM, to: certPath, privateKeyPEM: issued.privateKeyPEM, to: keyPath)

        #expect(try permissions(of: keyPath) == 0o600)
        #expect(try permissions(of: certPath) == 0o644)
        #expect(try permissions(of: scratch.path("etcd")) == 0o700)
        #expect(try permissions(of: scratch.path("etcd/pki")) == 0o700)
        #expect(try permissions(of: scratch.path("etcd/pki/private")) == 0o700)
        #expect(try String(contentsOfFile: certPath, encoding: .utf8) == issued.certificatePEM)
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == issued.privateKeyPEM)

        let reloaded = try String(contentsOfFile: certPath, encoding: .utf8)
        #expect(CertificateInspection.verify(certificatePEM: reloaded, issuedBy: authority.certificatePEM))
    }

    @Test func overwritingReplacesContentAndTightensAWorldReadableKey() throws {
        let scratch = try ScratchDirectory()
        let keyPath = scratch.path("tls.key")
        let certPath = scratch.path("tls.crt")
        try "stale".write(toFile: keyPath, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: keyPath)

        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        try PEMFiles.write(
            certificatePEM: authority.certificatePEM,
            to: certPath,
            privateKeyPEM: authority.privateKeyPEM,
            to: keyPath
        )

        #expect(try permissions(of: keyPath) == 0o600)
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == authority.privateKeyPEM)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).sorted() == ["tls.crt", "tls.key"])
    }

    @Test func writeCertificateUsesCertificateMode() throws {
        let scratch = try ScratchDirectory()
        let authority = try CertificateAuthority.create(commonName: "cluster-a CA")
        let path = scratch.path("remote/cluster-b/ca.crt")

        try PEMFiles.writeCertificate(authority.certificatePEM, to: path)

        #expect(try permissions(of: path) == 0o644)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == authority.certificatePEM)
    }

    @Test func parentThatIsAFileIsReported() throws {
        let scratch = try ScratchDirectory()
        let blocker = scratch.path("blocker")
        try "x".write(toFile: blocker, atomically: false, encoding: .utf8)

        let error = #expect(throws: PKIError.self) {
            try PEMFiles.writeCertificate("pem", to: blocker + "/ca.crt")
        }
        #expect(error?.path == blocker)
    }
}
