import Foundation
import MeridianCore
import Testing

@Suite("Labels and label strings")
struct LabelTests {
    @Test func ciliumStringIsSortedByKey() throws {
        let set = try LabelSet([
            .k8s(LabelKeys.podNamespace, "bar"),
            .k8s("app", "baz"),
            .k8s(LabelKeys.cluster, "cluster3"),
        ])
        #expect(set.ciliumString == "k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=cluster3;k8s:io.kubernetes.pod.namespace=bar;")
        #expect(set.labels.map(\.key) == ["app", LabelKeys.cluster, LabelKeys.podNamespace])
    }

    @Test func keysCompareByteWise() throws {
        // Uppercase sorts before lowercase and '.' before letters, as in byte order.
        let set = try LabelSet([.k8s("b", "1"), .k8s("B", "2"), .k8s("a.b", "3"), .k8s("ab", "4")])
        #expect(set.labels.map(\.key) == ["B", "a.b", "ab", "b"])
    }

    @Test(arguments: [
        "k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=cluster3;k8s:io.kubernetes.pod.namespace=bar;",
        "reserved:host=;",
        "cidr:10.0.0.0/8=;k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default;",
        "k8s:expr=a=b;",
        "",
    ])
    func parseThenFormatIsIdentity(text: String) throws {
        #expect(try LabelSet(ciliumString: text).ciliumString == text)
    }

    @Test func parseSplitsSourceKeyAndValue() throws {
        let set = try LabelSet(ciliumString: "k8s:io.cilium.k8s.policy.cluster=cluster3;k8s:expr=a=b;reserved:world;")
        #expect(set.count == 3)
        #expect(set["expr"] == Label(source: "k8s", key: "expr", value: "a=b"))
        #expect(set["world"] == Label(source: "reserved", key: "world", value: ""))
        #expect(set.clusterName == "cluster3")
    }

    @Test func parseSortsUnsortedInput() throws {
        let set = try LabelSet(ciliumString: "k8s:zeta=1;k8s:alpha=2;")
        #expect(set.ciliumString == "k8s:alpha=2;k8s:zeta=1;")
    }

    @Test(arguments: [
        ("k8s:app=baz", "label string must end with ';'"),
        ("app=baz;", "missing 'source:' prefix"),
        (":app=baz;", "source is empty"),
        ("k8s:=baz;", "key is empty"),
        ("k8s:app=baz;;", "missing 'source:' prefix"),
    ])
    func parseRejectsMalformedStrings(text: String, reason: String) {
        let error = #expect(throws: LabelError.self) { try LabelSet(ciliumString: text) }
        #expect(error?.reason == reason)
    }

    @Test func duplicateKeysAreRejected() {
        let error = #expect(throws: LabelError.self) {
            try LabelSet(ciliumString: "k8s:app=a;reserved:app=b;")
        }
        #expect(error?.reason == "key \"app\" appears more than once")
    }

    @Test func setReplacesTheLabelWithTheSameKey() throws {
        var set = try LabelSet([.k8s("app", "a"), .k8s("tier", "web")])
        try set.set(.k8s("app", "b"))
        try set.set(.k8s("zone", "z1"))
        #expect(set.ciliumString == "k8s:app=b;k8s:tier=web;k8s:zone=z1;")
        #expect(throws: LabelError.self) { try set.set(.k8s("bad;key", "x")) }
    }

    @Test func labelDescriptionOmitsEmptyValue() {
        #expect(Label.k8s("app", "web").description == "k8s:app=web")
        #expect(ReservedIdentity.world.label.description == "reserved:world")
    }

    @Test func labelSetCodesAsItsLabelString() throws {
        let set = try LabelSet(ciliumString: "k8s:app=web;reserved:host=;")
        let data = try JSONEncoder().encode(["labels": set])
        let decoded = try JSONDecoder().decode([String: LabelSet].self, from: data)
        #expect(decoded["labels"] == set)
        #expect(String(decoding: data, as: UTF8.self).contains("k8s:app=web;reserved:host=;"))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([LabelSet].self, from: Data(#"["k8s:app=web"]"#.utf8))
        }
    }
}

@Suite("Pod identity labels")
struct PodIdentityLabelTests {
    @Test func matchesTheStoredFormOfAPodIdentity() {
        let set = LabelSet.podIdentityLabels(
            podLabels: ["app": "baz"], namespace: "bar", namespaceLabels: [:], serviceAccount: nil,
            cluster: "cluster3")
        #expect(set.ciliumString == "k8s:app=baz;k8s:io.cilium.k8s.policy.cluster=cluster3;k8s:io.kubernetes.pod.namespace=bar;")
    }

    @Test func includesServiceAccountAndNamespaceLabels() {
        let set = LabelSet.podIdentityLabels(
            podLabels: ["app": "web", "tier": "front"],
            namespace: "shop",
            namespaceLabels: ["kubernetes.io/metadata.name": "shop", "team": "payments"],
            serviceAccount: "web-sa",
            cluster: "c1")
        #expect(
            set.ciliumString
                == "k8s:app=web;"
                + "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop;"
                + "k8s:io.cilium.k8s.namespace.labels.team=payments;"
                + "k8s:io.cilium.k8s.policy.cluster=c1;"
                + "k8s:io.cilium.k8s.policy.serviceaccount=web-sa;"
                + "k8s:io.kubernetes.pod.namespace=shop;"
                + "k8s:tier=front;")
    }

    @Test func sameWorkloadInTwoClustersGivesTwoIdentities() {
        let inC1 = LabelSet.podIdentityLabels(
            podLabels: ["app": "web"], namespace: "default", namespaceLabels: [:], serviceAccount: "default",
            cluster: "c1")
        let inC2 = LabelSet.podIdentityLabels(
            podLabels: ["app": "web"], namespace: "default", namespaceLabels: [:], serviceAccount: "default",
            cluster: "c2")
        #expect(inC1 != inC2)
        #expect(inC1.clusterName == "c1")
        #expect(inC2.clusterName == "c2")
    }

    @Test func podLabelsCannotImpersonateDerivedLabels() {
        let set = LabelSet.podIdentityLabels(
            podLabels: [
                LabelKeys.cluster: "other",
                LabelKeys.podNamespace: "kube-system",
                LabelKeys.serviceAccount: "admin",
                LabelKeys.namespaceLabelsPrefix + "team": "root",
                "app": "web",
            ],
            namespace: "shop", namespaceLabels: [:], serviceAccount: nil, cluster: "c1")
        #expect(set.ciliumString == "k8s:app=web;k8s:io.cilium.k8s.policy.cluster=c1;k8s:io.kubernetes.pod.namespace=shop;")
    }

    @Test func labelsThatCannotBeWrittenAreLeftOut() throws {
        let set = LabelSet.podIdentityLabels(
            podLabels: ["a=b": "x", "ok": "v;w", "": "empty", "app": "web"],
            namespace: "shop", namespaceLabels: [:], serviceAccount: "", cluster: "c1")
        #expect(set.labels.map(\.key) == ["app", LabelKeys.cluster, LabelKeys.podNamespace])
        #expect(try LabelSet(ciliumString: set.ciliumString) == set)
    }
}
