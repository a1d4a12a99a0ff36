import Yams

/// Turns the multi-document YAML that users pass to `meridian apply -f` into typed,
/// validated objects. A file is accepted whole or not at all, so a bad document never
/// leaves a half-applied change behind.
public enum ManifestDecoder {
    /// The objects of every non-empty document, in file order. `source` names the file in
    /// errors; the first problem found is thrown and nothing is returned.
    public static func decode(_ yaml: String, source: String) throws(ManifestError) -> [KubernetesObject] {
        let documents = try parseDocuments(yaml, source: source)
        var objects: [KubernetesObject] = []
        objects.reserveCapacity(documents.count)
        for (offset, document) in documents.enumerated() {
            objects.append(try decodeDocument(document, index: offset + 1, source: source))
        }
        return objects
    }

    /// Composes the documents only once their expansion through aliases is known to be within
    /// `ManifestLimits.maximumNodes` (see `ManifestExpansion`).
    private static func parseDocuments(_ yaml: String, source: String) throws(ManifestError) -> [Node] {
        let (placeholderText, hasAliases) = ManifestExpansion.withPlaceholders(yaml)
        var expansion = ManifestExpansion()
        let shapes = try composeDocuments(placeholderText, source: source) { document, index throws(ManifestError) in
            do throws(ManifestExpansion.Exceeded) {
                try expansion.add(document: document)
            } catch {
                throw ManifestError(source: source, documentIndex: index, message: error.message)
            }
        }
        return hasAliases ? try composeDocuments(yaml, source: source) : shapes
    }

    /// The non-empty documents; `inspect` sees each (with its 1-based index) while the parser
    /// that composed it is alive, as Yams keeps the anchors of its nodes only that long.
    private static func composeDocuments(
        _ yaml: String,
        source: String,
        inspecting inspect: (Node, Int) throws(ManifestError) -> Void = { _, _ in }
    ) throws(ManifestError) -> [Node] {
        var documents: [Node] = []
        let parser: Parser
        do {
            parser = try Parser(yaml: yaml, encoding: .utf8)
        } catch {
            throw ManifestError(source: source, documentIndex: 1, message: syntaxErrorMessage(error))
        }
        while true {
            let root: Node?
            do {
                root = try parser.nextRoot()
            } catch {
                throw ManifestError(source: source, documentIndex: documents.count + 1, message: syntaxErrorMessage(error))
            }
            guard let root else { return documents }
            if isEmptyDocument(root) { continue }
            documents.append(root)
            try inspect(root, documents.count)
        }
    }

    private static func isEmptyDocument(_ root: Node) -> Bool {
        if case .scalar = root { return root.tagName == .null }
        return false
    }

    private static func syntaxErrorMessage(_ error: any Error) -> String {
        guard let yamlError = error as? YamlError else { return "invalid YAML: \(error)" }
        switch yamlError {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            let detail = context.map { "\(problem) (\($0.text) at line \($0.mark.line), column \($0.mark.column))" }
            return "invalid YAML at line \(mark.line), column \(mark.column): \(detail ?? problem)"
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map(\.debugDescription).joined(separator: ", ")
            return "invalid YAML near line \(context.mark.line), column \(context.mark.column): duplicate key \(keys)"
        case let .reader(problem, _, _, _):
            return "invalid YAML: \(problem)"
        default:
            return "invalid YAML: \(yamlError)"
        }
    }

    private static func decodeDocument(_ root: Node, index: Int, source: String) throws(ManifestError) -> KubernetesObject {
        do throws(FieldError) {
            return try decodeObject(ManifestValue(root, path: FieldPath()))
        } catch {
            throw documentError(error, root: root, index: index, source: source)
        }
    }

    private static func documentError(_ error: FieldError, root: Node, index: Int, source: String) -> ManifestError {
        ManifestError(
            source: source,
            documentIndex: index,
            kind: root["kind"]?.plainString,
            name: root["metadata"]?["name"]?.plainString,
            field: error.path.isEmpty ? nil : error.path.description,
            message: error.message
        )
    }

    /// Without a `kind`, a misspelt one (`Kind:`) is the likelier mistake, so the fields of any
    /// kind are checked first; with one, the fields of that kind.
    private static func decodeObject(_ value: ManifestValue) throws(FieldError) -> KubernetesObject {
        let untyped = try value.anyMapping()
        if untyped.optional("kind") == nil { _ = try untyped.checked(against: .anyObject) }
        let kind = try resourceKind(of: untyped)
        let object = try untyped.checked(against: .object(kind))
        try checkAPIVersion(of: object, kind: kind)
        let decoded: KubernetesObject = switch kind {
        case .namespace: .namespace(try Namespace(manifest: object))
        case .service: .service(try Service(manifest: object))
        case .pod: .pod(try Pod(manifest: object))
        case .deployment: .deployment(try Deployment(manifest: object))
        case .networkPolicy: .networkPolicy(try NetworkPolicy(manifest: object))
        case .ciliumNetworkPolicy: .ciliumNetworkPolicy(try CiliumNetworkPolicy(manifest: object))
        case .ciliumClusterwideNetworkPolicy:
            .ciliumClusterwideNetworkPolicy(try CiliumClusterwideNetworkPolicy(manifest: object))
        case .serviceExport: .serviceExport(try ServiceExport(manifest: object))
        case .clusterProperty: .clusterProperty(try ClusterProperty(manifest: object))
        case .serviceImport:
            throw FieldError(object.path.field("kind"),
                             "ServiceImport objects are made by the control plane from the clusters' ServiceExports; apply a ServiceExport instead")
        }
        try decoded.validate()
        return decoded
    }

