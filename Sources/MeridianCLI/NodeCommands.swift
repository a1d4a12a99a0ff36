import ArgumentParser
import Foundation
import Logging
import MeridianAgent
import MeridianTools
import MeridianCore
import MeridianDatapath
import MeridianEtcd
import MeridianAdmin
import MeridianLab
import MeridianFlows
import MeridianMetrics
import UnixSignals

/// `meridian agent`: the node agent, run inside the node's network namespace.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the node agent (eBPF datapath, pods, DNS).")

    @Option(help: "This node's name.") var node: String
    @Option(help: "The cluster's etcd (https://HOST:PORT or unixs://PATH); several members comma-separated.") var etcdEndpoint: String
    @Option(help: "CA certificate that signed etcd's certificate.") var caCert: String
    @Option(help: "Client certificate (CN meridian-agent).") var cert: String
    @Option(help: "Client key.") var key: String
    @Option(help: "etcd's TLS server name.") var serverName: String
    @Option(help: "Directory for the agent's state and socket.") var stateDir: String
    @Option(help: "Directory on a bpf filesystem for the node's pinned maps.") var pinDir: String
    @Option(help: "Device carrying the node's address to other nodes.") var underlayDevice: String
    @Option(help: "Prefix of pod network namespace names.") var netnsPrefix: String
    @Option(help: "Seconds between full re-reads of the maps.") var resyncSeconds: Int = 30
    @Option(help: "Prefix length of the pod CIDR this node carves from the cluster's (16...29).") var podCIDRPrefixLength: Int = 24
    @Option(help: "cgroup v2 directory the node's pods run in; services are then balanced at connect().") var cgroup: String?
    @Option(help: "Seconds the node stays registered, its pods reachable, after the agent stops renewing it (10...86400).")
    var nodeGracePeriod: Int = Int(AgentConfiguration.defaultNodeGracePeriod.components.seconds)
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP: bind a loopback or management address). Off when absent.")
    var metricsListen: String?
    @Option(help: "Network namespace (a path such as /proc/1/ns/net) to open the --metrics-listen socket in, when the agent runs in another.")
    var metricsNetns: String?
    @Option(help: "Serve this node's flows to the cluster's relay at HOST:PORT or unix:PATH (mutual TLS). Off when absent: no flows are kept.")
    var observerListen: String?
    @Option(help: "Certificate the node's observer serves with (the cluster's flows certificate, CN meridian-flows-relay).") var observerCert: String?
    @Option(help: "Key of --observer-cert.") var observerKey: String?
    @Option(help: "Flows the node keeps in memory for `observe --last`.") var flowBufferSize: Int = FlowBuffer.defaultCapacity
    @Option(help: "Encrypt traffic between nodes: `wireguard` (the kernel's, or wireguard-go where the kernel has no module). Off when absent.")
    var encryption: String?
    @Option(help: "Name of the node's WireGuard device (1...15 characters).") var wireguardDevice: String = MeridianWireGuard.defaultDevice
    @Flag(help: "With --encryption: drop pod traffic to a node for which no WireGuard tunnel is up (drop reason UNENCRYPTED_TRAFFIC) instead of sending it in the clear, and VXLAN that arrives in the clear from a node with a tunnel (UNENCRYPTED_INGRESS).")
    var encryptionStrict = false
    @Option(help: "With --encryption: replace the node's WireGuard key pair this long after the last replacement (e.g. 24h, 30m; at least 10s). The time of the last one is kept in --state-dir, so restarts keep the schedule. Off when absent: only `encryption rotate` replaces it.")
    var wireguardRotationInterval: String?

    func validate() throws {
        guard !etcdEndpoint.split(separator: ",").isEmpty else { throw ValidationError("--etcd-endpoint: expected at least one endpoint") }
        guard (10...86_400).contains(nodeGracePeriod) else {
            throw ValidationError("--node-grace-period must be 10...86400 seconds, got \(nodeGracePeriod)")
        }
        let address = try metricsListen.map(parseMetricsListen)
        if metricsNetns != nil && address == nil { throw ValidationError("--metrics-netns needs --metrics-listen") }
        if let observerListen {
            _ = try ObserverAddress(parsing: observerListen)
            guard observerCert != nil, observerKey != nil else { throw ValidationError("--observer-listen needs --observer-cert and --observer-key") }
        }
        if let encryption, encryption != "wireguard" { throw ValidationError("--encryption: the only kind is wireguard, got \(encryption)") }
        if encryptionStrict && encryption == nil { throw ValidationError("--encryption-strict needs --encryption wireguard") }
        if let wireguardRotationInterval {
            guard encryption != nil else { throw ValidationError("--wireguard-rotation-interval needs --encryption wireguard") }
            _ = try Self.rotationInterval(wireguardRotationInterval)
        }
        do { _ = try WireGuardDevice(name: wireguardDevice, mtu: 1420) } catch { throw ValidationError("--wireguard-device: \(error)") }
        guard (1...1_048_576).contains(flowBufferSize) else { throw ValidationError("--flow-buffer-size must be 1...1048576, got \(flowBufferSize)") }
    }

    /// `--wireguard-rotation-interval`'s value: a duration of at least `EncryptionSettings.minimumRotationInterval`.
    static func rotationInterval(_ text: String) throws -> Duration {
        guard let interval = DurationParser.parse(text) else {
            throw ValidationError("--wireguard-rotation-interval: expected a duration such as 24h, 30m or 90s, got \(text)")
        }
        guard interval >= EncryptionSettings.minimumRotationInterval else {
            throw ValidationError("--wireguard-rotation-interval must be at least \(EncryptionSettings.minimumRotationInterval), got \(text)")
        }
        return interval
    }

    func run() async throws {
        try await reportingErrors {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
            try "\(getpid())\n".write(toFile: stateDir + "/agent.pid", atomically: true, encoding: .utf8)
            var logger = Logger(label: "meridian.agent")
            logger.logLevel = .info
            let etcd = EtcdClientConfiguration(
                endpoints: try etcdEndpoint.split(separator: ",").map { url throws(EtcdError) in try EtcdEndpoint(url: String(url)) },
                tls: EtcdTLS(caPEM: try String(contentsOfFile: caCert, encoding: .utf8),
                             certificatePEM: try String(contentsOfFile: cert, encoding: .utf8),
                             privateKeyPEM: try String(contentsOfFile: key, encoding: .utf8), serverName: serverName))
            var configuration = AgentConfiguration(
                nodeName: node, etcd: etcd, stateDirectory: stateDir, pinDirectory: pinDir, underlayDevice: underlayDevice,
                netnsPrefix: netnsPrefix, executable: currentExecutable(), resyncInterval: .seconds(resyncSeconds),
                nodeGracePeriod: .seconds(nodeGracePeriod))
            configuration.nodePodPrefixLength = podCIDRPrefixLength
            configuration.cgroup = cgroup
            if encryption != nil {
                configuration.encryption = EncryptionSettings(device: wireguardDevice, strict: encryptionStrict,
                                                              rotationInterval: try wireguardRotationInterval.map(Self.rotationInterval))
            }
            if let observerListen, let observerCert, let observerKey {
                configuration.observer = ObserverSettings(
                    address: try ObserverAddress(parsing: observerListen),
                    tls: try ObserverTLS(caPath: caCert, certificatePath: observerCert, keyPath: observerKey), capacity: flowBufferSize)
            }
            let agent = Agent(configuration: configuration, logger: logger)
            let metricsServer = try metricsListen.map(parseMetricsListen).map { address in
                let datapathMetrics = DatapathMetrics(pinDirectory: pinDir)
                return MetricsServer(address: address, registry: MeridianMetricsSystem.bootstrap(), networkNamespace: metricsNetns,
                                     logger: logger, refresh: { datapathMetrics.refresh() })
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await agent.run() }
                if let metricsServer { group.addTask { try await metricsServer.run() } }
                group.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { return }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }
}

