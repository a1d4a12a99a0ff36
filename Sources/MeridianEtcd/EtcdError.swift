/// Every failure of the etcd client, with the endpoint or key it concerned, so callers can tell an
/// unreachable member from a refused permission from a compacted watch.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; a struct so new codes don't break `switch`es in callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case unavailable, permissionDenied, unauthenticated, invalidArgument, compacted, leaseExpired, timeout, cancelled, protocolViolation, noSpace, other }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        public static let unavailable = Code(.unavailable)
        public static let permissionDenied = Code(.permissionDenied)
        public static let unauthenticated = Code(.unauthenticated)
        public static let invalidArgument = Code(.invalidArgument)
        /// The watch's start revision was compacted away; the caller must re-list.
        public static let compacted = Code(.compacted)
        public static let leaseExpired = Code(.leaseExpired)
        public static let timeout = Code(.timeout)
        public static let cancelled = Code(.cancelled)
        public static let protocolViolation = Code(.protocolViolation)
        /// The store is out of space (a NOSPACE alarm is raised) and refuses writes until it is recovered.
        public static let noSpace = Code(.noSpace)
        public static let other = Code(.other)
        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { "etcd \(code): \(message)" }
}
