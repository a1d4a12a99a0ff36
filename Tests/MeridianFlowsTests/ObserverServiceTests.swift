import Foundation
import GRPCCore
@testable import MeridianFlows
import MeridianPKI
import Logging
import Synchronization
import Testing

/// The observer service over real mutual TLS on unix sockets: who may read, what a bad request
/// gets, and the relay merging nodes in time order and naming the nodes it could not read.
@Suite("Observer service", .serialized)
struct ObserverServiceTests {
    struct Credentials {
        let directory: String
        let ca: CertificateAuthority
        let server: ObserverTLS
        func client(_ commonName: String) throws -> ObserverTLS {
            let issued = try ca.issue(CertificateRequest(commonName: commonName, usage: .client, validity: .days(1)))
            return ObserverTLS(caPEM: ca.certificatePEM, certificatePEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM)
        }
    }

    static func withCredentials(_ body: (Credentials) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meridian-flows-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ca = try CertificateAuthority.create(commonName: "meridian-test-store-ca")
        let server = try ca.issue(CertificateRequest(commonName: ObserverCredentials.relayName, usage: .serverAndClient,
                                                     dnsNames: [ObserverTLS.serverName], validity: .days(1)))
        try await body(Credentials(directory: directory, ca: ca,
                                   server: ObserverTLS(caPEM: ca.certificatePEM, certificatePEM: server.certificatePEM, privateKeyPEM: server.privateKeyPEM)))
    }

    /// Runs `servers` until `body` returns.
    static func serving(_ servers: [ObserverServer], _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for server in servers { group.addTask { try await server.run() } }
            for server in servers {
                if case let .unix(path) = server.address {
                    while !FileManager.default.fileExists(atPath: path) { try await Task.sleep(for: .milliseconds(10)) }
                }
            }
            try await body()
            group.cancelAll()
        }
    }

    static func read(_ address: ObserverAddress, _ tls: ObserverTLS, _ request: ObserverRequest = ObserverRequest()) async throws -> [ObserverResponse] {
        let collected = Collected()
        try await ObserverClient.getFlows(from: address, tls: tls, request: request, timeout: .seconds(5)) { collected.add($0) }
        return collected.all
    }

    @Test("an admitted credential reads flows; another the same CA signed is refused; an oversized filter is refused as invalid")
    func admission() async throws {
        try await Self.withCredentials { credentials in
            let buffer = FlowBuffer(nodeName: "node1")
            buffer.append([flow(1), flow(2)])
            let address = ObserverAddress.unix(path: credentials.directory + "/node1.sock")
            let server = ObserverServer(address: address, tls: credentials.server, admittedNames: [ObserverCredentials.readerName],
                                        source: buffer, logger: .init(label: "test"))
            try await Self.serving([server]) {
                let answers = try await Self.read(address, try credentials.client(ObserverCredentials.readerName))
                #expect(answers.compactMap(\.flow) == [flow(1), flow(2)])
                await #expect(throws: RPCError.self) {
                    _ = try await Self.read(address, try credentials.client("meridian-agent"))
                }
                do {
                    _ = try await Self.read(address, try credentials.client("meridian-agent"))
                } catch let error as RPCError {
                    #expect(error.code == .permissionDenied, "\(error)")
                }
                var wide = FlowFilter()
                wide.namespace = Array(repeating: "n", count: 100)
                do {
                    _ = try await Self.read(address, try credentials.client(ObserverCredentials.readerName), ObserverRequest(filter: wide))
                    Issue.record("an oversized filter was served")
                } catch let error as RPCError {
                    #expect(error.code == .invalidArgument, "\(error)")
                }
            }
        }
    }

    @Test("a stale socket at the address is replaced; any other file there is left alone and the server does not start")
    func socketPath() async throws {
        try await Self.withCredentials { credentials in
            let path = credentials.directory + "/not-a-socket"
            try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
            let server = ObserverServer(address: .unix(path: path), tls: credentials.server, admittedNames: [ObserverCredentials.readerName],
                                        source: FlowBuffer(nodeName: "node1"), logger: Logger(label: "test"))
            let outcome = await withTaskGroup(of: String.self) { group in
                group.addTask {
                    do {
                        try await server.run()
                        return "returned"
                    } catch {
                        return "refused"
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(3))
                    return "still serving"
                }
                let first = await group.next() ?? ""
                group.cancelAll()
                return first
            }
            #expect(outcome == "refused")
            #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
        }
    }

    @Test("the relay merges its nodes' history in time order, cuts it to --last, and names a node it cannot read")
    func relay() async throws {
        try await Self.withCredentials { credentials in
            let one = FlowBuffer(nodeName: "node1")
            let two = FlowBuffer(nodeName: "node2")
            one.append([flow(1), flow(3), flow(5)])
            two.append([flow(2), flow(4)])
            let nodes = [
                FlowRelay.Node(name: "node1", address: .unix(path: credentials.directory + "/n1.sock")),
                FlowRelay.Node(name: "node2", address: .unix(path: credentials.directory + "/n2.sock")),
                FlowRelay.Node(name: "node3", address: .unix(path: credentials.directory + "/absent.sock")),
            ]
            let relayAddress = ObserverAddress.unix(path: credentials.directory + "/relay.sock")
            let relay = FlowRelay(tls: credentials.server) { nodes }
            let logger = Logger(label: "test")
            let servers = [
                ObserverServer(address: nodes[0].address, tls: credentials.server, admittedNames: [ObserverCredentials.relayName], source: one, logger: logger),
                ObserverServer(address: nodes[1].address, tls: credentials.server, admittedNames: [ObserverCredentials.relayName], source: two, logger: logger),
                ObserverServer(address: relayAddress, tls: credentials.server, admittedNames: [ObserverCredentials.readerName], source: relay, logger: logger),
            ]
            try await Self.serving(servers) {
                let answers = try await Self.read(relayAddress, try credentials.client(ObserverCredentials.readerName), ObserverRequest(last: 4))
                #expect(answers.compactMap { $0.flow?.time.timeIntervalSince1970 } == [1_800_000_002, 1_800_000_003, 1_800_000_004, 1_800_000_005])
                #expect(answers.compactMap { $0.nodeStatus == nil ? nil : $0.nodeName } == ["node3"])
            }
        }
    }
}