    private static func resourceKind(of object: ManifestMapping) throws(FieldError) -> ResourceKind {
        let supported = "supported kinds: " + ResourceKind.allCases.filter { $0 != .serviceImport }.map(\.rawValue).joined(separator: ", ")
        guard let value = object.optional("kind") else {
            throw FieldError(object.path.field("kind"), "is required; \(supported)")
        }
        let text = try value.string()
        if let kind = ResourceKind(rawValue: text) { return kind }
        if let caseInsensitive = ResourceKind.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) {
            throw FieldError(value.path, "unsupported kind \(text.debugDescription); did you mean \(caseInsensitive.rawValue)?")
        }
        throw FieldError(value.path, "unsupported kind \(text.debugDescription); \(supported)")
    }

    private static func checkAPIVersion(of object: ManifestMapping, kind: ResourceKind) throws(FieldError) {
        let expected = kind.apiVersion.debugDescription
        guard let value = object.optional("apiVersion") else {
            throw FieldError(object.path.field("apiVersion"), "is required; \(kind.rawValue) uses \(expected)")
        }
        let text = try value.string()
        guard text == kind.apiVersion else {
            throw FieldError(value.path, "\(kind.rawValue) must use apiVersion \(expected), got \(text.debugDescription)")
        }
    }
}

/// Explains why a manifest file was rejected, precisely enough for a user to find and
/// fix the offending line: which file, which document, which object and which field.
public struct ManifestError: Error, Sendable, Hashable, CustomStringConvertible {
    public var source: String
    /// 1-based position among the file's non-empty documents.
    public var documentIndex: Int
    public var kind: String?
    public var name: String?
    /// A path such as `spec.ports[1].port` or `metadata.annotations["service.cilium.io/affinity"]`.
    public var field: String?
    public var message: String

    public init(
        source: String,
        documentIndex: Int,
        kind: String? = nil,
        name: String? = nil,
        field: String? = nil,
        message: String
    ) {
        self.source = source
        self.documentIndex = documentIndex
        self.kind = kind
        self.name = name
        self.field = field
        self.message = message
    }

    public var description: String {
        let location = "\(source): document \(documentIndex)\(objectLabel.map { " (\($0))" } ?? "")"
        let subject = field.map { "\($0): " } ?? ""
        return "\(location): \(subject)\(message)"
    }

    private var objectLabel: String? {
        switch (kind, name) {
        case let (kind?, name?): "\(kind) \(name.debugDescription)"
        case let (kind?, nil): kind
        case let (nil, name?): name.debugDescription
        case (nil, nil): nil
        }
    }
}

// MARK: - Field paths and errors

/// Where a value sits inside one object, rendered the way users write it:
/// `spec.ports[0].port`, `metadata.labels["app"]`.
struct FieldPath: Hashable, Sendable, CustomStringConvertible {
    enum Component: Hashable, Sendable {
        case field(String)
        case index(Int)
        case key(String)
    }

    private(set) var components: [Component] = []

    var isEmpty: Bool { components.isEmpty }

    func field(_ name: String) -> FieldPath { appending(.field(name)) }
    func index(_ position: Int) -> FieldPath { appending(.index(position)) }
    func key(_ key: String) -> FieldPath { appending(.key(key)) }

    private func appending(_ component: Component) -> FieldPath {
        var copy = self
        copy.components.append(component)
        return copy
    }

    var description: String {
        var text = ""
        for component in components {
            switch component {
            case let .field(name): text += text.isEmpty ? name : ".\(name)"
            case let .index(position): text += "[\(position)]"
            case let .key(key): text += "[\(key.debugDescription)]"
            }
        }
        return text
    }
}

/// A problem with one field of one object; the decoder adds the file and document.
struct FieldError: Error, Hashable, Sendable {
    var path: FieldPath
    var message: String

    init(_ path: FieldPath, _ message: String) {
        self.path = path
        self.message = message
    }
}

// MARK: - Typed reading of YAML nodes

/// A YAML node together with its path, so every type mismatch can name the field.
struct ManifestValue {
    let node: Node
    let path: FieldPath

    init(_ node: Node, path: FieldPath) {
        self.node = node
        self.path = path
    }

    var isNull: Bool {
        if case .scalar = node { return node.tagName == .null }
        return false
    }

    /// An object of a Kubernetes type: every key must be one of `fields`.
    func mapping(_ fields: ManifestFields) throws(FieldError) -> ManifestMapping {
        try anyMapping().checked(against: fields)
    }

