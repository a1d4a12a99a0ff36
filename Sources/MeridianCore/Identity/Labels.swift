/// Label sources: the part before the first `:` of a label, saying where the label came from.
public enum LabelSource {
    public static let k8s = "k8s"
    public static let reserved = "reserved"
    public static let cidr = "cidr"
    public static let cidrGroup = "cidrgroup"
    public static let fqdn = "fqdn"
    public static let node = "node"
    public static let generated = "gen"
    public static let cni = "cni"
    public static let unspecified = "unspec"
    public static let any = "any"
    public static let directory = "directory"
}

/// Label keys with a meaning to the mesh, in one place so that every layer spells them alike.
public enum LabelKeys {
    /// The cluster that owns an endpoint; what makes the same workload in two clusters two identities.
    public static let cluster = "io.cilium.k8s.policy.cluster"
    /// The pod's namespace.
    public static let podNamespace = "io.kubernetes.pod.namespace"
    /// The pod's service account.
    public static let serviceAccount = "io.cilium.k8s.policy.serviceaccount"
    /// Prefix under which each label of the pod's namespace is copied into the pod identity.
    public static let namespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
    /// The label Kubernetes puts on every namespace, holding the namespace's name.
    public static let namespaceMetadataName = "kubernetes.io/metadata.name"
}

/// Why a label or a label string was rejected.
public struct LabelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The text that failed: one label, or the whole label string.
    public var input: String
    public var reason: String

    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    public var description: String { "invalid label \"\(input)\": \(reason)" }
}

/// One security label, `source:key=value`; identities are derived from sets of these.
public struct Label: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var source: String
    public var key: String
    public var value: String

    public init(source: String, key: String, value: String) {
        self.source = source
        self.key = key
        self.value = value
    }

    /// A `k8s:` label, the source of every label taken from Kubernetes objects.
    public static func k8s(_ key: String, _ value: String) -> Label {
        Label(source: LabelSource.k8s, key: key, value: value)
    }

    /// Orders by key, as the label string does; source and value only break ties.
    /// Keys compare byte-wise so that the order matches other implementations for any text.
    public static func < (lhs: Label, rhs: Label) -> Bool {
        if lhs.key != rhs.key { return lhs.key.utf8.lexicographicallyPrecedes(rhs.key.utf8) }
        if lhs.source != rhs.source { return lhs.source.utf8.lexicographicallyPrecedes(rhs.source.utf8) }
        return lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8)
    }

    /// `source:key=value`, or `source:key` when the value is empty.
    public var description: String {
        value.isEmpty ? "\(source):\(key)" : "\(source):\(key)=\(value)"
    }

    /// The kvstore form of one label, always with `=` and a closing `;`.
    public var ciliumString: String { "\(source):\(key)=\(value);" }

    /// Checks that the label survives a round trip through the label string.
    public func validate() throws(LabelError) {
        if source.isEmpty { throw LabelError(input: description, reason: "source is empty") }
        if source.contains(":") || source.contains(";") || source.contains("=") {
            throw LabelError(input: description, reason: "source must not contain ':', '=' or ';'")
        }
        if key.isEmpty { throw LabelError(input: description, reason: "key is empty") }
        if key.contains("=") || key.contains(";") {
            throw LabelError(input: description, reason: "key must not contain '=' or ';'")
        }
        if value.contains(";") { throw LabelError(input: description, reason: "value must not contain ';'") }
    }
}

/// The labels of one identity: at most one label per key, kept sorted by key.
///
/// Its `ciliumString` is the value stored under `cilium/state/identities/v1/id/<ID>`, so two
/// equal sets always produce byte-identical strings. Encodes (Codable) as that string.
public struct LabelSet: Sendable, Hashable, Codable, Sequence, CustomStringConvertible {
    public private(set) var labels: [Label]

    public init() {
        labels = []
    }

    /// Builds a set from labels in any order; two labels with the same key are an error.
    public init(_ labels: some Sequence<Label>) throws(LabelError) {
        var sorted = Array(labels)
        for label in sorted { try label.validate() }
        sorted.sort()
        for (previous, next) in zip(sorted, sorted.dropFirst()) where previous.key == next.key {
            throw LabelError(
                input: "\(previous); \(next)", reason: "key \"\(next.key)\" appears more than once")
        }
        self.labels = sorted
    }

