import Yams

/// The fields one Kubernetes type may hold in a manifest. A field outside it is refused, as
/// `kubectl apply --validate=strict` refuses it: a misspelt `imagePullPolicyy` or a field from
/// another type would otherwise be dropped without a word, and the object applied would not be
/// the one the user wrote.
///
/// `read` are the fields Meridian decodes (including those it reads only to refuse them with a
/// reason); `ignored` are the fields Kubernetes defines for the type that Meridian accepts and
/// drops, so that real-world manifests (kubectl output with `status` and `managedFields`, Helm
/// output with `resources` and probes) still apply. The catalog is `ManifestFieldCatalog.swift`.
struct ManifestFields: Sendable {
    /// The type's name in the Kubernetes API reference (`Container`, `ServiceSpec`), used in errors.
    let typeName: String
    let read: Set<String>
    let ignored: Set<String>

    init(_ typeName: String, read: [String], ignored: [String] = []) {
        self.typeName = typeName
        self.read = Set(read)
        self.ignored = Set(ignored)
    }

    func contains(_ field: String) -> Bool {
        read.contains(field) || ignored.contains(field)
    }

    /// Every field Kubernetes defines for the type.
    var all: Set<String> { read.union(ignored) }

    /// The known field a misspelt `field` most likely meant: one that differs only in letter case,
    /// or else the nearest within two edits, if that is less than half the field's length.
    func suggestion(for field: String) -> String? {
        let candidates = all.sorted()
        if let sameLetters = candidates.first(where: { $0.lowercased() == field.lowercased() }) {
            return sameLetters
        }
        let tolerance = min(2, (field.count - 1) / 2)
        var best: (field: String, distance: Int)?
        for candidate in candidates {
            let distance = EditDistance.between(field, candidate, atMost: tolerance)
            if let distance, distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        return best?.field
    }
}

extension ManifestMapping {
    /// The same mapping, after checking that each of its keys is a field of `fields`. The first key
    /// that is not is the error, at its own path.
    func checked(against fields: ManifestFields) throws(FieldError) -> ManifestMapping {
        for key in mapping.keys {
            guard case let .scalar(scalar) = key else {
                throw FieldError(path, "field names must be text, got \(key.typeDescription) as a key")
            }
            let name = scalar.string
            guard fields.contains(name) else { throw Self.unknownField(name, at: path.field(name), in: fields) }
        }
        return ManifestMapping(mapping, path: path, fields: fields)
    }

    private static func unknownField(_ name: String, at path: FieldPath, in fields: ManifestFields) -> FieldError {
        let hint = fields.suggestion(for: name).map { "; did you mean \($0.debugDescription)?" } ?? ""
        return FieldError(path, "unknown field \(name.debugDescription) in \(fields.typeName)\(hint)")
    }
}

/// How many single-character edits (an insertion, a deletion, a substitution, or swapping two
/// neighbours, the commonest typo) turn one word into another, for suggesting the field a typo meant.
enum EditDistance {
    /// The distance between `first` and `second`, or nil when it is more than `limit`.
    static func between(_ first: String, _ second: String, atMost limit: Int) -> Int? {
        let source = Array(first), target = Array(second)
        guard abs(source.count - target.count) <= limit else { return nil }
        // distances[i][j]: from the first i characters of source to the first j of target.
        var distances = [[Int]](repeating: [Int](repeating: 0, count: target.count + 1), count: source.count + 1)
        for i in 0...source.count { distances[i][0] = i }
        for j in 0...target.count { distances[0][j] = j }
        for i in stride(from: 1, through: source.count, by: 1) {
            for j in stride(from: 1, through: target.count, by: 1) {
                let substitution = distances[i - 1][j - 1] + (source[i - 1] == target[j - 1] ? 0 : 1)
                var best = min(substitution, distances[i - 1][j] + 1, distances[i][j - 1] + 1)
                if i > 1, j > 1, source[i - 1] == target[j - 2], source[i - 2] == target[j - 1] {
                    best = min(best, distances[i - 2][j - 2] + 1)
                }
                distances[i][j] = best
            }
        }
        let distance = distances[source.count][target.count]
        return distance <= limit ? distance : nil
    }
}
