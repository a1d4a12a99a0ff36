import Foundation
import ArgumentParser
@testable import MeridianBench
@testable import MeridianCLI
import MeridianTools
import MeridianCore
import Testing

/// The benchmarks' own arithmetic and parsing: percentiles, the tools' reports, option checks,
/// and the generated rulesets and policies (the benchmarks themselves are not run in CI).
@Suite("Benchmark support")
struct BenchmarkSupportTests {
    @Test("percentiles are nearest-rank over the sorted sample; an empty sample has none")
    func percentiles() throws {
        let summary = try #require(SampleSummary((1...10).reversed().map(Double.init)))
        #expect(summary.count == 10 && summary.min == 1 && summary.max == 10)
        #expect(summary.p50 == 5 && summary.p90 == 9 && summary.p99 == 10)
        let single = try #require(SampleSummary([42]))
        #expect(single.p50 == 42 && single.p99 == 42)
        let two = try #require(SampleSummary([9, 1]))
        #expect(two.p50 == 1 && two.p99 == 9)
        #expect(SampleSummary([]) == nil)
        let hundred = try #require(SampleSummary((1...100).map(Double.init).shuffled()))
        #expect(hundred.p50 == 50 && hundred.p90 == 90 && hundred.p99 == 99)
    }

    @Test("a ratio is row A's median over row B's, per metric, named A_vs_B_metric")
    func rowRatios() throws {
        func row(_ name: String, _ gbps: Double, _ rr: Double, _ conn: Double) throws -> DatapathBenchmark.Row {
            DatapathBenchmark.Row(name: name, what: "", throughputGbps: try #require(SampleSummary([gbps])),
                                  requestsPerSecond: try #require(SampleSummary([rr])), connectionsPerSecond: try #require(SampleSummary([conn])))
        }
        let rows = [try row("mesh", 9, 300, 50), try row("base", 10, 200, 100)]
        let all = DatapathBenchmark.Row.ratios(rows, [("mesh", "base")])
        #expect(all == ["mesh_vs_base_throughput": 0.9, "mesh_vs_base_request_rate": 1.5, "mesh_vs_base_connection_rate": 0.5])
        #expect(DatapathBenchmark.Row.ratios(rows, [("base", "mesh")], [.throughput]).keys.sorted() == ["base_vs_mesh_throughput"])
    }

    @Test("CPU ratios compare cores per Gbit/s of two rows that both have CPU samples; the bare tunnel's device names carry the lab's prefix")
    func cpuRatios() throws {
        func cpu(_ tunnel: Double, _ machine: Double) throws -> DatapathBenchmark.ThroughputCPU {
            DatapathBenchmark.ThroughputCPU(wireguardGoProcesses: 2, wireguardGoPercentOfOneCore: try #require(SampleSummary([100])),
                                            machinePercentOfOneCore: try #require(SampleSummary([200])),
                                            wireguardGoCoresPerGbps: try #require(SampleSummary([tunnel])), machineCoresPerGbps: try #require(SampleSummary([machine])))
        }
        func row(_ name: String, cpu: DatapathBenchmark.ThroughputCPU?) throws -> DatapathBenchmark.Row {
            let one = try #require(SampleSummary([1]))
            return DatapathBenchmark.Row(name: name, what: "", throughputGbps: one, requestsPerSecond: one, connectionsPerSecond: one, cpu: cpu)
        }
        let rows = [try row("mesh", cpu: try cpu(6, 8)), try row("bare", cpu: try cpu(4, 5)), try row("plain", cpu: nil)]
        let ratios = DatapathBenchmark.ThroughputCPU.ratios(rows, [("mesh", "bare"), ("mesh", "plain")])
        #expect(ratios == ["mesh_vs_bare_wireguard_go_cores_per_gbps": 1.5, "mesh_vs_bare_machine_cores_per_gbps": 1.6])
        #expect(Baselines.wireGuardDevice(prefix: "mbench12345", namespace: "mbench12345-bw-a", side: "a") == "mbench12345-wa")
        let long = Baselines.wireGuardDevice(prefix: "a-very-long-prefix", namespace: "a-very-long-prefix-bw-a", side: "a")
        #expect(long.utf8.count <= 15 && long.hasPrefix("wg"))
    }

    @Test("iperf3's JSON report gives Gbit/s received")
    func iperf() {
        let report = #"{"start": {}, "end": {"sum_sent": {"bits_per_second": 5.1e9}, "sum_received": {"bits_per_second": 4.33e9}}}"#
        #expect(BenchParsing.iperfGbps(report) == 4.33)
        #expect(BenchParsing.iperfGbps(#"{"error": "unable to connect to server"}"#) == nil)
        #expect(BenchParsing.iperfGbps("iperf3: error") == nil)
    }

    @Test("sockperf's total run line gives round trips per second")
    func sockperf() throws {
        let output = """
            sockperf: == version #3.7-no.git ==
            sockperf: [Total Run] RunTime=5.000 sec; Warm up time=400 msec; SentMessages=87373; ReceivedMessages=87372
            sockperf: ========= Printing statistics for Server No: 0
            """
        let rate = try #require(BenchParsing.sockperfRate(output))
        #expect(abs(rate - 17474.4) < 0.001)
        #expect(BenchParsing.sockperfRate("sockperf: ERROR: connect failed") == nil)
        #expect(BenchParsing.sockperfRate("[Total Run] RunTime=0.000 sec; ReceivedMessages=3") == nil)
    }

    @Test("wrk's request rate is read, and runs with errors are refused")
    func wrk() {
        let clean = """
            Running 2s test @ http://10.1.1.2:8080/
              1 threads and 1 connections
              Thread Stats   Avg      Stdev     Max   +/- Stdev
                Latency   804.21us  220.41us   5.41ms   92.27%
                Req/Sec     1.23k    38.14     1.27k    70.00%
              2468 requests in 2.00s, 485.40KB read
            Requests/sec:   1233.61
            Transfer/sec:    242.60KB
            """
        #expect(BenchParsing.wrkRate(clean) == 1233.61)
        #expect(BenchParsing.wrkRate(clean.replacingOccurrences(of: "  2468 requests", with: "  Non-2xx or 3xx responses: 4\n  2468 requests")) == nil)
        #expect(BenchParsing.wrkRate(clean + "\n  Socket errors: connect 0, read 1, write 0, timeout 0") == nil)
        #expect(BenchParsing.wrkRate("unable to connect to 10.1.1.2:8080 Connection refused") == nil)
    }

    @Test("connect-latency samples are read back from the tool's line")
    func connectLatencies() {
        #expect(BenchParsing.connectLatencies("connect-us: 51.2 48.9 60.0\n") == [51.2, 48.9, 60.0])
        #expect(BenchParsing.connectLatencies("Error: connect to tcp:10.0.0.1:8080: Connection refused").isEmpty)
    }

    @Test("service sizes must be positive and at most 150,000")
    func sizes() throws {
        #expect(try BenchCommand.Services.parse(["--sizes", "1000,1,10"]).benchmark().sizes == [1, 10, 1000])
        for bad in ["0", "1,x", "", "200000"] {
            #expect(throws: (any Error).self, "--sizes \(bad)") { try BenchCommand.Services.parse(["--sizes", bad]).benchmark() }
        }
        #expect(throws: (any Error).self) { try BenchCommand.Policy.parse(["--rules", "0"]) }
    }

    @Test("the iptables baseline has kube-proxy's shape, with the test service last")
    func ruleset() {
        let text = IPTablesPath.ruleset(services: 3)
        let lines = text.split(separator: "\n")
        #expect(lines.first == "*nat" && lines.last == "COMMIT")
        #expect(lines.filter { $0.hasPrefix("-A KUBE-SERVICES") }.count == 4)
        #expect(lines.filter { $0.hasPrefix(":KUBE-SVC-") }.count == 4 && lines.filter { $0.hasPrefix(":KUBE-SEP-") }.count == 4)
        #expect(lines.last { $0.hasPrefix("-A KUBE-SERVICES") }?.contains(ServicesBenchmark.iptablesVIP) == true)
        #expect(text.contains("-A KUBE-SERVICES -d 10.250.0.2/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-2"))
        #expect(text.contains("-A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.99.0.2:8080"))
    }

    @Test("the policy benchmark's generated objects decode to the rules it claims")
    func generatedPolicies() throws {
        let extra = try ManifestDecoder.decode(PolicyBenchmark.extraRules(name: "bench-extra-0", ports: 0..<250), source: "extra")
        let rules = PolicyCompiler.rules(for: extra, settings: PolicySettings(clusterName: "cluster1"))
        #expect(rules.count == 250)
        #expect(Set(rules.flatMap(\.ports).map(\.description)).count == 250)
        let allow = try ManifestDecoder.decode(
            PolicyBenchmark.allowPolicy(name: "a", subject: ["bench": "remote"], direction: .ingress, peer: ["bench": "client"], cluster: "cluster1"),
            source: "allow")
        let compiled = PolicyCompiler.rules(for: allow, settings: PolicySettings(clusterName: "cluster2"))
        #expect(compiled.count == 1 && compiled[0].direction == .ingress && compiled[0].ports.count == 3)
        #expect(compiled[0].peers.description.contains("cluster1"))
    }

    @Test("the bench pods decode as pods with their containers, node and labels")
    func benchPods() throws {
        let objects = try ManifestDecoder.decode(BenchLab.serverPod("server", node: "node2", labels: ["bench": "server"])
                                                 + BenchLab.clientPod("client", node: "node1"), source: "bench")
        guard objects.count == 2, case let .pod(server) = objects[0], case let .pod(client) = objects[1] else {
            Issue.record("expected two pods, got \(objects)")
            return
        }
        #expect(server.spec.containers.map(\.name) == ["iperf", "sockperf", "http"])
        #expect(server.spec.nodeName == "node2" && server.metadata.labels == ["bench": "server"])
        #expect(client.spec.containers.map(\.command) == [["sleep", "infinity"]])
    }

    @Test("reach targets are parsed strictly")
    func reachTargets() throws {
        let target = try ReachProbe.Target(parsing: "udp:10.1.2.3:5353")
        #expect(target.transport == .udp && target.address == "10.1.2.3" && target.port == 5353)
        for bad in ["tcp:10.1.2.3", "icmp:10.1.2.3:1", "tcp:10.1.2:80", "tcp:10.1.2.3:0", "tcp:10.1.2.3:70000"] {
            #expect(throws: ProbeError.self, "\(bad)") { try ReachProbe.Target(parsing: bad) }
        }
    }
}
