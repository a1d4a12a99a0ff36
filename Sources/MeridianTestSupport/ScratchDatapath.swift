import Foundation
import Glibc
import MeridianDatapath

/// A node datapath that lives only as long as this object: a private bpffs mounted on a fresh
/// directory named with the owner's prefix, the programs loaded and the maps pinned there, all
/// freed when it is unmounted on release. For program tests and the policy lookup benchmark,
/// which run packets through the programs with BPF_PROG_TEST_RUN and never attach them.
public final class ScratchDatapath {
    public let directory: String
    public let datapath: BPFNodeDatapath

    public init(prefix: String) throws(BPFError) {
        var template = Array((NSTemporaryDirectory() + "\(prefix)-bpf-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw BPFError("mkdtemp", errno: errno) }
        directory = String(cString: made)
        guard mount("bpf", directory, "bpf", 0, nil) == 0 else {
            let code = errno
            rmdir(directory)
            throw BPFError("mount bpffs at \(directory)", errno: code)
        }
        do {
            datapath = try BPFNodeDatapath(pinDirectory: directory + "/node")
        } catch {
            umount2(directory, Int32(MNT_DETACH))
            rmdir(directory)
            throw error
        }
    }

    deinit {
        umount2(directory, Int32(MNT_DETACH))
        rmdir(directory)
    }
}
