import CLibBPF
import Glibc

/// One loaded BPF object: its programs are in the kernel and its maps exist (pinned by name
/// under `pinDirectory`, so the objects of one node share them and they survive the agent).
/// Closing the object releases this process's references; attached programs and pinned maps
/// stay in the kernel.
public final class BPFObject: @unchecked Sendable {
    // libbpf's object is not mutated after load; the fds it hands out are used through
    // thread-safe syscalls only.
    private let object: OpaquePointer
    public let name: String

    public init(_ embedded: EmbeddedBPFObject, pinDirectory: String) throws(BPFError) {
        let bytes = embedded.bytes
        let opened: OpaquePointer? = bytes.withUnsafeBytes { raw in
            meridian_bpf_open_mem(raw.baseAddress, raw.count, embedded.name, pinDirectory)
        }
        guard let opened else { throw BPFError("open BPF object \(embedded.name)", errno: Glibc.errno) }
        let loaded = bpf_object__load(opened)
        if loaded != 0 {
            bpf_object__close(opened)
            throw BPFError("load BPF object \(embedded.name) (pins under \(pinDirectory))", errno: loaded)
        }
        object = opened
        name = embedded.name
    }

    deinit {
        bpf_object__close(object)
    }

    /// The file descriptor of the program named `name` (its C function name).
    public func programFD(_ name: String) throws(BPFError) -> Int32 {
        guard let program = bpf_object__find_program_by_name(object, name) else {
            throw BPFError("find program \(name) in \(self.name)", errno: ENOENT)
        }
        let fd = bpf_program__fd(program)
        try BPFError.check(fd, "program \(name) of \(self.name) has no fd")
        return fd
    }

    /// The kernel's id of the program named `name` (what a query of an attach point reports).
    public func programID(_ name: String) throws(BPFError) -> UInt32 {
        let fd = try programFD(name)
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try BPFError.check(bpf_obj_get_info_by_fd(fd, &info, &length), "read the id of program \(name) of \(self.name)")
        return info.id
    }

    /// The file descriptor of the map named `name`.
    public func mapFD(_ name: String) throws(BPFError) -> Int32 {
        guard let map = bpf_object__find_map_by_name(object, name) else {
            throw BPFError("find map \(name) in \(self.name)", errno: ENOENT)
        }
        let fd = bpf_map__fd(map)
        try BPFError.check(fd, "map \(name) of \(self.name) has no fd")
        return fd
    }

    /// Runs the program once over `packet` with BPF_PROG_TEST_RUN and returns its verdict and
    /// the packet as the program left it. The kernel runs the real program; redirects are
    /// reported in the verdict rather than performed. `controlBuffer`, when given, is the five
    /// words of `skb->cb` the program starts with.
    public func testRun(program: String, packet: [UInt8], controlBuffer: [UInt32]? = nil) throws(BPFError) -> (verdict: UInt32, packet: [UInt8]) {
        let fd = try programFD(program)
        var output = [UInt8](repeating: 0, count: max(packet.count + 256, 2048))
        var outputSize: UInt32 = 0
        var verdict: UInt32 = 0
        let capacity = UInt32(output.count)
        if let controlBuffer, controlBuffer.count != 5 {
            throw BPFError("test run of \(program): the control buffer has 5 words, not \(controlBuffer.count)", errno: EINVAL)
        }
        let result = packet.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                if let controlBuffer {
                    return controlBuffer.withUnsafeBufferPointer { cb in
                        meridian_bpf_test_run(fd, input.baseAddress, UInt32(input.count), out.baseAddress, capacity, &outputSize, &verdict,
                                              cb.baseAddress)
                    }
                }
                return meridian_bpf_test_run(fd, input.baseAddress, UInt32(input.count), out.baseAddress, capacity, &outputSize, &verdict, nil)
            }
        }
        try BPFError.check(result, "test run of \(program)")
        return (verdict, Array(output.prefix(Int(outputSize))))
    }

    /// Runs the program `repeat` times over `packet` in the kernel and returns the last verdict
    /// and the kernel's mean time per run, in nanoseconds.
    public func timedRun(program: String, packet: [UInt8], repeat count: UInt32) throws(BPFError) -> (verdict: UInt32, nanoseconds: UInt32) {
        let fd = try programFD(program)
        var duration: UInt32 = 0
        var verdict: UInt32 = 0
        let result = packet.withUnsafeBytes { input in
            meridian_bpf_test_run_timed(fd, input.baseAddress, UInt32(input.count), count, &duration, &verdict)
        }
        try BPFError.check(result, "timed run of \(program)")
        return (verdict, duration)
    }
}
