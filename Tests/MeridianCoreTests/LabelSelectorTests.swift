import Testing
@testable import MeridianCore
import Foundation

/// One row of the operator semantics table.
struct SelectorOperatorCase: Sendable, CustomTestStringConvertible {
    var requirement: LabelSelectorRequirement
    var labels: [String: String]
    var expected: Bool

    var testDescription: String {
        "\(requirement.key) \(requirement.operator.rawValue) \(requirement.values) on \(labels) -> \(expected)"
    }
}

private func requirement(_ key: String, _ op: LabelSelectorRequirement.Operator, _ values: [String] = []) -> LabelSelectorRequirement {
    LabelSelectorRequirement(key: key, operator: op, values: values)
}

@Suite("Label selector matching")
struct LabelSelectorMatchingTests {
    static let operatorTable: [SelectorOperatorCase] = [
        SelectorOperatorCase(requirement: requirement("tier", .in, ["web", "api"]), labels: ["tier": "web"], expected: true),
        SelectorOperatorCase(requirement: requirement("tier", .in, ["web", "api"]), labels: ["tier": "db"], expected: false),
        SelectorOperatorCase(requirement: requirement("tier", .in, ["web", "api"]), labels: ["app": "web"], expected: false),
        SelectorOperatorCase(requirement: requirement("tier", .in, ["", "web"]), labels: ["tier": ""], expected: true),
        SelectorOperatorCase(requirement: requirement("tier", .notIn, ["web", "api"]), labels: ["tier": "web"], expected: false),
        SelectorOperatorCase(requirement: requirement("tier", .notIn, ["web", "api"]), labels: ["tier": "db"], expected: true),
        SelectorOperatorCase(requirement: requirement("tier", .notIn, ["web", "api"]), labels: [:], expected: true),
        SelectorOperatorCase(requirement: requirement("tier", .notIn, ["web"]), labels: ["app": "web"], expected: true),
        SelectorOperatorCase(requirement: requirement("canary", .exists), labels: ["canary": "yes"], expected: true),
        SelectorOperatorCase(requirement: requirement("canary", .exists), labels: ["canary": ""], expected: true),
        SelectorOperatorCase(requirement: requirement("canary", .exists), labels: ["app": "web"], expected: false),
        SelectorOperatorCase(requirement: requirement("canary", .doesNotExist), labels: ["canary": ""], expected: false),
        SelectorOperatorCase(requirement: requirement("canary", .doesNotExist), labels: ["app": "web"], expected: true),
        SelectorOperatorCase(requirement: requirement("canary", .doesNotExist), labels: [:], expected: true),
    ]

    @Test(arguments: operatorTable)
    func operatorSemantics(row: SelectorOperatorCase) {
        #expect(row.requirement.matches(row.labels) == row.expected)
        #expect(LabelSelector(matchExpressions: [row.requirement]).matches(row.labels) == row.expected)
    }

    @Test(arguments: [[:], ["app": "web"], ["app": "web", "tier": "db"]] as [[String: String]])
    func emptySelectorMatchesEverything(labels: [String: String]) {
        let selector = LabelSelector()
        #expect(selector.isEmpty)
        #expect(selector.matches(labels))
    }

    @Test func matchLabelsNeedsEveryPairExactly() {
        let selector = LabelSelector(matchLabels: ["app": "web", "tier": "front"])
        #expect(selector.matches(["app": "web", "tier": "front", "extra": "x"]))
        #expect(!selector.matches(["app": "web"]))
        #expect(!selector.matches(["app": "web", "tier": "back"]))
        #expect(!selector.matches(["app": "Web", "tier": "front"]))
    }

    @Test func matchLabelsAndExpressionsMustAllHold() {
        let selector = LabelSelector(
            matchLabels: ["app": "web"],
            matchExpressions: [requirement("env", .in, ["prod", "staging"]), requirement("canary", .doesNotExist)]
        )
        #expect(selector.matches(["app": "web", "env": "prod"]))
        #expect(!selector.matches(["app": "web", "env": "prod", "canary": "true"]))
        #expect(!selector.matches(["app": "web", "env": "dev"]))
        #expect(!selector.matches(["app": "api", "env": "prod"]))
    }

