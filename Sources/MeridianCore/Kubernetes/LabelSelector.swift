/// Picks objects by their labels. Network policies and Service backends select pods
/// this way, so the matching rules must be exactly those of Kubernetes or policies
/// would allow or deny the wrong traffic.
public struct LabelSelector: Codable, Sendable, Hashable {
    public var matchLabels: [String: String]
    public var matchExpressions: [LabelSelectorRequirement]

    public init(
        matchLabels: [String: String] = [:],
        matchExpressions: [LabelSelectorRequirement] = []
    ) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    private enum CodingKeys: String, CodingKey {
        case matchLabels, matchExpressions
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        matchLabels = try container.decodeIfPresent([String: String].self, forKey: .matchLabels) ?? [:]
        matchExpressions = try container.decodeIfPresent(
            [LabelSelectorRequirement].self,
            forKey: .matchExpressions
        ) ?? []
    }

    /// An empty selector selects every object.
    public var isEmpty: Bool {
        matchLabels.isEmpty && matchExpressions.isEmpty
    }

    /// True when every `matchLabels` entry and every expression holds for `labels`.
    public func matches(_ labels: [String: String]) -> Bool {
        matchLabels.allSatisfy { labels[$0.key] == $0.value }
            && matchExpressions.allSatisfy { $0.matches(labels) }
    }

    /// Rejects selectors Kubernetes would refuse: malformed label keys or values, and
    /// operators given the wrong number of values.
    public func validate() throws(LabelSelectorError) {
        do throws(FieldError) {
            try validate(at: FieldPath())
        } catch {
            throw LabelSelectorError(field: error.path.description, message: error.message)
        }
    }

    /// The same checks as `validate()`, for a selector embedded at `path` in a manifest.
    func validate(at path: FieldPath) throws(FieldError) {
        let labelsPath = path.field("matchLabels")
        for (key, value) in matchLabels.sorted(by: { $0.key < $1.key }) {
            if let problem = NameSyntax.qualifiedNameProblem(key) {
                throw FieldError(labelsPath.key(key), "invalid label key: \(problem)")
            }
            if let problem = NameSyntax.labelValueProblem(value) {
                throw FieldError(labelsPath.key(key), "invalid label value \(value.debugDescription): \(problem)")
            }
        }
        for (index, requirement) in matchExpressions.enumerated() {
            try requirement.validate(at: path.field("matchExpressions").index(index))
        }
    }
}

/// One set-based condition of a selector, such as "tier in (web, api)" or "canary absent".
public struct LabelSelectorRequirement: Codable, Sendable, Hashable {
    /// How a requirement relates the label under `key` to `values`.
    public enum Operator: String, Codable, Sendable, Hashable, CaseIterable {
        /// The label is present and its value is one of `values`.
        case `in` = "In"
        /// The label is absent, or present with a value outside `values`.
        case notIn = "NotIn"
        /// The label is present, whatever its value.
        case exists = "Exists"
        /// The label is absent.
        case doesNotExist = "DoesNotExist"

        /// `In` and `NotIn` compare against a non-empty value list; the others take none.
        public var takesValues: Bool {
            self == .in || self == .notIn
        }
    }

    public var key: String
    public var `operator`: Operator
    public var values: [String]

    public init(key: String, operator: Operator, values: [String] = []) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }

    private enum CodingKeys: String, CodingKey {
        case key, `operator`, values
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode(String.self, forKey: .key)
        `operator` = try container.decode(Operator.self, forKey: .operator)
        values = try container.decodeIfPresent([String].self, forKey: .values) ?? []
    }

    public func matches(_ labels: [String: String]) -> Bool {
        let value = labels[key]
        switch `operator` {
        case .in: return value.map(values.contains) ?? false
        case .notIn: return value.map { !values.contains($0) } ?? true
        case .exists: return value != nil
        case .doesNotExist: return value == nil
        }
    }

    func validate(at path: FieldPath) throws(FieldError) {
        if let problem = NameSyntax.qualifiedNameProblem(key) {
            throw FieldError(path.field("key"), "invalid label key: \(problem)")
        }
        let valuesPath = path.field("values")
        if `operator`.takesValues, values.isEmpty {
            throw FieldError(valuesPath, "operator \(`operator`.rawValue) needs at least one value")
        }
        if !`operator`.takesValues, !values.isEmpty {
            throw FieldError(valuesPath, "operator \(`operator`.rawValue) takes no values, got \(values.count)")
        }
        for (index, value) in values.enumerated() {
            if let problem = NameSyntax.labelValueProblem(value) {
                throw FieldError(
                    valuesPath.index(index),
                    "invalid label value \(value.debugDescription): \(problem)"
                )
            }
        }
    }
}

/// Says which part of a selector is invalid, with a path relative to the selector
/// (such as `matchExpressions[0].values`) so that the object holding the selector can
/// prefix its own location.
public struct LabelSelectorError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

// MARK: - Manifest decoding

extension LabelSelector {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.labelSelector)
        var expressions: [LabelSelectorRequirement] = []
        for element in try map.optional("matchExpressions")?.list() ?? [] {
            expressions.append(try LabelSelectorRequirement(manifest: element))
        }
        self.init(
            matchLabels: try map.optional("matchLabels")?.stringMap() ?? [:],
            matchExpressions: expressions
        )
    }
}

extension LabelSelectorRequirement {
    init(manifest value: ManifestValue) throws(FieldError) {
        let map = try value.mapping(.labelSelectorRequirement)
        self.init(
            key: try map.required("key").string(),
            operator: try map.required("operator").enumeration(Operator.self),
            values: try map.optional("values")?.stringList() ?? []
        )
    }
}
