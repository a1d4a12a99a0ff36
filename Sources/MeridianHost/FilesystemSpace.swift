import Glibc

/// The space of the filesystem holding a path, as `statvfs` gives it: what a writer may still
/// use (the blocks free to unprivileged users) and the whole. The store's disk guard, the
/// explanation of an etcd that died of a full disk and the lab's store disks all read it here.
public struct FilesystemSpace: Sendable, Hashable {
    public var availableBytes: Int64
    public var totalBytes: Int64

    /// Why the space of `path` could not be read.
    public struct Unreadable: Error, Sendable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "cannot read the free space under \(path): \(reason)" }
    }

    public static func of(_ path: String) throws(Unreadable) -> FilesystemSpace {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { throw Unreadable(path: path, reason: String(cString: strerror(errno))) }
        return FilesystemSpace(availableBytes: Int64(info.f_bavail) * Int64(info.f_frsize),
                               totalBytes: Int64(info.f_blocks) * Int64(info.f_frsize))
    }
}
