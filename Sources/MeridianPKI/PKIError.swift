/// The single error type of MeridianPKI.
///
/// Certificate problems surface at cluster bootstrap and when a peer's credentials are loaded,
/// where an operator needs to know which step failed and on which file, not an ASN.1 stack trace.
public struct PKIError: Error, Sendable, CustomStringConvertible {
    /// What was being attempted, e.g. "load CA" or "write private key".
    public var operation: String
    /// Why it failed.
    public var message: String
    /// The file involved, when the failure concerns one.
    public var path: String?

    public init(operation: String, message: String, path: String? = nil) {
        self.operation = operation
        self.message = message
        self.path = path
    }

    public var description: String {
        if let path {
            return "\(operation) failed for \(path): \(message)"
        }
        return "\(operation) failed: \(message)"
    }
}

extension PKIError {
    /// Runs `body`, turning any library error into a `PKIError` for `operation`; a `PKIError` passes through.
    static func wrapping<T>(
        _ operation: String,
        path: String? = nil,
        _ body: () throws -> T
    ) throws(PKIError) -> T {
        do {
            return try body()
        } catch let error as PKIError {
            throw error
        } catch {
            throw PKIError(operation: operation, message: String(describing: error), path: path)
        }
    }
}