/// `meridian cni`: the CNI plugin, invoked by the node's pod runtime the way a kubelet invokes
/// one (CNI_* environment, network configuration on stdin, result on stdout).
struct CNICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni", abstract: "CNI plugin entry point (ADD, DEL, CHECK, VERSION).")

    func run() async throws {
        let input = FileHandle.standardInput.readDataToEndOfFile()
        let (status, output) = CNIPlugin.run(environment: ProcessInfo.processInfo.environment, stdin: input)
        if !output.isEmpty { print(output) }
        if status != 0 { throw ExitCode(status) }
    }
}

/// `meridian tool ...`: built-in workloads for demos and tests.
struct ToolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tool", abstract: "Built-in workloads for demos and tests.",
                                                    subcommands: [EchoServerCommand.self, UDPProbeCommand.self, ReachCommand.self, ConnectLatencyCommand.self,
                                                                  LoadCommand.self])

    struct EchoServerCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "echo-server",
                                                        abstract: "HTTP server answering with its pod, namespace, node, cluster and the client.")
        @Option(help: "TCP port for HTTP (repeat for several).") var port: [Int] = []
        @Option(help: "UDP port to echo datagrams on (repeat for several).") var udpPort: [Int] = []

        func validate() throws {
            for value in port + udpPort { try ToolOptions.port(value) }
        }

        func run() async throws {
            try await reportingErrors {
                try await EchoServer(ports: port.isEmpty ? [8080] : port, udpPorts: udpPort, environment: ProcessInfo.processInfo.environment).run()
            }
        }
    }

    struct ReachCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reach",
            abstract: "Probe TCP handshakes and UDP echoes to many destinations at once; prints one line per target.")
        @Argument(help: "Targets as tcp:ADDRESS:PORT or udp:ADDRESS:PORT.") var targets: [String]
        @Option(help: "Seconds to wait for every probe.") var timeout: Double = 1
        @Option(help: "Local IPv4 address to send from (default: chosen by routing).") var source: String?
        @Option(name: .shortAndLong, help: "text, or json: an array of {target, transport, address, port, reached, error}.")
        var output: OutputFormat = .text

        func validate() throws {
            try ToolOptions.timeout(timeout)
            guard output != .wide else { throw ValidationError("--output must be text or json") }
        }

        func run() async throws {
            try await reportingErrors {
                let parsed = try targets.map(ReachProbe.Target.init(parsing:))
                let outcomes = try ReachProbe.run(parsed, timeout: timeout, source: source)
                let results = parsed.map { ReachProbe.Result($0, outcomes[$0] ?? .failed("not probed")) }
                if output == .json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(results), as: UTF8.self))
                    return
                }
                for result in results {
                    print(result.reached ? "\(result.target) reached" : "\(result.target) failed: \(result.error ?? "")")
                }
            }
        }
    }

    struct LoadCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "load",
            abstract: "Call an HTTP server in a loop and count failed requests; prints a JSON report at the end.")
        @Argument(help: "Destination as ADDRESS:PORT.") var destination: String
        @Option(help: "Request path.") var path: String = "/"
        @Flag(help: "Send every request on one kept-alive connection instead of a new connection each.") var keepAlive = false
        @Option(help: "Milliseconds between requests.") var intervalMs: Int = 20
        @Option(help: "Seconds one request may take.") var timeout: Double = 2
        @Option(help: "Seconds to run at most.") var duration: Int = 60
        @Option(help: "Stop as soon as this file exists.") var stopFile: String?
        @Flag(help: "Also report each request's start time and the pod that answered it (or that it failed).") var timeline = false

        func validate() throws {
            try ToolOptions.timeout(timeout)
            guard (0...60_000).contains(intervalMs) else { throw ValidationError("--interval-ms must be between 0 and 60000") }
            guard (1...86_400).contains(duration) else { throw ValidationError("--duration must be between 1 and 86400 seconds") }
            guard path.hasPrefix("/"), !path.contains(where: \.isWhitespace) else { throw ValidationError("--path must start with / and contain no spaces") }
        }

        func run() async throws {
            try await reportingErrors {
                let target = try ReachProbe.Target(parsing: "tcp:" + destination)
                var probe = LoadProbe(address: target.address, port: target.port, path: path, keepAlive: keepAlive,
                                      interval: .milliseconds(intervalMs), timeout: timeout, duration: .seconds(duration), stopFile: stopFile)
                probe.recordsTimeline = timeline
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                print(String(decoding: try encoder.encode(probe.run()), as: UTF8.self))
            }
        }
    }

    struct ConnectLatencyCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "connect-latency",
            abstract: "Time TCP handshakes to one destination, one after another; prints the samples in microseconds.")
        @Argument(help: "Destination as ADDRESS:PORT.") var destination: String
        @Option(help: "Handshakes to time.") var count: Int = 100
        @Option(help: "Seconds to wait for one handshake.") var timeout: Double = 2

        func validate() throws {
            try ToolOptions.timeout(timeout)
            guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be between 1 and 1000000") }
        }

        func run() async throws {
            try await reportingErrors {
                let target = try ReachProbe.Target(parsing: "tcp:" + destination)
                let samples = try ReachProbe.connectTimes(target, count: count, timeout: timeout)
                print("connect-us: " + samples.map { String(format: "%.1f", $0) }.joined(separator: " "))
            }
        }
    }

    struct UDPProbeCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "udp-probe",
                                                        abstract: "Send a UDP datagram and check the echo comes back unchanged.")
        @Argument(help: "Address to send to.") var host: String
        @Argument(help: "UDP port.") var port: Int
        @Option(help: "Payload size in bytes (up to 65507).") var size: Int = 64
        @Option(help: "Seconds to wait for the echo.") var timeout: Double = 2

        func validate() throws {
            try ToolOptions.port(port)
            try ToolOptions.timeout(timeout)
            guard (0...65_507).contains(size) else { throw ValidationError("--size must be between 0 and 65507") }
        }

        func run() async throws {
            try await reportingErrors {
                let result = try UDPProbe.run(host: host, port: port, size: size, timeout: timeout)
                print("ok \(result) bytes echoed by \(host):\(port)")
            }
        }
    }
}

