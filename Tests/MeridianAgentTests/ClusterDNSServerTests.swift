import Foundation
import Logging
import MeridianCore
import MeridianDNS
import MeridianStore
import MeridianTestSupport
import NIOCore
import Testing
@testable import MeridianAgent

/// The node's DNS server on real UDP sockets on 127.0.0.1: whatever datagram arrives, and
/// whatever becomes of its listener, a valid query right after gets the right answer.
@Suite("Cluster DNS server under hostile datagrams", .serialized, .timeLimit(.minutes(1)))
struct ClusterDNSServerTests {
    static let webAddress = IPAddress("10.96.0.10")!

    /// `web.default.svc.cluster.local IN A`, as glibc sends it.
    static func webQuery(id: UInt16) -> [UInt8] {
        header(id: id) + wireName("web.default.svc.cluster.local") + be16(1) + be16(1)
    }

    /// A server running for the length of a test, with what it logged and the channels it listened on.
    struct RunningServer {
        let server: ClusterDNSServer
        let lines: Shared<[CapturingLogHandler.Line]>
        let channels: AsyncStream<any Channel>
        let checker: LoopbackUDPClient

        /// The next listener's channel and its port, once it is bound.
        func nextListener() async throws -> (channel: any Channel, port: Int) {
            var iterator = channels.makeAsyncIterator()
            let channel = try #require(await iterator.next(), "the server stopped announcing listeners")
            return (channel, try #require(channel.localAddress?.port))
        }

        /// Fails the test unless a fresh query for web.default gets its A record from the server on
        /// `port`. Queries are resent a few times: a flood just before may have filled the socket buffer.
        func expectAnswer(on port: Int, _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            checker.drain()
            for attempt in 0..<10 {
                let id = UInt16(0xA000 + attempt)
                try checker.send(webQuery(id: id), to: port)
                while let reply = try await checker.receive(attempts: 500) {
                    guard let message = try? DNSMessage(parsing: reply), message.header.id == id else { continue }
                    #expect(message.header.isResponse && message.header.rcode == .noError, comment, sourceLocation: sourceLocation)
                    #expect(message.answers.map(\.ipv4Address) == [IPv4Address(10, 96, 0, 10)], comment, sourceLocation: sourceLocation)
                    return
                }
            }
            Issue.record("no answer to a valid query: \(comment)", sourceLocation: sourceLocation)
        }

        /// Waits until a line satisfying `matches` is logged; fails the test if none comes.
        func expectLogLine(_ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation,
                           matching matches: (CapturingLogHandler.Line) -> Bool) async throws {
            for _ in 0..<2000 {
                if lines.value.contains(where: matches) { return }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("not logged: \(comment)", sourceLocation: sourceLocation)
        }

        var restartWarnings: [CapturingLogHandler.Line] {
            lines.value.filter { $0.level == .warning && $0.message.contains("DNS listener failed") }
        }
    }

    /// Runs a server on 127.0.0.1:`port` (0 for one the kernel picks) for the length of `body`.
    static func withServer(port: Int = 0, _ body: (RunningServer) async throws -> Void) async throws {
        let lines = Shared([CapturingLogHandler.Line]())
        let names = ServiceNameTable()
        names.replace(ServiceNames(clusterIPs: ["web.default": webAddress]))
        let (channels, announce) = AsyncStream.makeStream(of: (any Channel).self)
        let server = ClusterDNSServer(
            address: IPAddress("127.0.0.1")!, port: port, names: names,
            logger: Logger(label: "meridian-test-dns") { _ in CapturingLogHandler(lines: lines) },
            restartBackoff: ReconnectBackoff(initial: .milliseconds(10), maximum: .milliseconds(100)),
            onListening: { announce.yield($0) })
        let running = RunningServer(server: server, lines: lines, channels: channels, checker: try LoopbackUDPClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await server.run()
                announce.finish()
            }
            defer { group.cancelAll() }
            try await body(running)
        }
    }

    // MARK: Datagrams

