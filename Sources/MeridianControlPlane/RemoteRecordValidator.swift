import Foundation
import MeridianCore
import MeridianStore

/// Decides whether a record read from a remote cluster may enter the local cache: it must parse,
/// its key must match its content, and it must belong to the remote (cluster name and ID,
/// identities inside the remote's range). Rejected records are counted, never cached.
struct RemoteRecordValidator: Sendable {
    let validation: RemoteRecordValidation?
    let remoteName: String

    init(remoteName: String, remoteID: ClusterID, layout: IdentityLayout) {
        self.remoteName = remoteName
        validation = try? RemoteRecordValidation(remoteName: remoteName, remoteID: remoteID, layout: layout)
    }

    /// nil when accepted; otherwise why not.
    func accept(_ kind: MeshKind, name: String, value: Data) -> RemoteRecordRejection? {
        guard let validation else {
            return RemoteRecordRejection(kind: .node, key: name, reason: .wrongCluster, message: "invalid remote cluster \(remoteName)")
        }
        do {
            switch kind {
            case .nodes: _ = try validation.decodeNode(keyName: "\(remoteName)/\(name)", value: value)
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
