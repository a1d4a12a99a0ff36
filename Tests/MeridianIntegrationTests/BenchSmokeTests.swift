import Foundation
import Glibc
import MeridianLab
import Testing

/// The benchmarks at a tiny size, so CI notices when one stops running or its JSON loses its
/// `ratios`; the figures themselves are not checked (they are measured, not asserted).
@Suite("Benchmarks at a smoke size", .serialized, .enabled(if: getuid() == 0, "BPF and the lab need root; CI runs as root"))
struct BenchSmokeTests {
    func json(_ arguments: [String]) async throws -> [String: Any] {
        let fixture = LabFixture(directory: "/tmp/meridian-test-smoke")
        let result = try await fixture.meridian(arguments)
        try #require(result.status == 0, "meridian \(arguments.joined(separator: " ")) failed: \(result.stderr.suffix(2000))")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(["debug", "release"].contains(report["build"] as? String), "every bench report names the build that measured it")
        return report
    }

    @Test("bench policy --lookup-only times the kernel's policy decision at each map size")
    func policyLookup() async throws {
        let report = try await json(["bench", "policy", "--lookup-only", "-o", "json"])
        let lookup = try #require(report["lookup"] as? [[String: Any]])
        #expect(lookup.compactMap { $0["entries"] as? Int } == [1, 1000, 10_000, 100_000])
        let ratios = try #require(report["ratios"] as? [String: Double])
        #expect(ratios["lookup_100000_vs_1_entries_ns_per_packet"] != nil)
    }

    @Test("bench services at 1 and 10 services reports both paths and its ratios, and leaves nothing behind")
    func services() async throws {
        let report = try await json(["bench", "services", "--sizes", "1,10", "--runs", "1", "--seconds", "1", "--connects", "10", "-o", "json"])
        let points = try #require(report["points"] as? [[String: Any]])
        #expect(points.compactMap { $0["services"] as? Int } == [1, 10])
        #expect(points.allSatisfy { $0["meridian"] != nil && $0["iptables"] != nil })
        let ratios = try #require(report["ratios"] as? [String: Double])
        #expect(ratios["meridian_vs_iptables_connection_rate_at_10"] != nil)
        let leftovers = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).contains("meridian-bench-")
        #expect(!leftovers, "the bench lab's bpffs is unmounted")
    }
}
