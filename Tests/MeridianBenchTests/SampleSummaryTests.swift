import Foundation
import MeridianBench
import Testing

@Suite struct SampleSummaryTests {
    @Test func nearestRankPercentiles() throws {
        let summary = try #require(SampleSummary((1...100).map(Double.init).shuffled()))
        #expect(summary.count == 100)
        #expect(summary.min == 1)
        #expect(summary.p50 == 50)
        #expect(summary.p90 == 90)
        #expect(summary.p99 == 99)
        #expect(summary.max == 100)
    }

    @Test func smallAndEmptySamples() throws {
        #expect(SampleSummary([]) == nil)
        let one = try #require(SampleSummary([3.5]))
        #expect(one.p50 == 3.5 && one.p99 == 3.5)
        let two = try #require(SampleSummary([1, 9]))
        #expect(two.p50 == 1)
        #expect(two.p99 == 9)
    }
}
