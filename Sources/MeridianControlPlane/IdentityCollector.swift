import Foundation
import Logging
import MeridianCore
import MeridianEtcd
import MeridianStore

/// Garbage-collects the cluster's identities (Cilium's operator does the same in kvstore mode):
/// an identity that no endpoint record uses is deleted, with its label index, once it has been
/// found unused on two scans an interval apart without its record moving. Allocation touches an
/// identity's record before reusing it (`IdentityAllocator`), and the delete is conditional on
/// the record's mod revision, so an identity being taken up again is never deleted under its
/// user. Deleting it also withdraws it from every peer that imports it.
struct IdentityCollector: Sendable {
    let client: any KeyValueStore
    let interval: Duration
    let logger: Logger

    /// Identities found unused, with the mod revision their record had then.
    typealias Candidates = [UInt32: Int64]

    func run() async throws {
        var candidates: Candidates = [:]
        while true {
            try await Task.sleep(for: interval)
            do {
                candidates = try await collect(candidates)
            } catch {
                logger.warning("identity garbage collection failed; will retry", metadata: ["error": "\(error)"])
            }
        }
    }

    /// One scan: deletes the candidates of the last scan that are still unused and unmoved, and
    /// returns this scan's candidates.
    func collect(_ previous: Candidates) async throws -> Candidates {
        let identities = try await client.list(prefix: MeshKind.identities.statePrefix(cluster: ""))
        let endpoints = try await client.list(prefix: MeshKind.endpoints.statePrefix(cluster: ""))
        // An endpoint record that does not decode could name any identity: collect nothing.
        let used = Set(try endpoints.items.map { try StoreCoding.decode(IPIdentityPair.self, from: $0.value, key: $0.key).id })
        var next: Candidates = [:]
        for record in identities.items {
            guard let id = UInt32(record.key.dropFirst(MeshKind.identities.statePrefix(cluster: "").count)), !used.contains(id) else { continue }
            guard previous[id] == record.modRevision else {
                next[id] = record.modRevision
                continue
            }
            // The record and its index go together, and only if neither moved: between two
            // separate deletes an allocator could take the number up again under the same index.
            let indexKey = KeyLayout.identityIndex(record.stringValue)
            let index = try await client.get(indexKey)
            let keys = index?.stringValue == "\(id)" ? [record.key, indexKey] : [record.key]
            guard try await client.delete(keys, ifModRevisions: [(record.key, record.modRevision), (indexKey, index?.modRevision ?? 0)]) else { continue }
            logger.info("identity collected", metadata: ["identity": "\(id)", "labels": "\(record.stringValue)"])
        }
        return next
    }
}
