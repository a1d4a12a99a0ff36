import Foundation
import MeridianEtcd

/// Decides whether an etcd key range a peer asks for lies wholly inside what this cluster
/// exports (`KeyLayout.meshReadable`). The mesh endpoint checks every Range and every watch
/// against it, in etcd's own terms: `key` alone is one key; `key` with `rangeEnd` is the
/// half-open byte range [key, rangeEnd); a `rangeEnd` of a single zero byte means every key from
/// `key` on, which is never inside an export.
public struct MeshReadPolicy: Sendable, Hashable {
    public let readable: [MeshReadableRange]

    public init(cluster: String) {
        readable = KeyLayout.meshReadable(cluster: cluster)
    }

    public func allows(key: Data, rangeEnd: Data) -> Bool {
        guard !key.isEmpty else { return false }
        if rangeEnd.isEmpty {
            return readable.contains { range in
                let start = Data(range.key.utf8)
                return range.isPrefix ? key.starts(with: start) : key == start
            }
        }
        guard rangeEnd != Data([0]), key.lexicographicallyPrecedes(rangeEnd) else { return false }
        return readable.contains { range in
            let start = Data(range.key.utf8)
            let end = range.isPrefix ? EtcdClient.prefixEnd(range.key) : start + [0]
            return !key.lexicographicallyPrecedes(start) && !end.lexicographicallyPrecedes(rangeEnd)
        }
    }
}
