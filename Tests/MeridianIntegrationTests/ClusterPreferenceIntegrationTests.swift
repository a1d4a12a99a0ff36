import Foundation
import Glibc
import MeridianLab
import Testing

/// Ordered and weighted preference between three meshed clusters, on real processes: a client in
/// cluster1 calls a global service whose backends run in cluster2 and cluster3.
@Suite("Cluster preference across three clusters", .serialized,
       .enabled(if: getuid() == 0, "network namespaces and BPF need root; CI runs as root"))
struct ClusterPreferenceIntegrationTests {
    /// Calls answered per cluster (pods of `web-two` are cluster2's, of `web-three` cluster3's).
    static func answered(_ lab: LabFixture, _ address: String, seconds: Int = 2, intervalMilliseconds: Int = 20) async throws -> [String: Int] {
        let report = try await lab.load(from: "client", context: "cluster1",
                                        ["--duration", "\(seconds)", "--interval-ms", "\(intervalMilliseconds)", address])
        var result: [String: Int] = [:]
        for (pod, count) in report.servedBy {
            result[pod.hasPrefix("web-three-") ? "cluster3" : pod.hasPrefix("web-two-") ? "cluster2" : pod, default: 0] += count
        }
        if report.failures > 0 { result["failed"] = report.failures }
        return result
    }

    @Test("the order holds, fails over when the first cluster scales to zero and back when it returns; weights split 1,000 connections within tolerance")
    func orderAndWeights() async throws {
        try await LabFixture.with(clusters: 3, nodes: 1, heartbeat: 1) { lab in
            try await lab.connect("cluster1", ["cluster2", "cluster3"])
            try await lab.waitReady("cluster1")
            let ordered = LabWorkloads.globalWebService(["service.meridian.io/cluster-preference": "cluster3,cluster2,*"])
            try await lab.apply(ordered + DatapathIntegrationTests.pod("client", node: "node1", command: DatapathIntegrationTests.sleeper),
                                context: "cluster1")
            try await lab.apply(LabWorkloads.globalWebService() + LabWorkloads.webDeployment("web-two", replicas: 1), context: "cluster2")
            try await lab.apply(LabWorkloads.globalWebService() + LabWorkloads.webDeployment("web-three", replicas: 1), context: "cluster3")
            try await lab.waitRunning(["client"], context: "cluster1")
            let address = try await lab.clusterIP("web", context: "cluster1") + ":80"

            try await eventually("cluster1's calls go to cluster3, the first of the order", timeout: .seconds(60)) {
                try await Self.answered(lab, address).keys.sorted() == ["cluster3"]
            }
            #expect(try await Self.answered(lab, address).keys.sorted() == ["cluster3"])
            let listed = try await lab.meridian(["service", "list", "--context", "cluster1"]).stdout
            #expect(listed.contains("global, order cluster3,cluster2,*"), "\(listed)")

            try await lab.run(["scale", "deployment", "web-three", "--replicas", "0", "--context", "cluster3"])
            try await eventually("with cluster3 scaled to zero, calls go to cluster2", timeout: .seconds(60)) {
                try await Self.answered(lab, address).keys.sorted() == ["cluster2"]
            }
            try await lab.run(["scale", "deployment", "web-three", "--replicas", "1", "--context", "cluster3"])
            try await eventually("with cluster3 back, calls return to it", timeout: .seconds(60)) {
                try await Self.answered(lab, address).keys.sorted() == ["cluster3"]
            }

            // Weights: cluster2 three parts, cluster3 one, with two backends in cluster3 and one in
            // cluster2, so that a per-backend split would give the opposite.
            try await lab.apply(LabWorkloads.webDeployment("web-three", replicas: 2), context: "cluster3")
            try await lab.apply(LabWorkloads.globalWebService(["service.meridian.io/cluster-weights": "cluster2=3,cluster3=1"]), context: "cluster1")
            try await eventually("both clusters answer under weights", timeout: .seconds(60)) {
                let answered = try await Self.answered(lab, address)
                return answered["cluster2"] != nil && answered["cluster3"] != nil && answered["failed"] == nil
            }
            let weighted = try await lab.meridian(["service", "list", "--context", "cluster1", "-o", "json"]).stdout
            #expect(weighted.contains("weights cluster2=3,cluster3=1,*=1"), "\(weighted)")
            var tally: [String: Int] = [:]
            while tally.values.reduce(0, +) < 1_000 {
                tally.merge(try await Self.answered(lab, address, seconds: 5, intervalMilliseconds: 2)) { $0 + $1 }
            }
            let total = Double((tally["cluster2"] ?? 0) + (tally["cluster3"] ?? 0))
            let share = Double(tally["cluster2"] ?? 0) / total
            print("cluster preference: cluster2 (weight 3, one backend) answered \(share) of \(Int(total)) calls, cluster3 (weight 1, two backends) the rest")
            // 0.75 expected; five standard deviations of 1,000 draws are about 0.07.
            #expect(abs(share - 0.75) < 0.07, "cluster2 answered \(share) of \(Int(total)) calls: \(tally)")
            #expect(tally["failed"] == nil, "\(tally)")
        }
    }
}
