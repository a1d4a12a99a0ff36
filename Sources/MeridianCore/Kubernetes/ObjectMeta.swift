/// The identity and free-form tags that every Kubernetes object carries, kept in one
/// type so that stores, selectors and the service mesh read them the same way
/// whatever the object's kind.
public struct ObjectMeta: Codable, Sendable, Hashable {
    public var name: String
    public var namespace: String?
    public var labels: [String: String]
    public var annotations: [String: String]
    public var uid: String?
    public var creationTimestamp: String?
    /// Set by the store when the object is deleted but must wind down first (a pod that is
    /// running): RFC 3339 UTC, the moment of the delete. Never read from a manifest.
    public var deletionTimestamp: String?
    /// The grace period the deletion granted, in seconds; set with `deletionTimestamp`.
    public var deletionGracePeriodSeconds: Int?

    public init(
        name: String,
        namespace: String? = nil,
        labels: [String: String] = [:],
        annotations: [String: String] = [:],
        uid: String? = nil,
        creationTimestamp: String? = nil,
        deletionTimestamp: String? = nil,
        deletionGracePeriodSeconds: Int? = nil
    ) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
        self.annotations = annotations
        self.uid = uid
        self.creationTimestamp = creationTimestamp
        self.deletionTimestamp = deletionTimestamp
        self.deletionGracePeriodSeconds = deletionGracePeriodSeconds
    }

    /// Deleted and winding down: a terminating pod.
    public var isBeingDeleted: Bool { deletionTimestamp != nil }

    private enum CodingKeys: String, CodingKey {
        case name, namespace, labels, annotations, uid, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        namespace = try container.decodeIfPresent(String.self, forKey: .namespace)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
        uid = try container.decodeIfPresent(String.self, forKey: .uid)
        creationTimestamp = try container.decodeIfPresent(String.self, forKey: .creationTimestamp)
        deletionTimestamp = try container.decodeIfPresent(String.self, forKey: .deletionTimestamp)
        deletionGracePeriodSeconds = try container.decodeIfPresent(Int.self, forKey: .deletionGracePeriodSeconds)
    }
}

// MARK: - Manifest decoding and validation

extension ObjectMeta {
    /// Kubernetes caps the combined size of all annotation keys and values of one object.
    static let maximumAnnotationBytes = 256 * 1024

    /// An empty `namespace` reads as none, so the object lands in the default namespace.
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.objectMeta)
        let namespace = try map.optional("namespace")?.string()
        self.init(
            name: try map.required("name").string(),
            namespace: namespace?.isEmpty == true ? nil : namespace,
            labels: try map.optional("labels")?.stringMap() ?? [:],
            annotations: try map.optional("annotations")?.stringMap() ?? [:],
            uid: try map.optional("uid")?.string(),
            creationTimestamp: try map.optional("creationTimestamp")?.string()
        )
    }

    /// Checks the rules shared by every kind; `path` points at the `metadata` mapping.
    func validate(at path: FieldPath) throws(FieldError) {
        try validateName(at: path.field("name"))
        try validateNamespace(at: path.field("namespace"))
        try validateLabels(at: path.field("labels"))
        try Self.validateAnnotations(annotations, at: path.field("annotations"))
    }

    private func validateName(at path: FieldPath) throws(FieldError) {
        guard !name.isEmpty else { throw FieldError(path, "is required") }
        if let problem = NameSyntax.dns1123LabelProblem(name) {
            throw FieldError(path, "invalid name \(name.debugDescription): \(problem)")
        }
    }

    private func validateNamespace(at path: FieldPath) throws(FieldError) {
        guard let namespace else { return }
        if let problem = NameSyntax.dns1123LabelProblem(namespace) {
            throw FieldError(path, "invalid namespace \(namespace.debugDescription): \(problem)")
        }
    }

    private func validateLabels(at path: FieldPath) throws(FieldError) {
        try NameSyntax.validateLabelMap(labels, at: path)
    }

    /// Checks annotation keys and the total size; shared with pod templates, whose metadata
    /// carries annotations but no name.
    static func validateAnnotations(_ annotations: [String: String], at path: FieldPath) throws(FieldError) {
        for key in annotations.keys.sorted() {
            if let problem = NameSyntax.qualifiedNameProblem(key) {
                throw FieldError(path.key(key), "invalid annotation key: \(problem)")
            }
        }
        let totalBytes = annotations.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        if totalBytes > Self.maximumAnnotationBytes {
            throw FieldError(
                path,
                "annotations must total at most \(Self.maximumAnnotationBytes) bytes, got \(totalBytes)"
            )
        }
    }
}

// MARK: - Name syntax