    @Test func operatorsUseKubernetesSpelling() {
        #expect(LabelSelectorRequirement.Operator.allCases.map(\.rawValue) == ["In", "NotIn", "Exists", "DoesNotExist"])
    }
}

@Suite("Label selector validation")
struct LabelSelectorValidationTests {
    @Test func wellFormedSelectorPasses() throws {
        let selector = LabelSelector(
            matchLabels: ["app.kubernetes.io/name": "web", "tier": ""],
            matchExpressions: [
                requirement("env", .in, ["prod"]),
                requirement("env", .notIn, ["dev", "test"]),
                requirement("canary", .exists),
                requirement("example.com/legacy", .doesNotExist),
            ]
        )
        try selector.validate()
    }

    @Test(arguments: [
        (LabelSelectorRequirement.Operator.in, [String](), "operator In needs at least one value"),
        (.notIn, [], "operator NotIn needs at least one value"),
        (.exists, ["x"], "operator Exists takes no values, got 1"),
        (.doesNotExist, ["x", "y"], "operator DoesNotExist takes no values, got 2"),
    ])
    func operatorValueCountIsChecked(op: LabelSelectorRequirement.Operator, values: [String], message: String) throws {
        let selector = LabelSelector(matchExpressions: [requirement("ok", .exists), requirement("tier", op, values)])
        let error = try #require(throws: LabelSelectorError.self) { try selector.validate() }
        #expect(error.field == "matchExpressions[1].values")
        #expect(error.message == message)
    }

    @Test func expressionKeyMustBeALabelKey() throws {
        let selector = LabelSelector(matchExpressions: [requirement("bad key", .exists)])
        let error = try #require(throws: LabelSelectorError.self) { try selector.validate() }
        #expect(error.field == "matchExpressions[0].key")
        #expect(error.message.hasPrefix("invalid label key"))
    }

    @Test func expressionValuesMustBeLabelValues() throws {
        let selector = LabelSelector(matchExpressions: [requirement("tier", .in, ["web", "not ok"])])
        let error = try #require(throws: LabelSelectorError.self) { try selector.validate() }
        #expect(error.field == "matchExpressions[0].values[1]")
        #expect(error.description == "matchExpressions[0].values[1]: invalid label value \"not ok\": "
            + "value must consist of letters, digits, '-', '_' and '.', starting and ending with a letter or digit")
    }

    @Test func matchLabelsAreChecked() throws {
        let badValue = LabelSelector(matchLabels: ["app": String(repeating: "v", count: 64)])
        let valueError = try #require(throws: LabelSelectorError.self) { try badValue.validate() }
        #expect(valueError.field == "matchLabels[\"app\"]")
        #expect(valueError.message.contains("at most 63"))

        let badKey = LabelSelector(matchLabels: ["-app": "web"])
        let keyError = try #require(throws: LabelSelectorError.self) { try badKey.validate() }
        #expect(keyError.field == "matchLabels[\"-app\"]")
        #expect(keyError.message.hasPrefix("invalid label key"))
    }
}

@Suite("Label selector JSON")
struct LabelSelectorCodingTests {
    @Test func decodesKubernetesJSONWithDefaults() throws {
        let json = #"{"matchExpressions":[{"key":"tier","operator":"In","values":["web"]},{"key":"canary","operator":"DoesNotExist"}]}"#
        let selector = try JSONDecoder().decode(LabelSelector.self, from: Data(json.utf8))
        #expect(selector.matchLabels.isEmpty)
        #expect(selector.matchExpressions == [requirement("tier", .in, ["web"]), requirement("canary", .doesNotExist)])
    }

    @Test func roundTripsThroughJSON() throws {
        let selector = LabelSelector(
            matchLabels: ["app": "web"],
            matchExpressions: [requirement("tier", .notIn, ["db"]), requirement("canary", .exists)]
        )
        let restored = try JSONDecoder().decode(LabelSelector.self, from: JSONEncoder().encode(selector))
        #expect(restored == selector)
    }

    @Test func unknownOperatorFailsToDecode() {
        let json = #"{"matchExpressions":[{"key":"tier","operator":"Like","values":["w*"]}]}"#
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(LabelSelector.self, from: Data(json.utf8))
        }
    }
}