/// The bounds the built-in workloads' options are checked against.
enum ToolOptions {
    static func port(_ value: Int) throws {
        guard (1...65_535).contains(value) else { throw ValidationError("port \(value) is not between 1 and 65535") }
    }

    static func timeout(_ seconds: Double) throws {
        guard seconds > 0, seconds <= 3600 else { throw ValidationError("--timeout must be more than 0 and at most 3600 seconds") }
    }
}

/// `meridian exec POD -- CMD`: runs a command inside a pod's network namespace.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a command inside a pod.")
    @OptionGroup var contextOptions: ContextOptions
    @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
    @Argument(help: "Pod name.") var pod: String
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func run() async throws {
        var exitStatus: Int32 = 0
        try await reportingErrors {
            guard !command.isEmpty else { throw ValidationError("give the command after --, e.g. meridian exec \(pod) -- curl http://...") }
            let context = try contextOptions.resolve()
            guard let labDirectory = context.lab else { throw LabError.notALabCluster(context: context.name) }
            let place = try await Lab(directory: labDirectory, executable: currentExecutable())
                .execPlace(context: context, namespace: namespace, pod: pod)
            var commandLine = command
            if commandLine.first == "meridian" { commandLine[0] = currentExecutable() }
            exitStatus = try runInForeground(place.command(commandLine), environment: ["POD_NAME": pod, "POD_NAMESPACE": namespace])
        }
        if exitStatus != 0 { throw ExitCode(exitStatus) }
    }
}

/// `meridian scale deployment NAME --replicas N`.
struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Set a Deployment's replica count.")
    @OptionGroup var contextOptions: ContextOptions
    @Option(name: .shortAndLong, help: "Namespace.") var namespace: String = "default"
    @Argument(help: "deployment") var kind: String
    @Argument(help: "Deployment name.") var name: String
    @Option(help: "Desired number of pods.") var replicas: Int

    func validate() throws {
        guard ["deployment", "deployments", "deploy"].contains(kind.lowercased()) else {
            throw ValidationError("only deployments can be scaled, got \(kind)")
        }
        guard replicas >= 0 else { throw ValidationError("--replicas must be 0 or more, got \(replicas)") }
    }

    func run() async throws {
        try await reportingErrors {
            try await Resources.scaleDeployment(name, namespace: namespace, replicas: replicas, context: try contextOptions.resolve())
            print("deployment \(namespace)/\(name) scaled to \(replicas)")
        }
    }
}