    @Test func answersAfterEachBatchOfSeededRandomDatagrams() async throws {
        var generator = SeededGenerator(seed: 0x4D45_5249_4449_414E)
        try await Self.withServer { server in
            let port = try await server.nextListener().port
            let fuzzer = try LoopbackUDPClient()
            for batch in 0..<80 {
                for _ in 0..<50 {
                    try fuzzer.send(FuzzDatagram.next(using: &generator), to: port)
                }
                try await server.expectAnswer(on: port, "after fuzz batch \(batch)")
                fuzzer.drain()
            }
            #expect(server.restartWarnings.isEmpty, "no datagram made the listener fail")
            let counts = server.server.failures.snapshot
            #expect(counts[.malformed, default: 0] > 100 && counts[.tooShort, default: 0] > 100 && counts[.response, default: 0] > 100,
                    "\(counts)")
        }
    }

    @Test(arguments: CraftedDatagram.all)
    func answersAfterACraftedDatagram(_ crafted: CraftedDatagram) async throws {
        try await Self.withServer { server in
            let port = try await server.nextListener().port
            let sender = try LoopbackUDPClient()
            try sender.send(crafted.bytes, to: port)
            try await server.expectAnswer(on: port, "after \(crafted)")
            var replies: [[UInt8]] = []
            while let reply = try await sender.receive(attempts: 1) { replies.append(reply) }
            #expect(replies.count == (crafted.expectsReply ? 1 : 0), "replies to \(crafted)")
            #expect(replies.allSatisfy { $0.count <= DNSMessage.minimumUDPPayloadSize }, "no reply larger than 512 bytes to \(crafted)")
            #expect(server.restartWarnings.isEmpty)
        }
    }

    @Test(.enabled(if: getuid() == 0, "raw sockets need CAP_NET_RAW"))
    func answersAfterAQueryFromSourcePortZero() async throws {
        try await Self.withServer { server in
            let port = try await server.nextListener().port
            try RawUDPSender.send(Self.webQuery(id: 0x0BAD), from: ([127, 0, 0, 1], 0), toLoopbackPort: port)
            try await server.expectAnswer(on: port, "after a query from port 0")
            #expect(server.server.failures.snapshot == [.unreplyableSource: 1])
            #expect(server.restartWarnings.isEmpty)
            #expect(server.lines.value.contains { $0.level == .warning && "\($0.metadata["reason"] ?? "")" == "source cannot take a reply" })
        }
    }

    /// Sources a reply cannot go to, or should not: broadcast, multicast, reserved, "this
    /// network", an address the loopback-bound socket has no route to (sendto fails), and the
    /// server itself (the reply comes back to it as a response). Each fails exactly one datagram.
    @Test(.enabled(if: getuid() == 0, "raw sockets need CAP_NET_RAW"), arguments: [
        ([255, 255, 255, 255], "source cannot take a reply"), ([224, 0, 0, 251], "source cannot take a reply"),
        ([240, 0, 0, 1], "source cannot take a reply"), ([0, 0, 0, 1], "source cannot take a reply"),
        ([10, 255, 255, 254], "reply not sent: "), ([127, 0, 0, 1], "a response, not a query"),
    ] as [([UInt8], String)])
    func answersAfterAQueryFromAnOddSource(_ source: [UInt8], failure: String) async throws {
        try await Self.withServer { server in
            let port = try await server.nextListener().port
            let sourcePort = source == [127, 0, 0, 1] ? UInt16(port) : 5353
            try RawUDPSender.send(Self.webQuery(id: 0x0BAD), from: (source, sourcePort), toLoopbackPort: port)
            try await server.expectAnswer(on: port, "after a query from \(source):\(sourcePort)")
            // The server's reply to itself queues behind the query just answered: it may be
            // read a moment after that answer.
            let deadline = ContinuousClock.now + .seconds(5)
            while server.server.failures.snapshot.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            let failures = server.server.failures.snapshot
            #expect(failures.count == 1 && failures.first?.value == 1 && failures.first?.key.description.hasPrefix(failure) == true, "\(failures)")
            #expect(server.restartWarnings.isEmpty, "the listener kept running")
        }
    }

    @Test func failuresAreCountedByReasonAndLoggedAtPowersOfTwo() async throws {
        try await Self.withServer { server in
            let port = try await server.nextListener().port
            let sender = try LoopbackUDPClient()
            for _ in 0..<100 { try sender.send([0x42], to: port) }
            for _ in 0..<3 { try sender.send(header(flags: 0x8180), to: port) }
            try await server.expectAnswer(on: port, "after 103 datagrams to drop")
            #expect(server.server.failures.snapshot == [.tooShort: 100, .response: 3])
            let logged = server.lines.value.filter { $0.message == "DNS datagram failed" }
            let tooShort = logged.filter { "\($0.metadata["reason"] ?? "")" == "shorter than a DNS header" }
            #expect(tooShort.map { "\($0.metadata["count"] ?? "")" } == ["1", "2", "4", "8", "16", "32", "64"])
            #expect(logged.count == tooShort.count + 2, "the responses at 1 and 2")
        }
    }

