import Synchronization

/// A value shared between concurrently running closures of one component, behind a lock (a
/// `Mutex` itself cannot be captured by an escaping closure).
public final class Shared<Value: Sendable>: Sendable {
    private let state: Mutex<Value>

    public init(_ value: Value) { state = Mutex(value) }

    public func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { state.withLock { body(&$0) } }

    public var value: Value { state.withLock { $0 } }

    /// The value, leaving `placeholder` in its place: the caller then holds the only copy and
    /// can change it in place, where changing a copy of `value` would first copy every
    /// collection it holds.
    public func take(leaving placeholder: Value) -> Value {
        state.withLock { current in
            let taken = current
            current = placeholder
            return taken
        }
    }
}
