import Foundation

/// A BPF object file compiled from `bpf/` by the package build and carried inside the binary.
/// The generated extensions (one per program file) add the instances: `fromPod`, `toPod`,
/// `fromOverlay`, `sock`.
public struct EmbeddedBPFObject: Sendable {
    public let name: String
    let base64: String

    init(name: String, base64: String) {
        self.name = name
        self.base64 = base64
    }

    /// The ELF bytes.
    public var bytes: [UInt8] {
        guard let data = Data(base64Encoded: base64) else {
            preconditionFailure("embedded BPF object \(name) is not valid base64; the build produced a broken file")
        }
        return [UInt8](data)
    }

    /// The programs of a node, one per attach point.
    public static var nodePrograms: [EmbeddedBPFObject] { [.fromPod, .toPod, .fromOverlay, .sock] }
}
