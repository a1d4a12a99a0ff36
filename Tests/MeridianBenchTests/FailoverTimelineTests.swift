import Foundation
@testable import MeridianBench
import Testing

/// Reading a `tool load --timeline` report into failover figures.
@Suite("Failover timeline")
struct FailoverTimelineTests {
    static let output = """
        {"connections":7,"failureDetails":[],"failures":2,"requests":7,"seconds":0.1,"servedBy":{},"timeline":[\
        {"at":99.9,"servedBy":"web-one-a"},{"at":100.01,"servedBy":"web-one-b"},{"at":100.02},{"at":100.03},\
        {"at":100.04,"servedBy":"web-one-a"},{"at":100.25,"servedBy":"web-two-x"},{"at":100.26,"servedBy":"web-two-y"}]}
        """

    @Test("failover is measured from the scale command to the first answer from the other cluster; the outage from the first failure to the first success after the last")
    func figures() throws {
        let entries = try Timeline.entries("some progress line\n" + Self.output)
        #expect(entries.count == 7)
        let figures = try Timeline.failover(after: 100.0, entries, fallback: "web-two-")
        #expect(abs(figures.failover - 0.25) < 1e-9)
        #expect(abs(figures.outage - 0.02) < 1e-9, "first failure at 100.02, first success after the last failure at 100.04")
        #expect(figures.failedCalls == 2)
    }

    @Test("no answer from the other cluster after the scale command is an error, not a figure")
    func neverFailedOver() throws {
        let entries = try Timeline.entries(Self.output)
        #expect(throws: BenchError.self) { try Timeline.failover(after: 100.3, entries, fallback: "web-two-") }
        #expect(throws: BenchError.self) { try Timeline.entries("{\"requests\":1}") }
    }
}
