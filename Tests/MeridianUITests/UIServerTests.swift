import Foundation
import Logging
import MeridianFlows
@testable import MeridianUI
import NIOHTTP1
import Testing

/// The UI's server without a browser: its routes, and the flow filters its query takes.
@Suite("UI server")
struct UIServerTests {
    static let server = UIServer(host: "127.0.0.1", port: 0, map: { ServiceMap(clusters: [ServiceMap.Cluster(name: "cluster1")]) },
                                 flows: { request in
                                     request.filter.verdict == [.dropped] ? [] : [ObserverResponse(lostEvents: LostEvents(source: LostEvents.ringBuffer, numEventsLost: 1), nodeName: "node1", time: Date())]
                                 }, logger: Logger(label: "test"))

    static func get(_ uri: String, method: HTTPMethod = .GET) async -> (HTTPResponseStatus, String) {
        let (status, _, body) = await server.answer(HTTPRequestHead(version: .http1_1, method: method, uri: uri))
        return (status, String(decoding: body, as: UTF8.self))
    }

    @Test("the page, its assets and the map are served; other paths are 404 and other methods 405")
    func routes() async {
        let page = await Self.get("/")
        #expect(page.0 == .ok && page.1.contains(#"<svg id="map""#) && page.1.contains(#"<script src="/app.js">"#))
        let script = await Self.get("/app.js").1
        #expect(!page.1.contains(#"src="http"#) && !page.1.contains(#"href="http"#) && !script.contains(#"fetch("http"#),
                "the page loads nothing from elsewhere")
        #expect(await Self.get("/app.js").0 == .ok)
        #expect(await Self.get("/app.css").0 == .ok)
        #expect(await Self.get("/api/map").1.contains(#""name":"cluster1""#))
        #expect(await Self.get("/etc/passwd").0 == .notFound)
        #expect(await Self.get("/", method: .POST).0 == .methodNotAllowed)
    }

    @Test("flow filters come from the query; a value that does not parse is refused with the parameter's name")
    func flowQuery() async throws {
        let request = try UIServer.flowRequest([
            URLQueryItem(name: "from-pod", value: "default/client"), URLQueryItem(name: "verdict", value: "dropped"),
            URLQueryItem(name: "port", value: "8080"), URLQueryItem(name: "type", value: "policy-verdict"), URLQueryItem(name: "last", value: "5"),
        ])
        #expect(request.filter.fromPod == ["default/client"] && request.filter.verdict == [.dropped] && request.filter.port == [8080])
        #expect(request.filter.type == [.policyVerdict] && request.last == 5)
        #expect(await Self.get("/api/flows?verdict=DROPPED").1 == "[]")
        #expect(await Self.get("/api/flows").1.contains("lost_events"))
        let refused = await Self.get("/api/flows?port=http")
        #expect(refused.0 == .badRequest && refused.1.contains("port"))
        #expect(await Self.get("/api/flows?last=999999").0 == .badRequest)
        #expect(await Self.get("/api/flows?protocol=gre").0 == .badRequest)
    }
}
