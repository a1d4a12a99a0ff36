import Foundation
import MeridianPKI
import SwiftASN1
import X509

/// A uniquely named scratch directory removed when the test ends.
struct ScratchDirectory: ~Copyable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("meridian-pki-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    }

    func path(_ relative: String) -> String {
        url.appendingPathComponent(relative).path
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }
}

func permissions(of path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

func parse(_ pem: String) throws -> Certificate {
    try Certificate(pemEncoded: pem)
}

let serverRequest = CertificateRequest(
    commonName: "etcd-server",
    usage: .serverAndClient,
    dnsNames: ["localhost", "etcd.cluster-a.meridian"],
    ipAddresses: ["127.0.0.1", "::1"],
    validity: .days(30)
)
