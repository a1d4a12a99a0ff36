import Foundation
import Synchronization
import Testing
@testable import MeridianAgent
import MeridianStore

/// Decodes of `Counted` records, across the suite's one test.
private let countedDecodes = Atomic<Int>(0)

/// The agent decodes a record again only when its bytes changed, and forgets records that left.
@Suite("Record decode cache")
struct RecordDecodeCacheTests {
    struct Counted: Decodable, Sendable {
        var value: Int

        init(from decoder: any Decoder) throws {
            countedDecodes.add(1, ordering: .relaxed)
            value = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .value)
        }

        enum CodingKeys: String, CodingKey { case value }
    }

    static func json(_ value: Int) -> Data { Data("{\"value\":\(value)}".utf8) }

    static func values(_ decoded: [(key: String, record: Counted)]) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: decoded.map { ($0.key, $0.record.value) })
    }

    @Test func decodesOnlyWhatChangedAndForgetsWhatLeft() {
        var cache = RecordDecodeCache<Counted>()
        let start = countedDecodes.load(ordering: .relaxed)
        func decodes() -> Int { countedDecodes.load(ordering: .relaxed) - start }

        let bad = Data("{\"value\":\"not a number\"}".utf8)
        #expect(Self.values(cache.decode(["a": Self.json(1), "b": Self.json(2), "bad": bad])) == ["a": 1, "b": 2],
                "records that do not decode are left out")
        #expect(decodes() == 3)
        #expect(Self.values(cache.decode(["a": Self.json(1), "b": Self.json(3), "bad": bad])) == ["a": 1, "b": 3])
        #expect(decodes() == 4, "only the changed record is decoded again (the undecodable one is remembered too)")
        #expect(cache.decode(["b": Self.json(3)]).map(\.key) == ["b"], "a removed record is gone")
        #expect(decodes() == 4)
        #expect(Self.values(cache.decode(["a": Self.json(1), "b": Self.json(3)])) == ["a": 1, "b": 3])
        #expect(decodes() == 5, "a record that left and came back is decoded afresh")
    }
}