    /// Parses the kvstore label string `source:key=value;...`.
    ///
    /// Every label must end with `;` and name a source. A label written without `=` gets an
    /// empty value. Labels may come in any order; the set is sorted afterwards.
    public init(ciliumString: String) throws(LabelError) {
        guard !ciliumString.isEmpty else {
            self.init()
            return
        }
        guard ciliumString.hasSuffix(";") else {
            throw LabelError(input: ciliumString, reason: "label string must end with ';'")
        }
        var parsed: [Label] = []
        for entry in ciliumString.dropLast().split(separator: ";", omittingEmptySubsequences: false) {
            guard let colon = entry.firstIndex(of: ":") else {
                throw LabelError(input: String(entry), reason: "missing 'source:' prefix")
            }
            let source = String(entry[..<colon])
            let rest = entry[entry.index(after: colon)...]
            let key: String
            let value: String
            if let equals = rest.firstIndex(of: "=") {
                key = String(rest[..<equals])
                value = String(rest[rest.index(after: equals)...])
            } else {
                key = String(rest)
                value = ""
            }
            parsed.append(Label(source: source, key: key, value: value))
        }
        try self.init(parsed)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(ciliumString: text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(ciliumString)
    }

    /// The kvstore form: each label as `source:key=value;`, in key order.
    public var ciliumString: String {
        labels.map(\.ciliumString).joined()
    }

    public var description: String { ciliumString }

    public var count: Int { labels.count }
    public var isEmpty: Bool { labels.isEmpty }

    public func makeIterator() -> IndexingIterator<[Label]> {
        labels.makeIterator()
    }

    /// The label with `key`, whatever its source.
    public subscript(key: String) -> Label? {
        labels.first { $0.key == key }
    }

    /// Adds `label`, replacing any label with the same key.
    public mutating func set(_ label: Label) throws(LabelError) {
        try label.validate()
        labels.removeAll { $0.key == label.key }
        let index = labels.firstIndex { label < $0 } ?? labels.endIndex
        labels.insert(label, at: index)
    }

    /// The cluster named by the `io.cilium.k8s.policy.cluster` label, if present.
    public var clusterName: String? {
        self[LabelKeys.cluster]?.value
    }

    /// The labels of a pod's security identity.
    ///
    /// Holds the pod's own labels with source `k8s`, plus the derived labels
    /// `io.kubernetes.pod.namespace`, `io.cilium.k8s.policy.serviceaccount` (when there is one),
    /// `io.cilium.k8s.namespace.labels.<k>` for every namespace label, and
    /// `io.cilium.k8s.policy.cluster`. Pod labels that use a derived key (or the namespace-labels
    /// prefix) are dropped, so a pod cannot claim another namespace, service account or
    /// cluster through its own labels. Pod or namespace labels that cannot be
    /// written in the label string (empty key, or `=`/`;` in a key, `;` in a value) are left
    /// out; manifest validation rejects them before a pod reaches this point. Pass the
    /// namespace's labels as Kubernetes stores them, including `kubernetes.io/metadata.name`.
    public static func podIdentityLabels(
        podLabels: [String: String],
        namespace: String,
        namespaceLabels: [String: String],
        serviceAccount: String?,
        cluster: String
    ) -> LabelSet {
        var byKey: [String: Label] = [:]
        func add(_ label: Label) {
            if (try? label.validate()) != nil { byKey[label.key] = label }
        }
        for (key, value) in podLabels where !isDerivedKey(key) { add(.k8s(key, value)) }
        for (key, value) in namespaceLabels { add(.k8s(LabelKeys.namespaceLabelsPrefix + key, value)) }
        add(.k8s(LabelKeys.podNamespace, namespace))
        if let serviceAccount, !serviceAccount.isEmpty { add(.k8s(LabelKeys.serviceAccount, serviceAccount)) }
        add(.k8s(LabelKeys.cluster, cluster))
        var set = LabelSet()
        set.labels = byKey.values.sorted()
        return set
    }

    /// Labels that are set for the pod rather than chosen by the user: the ones Meridian
    /// derives itself, and those controllers stamp on every pod of a rollout (Cilium's default
    /// identity-relevant label filter leaves them out too, or every rollout would mint new
    /// identities).
    private static func isDerivedKey(_ key: String) -> Bool {
        key == LabelKeys.podNamespace || key == LabelKeys.serviceAccount || key == LabelKeys.cluster
            || key.hasPrefix(LabelKeys.namespaceLabelsPrefix)
            || ["pod-template-hash", "controller-revision-hash", "pod-template-generation", "meridian.io/deployment"].contains(key)
    }
}
