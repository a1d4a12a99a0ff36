import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianPKI
import MeridianStore

/// Turns the administrators' grants (`meridian/clustermesh/grants/<peer>`) into peer credentials
/// (`meridian/clustermesh/credentials/<peer>`): it certifies each grant's public key with the mesh
/// CA, whose private key never leaves the control plane's data directory, and removes every
/// credential whose grant is gone or names another key, so `disconnect` and a renewing `connect`
/// revoke the old certificate for good.
struct PeerCredentialIssuer: Sendable {
    let client: any KeyValueStore
    let meshCA: CertificateAuthority
    let logger: Logger

    /// Reconciles after every change of the grants; a reconciliation the store fails is
    /// retried with a growing delay until it succeeds (or the grants change again).
    func run() async throws {
        try await ListWatch(client, .prefix(KeyLayout.peerGrantsPrefix), restart: .after(ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))))
            .follow(onStoreFailure: { logger.warning("following peer grants failed", metadata: ["error": "\($0)"]) }) { grants, _ in
                var backoff = ReconnectBackoff(initial: .milliseconds(200), maximum: .seconds(10))
                while true {
                    do {
                        return try await reconcile(grants: grants)
                    } catch {
                        logger.warning("peer credentials not reconciled; retrying", metadata: ["error": "\(error)"])
                        try await Task.sleep(for: backoff.next())
                    }
                }
            }
    }

    func reconcile(grants records: [String: EtcdKeyValue]) async throws(EtcdError) {
        var grants: [String: PeerGrant] = [:]
        for (key, record) in records {
            let name = String(key.dropFirst(KeyLayout.peerGrantsPrefix.count))
            guard let grant = try? StoreCoding.decode(PeerGrant.self, from: record.value, key: key),
                  grant.peer == name, (try? ClusterValidation.validateName(name)) != nil
            else {
                logger.warning("ignoring a malformed peer grant", metadata: ["key": "\(key)"])
                continue
            }
            grants[name] = grant
        }
        let issued = try await client.list(prefix: KeyLayout.peerCredentialsPrefix).items
        var current: [String: PeerCredential] = [:]
        for record in issued {
            let name = String(record.key.dropFirst(KeyLayout.peerCredentialsPrefix.count))
            let credential = try? StoreCoding.decode(PeerCredential.self, from: record.value, key: record.key)
            if let credential, let grant = grants[name], credential.peer == name, credential.publicKeyPEM == grant.publicKeyPEM {
                current[name] = credential
            } else {
                try await client.delete(record.key)
                logger.info("peer credential revoked", metadata: ["peer": "\(name)"])
            }
        }
        for (name, grant) in grants where current[name] == nil {
            do {
                let credential = try issue(grant)
                try await client.put(KeyLayout.peerCredential(name), StoreCoding.encode(credential))
                logger.info("peer credential issued", metadata: ["peer": "\(name)", "expires": "\(credential.notAfter)"])
            } catch let error as PKIError {
                logger.warning("peer credential not issued", metadata: ["peer": "\(name)", "error": "\(error)"])
            } catch {
                throw error as? EtcdError ?? EtcdError(.other, "issue credential for \(name): \(error)")
            }
        }
    }

    func issue(_ grant: PeerGrant) throws -> PeerCredential {
        let seconds = min(max(grant.validitySeconds, 60), PeerGrant.maximumValiditySeconds)
        let (certificatePEM, notAfter) = try meshCA.issue(
            CertificateRequest(commonName: ClusterAccess.remoteUser(peer: grant.peer), usage: .client, validity: .seconds(seconds)),
            publicKeyPEM: grant.publicKeyPEM)
        return PeerCredential(
            peer: grant.peer, certificatePEM: certificatePEM,
            fingerprint: try CertificateFingerprint.of(certificatePEM: certificatePEM),
            publicKeyPEM: grant.publicKeyPEM, notAfter: notAfter)
    }
}

/// Keeps a `PeerAuthorizer` equal to the credentials in the local store whose grant still
/// holds the key they certify: a credential outlives neither its grant nor a renewal, whatever
/// order the store's changes arrive in. Until both are first listed it accepts no one.
struct PeerCredentialFeed: Sendable {
    let client: any KeyValueStore
    let authorizer: PeerAuthorizer
    let logger: Logger

    func run() async throws {
        let state = Shared((grants: [String: EtcdKeyValue]?.none, credentials: [String: EtcdKeyValue]?.none))
        let backoff = ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(5))
        @Sendable func publish() {
            let (grants, credentials) = state.withLock { ($0.grants, $0.credentials) }
            guard let grants, let credentials else { return }
            authorizer.replace(with: Self.current(grants: grants, credentials: credentials))
        }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await ListWatch(client, .prefix(KeyLayout.peerGrantsPrefix), restart: .after(backoff))
                    .follow(onStoreFailure: { logger.warning("following peer grants failed", metadata: ["error": "\($0)"]) }) { records, _ in
                        state.withLock { $0.grants = records }
                        publish()
                    }
            }
            group.addTask {
                try await ListWatch(client, .prefix(KeyLayout.peerCredentialsPrefix), restart: .after(backoff))
                    .follow(onStoreFailure: { logger.warning("following peer credentials failed", metadata: ["error": "\($0)"]) }) { records, _ in
                        state.withLock { $0.credentials = records }
                        publish()
                    }
            }
        }
    }

    /// The credentials whose grant (same peer) holds the public key they certify.
    static func current(grants: [String: EtcdKeyValue], credentials: [String: EtcdKeyValue]) -> [PeerCredential] {
        credentials.values.compactMap { record -> PeerCredential? in
            guard let credential = try? StoreCoding.decode(PeerCredential.self, from: record.value, key: record.key),
                  record.key == KeyLayout.peerCredential(credential.peer),
                  let grantRecord = grants[KeyLayout.peerGrant(credential.peer)],
                  let grant = try? StoreCoding.decode(PeerGrant.self, from: grantRecord.value, key: grantRecord.key),
                  grant.publicKeyPEM == credential.publicKeyPEM
            else { return nil }
            return credential
        }
    }
}