    // MARK: Listener

    @Test func restartsWhenItsBindIsRefused() async throws {
        var squatter: LoopbackUDPClient? = try LoopbackUDPClient()
        let port = try #require(squatter?.port)
        try await Self.withServer(port: port) { server in
            try await server.expectLogLine("the refused bind") {
                $0.level == .warning && $0.message.contains("DNS listener failed") && "\($0.metadata["error"] ?? "")".contains("Address already in use")
            }
            squatter = nil
            #expect(try await server.nextListener().port == port)
            try await server.expectAnswer(on: port, "once the port is free")
        }
    }

    @Test func restartsWhenItsChannelIsClosedUnderneath() async throws {
        try await Self.withServer { server in
            let (channel, port) = try await server.nextListener()
            try await server.expectAnswer(on: port, "before the close")
            try await channel.close()
            #expect(try await server.nextListener().port == port, "a new listener on the same port")
            try await server.expectAnswer(on: port, "after the close")
            #expect(server.restartWarnings.map { "\($0.metadata["error"] ?? "")" } == ["DNS listener on 127.0.0.1:\(port) closed"])
        }
    }

    @Test func restartsWhenItsChannelFails() async throws {
        /// What the test fires into the listener's pipeline, as a failing socket read would.
        struct InjectedFailure: Error, CustomStringConvertible {
            var description: String { "injected channel failure" }
        }
        try await Self.withServer { server in
            let (channel, port) = try await server.nextListener()
            try await server.expectAnswer(on: port, "before the failure")
            channel.pipeline.fireErrorCaught(InjectedFailure())
            #expect(try await server.nextListener().port == port)
            try await server.expectAnswer(on: port, "after the failure")
            #expect(server.restartWarnings.map { "\($0.metadata["error"] ?? "")" } == ["DNS listener on 127.0.0.1:\(port) failed: injected channel failure"])
        }
    }
}

/// One hand-made datagram and whether the server must answer it.
struct CraftedDatagram: Sendable, CustomStringConvertible {
    var description: String
    var bytes: [UInt8]
    var expectsReply: Bool

    static let web = wireName("web.default.svc.cluster.local")
    static let question = web + be16(1) + be16(1)

