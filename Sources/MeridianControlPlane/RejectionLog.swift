import Logging
import MeridianCore
import MeridianStore

/// Logs each rejected record of one remote's kind once per connection (the same key rejected for
/// the same reason is not logged again), escaped and cut, up to `limit` distinct ones; past that,
/// a line at every power of two says how many more were rejected without being logged.
final class RejectionLog: Sendable {
    static let limit = 1000
    private let remote: String
    private let logger: Logger
    private let logged = Shared((keys: Set<String>(), unlogged: 0))

    init(remote: String, logger: Logger) {
        self.remote = remote
        self.logger = logger
    }

    func record(_ rejections: [RemoteRecordRejection]) {
        guard !rejections.isEmpty else { return }
        let (fresh, unlogged, summarize) = logged.withLock { state -> ([(RemoteRecordRejection, String)], Int, Bool) in
            var fresh: [(RemoteRecordRejection, String)] = []
            var unlogged = 0
            for rejection in rejections {
                let key = TerminalSafe.escape(rejection.key, maxScalars: 256)
                let identity = "\(rejection.kind.rawValue)/\(key)/\(rejection.reason.rawValue)"
                if state.keys.contains(identity) { continue }
                if state.keys.count >= Self.limit {
                    unlogged += 1
                } else {
                    state.keys.insert(identity)
                    fresh.append((rejection, key))
                }
            }
            let before = state.unlogged
            state.unlogged += unlogged
            // The summary at every power of two of the count, so a flood costs few lines.
            let summarize = unlogged > 0 && (state.unlogged & (state.unlogged - 1) == 0 || before == 0)
            return (fresh, state.unlogged, summarize)
        }
        for (rejection, key) in fresh {
            logger.warning("rejected a record from a remote cluster", metadata: [
                "remote": "\(remote)", "kind": "\(rejection.kind.rawValue)", "key": "\(key)",
                "reason": "\(rejection.reason.rawValue)", "detail": "\(TerminalSafe.escape(rejection.message, maxScalars: 512))",
            ])
        }
        if summarize {
            logger.warning("rejected more records from a remote cluster than are logged",
                           metadata: ["remote": "\(remote)", "not-logged": "\(unlogged)"])
        }
    }
}
