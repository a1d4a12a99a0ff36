#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Puts certificates and keys on disk where etcd and the agents read them, without ever
/// exposing a private key to other users, even briefly.
///
/// Every file is written to a temporary sibling created with its final mode and then renamed
/// into place, so readers never observe a half-written PEM and a key is never world-readable.
/// Missing parent directories are created with mode 0700; existing ones are left as they are.
public enum PEMFiles {
    static let certificateMode: mode_t = 0o644
    static let privateKeyMode: mode_t = 0o600
    static let directoryMode: mode_t = 0o700

    /// Writes the key (0600) first and then the certificate (0644), so a certificate on disk
    /// always has its key beside it.
    public static func write(
        certificatePEM: String,
        to certPath: String,
        privateKeyPEM: String,
        to keyPath: String
    ) throws(PKIError) {
        try atomicallyWrite(privateKeyPEM, to: keyPath, mode: privateKeyMode, operation: "write private key")
        try atomicallyWrite(certificatePEM, to: certPath, mode: certificateMode, operation: "write certificate")
    }

    /// For certificates without a key of ours, such as a CA bundle (mode 0644).
    public static func writeCertificate(_ pem: String, to path: String) throws(PKIError) {
        try atomicallyWrite(pem, to: path, mode: certificateMode, operation: "write certificate")
    }

    static func atomicallyWrite(
        _ contents: String,
        to path: String,
        mode: mode_t,
        operation: String
    ) throws(PKIError) {
        let destination = URL(fileURLWithPath: path)
        guard !path.isEmpty, !destination.lastPathComponent.isEmpty, !path.hasSuffix("/") else {
            throw PKIError(operation: operation, message: "not a file path", path: path)
        }
        let directory = destination.deletingLastPathComponent().path
        try createDirectories(directory, operation: operation)

        let temporaryPath = directory + "/." + destination.lastPathComponent + ".tmp-"
            + String(UInt64.random(in: .min ... .max), radix: 16)
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw failure(operation, "cannot create \(temporaryPath)", path: path)
        }
        do throws(PKIError) {
            try writeAll(Array(contents.utf8), to: descriptor, operation: operation, path: path)
            // open() applied the umask to `mode`; the file must end up with exactly `mode`.
            guard fchmod(descriptor, mode) == 0 else { throw failure(operation, "fchmod", path: path) }
            guard fsync(descriptor) == 0 else { throw failure(operation, "fsync", path: path) }
        } catch {
            _ = close(descriptor)
            _ = unlink(temporaryPath)
            throw error
        }
        guard close(descriptor) == 0 else {
            let error = failure(operation, "close", path: path)
            _ = unlink(temporaryPath)
            throw error
        }
        guard rename(temporaryPath, path) == 0 else {
            let error = failure(operation, "cannot move into place", path: path)
            _ = unlink(temporaryPath)
            throw error
        }
        syncDirectory(directory)
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, operation: String, path: String)
        throws(PKIError)
    {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                systemWrite(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw failure(operation, "write", path: path)
            }
            offset += written
        }
    }

    private static func createDirectories(_ directory: String, operation: String) throws(PKIError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PKIError(operation: operation, message: "parent exists but is not a directory", path: directory)
            }
            return
        }
        let parent = URL(fileURLWithPath: directory).deletingLastPathComponent().path
        if parent != directory {
            try createDirectories(parent, operation: operation)
        }
        if mkdir(directory, directoryMode) != 0 {
            guard errno == EEXIST else {
                throw failure(operation, "cannot create directory", path: directory)
            }
            return
        }
        guard chmod(directory, directoryMode) == 0 else {
            throw failure(operation, "cannot set directory mode", path: directory)
        }
    }

    private static func syncDirectory(_ directory: String) {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        _ = close(descriptor)
    }

    private static func failure(_ operation: String, _ step: String, path: String) -> PKIError {
        let reason = String(cString: strerror(errno))
        return PKIError(operation: operation, message: "\(step): \(reason)", path: path)
    }

    private static func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(descriptor, buffer, count)
        #elseif canImport(Musl)
        Musl.write(descriptor, buffer, count)
        #else
        Darwin.write(descriptor, buffer, count)
        #endif
    }
}
