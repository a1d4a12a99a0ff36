import Foundation
import Glibc

/// Liveness of processes this host runs for the lab and its nodes (control planes, agents,
/// pod containers), shared by the lab and the agent's pod runtime.
public enum HostProcess {
    /// True while the process exists and has not exited. A zombie has exited; if it is our
    /// own child it is reaped here, otherwise only its parent can remove it.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        guard stat[stat.index(close, offsetBy: 2)...].prefix(1) == "Z" else { return true }
        var status: Int32 = 0
        waitpid(pid, &status, WNOHANG)
        return false
    }
}
