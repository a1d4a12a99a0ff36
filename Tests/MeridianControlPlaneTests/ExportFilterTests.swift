import Foundation
import MeridianEtcdAPI
import MeridianStore
import MeridianTestSupport
import Testing
@testable import MeridianControlPlane

/// The export scope's filter as the mesh endpoint applies it: which records pass, range pages
/// filtered without leaving a reader stuck, watch events of records not exported turned into
/// deletions.
@Suite("Export filter")
struct ExportFilterTests {
    let filter = ExportFilter(globalNamespaces: ["alpha"])

    static func endpoint(_ ip: String, namespace: String) -> (String, Data) {
        ("cilium/state/ip/v1/default/\(ip)", Data(StateFixtures.endpoint(ip: ip, identity: 131_073, hostIP: "172.30.2.1", namespace: namespace, pod: "p").utf8))
    }

    @Test("endpoints and identities of global namespaces pass, of others not; records without a namespace and other kinds pass")
    func admits() {
        for (namespace, expected) in [("alpha", true), ("beta", false)] {
            let (key, value) = Self.endpoint("10.2.1.5", namespace: namespace)
            #expect(filter.admits(key: key, value: value) == expected)
            let labels = Data(StateFixtures.identityLabels(app: "x", namespace: namespace, cluster: "c2").utf8)
            #expect(filter.admits(key: "cilium/state/identities/v1/id/131073", value: labels) == expected)
        }
        #expect(filter.admits(key: "cilium/state/ip/v1/default/10.2.1.6", value: Data(StateFixtures.endpoint(ip: "10.2.1.6", identity: 6, hostIP: "172.30.2.1", namespace: "", pod: "").utf8)))
        #expect(!filter.admits(key: "cilium/state/ip/v1/default/10.2.1.7", value: Data("not json".utf8)))
        // A namespace label that merely ends like the pod-namespace label is not it.
        #expect(!filter.admits(key: "cilium/state/identities/v1/id/131074",
                               value: Data("k8s:io.cilium.k8s.namespace.labels.k8s:io.kubernetes.pod.namespace=alpha;k8s:io.kubernetes.pod.namespace=beta;".utf8)))
        #expect(filter.admits(key: "cilium/state/nodes/v1/c2/node1", value: Data("{}".utf8)))
        #expect(ExportFilter.mayJudge(key: Data("cilium/state/ip/v1/default/".utf8), rangeEnd: Data("cilium/state/ip/v1/default0".utf8)))
        #expect(ExportFilter.mayJudge(key: Data("cilium/state/".utf8), rangeEnd: Data([0])))
        #expect(!ExportFilter.mayJudge(key: Data("cilium/state/nodes/v1/c2/".utf8), rangeEnd: Data("cilium/state/nodes/v1/c20".utf8)))
        #expect(!ExportFilter.mayJudge(key: Data("cilium/.heartbeat".utf8), rangeEnd: Data()))
    }

    static func kv(_ record: (String, Data)) -> Mvccpb_KeyValue {
        var kv = Mvccpb_KeyValue()
        kv.key = Data(record.0.utf8)
        kv.value = record.1
        return kv
    }

    @Test("a page filtered to nothing while more follow is read on at the first page's revision; keys-only and count-only are served from full reads")
    func rangePages() async throws {
        let pages: [[(String, Data)]] = [
            [Self.endpoint("10.2.1.1", namespace: "beta"), Self.endpoint("10.2.1.2", namespace: "beta")],
            [Self.endpoint("10.2.1.3", namespace: "beta"), Self.endpoint("10.2.1.4", namespace: "alpha")],
            [Self.endpoint("10.2.1.5", namespace: "alpha")],
        ]
        let requests = Shared([Etcdserverpb_RangeRequest]())
        let fetch = { (request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse in
            let index = requests.withLock { seen in
                seen.append(request)
                return seen.count - 1
            }
            var response = Etcdserverpb_RangeResponse()
            response.header.revision = 40 + Int64(index)
            response.kvs = pages[index].map(Self.kv)
            response.more = index < pages.count - 1
            return response
        }
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("cilium/state/ip/v1/default/".utf8)
        request.rangeEnd = Data("cilium/state/ip/v1/default0".utf8)
        request.limit = 2
        request.keysOnly = true
        let response = try await filter.range(request, fetch: fetch)
        #expect(response.kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["cilium/state/ip/v1/default/10.2.1.4"])
        #expect(response.kvs.allSatisfy { $0.value.isEmpty }, "keys only")
        #expect(response.more && response.count == 2)
        #expect(response.header.revision == 40, "the first page's header")
        let sent = requests.value
        #expect(sent.count == 2 && !sent[0].keysOnly)
        #expect(sent[1].revision == 40 && sent[1].key == Data("cilium/state/ip/v1/default/10.2.1.2".utf8) + Data([0]))
    }

    @Test("a watch event of a record not exported becomes the deletion of its key; a previous value not exported is dropped")
    func watchEvents() {
        var response = Etcdserverpb_WatchResponse()
        var hidden = Mvccpb_Event()
        hidden.type = .put
        hidden.kv = Self.kv(Self.endpoint("10.2.1.1", namespace: "beta"))
        hidden.kv.createRevision = 5
        var shown = Mvccpb_Event()
        shown.type = .put
        shown.kv = Self.kv(Self.endpoint("10.2.1.2", namespace: "alpha"))
        shown.prevKv = Self.kv(Self.endpoint("10.2.1.2", namespace: "beta"))
        response.events = [hidden, shown]
        let rewritten = filter.rewrite(response)
        #expect(rewritten.events[0].type == .delete && rewritten.events[0].kv.value.isEmpty && rewritten.events[0].kv.createRevision == 0)
        #expect(rewritten.events[0].kv.key == hidden.kv.key)
        #expect(rewritten.events[1] == { var event = shown; event.clearPrevKv(); return event }())
    }
}
