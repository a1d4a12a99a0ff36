import Foundation
import MeridianStore
import Synchronization

/// Why the mesh endpoint refused a call: the label refusals are counted and logged by.
public enum MeshRefusal: String, Error, Sendable, Hashable, CaseIterable, Codable {
    /// The TLS session carried no client certificate the transport could read.
    case noCertificate = "no-certificate"
    /// A certificate the mesh CA signed, but not a credential issued for a current grant: another
    /// cluster's, an old one replaced by `connect`, or one revoked by `disconnect`.
    case unknownCredential = "unknown-credential"
    /// The credential's lifetime is over.
    case expired
    /// The credential was revoked while its stream was open.
    case revoked
    /// A range or watch reaching outside the exported keys.
    case outsideExport = "outside-export"
    /// A write, a transaction or a compaction: peers only read.
    case readOnly = "read-only"
    /// More live watches on one stream, or more watch streams of one peer, than the endpoint serves.
    case tooManyWatches = "too-many-watches"
    /// More Range calls of one peer in flight than the endpoint serves.
    case tooManyReads = "too-many-reads"
    /// More watch requests of one stream waiting for the store than the endpoint holds: the
    /// peer sends without reading the answers.
    case tooManyRequests = "too-many-requests"
    /// Clustermesh is disabled on this cluster: its export is withdrawn and nothing is served.
    case disabled
}

/// The client certificates the mesh endpoint accepts right now, one per granted peer, as the
/// control plane issued them (`PeerCredential`, followed from the local store). A certificate is
/// accepted by its fingerprint, so the mesh CA signing something is never enough. Open streams
/// wait on `revocation(of:)` to end the moment their credential goes.
public final class PeerAuthorizer: Sendable {
    /// An accepted credential.
    public struct Admission: Sendable, Hashable {
        public var peer: String
        public var fingerprint: String
        public var notAfter: Date
    }

    private struct Waiter {
        var fingerprint: String
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var credentials: [String: Admission] = [:]
        var waiters: [Int: Waiter] = [:]
        var cancelled: Set<Int> = []
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Replaces the accepted credentials; streams of any credential no longer present end.
    public func replace(with credentials: [PeerCredential]) {
        let admissions = credentials.map { Admission(peer: $0.peer, fingerprint: $0.fingerprint, notAfter: $0.notAfter) }
        let released = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.credentials = Dictionary(admissions.map { ($0.fingerprint, $0) }, uniquingKeysWith: { first, _ in first })
            let gone = state.waiters.filter { state.credentials[$0.value.fingerprint] == nil }
            for id in gone.keys { state.waiters[id] = nil }
            return gone.values.map(\.continuation)
        }
        for continuation in released { continuation.resume() }
    }

    /// Streams waiting on `revocation(of:)`.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// The peer a certificate with `fingerprint` speaks for, or why it is refused.
    public func admit(fingerprint: String, now: Date = Date()) -> Result<Admission, MeshRefusal> {
        guard let admission = state.withLock({ $0.credentials[fingerprint] }) else { return .failure(.unknownCredential) }
        guard now < admission.notAfter else { return .failure(.expired) }
        return .success(admission)
    }

    /// Returns once `fingerprint` is no longer accepted (at once if it is not), or when the
    /// calling task is cancelled.
    public func revocation(of fingerprint: String) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.credentials[fingerprint] == nil || state.cancelled.contains(id) { return true }
                    state.waiters[id] = Waiter(fingerprint: fingerprint, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.cancelled.insert(id)
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.continuation.resume()
        }
        state.withLock { _ = $0.cancelled.remove(id) }
    }
}
