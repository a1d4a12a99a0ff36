import Foundation
import Logging
@testable import MeridianControlPlane
import MeridianEtcd
import MeridianPKI
import MeridianStore
import MeridianTestSupport
import Testing

/// Grants become credentials, and only current grants keep one.
struct PeerCredentialTests {
    let store = InMemoryKeyValueStore()
    let ca: CertificateAuthority
    let issuer: PeerCredentialIssuer

    init() throws {
        ca = try CertificateAuthority.create(commonName: "mesh-ca")
        issuer = PeerCredentialIssuer(client: store, meshCA: ca, logger: Logger(label: "test"))
    }

    func grant(_ peer: String, _ keys: ClientKeyPair, validity: Int64 = PeerGrant.defaultValiditySeconds) async throws {
        try await store.put(KeyLayout.peerGrant(peer), StoreCoding.encode(
            PeerGrant(peer: peer, publicKeyPEM: keys.publicKeyPEM, validitySeconds: validity, requestedAt: Date())))
    }

    func reconcile() async throws {
        let grants = try await store.list(prefix: KeyLayout.peerGrantsPrefix).items
        try await issuer.reconcile(grants: Dictionary(uniqueKeysWithValues: grants.map { ($0.key, $0) }))
    }

    func credential(_ peer: String) async throws -> PeerCredential? {
        try await store.get(KeyLayout.peerCredential(peer)).map { try StoreCoding.decode(PeerCredential.self, from: $0.value, key: $0.key) }
    }

    @Test func aGrantIsCertifiedForItsOwnKeyAndBounded() async throws {
        let keys = ClientKeyPair.generate()
        try await grant("cluster1", keys, validity: 10 * PeerGrant.maximumValiditySeconds)
        try await reconcile()
        let issued = try #require(try await credential("cluster1"))
        #expect(issued.publicKeyPEM == keys.publicKeyPEM)
        #expect(try CertificateInspection.commonName(ofCertificatePEM: issued.certificatePEM) == "remote-cluster1")
        #expect(CertificateInspection.verify(certificatePEM: issued.certificatePEM, issuedBy: ca.certificatePEM))
        #expect(try CertificateFingerprint.of(certificatePEM: issued.certificatePEM) == issued.fingerprint)
        #expect(issued.notAfter.timeIntervalSinceNow <= Double(PeerGrant.maximumValiditySeconds) + 1, "capped at the maximum")
    }

    @Test func aNewKeyReplacesTheCredentialAndARemovedGrantRevokesIt() async throws {
        try await grant("cluster1", ClientKeyPair.generate())
        try await reconcile()
        let first = try #require(try await credential("cluster1"))
        try await reconcile()
        #expect(try await credential("cluster1") == first, "an unchanged grant keeps its credential")
        try await grant("cluster1", ClientKeyPair.generate())
        try await reconcile()
        let second = try #require(try await credential("cluster1"))
        #expect(second.fingerprint != first.fingerprint)
        _ = try await store.delete(KeyLayout.peerGrant("cluster1"))
        try await reconcile()
        #expect(try await credential("cluster1") == nil)
    }

    @Test func malformedGrantsGetNothing() async throws {
        try await store.put(KeyLayout.peerGrant("cluster1"), Data("not json".utf8))
        let keys = ClientKeyPair.generate()
        try await store.put(KeyLayout.peerGrant("cluster3"), StoreCoding.encode(
            PeerGrant(peer: "cluster4", publicKeyPEM: keys.publicKeyPEM, validitySeconds: 3600, requestedAt: Date())))
        try await store.put(KeyLayout.peerGrant("Bad_Name"), StoreCoding.encode(
            PeerGrant(peer: "Bad_Name", publicKeyPEM: keys.publicKeyPEM, validitySeconds: 3600, requestedAt: Date())))
        try await reconcile()
        #expect(try await store.count(prefix: KeyLayout.peerCredentialsPrefix) == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func theAuthorizerAdmitsExactlyCurrentCredentialsAndReleasesRevokedStreams() async throws {
        let authorizer = PeerAuthorizer()
        #expect(authorizer.admit(fingerprint: "aa") == .failure(.unknownCredential), "nothing is accepted before the first listing")
        let live = PeerCredential(peer: "cluster1", certificatePEM: "", fingerprint: "aa", publicKeyPEM: "", notAfter: Date() + 3600)
        let expired = PeerCredential(peer: "cluster3", certificatePEM: "", fingerprint: "bb", publicKeyPEM: "", notAfter: Date() - 1)
        authorizer.replace(with: [live, expired])
        #expect(try authorizer.admit(fingerprint: "aa").get().peer == "cluster1")
        #expect(authorizer.admit(fingerprint: "bb") == .failure(.expired))
        #expect(authorizer.admit(fingerprint: "cc") == .failure(.unknownCredential))
        try await withThrowingTaskGroup { group in
            group.addTask { await authorizer.revocation(of: "aa") }
            while authorizer.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
            authorizer.replace(with: [live, expired])
            #expect(authorizer.waiting == 1, "a change that keeps the credential releases nothing")
            authorizer.replace(with: [expired])
            try await group.next()
            #expect(authorizer.waiting == 0)
        }
        #expect(authorizer.admit(fingerprint: "aa") == .failure(.unknownCredential))
        // A waiter whose task is cancelled returns, and leaves nothing behind.
        authorizer.replace(with: [live])
        try await withThrowingTaskGroup { group in
            group.addTask { await authorizer.revocation(of: "aa") }
            while authorizer.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
            group.cancelAll()
            try await group.next()
            #expect(authorizer.waiting == 0)
        }
    }

    @Test func aCredentialCountsOnlyWhileItsGrantHoldsTheSameKey() throws {
        func record(_ key: String, _ value: some Encodable) -> EtcdKeyValue {
            EtcdKeyValue(key: key, value: StoreCoding.encode(value), createRevision: 1, modRevision: 1, lease: 0)
        }
        let keys = ClientKeyPair.generate()
        let credential = try issuer.issue(PeerGrant(peer: "cluster1", publicKeyPEM: keys.publicKeyPEM, validitySeconds: 3600, requestedAt: Date()))
        let credentials = [KeyLayout.peerCredential("cluster1"): record(KeyLayout.peerCredential("cluster1"), credential)]
        let grant = { (publicKey: String) in
            [KeyLayout.peerGrant("cluster1"): record(KeyLayout.peerGrant("cluster1"),
                                                     PeerGrant(peer: "cluster1", publicKeyPEM: publicKey, validitySeconds: 3600, requestedAt: Date()))]
        }
        #expect(PeerCredentialFeed.current(grants: grant(keys.publicKeyPEM), credentials: credentials).map(\.fingerprint) == [credential.fingerprint])
        #expect(PeerCredentialFeed.current(grants: grant(ClientKeyPair.generate().publicKeyPEM), credentials: credentials).isEmpty, "renewed")
        #expect(PeerCredentialFeed.current(grants: [:], credentials: credentials).isEmpty, "revoked")
        let misfiled = [KeyLayout.peerCredential("cluster3"): record(KeyLayout.peerCredential("cluster3"), credential)]
        #expect(PeerCredentialFeed.current(grants: grant(keys.publicKeyPEM), credentials: misfiled).isEmpty, "under another peer's key")
    }
}
