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

    /// Applies `change`; only a real change stamps `updated` and bumps the version, so an
    /// importer reporting the same counts after every watch batch causes no status write.
    public func update(_ name: String, _ change: (inout RemoteClusterStatus) -> Void) {
        state.withLock { state in
            let before = state.statuses[name]
            var status = before ?? RemoteClusterStatus(name: name)
            change(&status)
            guard status != before else { return }
            status.updated = Date()
            state.statuses[name] = status
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

/// A value shared between concurrently running closures of one controller (a `Mutex` that can
/// be captured, since a `Mutex` itself cannot be copied into a closure).
final class Shared<Value: Sendable>: Sendable {
    private let state: Mutex<Value>

    init(_ value: Value) { state = Mutex(value) }

    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { state.withLock { body(&$0) } }
}
