import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianBench

/// `meridian bench ...`: measurements that print numbers, each against a baseline measured in the
/// same run. Not run by the test suite beyond a tiny size.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Meridian against baselines measured in the same run.",
        subcommands: [Datapath.self, Services.self, Policy.self, ControlPlane.self, Faults.self, Failover.self, LargeService.self])

    /// Which build is measuring: figures from a debug build are not what anyone deploys.
    static var build: String {
        #if DEBUG
        "debug"
        #else
        "release"
        #endif
    }

    /// Prints a report as JSON (with a top-level `build` key) or as its text under a line naming
    /// the build; a debug build is also warned about on standard error.
    static func print<Report: Encodable>(_ report: Report, _ output: OutputFormat, text: (Report) -> String) {
        if build == "debug" {
            FileHandle.standardError.write(Data("Warning: a debug build is measuring; report figures from a release build (./scripts/release-build.sh).\n".utf8))
        }
        guard output == .json else {
            Swift.print("Build: \(build)\n" + text(report))
            return
        }
        let encoded = Listing.encode(report)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(encoded.utf8))) as? [String: Any],
              let data = try? JSONSerialization.data(withJSONObject: object.merging(["build": build]) { own, _ in own },
                                                     options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else {
            Swift.print(encoded)
            return
        }
        Swift.print(String(decoding: data, as: UTF8.self))
    }

    /// One backend change of a large global service, remote against local, as it grows.
    struct LargeService: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "large-service", abstract: "Propagation of one backend change of a global service of 1 to 10,000 backends, remote against local.")

        @Option(help: "Backends per cluster, ascending, comma separated.") var sizes: String = "1,1000,10000"
        @Option(help: "Changes measured per size and side.") var changes: Int = 20
        @Flag(help: "A small size: 1 and 1,500 backends, 5 changes.") var quick = false
        @Flag(help: "Leave the lab up afterwards (for inspection).") var keep = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        var benchmark: LargeServiceBenchmark {
            var benchmark = LargeServiceBenchmark()
            benchmark.sizes = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            (benchmark.changes, benchmark.quick, benchmark.keep) = (changes, quick, keep)
            return benchmark
        }

        func validate() throws {
            guard sizes.split(separator: ",").allSatisfy({ Int($0.trimmingCharacters(in: .whitespaces)) != nil }) else {
                throw ValidationError("--sizes must be numbers separated by commas, got \(sizes.debugDescription)")
            }
            do { try benchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark.run(), output, text: LargeServiceBenchmark.text) }
        }
    }

    struct Datapath: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "datapath", abstract: "Throughput, request/response rate and backend propagation against same-run baselines.")

        @Option(help: "Runs per row (median and spread are reported).") var runs: Int = 3
        @Option(help: "Seconds per run.") var seconds: Int = 5
        @Option(help: "Backend changes for the propagation measurement.") var changes: Int = 200
        @Flag(help: "A small size: 1 run of 2 s per row, 50 changes.") var quick = false
        @Flag(help: "Leave the lab up afterwards (for inspection).") var keep = false
        @Flag(help: "Only the backend propagation measurement.") var propagationOnly = false
        @Flag(help: "Leave out the WireGuard rows and their bare wireguard-go baseline (the agents are not restarted).") var noEncryption = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        var benchmark: DatapathBenchmark {
            var benchmark = DatapathBenchmark()
            (benchmark.runs, benchmark.seconds, benchmark.changes) = (runs, seconds, changes)
            (benchmark.quick, benchmark.keep, benchmark.propagationOnly) = (quick, keep, propagationOnly)
            benchmark.encryption = !noEncryption
            return benchmark
        }

        func validate() throws {
            do { try benchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark.run(), output, text: DatapathBenchmark.text) }
        }
    }

    struct Services: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "services", abstract: "Connection rate and first-packet latency as the number of services grows, against iptables.")

        @Option(help: "Comma-separated numbers of other services.") var sizes: String = "1,1000,10000,100000"
        @Option(help: "Runs per measurement.") var runs: Int = 3
        @Option(help: "Seconds per connection-rate run.") var seconds: Int = 3
        @Option(help: "TCP connects per first-packet latency sample.") var connects: Int = 300
        @Flag(help: "A small size: 1 and 1,000 services, 1 run of 2 s.") var quick = false
        @Flag(help: "Leave the lab up afterwards.") var keep = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        func benchmark() throws -> ServicesBenchmark {
            var benchmark = ServicesBenchmark()
            benchmark.sizes = try ServicesBenchmark.parseSizes(sizes)
            (benchmark.runs, benchmark.seconds, benchmark.connects, benchmark.quick, benchmark.keep) = (runs, seconds, connects, quick, keep)
            return benchmark
        }

        func validate() throws {
            do { try benchmark().validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark().run(), output, text: ServicesBenchmark.text) }
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "policy", abstract: "Datapath figures with 0, 1 and many policy rules in force.")

        @Option(help: "Runs per row (median and spread are reported).") var runs: Int = 3
        @Option(help: "Seconds per run.") var seconds: Int = 5
        @Option(help: "Rules in the large set.") var rules: Int = 10_000
        @Flag(help: "A small size: 1 run of 2 s per row, 1,000 rules.") var quick = false
        @Flag(help: "Leave the lab up afterwards.") var keep = false
        @Flag(help: "Only the kernel's policy decision cost (no lab).") var lookupOnly = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        var benchmark: PolicyBenchmark {
            var benchmark = PolicyBenchmark()
            (benchmark.runs, benchmark.seconds, benchmark.rules) = (runs, seconds, rules)
            (benchmark.quick, benchmark.keep, benchmark.lookupOnly) = (quick, keep, lookupOnly)
            return benchmark
        }

        func validate() throws {
            do { try benchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark.run(), output, text: PolicyBenchmark.text) }
        }
    }

    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "failover",
            abstract: "Time for a global service's calls to move to the other cluster when the preferred cluster scales to zero: ordered preference against local affinity.")

        @Option(help: "Runs per row (median and spread are reported).") var runs: Int = 3
        @Flag(help: "One run per row.") var quick = false
        @Flag(help: "Leave the lab up afterwards.") var keep = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        var benchmark: FailoverBenchmark {
            var benchmark = FailoverBenchmark()
            (benchmark.runs, benchmark.quick, benchmark.keep) = (runs, quick, keep)
            return benchmark
        }

        func validate() throws {
            do { try benchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark.run(), output, text: FailoverBenchmark.text) }
        }
    }

    struct Faults: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "faults", abstract: "Per fault (etcd, control plane and agent killed, agent away, stall, partition): time to detect, to recover, and what was lost.")

        @Option(help: "Seconds the agent stays stopped.") var agentAway: Int = 25
        @Option(help: "Endpoints deleted while the clusters are partitioned.") var deletedWhileAway: Int = 1000
        @Option(help: "Members of each cluster's store: 1, 3 or 5 (with 3 or 5, the leader is killed and a member stopped).") var etcdMembers: Int = 1
        @Flag(help: "A small size: the agent away 5 s, 200 deletions.") var quick = false
        @Flag(help: "Leave the lab up afterwards.") var keep = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text

        var benchmark: FaultsBenchmark {
            var benchmark = FaultsBenchmark()
            (benchmark.agentAway, benchmark.deletedWhileAway, benchmark.quick, benchmark.keep) = (agentAway, deletedWhileAway, quick, keep)
            benchmark.etcdMembers = etcdMembers
            return benchmark
        }

        func validate() throws {
            do { try benchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        func run() async throws {
            try await reportingErrors { BenchCommand.print(try await benchmark.run(), output, text: FaultsBenchmark.text) }
        }
    }

    /// Mesh propagation against the store's own watch, or (`--scale`) the ClusterMesh scale test.
    struct ControlPlane: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "controlplane", abstract: "Propagation latency and throughput of mesh import.")

        @Option(help: "Changes per measurement.") var changes: Int = 1000
        @Flag(help: "A small size (100 changes; with --scale 5 clusters × 10 nodes × 100 endpoints × 10 identities, churn 50/s for 10 s).")
        var quick = false
        @Option(name: .shortAndLong, help: "text or json.") var output: OutputFormat = .text
        @Flag(help: "Scale run instead: cluster1 importing from many mocked remote clusters (time to ready, churn, CPU and memory).")
        var scale = false
        @Option(help: "With --scale: mocked remote clusters, 1...254 (default 250).") var clusters: Int?
        @Option(help: "With --scale: nodes per mocked cluster (default 100).") var nodes: Int?
        @Option(help: "With --scale: endpoints per mocked cluster (default 1000).") var endpoints: Int?
        @Option(help: "With --scale: identities per mocked cluster (default 100).") var identities: Int?
        @Option(help: "With --scale: endpoint updates per second across all mocks; 0 skips the churn (default 325).") var churn: Int?
        @Option(help: "With --scale: seconds of churn (default 30).") var churnSeconds: Int?
        @Option(help: "With --scale: seconds to wait for every remote to be ready (default 600, 120 with --quick).") var syncTimeout: Int?
        @Option(help: "With --scale: the nice value of the mocks' etcds, 0...19 (default 10: they stand in for remote clusters on other machines).")
        var mockNiceness: Int?

        /// `--quick` or the scale test's sizes, each overridden by its option when given.
        var scaleSizes: ScaleSizes {
            var sizes = quick ? ScaleSizes.quick : ScaleSizes.ciScaleTest
            if let clusters { sizes.clusters = clusters }
            if let nodes { sizes.nodesPerCluster = nodes }
            if let endpoints { sizes.endpointsPerCluster = endpoints }
            if let identities { sizes.identitiesPerCluster = identities }
            if let churn { sizes.churnPerSecond = churn }
            if let churnSeconds { sizes.churnSeconds = churnSeconds }
            return sizes
        }

        func validate() throws {
            if scale {
                do { try scaleSizes.validate() } catch { throw ValidationError("\(error)") }
                if let syncTimeout, syncTimeout < 10 { throw ValidationError("--sync-timeout must be at least 10 seconds") }
                if let mockNiceness, !(0...19).contains(mockNiceness) { throw ValidationError("--mock-niceness must be in 0...19") }
                return
            }
            let scaleOnly = [("--clusters", clusters), ("--nodes", nodes), ("--endpoints", endpoints), ("--identities", identities),
                             ("--churn", churn), ("--churn-seconds", churnSeconds), ("--sync-timeout", syncTimeout),
                             ("--mock-niceness", mockNiceness)]
                .filter { $0.1 != nil }.map(\.0)
            guard scaleOnly.isEmpty else {
                throw ValidationError("\(scaleOnly.joined(separator: ", ")) only \(scaleOnly.count == 1 ? "applies" : "apply") with --scale")
            }
            do { try propagationBenchmark.validate() } catch { throw ValidationError("\(error)") }
        }

        var propagationBenchmark: PropagationBenchmark {
            var benchmark = PropagationBenchmark()
            (benchmark.changes, benchmark.quick) = (changes, quick)
            return benchmark
        }

        func run() async throws {
            try await reportingErrors {
                if scale {
                    let benchmark = ScaleBenchmark(sizes: scaleSizes, syncTimeout: .seconds(syncTimeout ?? (quick ? 120 : 600)),
                                                   mockNiceness: mockNiceness ?? ScaleBenchmark.defaultMockNiceness)
                    BenchCommand.print(try await benchmark.run(), output, text: ScaleBenchmark.text)
                } else {
                    BenchCommand.print(try await propagationBenchmark.run(), output, text: PropagationBenchmark.text)
                }
            }
        }
    }
}
