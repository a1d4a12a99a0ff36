import Foundation
import MeridianCore
import MeridianStore

/// Decides whether a record read from a remote cluster may enter the local cache: it must fit
/// the size limit, parse, have a key matching its content, and claim only what the remote may
/// (`RemoteRecordValidation`: its name and ID, identities in its range, addresses in the pod
/// CIDR its peer record declares). Rejected records are counted and logged, never cached.
struct RemoteRecordValidator: Sendable {
    let validation: RemoteRecordValidation

    /// Throws `ImportFailure.unusablePeer` when the peer record cannot bound what the remote
    /// claims (no or an unparseable pod CIDR, a name or ID invalid for this mesh).
    init(peer: PeerRecord, layout: IdentityLayout) throws(ImportFailure) {
        guard let declared = peer.podCIDR, let podCIDR = IPCIDR(declared) else {
            throw .unusablePeer(remote: peer.name, reason: "its peer record declares no valid pod CIDR; connect the clusters again")
        }
        do {
            validation = try RemoteRecordValidation(remoteName: peer.name, remoteID: ClusterID(peer.id), podCIDRs: [podCIDR], layout: layout)
        } catch {
            throw .unusablePeer(remote: peer.name, reason: "\(error)")
        }
    }

    /// nil when accepted; otherwise why not.
    func accept(_ kind: MeshKind, name: String, value: Data) -> RemoteRecordRejection? {
        do {
            switch kind {
            case .nodes: _ = try validation.decodeNode(keyName: "\(validation.remoteName)/\(name)", value: value)
            case .services: _ = try validation.decodeService(keyName: name, value: value)
            case .endpoints: _ = try validation.decodeIPIdentityPair(keyName: name, value: value)
            case .identities: _ = try validation.decodeIdentity(keyName: name, value: value)
            }
            return nil
        } catch {
            return error
        }
    }
}