extension ObserverServiceTests {
    @Test("following through the relay: history first, then a flow a node records later, from whichever node")
    func relayFollow() async throws {
        try await Self.withCredentials { credentials in
            let one = FlowBuffer(nodeName: "cluster1/node1")
            let two = FlowBuffer(nodeName: "cluster1/node2")
            one.append([flow(1)])
            let nodes = [
                FlowRelay.Node(name: "cluster1/node1", address: .unix(path: credentials.directory + "/f1.sock")),
                FlowRelay.Node(name: "cluster1/node2", address: .unix(path: credentials.directory + "/f2.sock")),
            ]
            let relayAddress = ObserverAddress.unix(path: credentials.directory + "/follow-relay.sock")
            let logger = Logger(label: "test")
            let servers = [
                ObserverServer(address: nodes[0].address, tls: credentials.server, admittedNames: [ObserverCredentials.relayName], source: one, logger: logger),
                ObserverServer(address: nodes[1].address, tls: credentials.server, admittedNames: [ObserverCredentials.relayName], source: two, logger: logger),
                ObserverServer(address: relayAddress, tls: credentials.server, admittedNames: [ObserverCredentials.readerName],
                               source: FlowRelay(tls: credentials.server) { nodes }, logger: logger),
            ]
            let reader = try credentials.client(ObserverCredentials.readerName)
            try await Self.serving(servers) {
                let received = AsyncStream.makeStream(of: ObserverResponse.self)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await ObserverClient.getFlows(from: relayAddress, tls: reader, request: ObserverRequest(last: 10, follow: true)) {
                            received.continuation.yield($0)
                        }
                    }
                    var times: [Double] = []
                    for await answer in received.stream {
                        times.append(answer.flow?.time.timeIntervalSince1970 ?? 0)
                        if times.count == 1 {
                            // The relay follows each node once the history is out; give it the moment to ask.
                            while one.followers == 0 || two.followers == 0 { try await Task.sleep(for: .milliseconds(10)) }
                            two.append([flow(2)])
                        }
                        if times.count == 2 { break }
                    }
                    #expect(times == [1_800_000_001, 1_800_000_002])
                    group.cancelAll()
                }
            }
        }
    }
}

/// Answers a test collected.
final class Collected: Sendable {
    private let value = Mutex<[ObserverResponse]>([])
    var all: [ObserverResponse] { value.withLock { $0 } }
    func add(_ response: ObserverResponse) { value.withLock { $0.append(response) } }
}