    static let all: [CraftedDatagram] = [
        CraftedDatagram(description: "an empty datagram", bytes: [], expectsReply: false),
        CraftedDatagram(description: "one byte", bytes: [0x12], expectsReply: false),
        CraftedDatagram(description: "a header cut at 11 bytes", bytes: Array(header().prefix(11)), expectsReply: false),
        CraftedDatagram(description: "a header promising a missing question", bytes: header(), expectsReply: true),
        CraftedDatagram(description: "a question cut inside its type", bytes: header() + web + [0], expectsReply: true),
        CraftedDatagram(description: "a query padded to 65507 bytes", bytes: padded(header() + question), expectsReply: true),
        CraftedDatagram(description: "65507 bytes of 0xFF", bytes: [UInt8](repeating: 0xFF, count: 65507), expectsReply: false),
        CraftedDatagram(description: "a name pointing at itself", bytes: header() + [0xC0, 12] + be16(1) + be16(1), expectsReply: true),
        CraftedDatagram(description: "two names pointing at each other", bytes: header(qd: 2) + [1, 0x61, 0xC0, 20] + be16(1) + be16(1)
            + [1, 0x62, 0xC0, 12] + be16(1) + be16(1), expectsReply: true),
        CraftedDatagram(description: "a pointer forward to the real name", bytes: header() + [0xC0, 18] + be16(1) + be16(1) + web, expectsReply: true),
        CraftedDatagram(description: "a pointer past the end", bytes: header() + [0xFF, 0xFF] + be16(1) + be16(1), expectsReply: true),
        CraftedDatagram(description: "a label of length 64", bytes: header() + [64] + [UInt8](repeating: 0x61, count: 64) + [0] + be16(1) + be16(1),
                        expectsReply: true),
        CraftedDatagram(description: "a name of 300 bytes", bytes: header() + [UInt8]((0..<5).flatMap { _ in [63] + [UInt8](repeating: 0x61, count: 63) })
            + [0] + be16(1) + be16(1), expectsReply: true),
        CraftedDatagram(description: "QDCOUNT 65535 with one question", bytes: header(qd: 0xFFFF) + question, expectsReply: true),
        CraftedDatagram(description: "ANCOUNT 65535 with no answer", bytes: header(an: 0xFFFF) + question, expectsReply: true),
        CraftedDatagram(description: "QDCOUNT 0", bytes: header(qd: 0), expectsReply: true),
        CraftedDatagram(description: "300 questions, a FORMERR echoing them would be 1841 bytes",
                        bytes: header(qd: 300) + question + (1..<300).flatMap { _ in [0xC0, 12] + be16(1) + be16(1) }, expectsReply: true),
        CraftedDatagram(description: "a response", bytes: header(flags: 0x8180, an: 1) + question + [0xC0, 12] + be16(1) + be16(1)
            + [0, 0, 0, 30] + be16(4) + [10, 96, 0, 10], expectsReply: false),
        CraftedDatagram(description: "a NOTIFY", bytes: header(flags: 0x2000) + question, expectsReply: true),
        CraftedDatagram(description: "EDNS version 1", bytes: header(ar: 1) + question + [0] + be16(41) + be16(1232) + [0, 1, 0, 0] + be16(0),
                        expectsReply: true),
        CraftedDatagram(description: "two OPT records", bytes: header(ar: 2) + question + ([0] + be16(41) + be16(1232) + [0, 0, 0, 0] + be16(0)) + ([0] + be16(41) + be16(1232) + [0, 0, 0, 0] + be16(0)),
                        expectsReply: true),
        CraftedDatagram(description: "an OPT record announcing more data than there is",
                        bytes: header(ar: 1) + question + [0] + be16(41) + be16(1232) + [0, 0, 0, 0] + be16(0xFFFF), expectsReply: true),
        CraftedDatagram(description: "class CHAOS", bytes: header() + web + be16(16) + be16(3), expectsReply: true),
    ]

    static func padded(_ bytes: [UInt8]) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: 65507 - bytes.count)
    }

}

/// Seeded garbage of the kinds a DNS parser trips on: random bytes, and valid queries with bits
/// flipped, cut short, with lying counts, with compression pointers anywhere, or marked responses.
enum FuzzDatagram {
    static func next(using generator: inout SeededGenerator) -> [UInt8] {
        let query = ClusterDNSServerTests.webQuery(id: UInt16.random(in: 0...UInt16.max, using: &generator))
        switch Int.random(in: 0..<8, using: &generator) {
        case 0:
            return randomBytes(count: Int.random(in: 0...16, using: &generator), using: &generator)
        case 1:
            return randomBytes(count: Int.random(in: 12...700, using: &generator), using: &generator)
        case 2:
            var bytes = query
            for _ in 0..<Int.random(in: 1...8, using: &generator) {
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
            }
            return bytes
        case 3:
            return Array(query.prefix(Int.random(in: 0..<query.count, using: &generator)))
        case 4:
            var bytes = query
            for offset in [4, 6, 8, 10] where Bool.random(using: &generator) {
                bytes[offset] = UInt8.random(in: 0...255, using: &generator)
                bytes[offset + 1] = UInt8.random(in: 0...255, using: &generator)
            }
            return bytes
        case 5:
            var bytes = header(qd: UInt16.random(in: 0...4, using: &generator), ar: UInt16.random(in: 0...2, using: &generator))
            for _ in 0..<Int.random(in: 1...12, using: &generator) {
                if Bool.random(using: &generator) {
                    bytes += [0xC0 | UInt8.random(in: 0...0x3F, using: &generator), UInt8.random(in: 0...255, using: &generator)]
                } else {
                    let length = Int.random(in: 0...70, using: &generator)
                    bytes += [UInt8(length)] + randomBytes(count: length, using: &generator)
                }
            }
            return bytes + randomBytes(count: Int.random(in: 0...12, using: &generator), using: &generator)
        case 6:
            var bytes = query
            bytes[2] |= 0x80
            return bytes
        default:
            return query + randomBytes(count: Int.random(in: 0...64, using: &generator), using: &generator)
        }
    }

    static func randomBytes(count: Int, using generator: inout SeededGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
