import Foundation
import MeridianStore
import Synchronization

/// The live status of every remote cluster this control plane imports, shared between the
/// importers (which write it) and the publisher (which copies it into etcd for the CLI).
public final class StatusBoard: Sendable {
    private struct State {
        var statuses: [String: RemoteClusterStatus] = [:]
        var version = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Takes an importer's status; only a change (its `updated` aside) stamps `updated` and
    /// bumps the version, so an importer reporting the same counts causes no status write.
    public func set(_ status: RemoteClusterStatus) {
        state.withLock { state in
            var incoming = status
            if let before = state.statuses[status.name] {
                incoming.updated = before.updated
                guard incoming != before else { return }
            }
            incoming.updated = Date()
            state.statuses[status.name] = incoming
            state.version += 1
        }
    }

    public func remove(_ name: String) {
        state.withLock { state in
            state.statuses[name] = nil
            state.version += 1
        }
    }

    public func snapshot() -> (version: Int, statuses: [String: RemoteClusterStatus]) {
        state.withLock { ($0.version, $0.statuses) }
    }

    public func status(_ name: String) -> RemoteClusterStatus? {
        state.withLock { $0.statuses[name] }
    }
}
