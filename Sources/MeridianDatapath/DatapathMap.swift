import CMeridianBPF

/// A map of the node's datapath as the agent's reconcilers read and write it, keyed and valued
/// by the C structs of `abi.h`. `BPFMap` is the one every agent uses; unit tests of the
/// reconcilers use an in-memory one (`MeridianTestSupport`), so they run without root.
public protocol DatapathMap<Key, Value>: Sendable {
    associatedtype Key: BitwiseCopyable
    associatedtype Value: BitwiseCopyable

    func lookup(_ key: Key) -> Value?
    func update(_ key: Key, _ value: Value) throws(BPFError)
    /// Returns false when the key was not there.
    @discardableResult
    func delete(_ key: Key) throws(BPFError) -> Bool
    /// Every entry; entries changed concurrently may be missed.
    func entries() -> [(key: Key, value: Value)]
}

extension BPFMap: DatapathMap {}
