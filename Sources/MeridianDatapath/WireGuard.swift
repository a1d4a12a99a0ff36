import Foundation
import MeridianCore
import MeridianHost

/// Which WireGuard a node runs: the kernel's module, or `wireguard-go` on a TUN device. Same
/// protocol, keys and configuration (`wg`) either way; reported by `meridian encryption status`.
public enum WireGuardMode: String, Sendable, Codable, Hashable {
    case kernel
    case userspace
}

/// The constants of Meridian's WireGuard, shared by the agent, the lab and the CLI.
public enum MeridianWireGuard {
    /// Cilium's WireGuard port.
    public static let listenPort = 51871
    /// What WireGuard adds to an IPv4 packet: outer IPv4 20 + UDP 8 + data header 16 + tag 16.
    public static let overhead = 60
    /// The routing table holding one route per peer node (its underlay /32 through the device).
    public static let routeTable = 51871
    /// The rule sending VXLAN (UDP to 8472) through `routeTable`; anything else (WireGuard's
    /// own UDP to the same underlay addresses) keeps the main table.
    public static let rulePriority = 100
    /// Metric of the blackhole route kept beside each peer's route: when the device goes away
    /// (`wireguard-go` restarting with its agent) its routes go with it, and VXLAN to a peer
    /// whose key we hold is dropped rather than sent in the clear.
    public static let fallbackMetric = 4096
    public static let defaultDevice = "mer_wg0"
}

/// Why setting up or reading a node's WireGuard failed, with the device and step.
public enum WireGuardError: Error, Sendable, CustomStringConvertible {
    case toolMissing(tool: String, package: String)
    case deviceNotReady(device: String, waited: Duration, log: String)
    case dumpUnreadable(device: String, line: Int, reason: String)
    case deviceNameInvalid(String)

    public var description: String {
        switch self {
        case let .toolMissing(tool, package): "\(tool) is not installed (Debian package \(package); scripts/setup.sh installs it)"
        case let .deviceNotReady(device, waited, log): "WireGuard device \(device) did not come up within \(waited) (log: \(log))"
        case let .dumpUnreadable(device, line, reason): "`wg show \(device) dump` line \(line) is unreadable: \(reason)"
        case let .deviceNameInvalid(name): "WireGuard device name \"\(name)\" must be 1...15 characters of [A-Za-z0-9_.-]"
        }
    }
}

/// A peer as the device should have it: made from a node record.
public struct WireGuardPeer: Sendable, Hashable {
    /// `<cluster>/<node>`, for status and logs.
    public var node: String
    public var publicKey: String
    /// The peer's underlay address; WireGuard's UDP goes to it, at `MeridianWireGuard.listenPort`.
    public var endpoint: IPAddress
    /// The peer's underlay /32: the outer addresses of the VXLAN packets inside the tunnel.
    public var allowedIPs: [String]

    public init(node: String, publicKey: String, endpoint: IPAddress, allowedIPs: [String]) {
        self.node = node
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.allowedIPs = allowedIPs
    }

    public var endpointText: String { "\(endpoint):\(MeridianWireGuard.listenPort)" }
}

/// What `wg show DEV dump` prints, without the private key (it is read past, never kept).
public struct WireGuardDump: Sendable, Hashable {
    public var publicKey: String?
    public var listenPort: Int
    public var peers: [Peer]

    /// One peer line: public key, preshared key (dropped), endpoint, allowed IPs, latest
    /// handshake, bytes received and sent, persistent keepalive.
    public struct Peer: Sendable, Hashable {
        public var publicKey: String
        public var endpoint: String?
        public var allowedIPs: [String]
        public var latestHandshake: Int64
        public var receivedBytes: UInt64
        public var sentBytes: UInt64
    }

    public init(parsing text: String, device: String) throws(WireGuardError) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let first = lines.first else { throw .dumpUnreadable(device: device, line: 1, reason: "empty") }
        let head = first.split(separator: "\t", omittingEmptySubsequences: false)
        guard head.count == 4, let port = Int(head[2]) else {
            throw .dumpUnreadable(device: device, line: 1, reason: "expected 4 fields (private key, public key, port, fwmark), got \(head.count)")
        }
        publicKey = head[1] == "(none)" ? nil : String(head[1])
        listenPort = port
        peers = []
        for (index, line) in lines.dropFirst().enumerated() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 8, let handshake = Int64(fields[4]), let rx = UInt64(fields[5]), let tx = UInt64(fields[6]) else {
                throw .dumpUnreadable(device: device, line: index + 2, reason: "expected 8 fields with numbers in 5...7")
            }
            peers.append(Peer(publicKey: String(fields[0]), endpoint: fields[2] == "(none)" ? nil : String(fields[2]),
                              allowedIPs: fields[3] == "(none)" ? [] : fields[3].split(separator: ",").map(String.init),
                              latestHandshake: handshake, receivedBytes: rx, sentBytes: tx))
        }
    }
}

