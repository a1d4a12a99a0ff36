import Foundation
import MeridianCore

// MARK: - /proc and arithmetic (pure)

enum ProcFS {
    /// utime + stime in clock ticks, from the text of `/proc/<pid>/stat`. The command name (field
    /// 2) may hold spaces and parentheses, so fields are counted after the last `)`: state is
    /// field 3, utime 14, stime 15.
    static func cpuTicks(stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in kB.
    static func kilobytes(_ field: String, status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            let value = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard value.count == 2, value[1] == "kB" else { return nil }
            return Int(value[0])
        }
        return nil
    }

    static var clockTicksPerSecond: Double { Double(sysconf(Int32(_SC_CLK_TCK))) }

    static func cpuTicks(pid: Int32) -> UInt64? {
        (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).flatMap { cpuTicks(stat: $0) }
    }

    static func peakKilobytes(pid: Int32) -> Int? {
        (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)).flatMap { kilobytes("VmHWM", status: $0) }
    }

    /// Resets the process's peak resident set (VmHWM) to its current size (`clear_refs` value 5,
    /// Linux 4.0+), so a phase's peak is its own. False when the kernel refused.
    @discardableResult
    static func resetPeak(pid: Int32) -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/\(pid)/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`
    /// (`cpu user nice system idle iowait irq softirq steal ...`); idle and iowait are not busy.
    static func machineTicks(procStat: String) -> (busy: UInt64, total: UInt64)? {
        guard let line = procStat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard values.count >= 5 else { return nil }
        let total = values.reduce(0, +)
        return (total - values[3] - values[4], total)
    }

    static func machineTicks() -> (busy: UInt64, total: UInt64)? {
        (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)).flatMap { machineTicks(procStat: $0) }
    }

    /// Processes whose command name (`/proc/<pid>/comm`) is `name` and which live in one of the
    /// named network namespaces (`/var/run/netns/<namespace>`, compared by inode).
    static func pids(named name: String, inNetworkNamespaces namespaces: [String]) -> [Int32] {
        // A namespace's file under /var/run/netns is its nsfs inode mounted there; a process's
        // /proc/<pid>/ns/net is a link reading `net:[<inode>]`.
        let wanted = Set(namespaces.compactMap {
            ((try? FileManager.default.attributesOfItem(atPath: "/var/run/netns/\($0)"))?[.systemFileNumber] as? NSNumber)?.uint64Value
        })
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == name,
                  let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net") else { return false }
            return UInt64(link.drop { $0 != "[" }.dropFirst().prefix { $0 != "]" }).map(wanted.contains) == true
        }.sorted()
    }

}

/// What a churn phase delivered, from the writers' count and the watcher's arrivals.
struct ChurnOutcome: Codable, Sendable, Hashable {
    var targetPerSecond: Int
    var seconds: Int
    var written: Int
    var writeFailures: Int
    /// Written updates per second over the churn window (or longer, if the writers overran it).
    var writtenPerSecond: Double
    var arrived: Int
    var missing: Int
    /// Arrivals per second from the first write to the last arrival (at least the window):
    /// the rate the mesh actually delivered.
    var sustainedPerSecond: Double
    /// Arrivals in each whole second of the window.
    var arrivalsPerSecond: SampleSummary?
    /// Write (in a mock) to arrival in cluster1's cache, seen by a watch on cluster1's etcd.
    var latencyMs: SampleSummary?
    /// From the first write to the last arrival.
    var lastArrivalSeconds: Double
    /// Baseline of the same run: write to arrival at a watch on the written mock's own etcd
    /// (the first mock's updates only).
    var directLatencyMs: SampleSummary? = nil
    /// Revisions of cluster1's etcd per second over the phase: every write there (cache
    /// updates, status records, anything else), to compare with the updates delivered.
    var cluster1EtcdRevisionsPerSecond: Double? = nil
}

enum ScaleArithmetic {
    /// CPU time as a percentage of one core over `seconds` of wall time.
    static func cpuPercent(ticks: UInt64, ticksPerSecond: Double, seconds: Double) -> Double {
        guard seconds > 0, ticksPerSecond > 0 else { return 0 }
        return Double(ticks) / ticksPerSecond / seconds * 100
    }

    /// `arrivals` are (sent, arrived) monotonic nanoseconds of distinct updates; `start` is when
    /// the writers began; `writeSpan` from then until the last write returned.
    static func churnOutcome(target: Int, seconds: Int, written: Int, writeFailures: Int, writeSpan: Double,
                             arrivals: [(sent: UInt64, arrived: UInt64)], start: UInt64) -> ChurnOutcome {
        let window = Double(seconds)
        let relative = arrivals.map { Double($0.arrived &- start) / 1e9 }
        let lastArrival = relative.max() ?? 0
        var buckets = [Double](repeating: 0, count: seconds)
        for time in relative where time >= 0 && time < window { buckets[Int(time)] += 1 }
        let latencies = arrivals.map { Double($0.arrived &- $0.sent) / 1e6 }
        return ChurnOutcome(
            targetPerSecond: target, seconds: seconds, written: written, writeFailures: writeFailures,
            writtenPerSecond: Double(written) / max(window, writeSpan),
            arrived: arrivals.count, missing: max(0, written - arrivals.count),
            sustainedPerSecond: Double(arrivals.count) / max(window, lastArrival),
            arrivalsPerSecond: SampleSummary(buckets), latencyMs: SampleSummary(latencies), lastArrivalSeconds: lastArrival)
    }
}

// MARK: - Resource use of the measured processes

/// Processes measured together under one name (the mocks are summed).
struct ProcessGroup: Sendable {
    var role: String
    var pids: [Int32]
}

struct ProcessUsage: Codable, Sendable, Hashable {
    var role: String
    var processes: Int
    /// utime + stime over the phase, as a percentage of one core (200 = both cores of this machine).
    var cpuPercentOfOneCore: Double
    /// VmHWM at the end of the phase, reset at its start; summed over the group's processes.
    var peakMemoryMB: Double
}

struct PhaseUsage: Codable, Sendable, Hashable {
    var phase: String
    var seconds: Double
    var processes: [ProcessUsage]
    /// Every process of the machine, as a percentage of one core (the machine's limit is cores × 100).
    var machineCPUPercentOfOneCore: Double?
}

/// CPU ticks of each process at a phase's start (whose peak memory is reset there).
struct PhaseMeter {
    let groups: [ProcessGroup]
    let startTicks: [Int32: UInt64]
    let machineStart: (busy: UInt64, total: UInt64)?
    let started: ContinuousClock.Instant

    static func start(_ groups: [ProcessGroup]) -> PhaseMeter {
        var ticks: [Int32: UInt64] = [:]
        for pid in groups.flatMap(\.pids) {
            ProcFS.resetPeak(pid: pid)
            ticks[pid] = ProcFS.cpuTicks(pid: pid)
        }
        return PhaseMeter(groups: groups, startTicks: ticks, machineStart: ProcFS.machineTicks(), started: .now)
    }

    func finish(_ phase: String) -> PhaseUsage {
        let seconds = (ContinuousClock.now - started).inSeconds
        let usage = groups.map { group in
            var ticks: UInt64 = 0
            var peak = 0
            var alive = 0
            for pid in group.pids {
                guard let end = ProcFS.cpuTicks(pid: pid), let begin = startTicks[pid] else { continue }
                alive += 1
                ticks += end >= begin ? end - begin : 0
                peak += ProcFS.peakKilobytes(pid: pid) ?? 0
            }
            return ProcessUsage(role: group.role, processes: alive,
                                cpuPercentOfOneCore: ScaleArithmetic.cpuPercent(ticks: ticks, ticksPerSecond: ProcFS.clockTicksPerSecond, seconds: seconds),
                                peakMemoryMB: Double(peak) / 1024)
        }
        var machine: Double?
        if let begin = machineStart, let end = ProcFS.machineTicks(), end.total > begin.total {
            let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
            machine = Double(end.busy - begin.busy) / Double(end.total - begin.total) * cores * 100
        }
        return PhaseUsage(phase: phase, seconds: seconds, processes: usage, machineCPUPercentOfOneCore: machine)
    }
}