    /// A mapping whatever its keys, for `map[string]string` fields and a document before its kind
    /// is known; objects go through `mapping(_:)`.
    fileprivate func anyMapping() throws(FieldError) -> ManifestMapping {
        guard case let .mapping(mapping) = node else { throw mismatch(expected: "a mapping") }
        if mapping.keys.contains(where: { $0.tagName == .merge }) {
            throw FieldError(path, "YAML merge keys (<<) are not supported; write the fields out in full")
        }
        return ManifestMapping(mapping, path: path)
    }

    func list() throws(FieldError) -> [ManifestValue] {
        guard case let .sequence(sequence) = node else { throw mismatch(expected: "a list") }
        return sequence.enumerated().map { ManifestValue($0.element, path: path.index($0.offset)) }
    }

    func string() throws(FieldError) -> String {
        guard let text = node.plainString else {
            throw mismatch(expected: "a string", hint: quotingHint)
        }
        return text
    }

    func integer() throws(FieldError) -> Int {
        guard case .scalar = node, node.tagName == .int else { throw mismatch(expected: "an integer") }
        guard let number = node.int else {
            throw FieldError(path, "integer \(node.scalarText) is out of range")
        }
        return number
    }

    func intOrString() throws(FieldError) -> IntOrString {
        if case .scalar = node, node.tagName == .int { return .int(try integer()) }
        if let text = node.plainString { return .string(text) }
        throw mismatch(expected: "an integer or a string")
    }

    func stringList() throws(FieldError) -> [String] {
        var strings: [String] = []
        for element in try list() { strings.append(try element.string()) }
        return strings
    }

    /// A `map[string]string` field; a null value reads as the empty string, as in Kubernetes.
    func stringMap() throws(FieldError) -> [String: String] {
        var result: [String: String] = [:]
        for (key, value) in try anyMapping().entries {
            result[key] = try value.isNull ? "" : value.string()
        }
        return result
    }

    func enumeration<Choice>(_: Choice.Type) throws(FieldError) -> Choice
    where Choice: RawRepresentable & CaseIterable, Choice.RawValue == String {
        let text = try string()
        guard let choice = Choice(rawValue: text) else {
            let choices = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw FieldError(path, "expected one of \(choices), got \(text.debugDescription)")
        }
        return choice
    }

    private var quotingHint: String? {
        guard case .scalar = node, node.tagName != .null else { return nil }
        return "quote it to use it as text: \(node.scalarText.debugDescription)"
    }

    private func mismatch(expected: String, hint: String? = nil) -> FieldError {
        FieldError(path, "expected \(expected), got \(node.typeDescription)" + (hint.map { "; \($0)" } ?? ""))
    }
}

/// A YAML mapping with its path; absent keys and explicit nulls both read as missing.
struct ManifestMapping {
    let mapping: Node.Mapping
    let path: FieldPath
    /// The fields its keys were checked against; nil for a map with keys of the user's choosing.
    let fields: ManifestFields?

    init(_ mapping: Node.Mapping, path: FieldPath, fields: ManifestFields? = nil) {
        self.mapping = mapping
        self.path = path
        self.fields = fields
    }

    func optional(_ key: String) -> ManifestValue? {
        assert(fields.map { $0.read.contains(key) } ?? true,
               "\(key) is read, so it belongs among the read fields of \(fields?.typeName ?? "its type")")
        guard let pair = mapping.first(where: { $0.key.scalarText == key }) else { return nil }
        let value = ManifestValue(pair.value, path: path.field(key))
        return value.isNull ? nil : value
    }

    func required(_ key: String) throws(FieldError) -> ManifestValue {
        guard let value = optional(key) else { throw FieldError(path.field(key), "is required") }
        return value
    }

    /// Entries keyed by their text, with paths in `["key"]` form for map-valued fields.
    var entries: [(key: String, value: ManifestValue)] {
        mapping.map { pair in
            let key = pair.key.scalarText
            return (key, ManifestValue(pair.value, path: path.key(key)))
        }
    }
}

extension Node {
    /// The resolved YAML type of the node (`str`, `int`, `null`, ...).
    fileprivate var tagName: Tag.Name { Tag.Name(rawValue: tag.rawValue) }

    /// The node's text when YAML typed it as a string (or a timestamp, which Kubernetes keeps as text).
    fileprivate var plainString: String? {
        guard case let .scalar(scalar) = self else { return nil }
        return tagName == .str || tagName == .timestamp ? scalar.string : nil
    }

    fileprivate var scalarText: String {
        if case let .scalar(scalar) = self { return scalar.string }
        return ""
    }

    var typeDescription: String {
        switch self {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case let .scalar(scalar):
            switch tagName {
            case .str: return "string \(scalar.string.debugDescription)"
            case .int: return "integer \(scalar.string)"
            case .float: return "number \(scalar.string)"
            case .bool: return "boolean \(scalar.string)"
            case .null: return "null"
            default: return "\(scalar.string.debugDescription)"
            }
        }
    }
}
