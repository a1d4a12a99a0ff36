import Foundation
import MeridianCore
import MeridianEtcd

/// Allocates cluster-scoped numeric identities for label sets in etcd, where every node of
/// the cluster sees the same answer: `cilium/state/identities/v1/id/<id>` holds the labels
/// (the exported record peers import) and `meridian/identities/labels/<labels>` the reverse
/// index. Two nodes racing for the same labels both end up with the winner's ID.
///
/// Unused identities are collected by the control plane (`IdentityCollector`), which deletes an
/// identity only if its record has not moved since it found it unused. Reusing an existing
/// identity therefore touches its record first (a conditional rewrite of the same labels): either
/// the touch lands and the collector's delete fails, or the collector was first and the touch
/// fails, and the stale index entry is dropped and the labels allocated afresh.
public struct IdentityAllocator: Sendable {
    public let client: any KeyValueStore
    public let clusterID: UInt32
    public let layout: IdentityLayout

    public init(client: any KeyValueStore, clusterID: UInt32, layout: IdentityLayout) {
        self.client = client
        self.clusterID = clusterID
        self.layout = layout
    }

    public func allocate(_ labels: LabelSet) async throws -> UInt32 {
        let text = labels.ciliumString
        let indexKey = KeyLayout.identityIndex(text)
        for _ in 0..<64 {
            if let existing = try await client.get(indexKey), let id = UInt32(existing.stringValue) {
                let idKey = MeshKind.identities.stateKey(cluster: "", name: "\(id)")
                if try await client.touch(idKey, ifValue: Data(text.utf8)) { return id }
                _ = try await client.delete(indexKey, ifModRevision: existing.modRevision)
                continue
            }
            let used = Set(try await client.list(prefix: MeshKind.identities.statePrefix(cluster: ""))
                .items.compactMap { UInt32($0.key.split(separator: "/").last ?? "") })
            guard let id = firstFree(used) else {
                throw StoreError.identitiesExhausted(cluster: clusterID, labels: text)
            }
            let idKey = MeshKind.identities.stateKey(cluster: "", name: "\(id)")
            if try await client.create(idKey, Data(text.utf8)) {
                if try await client.create(indexKey, Data("\(id)".utf8)) { return id }
                _ = try await client.delete(idKey)
            }
        }
        throw StoreError.identityAllocationContended(labels: text)
    }

    private func firstFree(_ used: Set<UInt32>) -> UInt32? {
        let cluster = ClusterID(clusterID)
        for local in layout.localIndices(of: cluster) {
            guard let id = try? layout.identity(cluster: cluster, local: local) else { return nil }
            if !used.contains(id) { return id }
        }
        return nil
    }
}
