import ArgumentParser
import Foundation
import MeridianAdmin
import MeridianLab

/// `meridian demo`: the seed walkthrough, step by step, with each step's result checked. Runs
/// the real `meridian` commands a user would type, in a lab of its own: two meshed clusters with
/// two nodes each, a global Service answered from both, failover, affinity, an unshared Service
/// and a pod-to-pod call across clusters.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run the ClusterMesh walkthrough on a two-cluster lab and check every step.")

    @Flag(help: "Leave the lab running afterwards.") var keep = false
    @Option(help: "Lab directory (default: $MERIDIAN_LAB_DIR or ~/.local/state/meridian/lab).") var directory: String?
    @Option(help: "Calls per load-balancing check.") var calls: Int = 30

    func run() async throws {
        let labDirectory = URL(fileURLWithPath: directory ?? Lab.defaultDirectory).standardizedFileURL.path
        let driver = LabDriver(directory: labDirectory, prefix: Lab.defaultPrefix, executable: currentExecutable(), configPath: MeridianConfig.path)
        var walkthrough = Walkthrough(driver: driver, calls: calls)
        var failure: (any Error)?
        do {
            try await walkthrough.run()
        } catch {
            failure = error
            print("\n❌ \(error)")
        }
        if !keep || failure != nil {
            await driver.tearDown()
            print("\nLab removed.")
        } else {
            print("\nLab kept in \(labDirectory); remove it with `meridian lab down`.")
        }
        print("\nSummary: \(walkthrough.passed.count) steps passed" + (failure == nil ? ", all held." : ", then one failed."))
        for line in walkthrough.findings { print("  • \(line)") }
        if failure != nil { throw ExitCode.failure }
    }
}
