import Synchronization

/// A value shared between concurrently running closures of one component, behind a lock (a
/// `Mutex` itself cannot be captured by an escaping closure).
public final class Shared<Value: Sendable>: Sendable {
    private let state: Mutex<Value>

    public init(_ value: Value) { state = Mutex(value) }

    public func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { state.withLock { body(&$0) } }

    public var value: Value { state.withLock { $0 } }
}
