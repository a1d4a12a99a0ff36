import Foundation
import Testing
import Yams
@testable import MeridianCore

// MARK: - Fixtures

/// "Billion laughs": `levels` anchors, each a list of `references` aliases of the one before, the
/// first a list of `references` strings; the last stands for references^levels strings. Indented
/// by `indent` spaces, so it can sit under any field.
private func aliasBomb(levels: Int = 9, references: Int = 9, indent: Int = 2) -> String {
    let padding = String(repeating: " ", count: indent)
    var lines = [padding + "l0: &l0 [" + Array(repeating: "lol", count: references).joined(separator: ", ") + "]"]
    for level in 1..<levels {
        let aliases = Array(repeating: "*l\(level - 1)", count: references).joined(separator: ", ")
        lines.append(padding + "l\(level): &l\(level) [\(aliases)]")
    }
    return lines.joined(separator: "\n")
}

private let namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}"

private func failure(_ yaml: String) throws -> ManifestError {
    try #require(throws: ManifestError.self) { try ManifestDecoder.decode(yaml, source: "bomb.yaml") }
}

/// The nodes a file stands for, counted on its composition with placeholders.
private func expandedNodes(_ yaml: String, limit: Int = ManifestLimits.maximumNodes) throws -> Int {
    var expansion = ManifestExpansion(limit: limit)
    let parser = try Parser(yaml: ManifestExpansion.withPlaceholders(yaml).text)
    while let document = try parser.nextRoot() {
        try expansion.add(document: document)
    }
    return expansion.total
}

// MARK: - Alias bombs

@Suite("Manifest aliases")
struct ManifestAliasTests {
    @Test func aliasBombInAnIgnoredFieldIsRefused() throws {
        let error = try failure(namespace + "\nstatus:\n" + aliasBomb())
        #expect(error.documentIndex == 1)
        #expect(error.field == nil)
        #expect(error.message.hasPrefix("the manifest expands to more than 1000000 YAML nodes (passed at line "))
        #expect(error.message.contains("a file may hold at most 1000000"))
    }

    /// Yams hashes mapping keys while composing, so an alias used as a key is expanded before any
    /// decoder sees it; the bound must hold before composition.
    @Test func aliasBombAsAMappingKeyIsRefused() throws {
        let anchors = namespace + "\nstatus:\n" + aliasBomb(levels: 6)
        #expect(try ManifestDecoder.decode(anchors, source: "bomb.yaml").count == 1, "the anchors alone are within the limit")
        let error = try failure(anchors + "\n  keyed:\n    ? *l5\n    : x")
        #expect(error.message.hasPrefix("the manifest expands to more than 1000000 YAML nodes (passed at line 12, column 7)"))
    }

    @Test func aliasesAreCountedBeforeTheirKeysAreComposed() throws {
        let yaml = "a: &a [x, y]\nkeyed:\n  ? *a\n  : z"
        let shape = try #require(try Yams.compose(yaml: ManifestExpansion.withPlaceholders(yaml).text))
        let key = try #require(shape["keyed"]?.mapping?.keys.first)
        #expect(key.scalar?.string == "\u{E000}a", "the key is a placeholder, so composing it costs nothing")
    }

    @Test func documentsShareOneBudget() throws {
        let document = namespace + "\nstatus:\n" + aliasBomb(levels: 5, references: 10)
        let perDocument = try expandedNodes(document)
        #expect(perDocument < ManifestLimits.maximumNodes)
        let count = ManifestLimits.maximumNodes / perDocument + 1
        let error = try failure(Array(repeating: document, count: count).joined(separator: "\n---\n"))
        #expect(error.documentIndex == count)
    }

    @Test func aliasesWithinTheLimitResolveToTheNodesTheyName() throws {
        let yaml = """
            apiVersion: v1
            kind: Service
            metadata:
              name: web
              labels: &labels {app: web, tier: front}
              annotations: {note: "*front"}
            spec:
              selector: *labels
              ports: [{port: 80}]
            """
        let objects = try ManifestDecoder.decode(yaml, source: "app.yaml")
        guard case let .service(service)? = objects.first else {
            Issue.record("expected a Service, got \(objects.map(\.kind))")
            return
        }
        #expect(service.spec.selector == ["app": "web", "tier": "front"])
        #expect(service.metadata.annotations == ["note": "*front"])
    }

    @Test func starsOutsideAliasesKeepTheirText() throws {
        let yaml = """
            apiVersion: v1
            kind: Pod
            metadata: {name: web, annotations: {note: "*bold*", plain: a*b}}
            spec:
              containers:
              - name: app
                command: [sh, -c, 'ls *.txt *log']  # *comment
                args:
                - |
                  *block
            """
        let objects = try ManifestDecoder.decode(yaml, source: "app.yaml")
        guard case let .pod(pod)? = objects.first else {
            Issue.record("expected a Pod, got \(objects.map(\.kind))")
            return
        }
        #expect(pod.metadata.annotations == ["note": "*bold*", "plain": "a*b"])
        #expect(pod.spec.containers.first?.commandLine == ["sh", "-c", "ls *.txt *log", "*block"])
    }
}

// MARK: - Counting

@Suite("Manifest expansion count")
struct ManifestExpansionCountTests {
    @Test func everyNodeCountsAndEachAliasAsWhatItNames() throws {
        #expect(try expandedNodes("a: b") == 3)
        #expect(try expandedNodes("a: &x [1, 2]\nb: *x") == 1 + 1 + 3 + 1 + 3)
        #expect(try expandedNodes("a: &x [1, 2]\nb: [*x, *x]") == 1 + 1 + 3 + 1 + 7)
    }

    @Test func theLimitItselfIsAllowed() throws {
        let yaml = "a: &x [1, 2]\nb: [*x, *x]"
        #expect(try expandedNodes(yaml, limit: 13) == 13)
        #expect(throws: ManifestExpansion.Exceeded.self) { try expandedNodes(yaml, limit: 12) }
    }

    @Test func aLaterAnchorOfTheSameNameReplacesTheEarlier() throws {
        #expect(try expandedNodes("a: &x [1]\nb: &x [1, 2, 3]\nc: *x") == 1 + 1 + 2 + 1 + 4 + 1 + 4)
    }

    @Test func anchorsCarryIntoLaterDocumentsAsInYams() throws {
        let yaml = "a: &x [1, 2, 3]\n---\nb: *x"
        let parser = try Parser(yaml: yaml)
        _ = try parser.nextRoot()
        #expect(try parser.nextRoot()?["b"]?.sequence?.count == 3)
        #expect(try expandedNodes(yaml) == 1 + 1 + 4 + 1 + 1 + 4)
    }

    @Test func onlyAliasTokensBecomePlaceholders() {
        let (text, hasAliases) = ManifestExpansion.withPlaceholders("a: *x\nb: '* y'\nc: d*\n")
        #expect(hasAliases)
        #expect(text == "a: \u{E000}x\nb: '* y'\nc: d*\n")
        #expect(ManifestExpansion.withPlaceholders("a: '* b'").hasAliases == false)
    }
}
