import Foundation
import MeridianCore
import MeridianStore

/// Decides whether a record read from a remote cluster may enter the local cache: it must fit
/// the size limit, parse, have a key matching its content, and claim only what the remote may
/// (`RemoteRecordValidation`: its name and ID, identities in its range, addresses in the pod
/// CIDR its peer record declares). Rejected records are counted and logged, never cached.
struct RemoteRecordValidator: Sendable {
    let validation: RemoteRecordValidation
    /// This cluster's own ranges (pod and service CIDRs), where no remote node may sit.
    let localRanges: [IPCIDR]
    /// The addresses of this cluster's nodes when the kind was last listed; a remote node
    /// claiming one is refused (the datapath would keep the local node's entry anyway).
    var localNodeAddresses: Set<IPAddress> = []

    /// Throws `ImportFailure.unusablePeer` when the peer record cannot bound what the remote
    /// claims (no or an unparseable pod CIDR, a name or ID invalid for this mesh).
    init(peer: PeerRecord, layout: IdentityLayout, local: ClusterSettings? = nil) throws(ImportFailure) {
        localRanges = [local?.podCIDR, local?.serviceCIDR].compactMap { $0.flatMap(IPCIDR.init) }
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
            case .nodes:
                let node = try validation.decodeNode(keyName: "\(validation.remoteName)/\(name)", value: value)
                for address in node.ipAddresses {
                    guard let ip = IPAddress(address.ip) else { continue }
                    if localNodeAddresses.contains(ip) {
                        return RemoteRecordRejection(kind: .node, key: name, reason: .localAddress,
                                                     message: "\(address.type) \(address.ip) is the address of a node of this cluster")
                    }
                    guard let range = localRanges.first(where: { $0.contains(ip) }) else { continue }
                    return RemoteRecordRejection(kind: .node, key: name, reason: .localAddress,
                                                 message: "\(address.type) \(address.ip) is inside this cluster's \(range)")
                }
            case .services: _ = try validation.decodeService(keyName: name, value: value)
            case .serviceExports: _ = try validation.decodeServiceExport(keyName: name, value: value)
            case .serviceSlices: _ = try validation.decodeServiceSlice(keyName: name, value: value)
            case .endpoints: _ = try validation.decodeIPIdentityPair(keyName: name, value: value)
            case .identities: _ = try validation.decodeIdentity(keyName: name, value: value)
            }
            return nil
        } catch {
            return error
        }
    }
}

extension MeshKind {
    /// The kind a rejection of this mesh kind's records names.
    var rejectionKind: RemoteRecordRejection.Kind {
        switch self {
        case .nodes: .node
        case .endpoints: .ipIdentityPair
        case .identities: .identity
        case .services: .service
        case .serviceExports: .serviceExport
        case .serviceSlices: .serviceSlice
        }
    }
}

/// What one peer holds of one kind in the cache, against `RemoteRecordLimits`' per-peer records
/// and bytes: a record that would take the peer past either is refused (`over-quota`).
struct PeerQuota: Sendable {
    let maximumRecords: Int
    let maximumBytes: Int
    private(set) var held: [String: Int] = [:]
    private(set) var bytes = 0

    init(_ kind: MeshKind) {
        maximumRecords = RemoteRecordLimits.maximumRecordsPerPeer(of: kind.rejectionKind)
        maximumBytes = RemoteRecordLimits.maximumBytesPerPeer(of: kind.rejectionKind)
    }

    init(maximumRecords: Int, maximumBytes: Int) {
        self.maximumRecords = maximumRecords
        self.maximumBytes = maximumBytes
    }

    /// Holds `key` at `size` bytes (replacing what it held), or, when that would exceed a
    /// limit, refuses it and holds nothing for it.
    mutating func admit(_ key: String, size: Int) -> Bool {
        let previous = held[key]
        let count = held.count + (previous == nil ? 1 : 0)
        let total = bytes - (previous ?? 0) + size
        guard count <= maximumRecords, total <= maximumBytes else {
            remove(key)
            return false
        }
        held[key] = size
        bytes = total
        return true
    }

    mutating func remove(_ key: String) {
        if let previous = held.removeValue(forKey: key) { bytes -= previous }
    }

    func refusal(_ kind: MeshKind, key: String) -> RemoteRecordRejection {
        RemoteRecordRejection(kind: kind.rejectionKind, key: key, reason: .overQuota,
                              message: "the peer already holds the most a peer may: \(maximumRecords) records or \(maximumBytes) bytes of \(kind.rawValue)")
    }
}
