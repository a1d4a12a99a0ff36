import Glibc

/// Moves the calling thread, and only it, into another network namespace: for work that must
/// make its sockets there (a readiness probe into a pod, a listener in the host's namespace for
/// an agent that runs in a node's). Callers use a thread of their own that ends afterwards, never
/// a thread of Swift's concurrency pool.
public enum ThreadNetworkNamespace {
    private typealias SetNamespace = @convention(c) (Int32, Int32) -> Int32
    /// `CLONE_NEWNET` of <sched.h>, which Swift's Glibc module leaves out with the rest of its GNU part.
    private static let cloneNewNetwork: Int32 = 0x4000_0000

    /// Enters the namespace whose file is `path` (`/var/run/netns/NAME`, `/proc/PID/ns/net`);
    /// returns why not, or nil once the thread is in it. glibc's `setns` is looked up at run time
    /// for the same reason as `cloneNewNetwork`.
    public static func enter(_ path: String) -> String? {
        let namespace = open(path, O_RDONLY | O_CLOEXEC)
        guard namespace >= 0 else { return "network namespace \(path): \(String(cString: strerror(errno)))" }
        defer { close(namespace) }
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "setns") else {
            return "setns is not available in this C library"
        }
        guard unsafeBitCast(symbol, to: SetNamespace.self)(namespace, cloneNewNetwork) == 0 else {
            return "cannot enter network namespace \(path): \(String(cString: strerror(errno)))"
        }
        return nil
    }
}