/// The naming rules Kubernetes applies to object names, label keys and values and
/// port names. Each check returns a human-readable problem, or `nil` when the text is valid.
enum NameSyntax {
    static let maximumLabelLength = 63
    static let maximumSubdomainLength = 253
    static let maximumServiceNameLength = 15

    static func dns1123LabelProblem(_ text: String) -> String? {
        if text.isEmpty { return "must not be empty" }
        if text.count > maximumLabelLength {
            return "must be at most \(maximumLabelLength) characters, got \(text.count)"
        }
        if !text.allSatisfy({ isLowercaseAlphanumeric($0) || $0 == "-" }) {
            return "must consist of lowercase letters, digits and '-'"
        }
        if !startsAndEndsAlphanumeric(text) {
            return "must start and end with a lowercase letter or digit"
        }
        return nil
    }

    static func dns1123SubdomainProblem(_ text: String) -> String? {
        if text.isEmpty { return "must not be empty" }
        if text.count > maximumSubdomainLength {
            return "must be at most \(maximumSubdomainLength) characters, got \(text.count)"
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        for part in parts where dns1123LabelProblem(String(part)) != nil {
            return "must be dot-separated parts of lowercase letters, digits and '-', "
                + "each starting and ending with a letter or digit"
        }
        return nil
    }

    /// A label or annotation key: an optional DNS subdomain prefix and '/', then a short name.
    static func qualifiedNameProblem(_ key: String) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            return shortNameProblem(key, role: "key")
        case 2:
            if let problem = dns1123SubdomainProblem(String(parts[0])) {
                return "prefix \(String(parts[0]).debugDescription) \(problem)"
            }
            return shortNameProblem(String(parts[1]), role: "name after '/'")
        default:
            return "must contain at most one '/'"
        }
    }

    static func labelValueProblem(_ value: String) -> String? {
        value.isEmpty ? nil : shortNameProblem(value, role: "value")
    }

    /// A named port (IANA service name): short, lowercase, and not mistakable for a number.
    static func ianaServiceNameProblem(_ text: String) -> String? {
        if text.isEmpty { return "must not be empty" }
        if text.count > maximumServiceNameLength {
            return "must be at most \(maximumServiceNameLength) characters, got \(text.count)"
        }
        if !text.allSatisfy({ isLowercaseAlphanumeric($0) || $0 == "-" }) {
            return "must consist of lowercase letters, digits and '-'"
        }
        if !text.contains(where: isLetter) {
            return "must contain at least one letter"
        }
        if !startsAndEndsAlphanumeric(text) || text.contains("--") {
            return "must start and end with a letter or digit and must not contain '--'"
        }
        return nil
    }

    /// Checks a `map[string]string` of labels, such as `metadata.labels` or a Service selector.
    static func validateLabelMap(_ labels: [String: String], at path: FieldPath) throws(FieldError) {
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            if let problem = qualifiedNameProblem(key) {
                throw FieldError(path.key(key), "invalid label key: \(problem)")
            }
            if let problem = labelValueProblem(value) {
                throw FieldError(path.key(key), "invalid label value \(value.debugDescription): \(problem)")
            }
        }
    }

    private static func shortNameProblem(_ text: String, role: String) -> String? {
        if text.isEmpty { return "\(role) must not be empty" }
        if text.count > maximumLabelLength {
            return "\(role) must be at most \(maximumLabelLength) characters, got \(text.count)"
        }
        let allowed = text.allSatisfy { isAlphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." }
        if !allowed || !startsAndEndsAlphanumeric(text) {
            return "\(role) must consist of letters, digits, '-', '_' and '.', "
                + "starting and ending with a letter or digit"
        }
        return nil
    }

    private static func startsAndEndsAlphanumeric(_ text: String) -> Bool {
        guard let first = text.first, let last = text.last else { return false }
        return isAlphanumeric(first) && isAlphanumeric(last)
    }
}

extension NameSyntax {
    static func isLetter(_ character: Character) -> Bool {
        guard let ascii = character.asciiValue else { return false }
        return (0x41...0x5A).contains(ascii) || (0x61...0x7A).contains(ascii)
    }

    static func isDigit(_ character: Character) -> Bool {
        guard let ascii = character.asciiValue else { return false }
        return (0x30...0x39).contains(ascii)
    }

    static func isAlphanumeric(_ character: Character) -> Bool {
        isLetter(character) || isDigit(character)
    }

    static func isLowercaseAlphanumeric(_ character: Character) -> Bool {
        guard let ascii = character.asciiValue else { return false }
        return (0x61...0x7A).contains(ascii) || isDigit(character)
    }
}
