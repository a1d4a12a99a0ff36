import Foundation
import Logging
@testable import MeridianControlPlane
import MeridianEtcd
import MeridianHost
import MeridianStore
import MeridianTestSupport
import Testing

/// A real etcd whose data directory is on a small tmpfs that the test fills: the store refuses
/// writes with an error that says why, keeps every write it acknowledged, and takes writes
/// again once space is freed.
@Suite("A store on a full disk", .serialized)
struct StoreDiskFullTests {
    static let minimumFreeBytes: Int64 = 8 * 1024 * 1024

    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"), .timeLimit(.minutes(3)))
    func writesAreRefusedClearlyWhileFullNothingAcknowledgedIsLostAndWritesResumeOnceSpaceIsFreed() async throws {
        let disk = try ScratchTmpfs(megabytes: 96)
        defer { disk.remove() }
        let dataDirectory = disk.path + "/etcd"
        let lines = Shared([CapturingLogHandler.Line]())
        let logger = Logger(label: "meridian-test-store-disk") { _ in CapturingLogHandler(lines: lines) }
        try await ScratchEtcd.with(dataDirectory: dataDirectory) { client, _ in
            let spaceGuard = StoreSpaceGuard(client: client, quotaBytes: nil, interval: .seconds(10), logger: logger,
                                             dataDirectory: dataDirectory, minimumFreeBytes: Self.minimumFreeBytes)
            var acknowledged: [String: String] = [:]
            for index in 0..<100 {
                let key = "meridian/test/disk/before-\(index)", value = "value \(index) \(UUID())"
                try await Self.retryingUnavailable { () async throws(EtcdError) in try await client.put(key, value) }
                acknowledged[key] = value
            }
            _ = try await Self.retryingUnavailable { () async throws(EtcdError) in try await spaceGuard.check(lastRecovery: nil) }
            #expect(try await client.alarms().isEmpty, "with room to spare nothing is refused")

            try disk.fill(leaving: 2 * 1024 * 1024)
            _ = try await Self.retryingUnavailable { () async throws(EtcdError) in try await spaceGuard.check(lastRecovery: nil) }
            let refused = await #expect(throws: EtcdError.self, "a write while the disk is full") {
                try await Self.retryingUnavailable { () async throws(EtcdError) in try await client.put("meridian/test/disk/refused", "never stored") }
            }
            #expect(refused?.code == .noSpace)
            let text = refused.map { "\($0)" } ?? ""
            #expect(text.contains("no space left on device") && text.contains("\(client.configuration.endpoint)")
                    && text.contains("free space on that filesystem"), "says which store, why and what to do: \(text)")
            #expect(lines.value.contains {
                $0.level == .error && $0.message.contains("no space left on device") && "\($0.metadata["data-directory"] ?? "")" == dataDirectory
            }, "the control plane's log says which store and where")
            let record = try #require(try await Self.retryingUnavailable { () async throws(EtcdError) in try await client.get(KeyLayout.storeSpace) })
            let published = try StoreCoding.decode(StoreSpaceRecord.self, from: record.value, key: record.key)
            #expect(published.filesystem?.isShort == true && published.filesystem?.path == dataDirectory, "for `clustermesh status`")
            #expect(try await Self.stored(in: client) == acknowledged, "every acknowledged write reads back while the disk is full")

            disk.removeFiller()
            _ = try await Self.retryingUnavailable { () async throws(EtcdError) in try await spaceGuard.check(lastRecovery: nil) }
            #expect(try await client.alarms().isEmpty)
            #expect(lines.value.contains { $0.message.contains("writes resumed") })
            for index in 0..<20 {
                let key = "meridian/test/disk/after-\(index)", value = "value \(index) \(UUID())"
                try await Self.retryingUnavailable { () async throws(EtcdError) in try await client.put(key, value) }
                acknowledged[key] = value
            }
            #expect(try await Self.stored(in: client) == acknowledged, "every acknowledged write, and none refused, after space was freed")
        }
    }

    /// The disk fills before anything refuses writes: etcd acknowledges writes (its log segments
    /// are preallocated), exits when its backend cannot commit, and, restarted, replays its log
    /// and exits again. Writers see it unavailable; the guard's log says why; once space is freed
    /// the restarted etcd has every write it ever acknowledged and takes writes again.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"), .timeLimit(.minutes(3)))
    func anEtcdThatRanOutOfDiskKeepsEveryAcknowledgedWriteAndRecoversOnceSpaceIsFreed() async throws {
        let disk = try ScratchTmpfs(megabytes: 96)
        defer { disk.remove() }
        let dataDirectory = disk.path + "/etcd"
        let lines = Shared([CapturingLogHandler.Line]())
        let logger = Logger(label: "meridian-test-store-disk") { _ in CapturingLogHandler(lines: lines) }
        try await ScratchEtcd.with(dataDirectory: dataDirectory, restart: .always(initial: .milliseconds(100), maximum: .milliseconds(500))) { client, _ in
            var acknowledged: [String: String] = [:]
            for index in 0..<50 {
                let key = "meridian/test/disk/before-\(index)", value = "value \(index) \(UUID())"
                try await Self.retryingUnavailable { () async throws(EtcdError) in try await client.put(key, value) }
                acknowledged[key] = value
            }

            try disk.fill(leaving: 0)
            var failures: [EtcdError] = []
            // A write that failed because the connection dropped may have been committed or not.
            var unsure: [String: String] = [:]
            for index in 0..<400 where failures.count < 3 {
                let key = "meridian/test/disk/while-full-\(index)", value = String(repeating: "v", count: 4096)
                do {
                    try await client.put(key, value)
                    acknowledged[key] = value
                } catch {
                    failures.append(error as? EtcdError ?? EtcdError(.other, "\(error)"))
                    unsure[key] = value
                }
            }
            #expect(failures.count == 3, "etcd stopped taking writes once its disk was full")
            #expect(failures.allSatisfy { $0.code == .unavailable || $0.code == .timeout }, "\(failures)")

            let spaceGuard = StoreSpaceGuard(client: client, quotaBytes: nil, interval: .seconds(10), logger: logger,
                                             dataDirectory: dataDirectory, minimumFreeBytes: Self.minimumFreeBytes)
            _ = try? await spaceGuard.check(lastRecovery: nil)
            #expect(lines.value.contains { $0.level == .error && $0.message.contains("no space left on device") },
                    "the guard says why even when etcd does not answer")

            disk.removeFiller()
            var resumed = false
            for attempt in 0..<60 where !resumed {
                do {
                    try await client.put("meridian/test/disk/after", "written")
                    acknowledged["meridian/test/disk/after"] = "written"
                    resumed = true
                } catch {
                    if attempt == 59 { Issue.record("no write taken after space was freed: \(error)") }
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            let stored = try await Self.stored(in: client)
            #expect(acknowledged.filter { stored[$0.key] != $0.value }.isEmpty, "every acknowledged write survived the crashes")
            #expect(stored.filter { acknowledged[$0.key] == nil }.allSatisfy { unsure[$0.key] == $0.value },
                    "nothing else is stored but writes whose outcome the writer could not know")
        }
    }

    /// Every key the test wrote, with its value.
    static func stored(in client: EtcdClient) async throws -> [String: String] {
        let listing = try await retryingUnavailable { () async throws(EtcdError) in try await client.list(prefix: "meridian/test/disk/") }
        return Dictionary(uniqueKeysWithValues: listing.items.map { ($0.key, $0.stringValue) })
    }

    /// Runs `operation` again when it fails as unavailable: grpc's HTTP/2 transport loses about
    /// one call in 200 on a long connection to etcd ("Stream unexpectedly closed"), which
    /// Meridian's own callers retry too. A write retried so is the same write.
    @discardableResult
    static func retryingUnavailable<T>(_ operation: () async throws(EtcdError) -> T) async throws(EtcdError) -> T {
        var attempt = 0
        while true {
            do {
                return try await operation()
            } catch where error.code == .unavailable && attempt < 3 {
                attempt += 1
            }
        }
    }
}

