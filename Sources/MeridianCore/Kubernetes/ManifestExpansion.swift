import Yams

/// The bounds on what one manifest file may make Meridian read.
public enum ManifestLimits {
    /// The most YAML nodes read from one file, each alias counted as the nodes it repeats. A
    /// Deployment is a few hundred nodes, and a file past this could not be applied anyway: one
    /// apply is one store transaction of at most 1.5 MiB, and every JSON value takes at least two
    /// bytes of it. Reading this many takes well under a second, while an alias bomb (nine anchors,
    /// each a list of nine aliases of the one before) stands for 387 million nodes.
    public static let maximumNodes = 1_000_000
}

/// Keeps YAML aliases from making a small file enormous. Yams composes an alias as the node its
/// anchor names, shared rather than copied, so composing is cheap; but whatever walks the result
/// pays for every repetition, and so does Yams itself while composing when an alias is a mapping
/// key, because it hashes every key to find duplicates. So the expansion is measured before the
/// real composition, on a copy of the text in which every alias is a plain placeholder scalar.
///
/// Placeholders keep every line and column, and the composition of the copy has the shape of the
/// real one, with each alias where it stands and each anchor on the node it names: an alias token
/// is `*` and then letters, digits, `_` and `-`, and `*` cannot begin a plain scalar, so the copy
/// turns exactly the aliases into scalars that start with the placeholder. A `*` elsewhere, in a
/// quoted or block scalar or a comment, changes only text that is never counted; in a tag it makes
/// the copy unreadable, and the file is refused as invalid YAML (no manifest needs such a tag).
struct ManifestExpansion {
    /// Private use, so no manifest has a reason to start a scalar with it; if one does, the scalar
    /// is counted as the anchor it would name, which can only make the count larger.
    static let placeholder: Unicode.Scalar = "\u{E000}"

    /// `yaml` with every `*` that can start an alias (one before a name character) replaced by the
    /// placeholder, and whether there was one: without, the copy is the text itself.
    static func withPlaceholders(_ yaml: String) -> (text: String, hasAliases: Bool) {
        let scalars = Array(yaml.unicodeScalars)
        var text = String.UnicodeScalarView()
        var hasAliases = false
        for (index, scalar) in scalars.enumerated() {
            if scalar == "*", index + 1 < scalars.count, isAnchorCharacter(scalars[index + 1]) {
                text.append(placeholder)
                hasAliases = true
            } else {
                text.append(scalar)
            }
        }
        return (String(text), hasAliases)
    }

    /// The characters of anchor and alias names, as the YAML parser underneath Yams reads them.
    static func isAnchorCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "0"..."9", "A"..."Z", "a"..."z", "_", "-": true
        default: false
        }
    }

    let limit: Int
    /// Expanded node counts by anchor name. As in Yams, an anchor stays defined in later documents
    /// and a later anchor of the same name replaces it.
    private var anchors: [String: Int] = [:]
    /// The expanded nodes of the documents counted so far.
    private(set) var total = 0

    init(limit: Int = ManifestLimits.maximumNodes) {
        self.limit = limit
    }

    /// Adds one document, composed from the text with placeholders; throws once the file's total
    /// passes the limit, at the node that passed it. Each node is visited once, an alias adding
    /// the count of its anchor's node, so this costs no more than reading the text.
    mutating func add(document root: Node) throws(Exceeded) {
        try count(root)
    }

    private mutating func count(_ node: Node) throws(Exceeded) {
        let start = total
        switch node {
        case let .scalar(scalar):
            try tally(Self.aliasName(scalar).flatMap { anchors[$0] } ?? 1, at: node.mark)
        case let .sequence(sequence):
            try tally(1, at: node.mark)
            for element in sequence { try count(element) }
        case let .mapping(mapping):
            try tally(1, at: node.mark)
            for (key, value) in mapping {
                try count(key)
                try count(value)
            }
        case .alias:
            try tally(1, at: node.mark)
        }
        if let anchor = node.anchor { anchors[anchor.rawValue] = total - start }
    }

    private mutating func tally(_ nodes: Int, at mark: Mark?) throws(Exceeded) {
        total += nodes
        guard total <= limit else { throw Exceeded(limit: limit, mark: mark) }
    }

    private static func aliasName(_ scalar: Node.Scalar) -> String? {
        guard scalar.style == .plain, scalar.string.unicodeScalars.first == placeholder else { return nil }
        return String(String.UnicodeScalarView(scalar.string.unicodeScalars.dropFirst().prefix(while: isAnchorCharacter)))
    }

    /// A file whose expanded nodes pass the limit.
    struct Exceeded: Error {
        var limit: Int
        /// Where the node that passed it starts: an alias, most often.
        var mark: Mark?

        var message: String {
            let place = mark.map { " (passed at line \($0.line), column \($0.column))" } ?? ""
            return "the manifest expands to more than \(limit) YAML nodes\(place), counting each alias as the nodes "
                + "it repeats; a file may hold at most \(limit), which refuses alias bombs (anchors that repeat anchors)"
        }
    }
}
