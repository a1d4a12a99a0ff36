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

    @Test("bench datapath --quick measures every row, the WireGuard rows with CPU against the bare wireguard-go tunnel, and leaves nothing behind")
    func datapathQuick() async throws {
        func benchNames(_ directory: String) -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("mbench") })
        }
        let before = benchNames("/var/run/wireguard").union(benchNames("/var/run/netns"))
        let report = try await json(["bench", "datapath", "--quick", "-o", "json"])
        let rows = try #require(report["rows"] as? [[String: Any]])
        let names = rows.compactMap { $0["name"] as? String }
        for name in ["veth", "plain_vxlan", "cross_node", "cross_cluster", "cross_node_wireguard", "cross_cluster_wireguard", "bare_wireguard_go"] {
            #expect(names.contains(name), "row \(name) in \(names)")
        }
        for row in rows where (row["name"] as? String)?.contains("wireguard") == true {
            let cpu = try #require(row["cpu"] as? [String: Any], "\(row["name"] ?? "?") has CPU samples")
            #expect(cpu["wireguardGoProcesses"] as? Int == 2)
            #expect(((cpu["machineCoresPerGbps"] as? [String: Any])?["p50"] as? Double ?? 0) > 0)
        }
        let ratios = try #require(report["ratios"] as? [String: Double])
        for key in ["cross_cluster_wireguard_vs_bare_wireguard_go_throughput", "cross_cluster_wireguard_vs_bare_wireguard_go_request_rate",
                    "cross_cluster_wireguard_vs_bare_wireguard_go_wireguard_go_cores_per_gbps",
                    "cross_cluster_wireguard_vs_bare_wireguard_go_machine_cores_per_gbps", "cross_cluster_vs_plain_vxlan_throughput"] {
            #expect((ratios[key] ?? 0) > 0, "ratio \(key)")
        }
        let left = benchNames("/var/run/wireguard").union(benchNames("/var/run/netns")).subtracting(before)
        #expect(left.isEmpty, "the bench lab's namespaces and the bare tunnel's control sockets are gone: \(left)")
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
