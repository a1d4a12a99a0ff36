import Foundation

/// Store records decoded in an earlier pass, reused while their bytes are unchanged. With
/// hundreds of thousands of imported records, decoding every one on every pass was most of
/// the agent's CPU; comparing bytes is a small fraction of decoding them.
public struct RecordDecodeCache<Record: Decodable & Sendable>: Sendable {
    private var entries: [String: (data: Data, record: Record?)] = [:]

    public init() {}

    /// The decoded records of `records` (those that decode), keeping only these for next time.
    public mutating func decode(_ records: [String: Data]) -> [(key: String, record: Record)] {
        var next: [String: (data: Data, record: Record?)] = [:]
        next.reserveCapacity(records.count)
        var decoded: [(key: String, record: Record)] = []
        decoded.reserveCapacity(records.count)
        for (key, value) in records {
            let record: Record?
            if let cached = entries[key], cached.data == value {
                record = cached.record
            } else {
                record = try? StoreCoding.decode(Record.self, from: value, key: key)
            }
            next[key] = (value, record)
            if let record { decoded.append((key, record)) }
        }
        entries = next
        return decoded
    }
}
