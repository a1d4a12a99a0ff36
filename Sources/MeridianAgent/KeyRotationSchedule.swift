import Foundation

/// When a node replaces its WireGuard key pair on a schedule (`meridian agent
/// --wireguard-rotation-interval`): `interval` after the last replacement, whatever made it (the
/// key's creation, a rotation on request, the schedule).
///
/// It exists apart from the reconciler so that the decision is a function of three values the
/// agent keeps: the time of the last rotation (persisted in the state directory, so a restart
/// neither rotates early nor postpones a rotation forever), the interval and the clock.
struct KeyRotationSchedule: Sendable, Hashable {
    /// The shortest interval accepted: a rotation costs each peer a brief gap (its next pass
    /// after the new record reaches it), so rotating more often would keep tunnels down.
    static let minimumInterval: Duration = .seconds(10)

    var interval: Duration

    /// The last rotation to count from: the recorded time, failing that the key file's
    /// modification time (the key was made, or rotated, by an agent that kept no record), failing
    /// that `now`. A time after `now` (the clock was set back since) counts as `now`, so the key
    /// is replaced `interval` from now at the latest rather than when the clock catches up.
    static func lastRotation(recorded: Date?, keyFileModified: Date?, now: Date) -> Date {
        min(recorded ?? keyFileModified ?? now, now)
    }

    /// When the key pair is next replaced.
    func nextRotation(after last: Date) -> Date {
        last.addingTimeInterval(Self.seconds(interval))
    }

    /// Whether the key pair is to be replaced now: `interval` or more has passed since `last`.
    func isDue(last: Date, now: Date) -> Bool {
        now >= nextRotation(after: last)
    }

    static func seconds(_ duration: Duration) -> TimeInterval {
        let (seconds, attoseconds) = duration.components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
