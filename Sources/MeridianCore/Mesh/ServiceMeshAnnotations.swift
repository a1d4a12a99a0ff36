/// Which backends a global service prefers when both local and remote ones are healthy.
public enum ServiceAffinity: String, Codable, Sendable, CaseIterable {
    /// Local and remote backends form one pool.
    case none
    /// Local backends; remote ones only while no local backend is healthy.
    case local
    /// Remote backends; local ones only while no remote backend is healthy.
    case remote
}

/// A service annotation whose value cannot be read, or two spellings of one annotation that
/// disagree.
public struct ServiceMeshAnnotationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The annotation at fault.
    public var annotation: String
    /// Its value as written.
    public var value: String
    /// What would have been accepted.
    public var expected: String

    public init(annotation: String, value: String, expected: String) {
        self.annotation = annotation
        self.value = value
        self.expected = expected
    }

    public var description: String {
        "annotation \(annotation)=\"\(value)\" is invalid: expected \(expected)"
    }
}

/// The mesh settings of a Service, read from its annotations.
///
/// Both the current names (`service.cilium.io/global|shared|affinity`) and the legacy ones
/// (`io.cilium/global-service|shared-service|service-affinity`) are read. Values are stricter
/// than Cilium's: booleans must be `true` or `false` and affinity `local`, `remote` or `none`
/// (any letter case); anything else, or a current and a legacy annotation that disagree, is an
/// error instead of being silently treated as the default.
///
/// The properties hold effective values: `shared` defaults to true for a global service and
/// `affinity` to `.none`; for a service that is not global both are ignored (`shared` false,
/// `affinity` `.none`), though their values must still be valid.
public struct ServiceMeshAnnotations: Sendable, Hashable {
    /// Annotation names understood by `parse(_:)`.
    public enum Key {
        public static let global = "service.cilium.io/global"
        public static let shared = "service.cilium.io/shared"
        public static let affinity = "service.cilium.io/affinity"
        public static let legacyGlobal = "io.cilium/global-service"
        public static let legacyShared = "io.cilium/shared-service"
        public static let legacyAffinity = "io.cilium/service-affinity"
        /// Meridian's own: `ClusterPreference`.
        public static let clusterPreference = "service.meridian.io/cluster-preference"
        public static let clusterWeights = "service.meridian.io/cluster-weights"
    }

    public var global: Bool
    public var shared: Bool
    public var affinity: ServiceAffinity
    /// Order and weights between clusters; nil when the service gives neither.
    public var preference: ClusterPreference?

    /// Settings with the same defaulting as `parse(_:)`: a service that is not global is never
    /// shared and has no affinity or preference.
    public init(global: Bool, shared: Bool = true, affinity: ServiceAffinity = .none, preference: ClusterPreference? = nil) {
        self.global = global
        self.shared = global && shared
        self.affinity = global ? affinity : .none
        self.preference = global ? preference : nil
    }

    /// Settings of a Service without mesh annotations.
    public static let notGlobal = ServiceMeshAnnotations(global: false)

    public static func parse(_ annotations: [String: String]) throws(ServiceMeshAnnotationError) -> ServiceMeshAnnotations {
        let global = try value(annotations, Key.global, legacy: Key.legacyGlobal, parseBool) ?? false
        let shared = try value(annotations, Key.shared, legacy: Key.legacyShared, parseBool) ?? true
        let affinity = try value(annotations, Key.affinity, legacy: Key.legacyAffinity, parseAffinity) ?? .none
        let order = try annotations[Key.clusterPreference].map { raw throws(ServiceMeshAnnotationError) in
            try ClusterPreference.parseOrder(Key.clusterPreference, raw)
        }
        let weights = try annotations[Key.clusterWeights].map { raw throws(ServiceMeshAnnotationError) in
            try ClusterPreference.parseWeights(Key.clusterWeights, raw)
        }
        var preference: ClusterPreference?
        if order != nil || weights != nil {
            guard affinity == .none else {
                let key = annotations[Key.affinity] != nil ? Key.affinity : Key.legacyAffinity
                throw ServiceMeshAnnotationError(
                    annotation: key, value: annotations[key] ?? "",
                    expected: "\"none\" or no affinity: \(Key.clusterPreference) and \(Key.clusterWeights) say where traffic goes instead")
            }
            preference = ClusterPreference(order: order, weights: weights?.named, otherWeight: weights?.other ?? 1)
        }
        return ServiceMeshAnnotations(global: global, shared: shared, affinity: affinity, preference: preference)
    }

    private static let booleanExpectation = "\"true\" or \"false\""
    private static let affinityExpectation = "\"local\", \"remote\" or \"none\""

    private static func parseBool(_ annotation: String, _ raw: String) throws(ServiceMeshAnnotationError) -> Bool {
        switch raw.lowercased() {
        case "true": return true
        case "false": return false
        default: throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: booleanExpectation)
        }
    }

    private static func parseAffinity(
        _ annotation: String, _ raw: String
    ) throws(ServiceMeshAnnotationError) -> ServiceAffinity {
        guard let affinity = ServiceAffinity(rawValue: raw.lowercased()) else {
            throw ServiceMeshAnnotationError(annotation: annotation, value: raw, expected: affinityExpectation)
        }
        return affinity
    }

    /// The value of an annotation given under its current name, its legacy name, or both.
    private static func value<Value: Equatable>(
        _ annotations: [String: String],
        _ key: String,
        legacy legacyKey: String,
        _ parse: (String, String) throws(ServiceMeshAnnotationError) -> Value
    ) throws(ServiceMeshAnnotationError) -> Value? {
        let current = try annotations[key].map { raw throws(ServiceMeshAnnotationError) in try parse(key, raw) }
        let legacy = try annotations[legacyKey].map { raw throws(ServiceMeshAnnotationError) in
            try parse(legacyKey, raw)
        }
        if let current, let legacy, current != legacy, let raw = annotations[key], let legacyRaw = annotations[legacyKey] {
            throw ServiceMeshAnnotationError(
                annotation: key, value: raw,
                expected: "the same value as the legacy annotation \(legacyKey)=\"\(legacyRaw)\", or only one of the two")
        }
        return current ?? legacy
    }
}

/// The global × shared rules deciding which clusters export and import a service's backends.
///
/// For a service present in clusters C1 and C2: both global and shared → each uses local and
/// remote backends; C1 `shared: false` → C1 uses local and remote, C2 only local; neither
/// shared → each only local; either not global → each only local.
public enum GlobalServicePolicy {
    /// A cluster publishes the service's backends (as a `ClusterService`) only when the service
    /// is global and shared.
    public static func exportsBackends(_ annotations: ServiceMeshAnnotations) -> Bool {
        annotations.global && annotations.shared
    }

    /// A cluster merges a remote cluster's backends into its own Service only when its Service
    /// is global and the remote's exported record says global (`includeExternal`) and shared.
    ///
    /// Matching namespace and name is the caller's job.
    public static func importsRemoteBackends(local: ServiceMeshAnnotations, remote: ClusterService) -> Bool {
        local.global && remote.includeExternal && remote.shared
    }
}
