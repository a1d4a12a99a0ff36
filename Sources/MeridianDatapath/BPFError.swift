import Glibc

/// A failed libbpf or bpf(2) call, with what was being done and the kernel's errno, so that
/// "map update failed" says which map, which operation and why.
public struct BPFError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno < 0 ? -errno : errno
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }

    /// Reads the result of a libbpf call returning an int: negative values carry `-errno`.
    static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(BPFError) {
        if result < 0 { throw BPFError(operation(), errno: result == -1 ? Glibc.errno : result) }
    }
}
