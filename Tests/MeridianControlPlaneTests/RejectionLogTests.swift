import Foundation
import Logging
@testable import MeridianControlPlane
import MeridianCore
import MeridianStore
import Testing

/// Each rejected key is logged once, escaped; a flood past the limit costs a line at powers of two.
struct RejectionLogTests {
    /// Keeps every message and its metadata.
    struct Capture: LogHandler {
        let lines: Shared<[(message: String, metadata: Logger.Metadata)]>
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            lines.withLock { $0.append(("\(event.message)", event.metadata ?? [:])) }
        }
    }

    static func rejection(_ key: String) -> RemoteRecordRejection {
        RemoteRecordRejection(kind: .node, key: key, reason: .invalidName, message: "name \(key)")
    }

    @Test func eachKeyIsLoggedOnceEscapedAndAFloodIsSummarized() {
        let lines = Shared([(message: String, metadata: Logger.Metadata)]())
        let log = RejectionLog(remote: "cluster2", logger: Logger(label: "test") { _ in Capture(lines: lines) })
        log.record([Self.rejection("cluster2/\u{1B}[31mred"), Self.rejection("cluster2/a")])
        log.record([Self.rejection("cluster2/a")])
        #expect(lines.value.count == 2, "the repeated key is not logged again")
        #expect(lines.value.allSatisfy { !"\($0.metadata)".contains("\u{1B}") })
        #expect("\(lines.value[0].metadata["key"] ?? "")".contains("\\u{1B}[31mred"))

        log.record((0..<(RejectionLog.limit + 100)).map { Self.rejection("cluster2/n\($0)") })
        let summaries = lines.value.filter { $0.message.contains("than are logged") }
        #expect(lines.value.count - summaries.count == RejectionLog.limit, "at most the limit of distinct keys")
        #expect(summaries.count == 1)
        for round in 0..<26 { log.record([Self.rejection("cluster2/more\(round)")]) }
        let counted = lines.value.filter { $0.message.contains("than are logged") }.map { "\($0.metadata["not-logged"] ?? "")" }
        #expect(counted == ["102", "128"], "the first, then one line at each power of two: \(counted)")
    }
}