/// A node's WireGuard device and the routing that puts VXLAN into it.
///
/// It exists to encrypt every packet between nodes without touching the datapath's identity
/// handling: the VXLAN packet `from_pod` builds (identity in the VNI, outer addresses the two
/// nodes' underlay addresses) is routed into the device by a rule matching UDP to the VXLAN
/// port, WireGuard carries it to the peer whose allowed IP is that underlay address, and the peer
/// receives the same VXLAN packet from the same outer source it would have without encryption,
/// so `from_overlay`'s sender checks and policy are unchanged (Cilium's tunnel mode with
/// WireGuard, where the VXLAN header travels inside the tunnel, does the same).
///
/// Kernel WireGuard is used when `ip link add ... type wireguard` works; otherwise the caller
/// runs `userspaceCommand` (`wireguard-go -f`) under its supervisor and waits with `waitReady`.
public struct WireGuardDevice: Sendable {
    public var name: String
    /// The device's MTU: the underlay's minus `MeridianWireGuard.overhead`.
    public var mtu: Int
    public var listenPort: Int

    public init(name: String, mtu: Int, listenPort: Int = MeridianWireGuard.listenPort) throws(WireGuardError) {
        guard (1...15).contains(name.utf8.count), name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }) else {
            throw .deviceNameInvalid(name)
        }
        self.name = name
        self.mtu = mtu
        self.listenPort = listenPort
    }

    /// wireguard-go's control socket (and `wg`'s way to it); one directory for the whole host,
    /// which is why lab nodes get device names of their own.
    public var uapiSocket: String { "/var/run/wireguard/\(name).sock" }

    /// Makes a kernel WireGuard device if the kernel has the module (or finds one made before).
    /// False: none, the caller runs `wireguard-go`.
    public func createKernelDevice() async -> Bool {
        if let details = try? await HostCommand.run(["ip", "-d", "link", "show", "dev", name]) {
            if details.contains("wireguard") { return true }
            // A TUN left by a wireguard-go that died with its agent: it goes with its process.
            return false
        }
        return await HostCommand.attempt(["ip", "link", "add", name, "type", "wireguard"])
    }

    /// `wireguard-go` in the foreground on this device, dying with its supervisor (the agent).
    public func userspaceCommand(logPath: String) throws(WireGuardError) -> SupervisedCommand {
        guard let executable = Self.locate("wireguard-go") else { throw .toolMissing(tool: "wireguard-go", package: "wireguard-go") }
        return SupervisedCommand(
            executable: executable, arguments: ["-f", name],
            environment: ["WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"],
            logPath: logPath, dieWithSupervisor: true, staleFiles: [uapiSocket])
    }

    /// Waits until `wg` can talk to the device (its UAPI socket answers, or the kernel has it).
    public func waitReady(timeout: Duration, logPath: String) async throws {
        guard Self.locate("wg") != nil else { throw WireGuardError.toolMissing(tool: "wg", package: "wireguard-tools") }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await HostCommand.attempt(["wg", "show", name, "public-key"]) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw WireGuardError.deviceNotReady(device: name, waited: timeout, log: logPath)
    }

    public func dump() async throws -> WireGuardDump {
        try WireGuardDump(parsing: try await HostCommand.run(["wg", "show", name, "dump"]), device: name)
    }

    /// Gives the device its key (read by `wg` from the 0600 file), port and MTU, and brings it up.
    public func configure(privateKeyPath: String) async throws {
        try await HostCommand.run(["wg", "set", name, "listen-port", "\(listenPort)", "private-key", privateKeyPath])
        try await HostCommand.ip("link", "set", name, "mtu", "\(mtu)", "up")
    }

    /// Brings the device's peers in line with `peers` in one `wg set` per 256 changes; returns
    /// how many peers were added, changed or removed.
    @discardableResult
    public func apply(peers: [WireGuardPeer], current: WireGuardDump) async throws -> Int {
        let have = Dictionary(current.peers.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        let want = Dictionary(peers.map { ($0.publicKey, $0) }, uniquingKeysWith: { a, _ in a })
        var changes: [[String]] = []
        for key in have.keys.sorted() where want[key] == nil { changes.append(["peer", key, "remove"]) }
        for key in want.keys.sorted() {
            let peer = want[key]!
            if let existing = have[key], existing.endpoint == peer.endpointText, existing.allowedIPs.sorted() == peer.allowedIPs.sorted() { continue }
            changes.append(["peer", key, "endpoint", peer.endpointText, "allowed-ips", peer.allowedIPs.joined(separator: ",")])
        }
        for start in stride(from: 0, to: changes.count, by: 256) {
            try await HostCommand.run(["wg", "set", name] + changes[start..<min(start + 256, changes.count)].flatMap { $0 })
        }
        return changes.count
    }

    /// The rule that sends VXLAN through `MeridianWireGuard.routeTable`, and per peer a route of
    /// its underlay /32 through the device (source: this node's underlay address, which the
    /// peer's `from_overlay` expects as the sender) with a blackhole behind it. Returns how many
    /// routes changed.
    @discardableResult
    public func route(peers: [IPAddress], nodeIP: IPAddress) async throws -> Int {
        let table = "\(MeridianWireGuard.routeTable)"
        let rules = try await HostCommand.run(["ip", "-4", "rule", "show", "pref", "\(MeridianWireGuard.rulePriority)"])
        if !rules.contains("lookup \(table)") {
            try await HostCommand.run(Self.ruleArguments("add"))
        }
        // The table does not exist until its first route (and `ip` then fails): nothing is routed yet.
        let listing = (try? await HostCommand.run(["ip", "-4", "route", "show", "table", table])) ?? ""
        let current = Self.parseRoutes(listing, device: name)
        let want = Set(peers.map(\.description))
        var changed = 0
        for address in want.sorted() {
            if !current.viaDevice.contains(address) {
                try await HostCommand.run(["ip", "-4", "route", "replace", "\(address)/32", "dev", name, "src", nodeIP.description, "table", table])
                changed += 1
            }
            if !current.blackholes.contains(address) {
                try await HostCommand.run(["ip", "-4", "route", "replace", "blackhole", "\(address)/32", "table", table,
                                           "metric", "\(MeridianWireGuard.fallbackMetric)"])
                changed += 1
            }
        }
        for address in current.viaDevice.subtracting(want) {
            await HostCommand.attempt(["ip", "-4", "route", "del", "\(address)/32", "dev", name, "table", table])
            changed += 1
        }
        for address in current.blackholes.subtracting(want) {
            await HostCommand.attempt(["ip", "-4", "route", "del", "blackhole", "\(address)/32", "table", table,
                                       "metric", "\(MeridianWireGuard.fallbackMetric)"])
            changed += 1
        }
        return changed
    }

    /// Removes Meridian's rule (only that exact rule: on a host, other rules may share its
    /// priority) and its table (encryption turned off on this node).
    public static func removeRouting() async {
        while await HostCommand.attempt(ruleArguments("del")) {}
        await HostCommand.attempt(["ip", "-4", "route", "flush", "table", "\(MeridianWireGuard.routeTable)"])
    }

    static func ruleArguments(_ verb: String) -> [String] {
        ["ip", "-4", "rule", verb, "pref", "\(MeridianWireGuard.rulePriority)", "ipproto", "udp", "dport", "\(MeridianMTU.vxlanPort)",
         "lookup", "\(MeridianWireGuard.routeTable)"]
    }

    /// Addresses routed through `device` and addresses with a blackhole, from `ip -4 route show table T`.
    static func parseRoutes(_ text: String, device: String) -> (viaDevice: Set<String>, blackholes: Set<String>) {
        var via = Set<String>(), blackholes = Set<String>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if words.first == "blackhole", words.count > 1 {
                blackholes.insert(String(words[1].split(separator: "/")[0]))
            } else if let first = words.first, let dev = words.firstIndex(of: "dev"), dev + 1 < words.count, words[dev + 1] == device {
                via.insert(String(first.split(separator: "/")[0]))
            }
        }
        return (via, blackholes)
    }

    /// The absolute path of `tool` on PATH (or the usual system directories).
    public static func locate(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
            let candidate = directory + "/" + tool
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