/// A tmpfs of a few MiB for one test, mounted under /tmp as `meridian-test-...`, with a filler
/// file that can take all but a given amount of its space; `remove()` unmounts and deletes it.
final class ScratchTmpfs {
    let path: String
    private var filler: String { path + "/meridian-test-filler" }

    init(megabytes: Int) throws {
        path = NSTemporaryDirectory() + "meridian-test-tmpfs-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        do {
            try Self.run(["mount", "-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "meridian-test-tmpfs", path])
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
    }

    var availableBytes: Int64 {
        get throws { try FilesystemSpace.of(path).availableBytes }
    }

    /// Writes the filler until `bytes` (or a little less, a page at most) are left.
    func fill(leaving bytes: Int64) throws {
        let target = try availableBytes - bytes
        guard FileManager.default.createFile(atPath: filler, contents: nil), let handle = FileHandle(forWritingAtPath: filler) else {
            throw ScratchTmpfsError(description: "cannot create \(filler)")
        }
        defer { try? handle.close() }
        let chunk = Data(count: 1024 * 1024)
        var written: Int64 = 0
        while written < target {
            let next = chunk.prefix(Int(min(Int64(chunk.count), target - written)))
            do {
                try handle.write(contentsOf: next)
            } catch let error as CocoaError where error.code == .fileWriteOutOfSpace {
                // etcd wrote meanwhile and took the rest first: the disk is as full as asked.
                break
            }
            written += Int64(next.count)
        }
        try? handle.synchronize()
    }

    func removeFiller() {
        try? FileManager.default.removeItem(atPath: filler)
    }

    /// Unmounts (lazily if something still holds it) and deletes the mount point.
    func remove() {
        if (try? Self.run(["umount", path])) == nil {
            try? Self.run(["umount", "-l", path])
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    private static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw ScratchTmpfsError(description: "\(arguments.joined(separator: " ")) failed: \(message)")
        }
    }
}

/// A failed step of `ScratchTmpfs`, with the command and what it said.
struct ScratchTmpfsError: Error, CustomStringConvertible {
    var description: String
}
