import MeridianCore
import Testing

@Suite("Service mesh annotations")
struct ServiceMeshAnnotationTests {
    @Test func noAnnotationsMeansNotGlobal() throws {
        let parsed = try ServiceMeshAnnotations.parse(["app.kubernetes.io/name": "web"])
        #expect(parsed == ServiceMeshAnnotations(global: false, shared: false, affinity: .none))
        #expect(parsed == .notGlobal)
    }

    @Test(arguments: [
        (["service.cilium.io/global": "true"], ServiceMeshAnnotations(global: true, shared: true, affinity: .none)),
        (["io.cilium/global-service": "TRUE"], ServiceMeshAnnotations(global: true, shared: true, affinity: .none)),
        (["service.cilium.io/global": "True", "service.cilium.io/shared": "false"],
         ServiceMeshAnnotations(global: true, shared: false, affinity: .none)),
        (["service.cilium.io/global": "true", "io.cilium/shared-service": "False"],
         ServiceMeshAnnotations(global: true, shared: false, affinity: .none)),
        (["service.cilium.io/global": "true", "service.cilium.io/affinity": "Local"],
         ServiceMeshAnnotations(global: true, shared: true, affinity: .local)),
        (["io.cilium/global-service": "true", "io.cilium/service-affinity": "remote"],
         ServiceMeshAnnotations(global: true, shared: true, affinity: .remote)),
        (["service.cilium.io/global": "true", "service.cilium.io/affinity": "NONE"],
         ServiceMeshAnnotations(global: true, shared: true, affinity: .none)),
        (["service.cilium.io/global": "false", "service.cilium.io/shared": "true", "service.cilium.io/affinity": "local"],
         ServiceMeshAnnotations(global: false, shared: false, affinity: .none)),
        (["service.cilium.io/global": "true", "io.cilium/global-service": "TRUE"],
         ServiceMeshAnnotations(global: true, shared: true, affinity: .none)),
    ])
    func effectiveValues(annotations: [String: String], expected: ServiceMeshAnnotations) throws {
        let parsed = try ServiceMeshAnnotations.parse(annotations)
        #expect(parsed.global == expected.global)
        #expect(parsed.shared == expected.shared)
        #expect(parsed.affinity == expected.affinity)
    }

    @Test(arguments: [
        ("service.cilium.io/global", "yes", "\"true\" or \"false\""),
        ("io.cilium/global-service", "1", "\"true\" or \"false\""),
        ("service.cilium.io/shared", "", "\"true\" or \"false\""),
        ("io.cilium/shared-service", " true", "\"true\" or \"false\""),
        ("service.cilium.io/affinity", "nearest", "\"local\", \"remote\" or \"none\""),
        ("io.cilium/service-affinity", "locale", "\"local\", \"remote\" or \"none\""),
    ])
    func invalidValuesAreRejected(annotation: String, value: String, expected: String) {
        var annotations = ["service.cilium.io/global": "true"]
        annotations[annotation] = value
        #expect(throws: ServiceMeshAnnotationError(annotation: annotation, value: value, expected: expected)) {
            try ServiceMeshAnnotations.parse(annotations)
        }
    }

    @Test func invalidValueIsRejectedEvenWhenNotGlobal() {
        let error = #expect(throws: ServiceMeshAnnotationError.self) {
            try ServiceMeshAnnotations.parse(["service.cilium.io/shared": "maybe"])
        }
        #expect(error?.annotation == "service.cilium.io/shared")
    }

    @Test(arguments: [
        ("service.cilium.io/global", "true", "io.cilium/global-service", "false"),
        ("service.cilium.io/shared", "false", "io.cilium/shared-service", "true"),
        ("service.cilium.io/affinity", "local", "io.cilium/service-affinity", "remote"),
    ])
    func disagreeingSpellingsAreRejected(current: String, currentValue: String, legacy: String, legacyValue: String) {
        var annotations = ["io.cilium/global-service": "true", "service.cilium.io/global": "true"]
        annotations[current] = currentValue
        annotations[legacy] = legacyValue
        let error = #expect(throws: ServiceMeshAnnotationError.self) {
            try ServiceMeshAnnotations.parse(annotations)
        }
        #expect(error?.annotation == current)
        #expect(error?.value == currentValue)
        #expect(error?.description.contains(legacy) == true)
        #expect(error?.description.contains(legacyValue) == true)
    }

    @Test func errorDescription() {
        let error = ServiceMeshAnnotationError(
            annotation: "service.cilium.io/global", value: "yes", expected: "\"true\" or \"false\"")
        #expect(error.description == #"annotation service.cilium.io/global="yes" is invalid: expected "true" or "false""#)
    }

    @Test func initNormalisesNonGlobalSettings() {
        let settings = ServiceMeshAnnotations(global: false, shared: true, affinity: .remote)
        #expect(!settings.shared)
        #expect(settings.affinity == .none)
    }
}

/// One row of the two-cluster global × shared matrix: the annotations of the same Service in
/// C1 and C2, and whether each cluster then load-balances to remote backends too.
struct MeshMatrixCase: Sendable, CustomTestStringConvertible {
    var name: String
    var c1: [String: String]
    var c2: [String: String]
    var c1UsesRemote: Bool
    var c2UsesRemote: Bool

    var testDescription: String { name }
}

@Suite("Global service policy")
struct GlobalServicePolicyTests {
    static let global = ["service.cilium.io/global": "true"]
    static let globalNotShared = ["service.cilium.io/global": "true", "service.cilium.io/shared": "false"]
    static let local: [String: String] = [:]

    static let matrix: [MeshMatrixCase] = [
        MeshMatrixCase(name: "both global and shared", c1: global, c2: global, c1UsesRemote: true, c2UsesRemote: true),
        MeshMatrixCase(name: "C1 shared=false", c1: globalNotShared, c2: global, c1UsesRemote: true, c2UsesRemote: false),
        MeshMatrixCase(name: "neither shared", c1: globalNotShared, c2: globalNotShared, c1UsesRemote: false, c2UsesRemote: false),
        MeshMatrixCase(name: "C1 not global", c1: local, c2: global, c1UsesRemote: false, c2UsesRemote: false),
        MeshMatrixCase(name: "C2 not global", c1: global, c2: local, c1UsesRemote: false, c2UsesRemote: false),
        MeshMatrixCase(name: "legacy annotations", c1: ["io.cilium/global-service": "true"], c2: ["io.cilium/global-service": "true", "io.cilium/shared-service": "false"], c1UsesRemote: false, c2UsesRemote: true),
    ]

    /// What a cluster publishes for its Service, or nil when it publishes nothing.
    static func export(_ settings: ServiceMeshAnnotations, cluster: String, id: UInt32) -> ClusterService? {
        guard GlobalServicePolicy.exportsBackends(settings) else { return nil }
        return ClusterService(
            cluster: cluster, namespace: "shop", name: "web",
            backends: ["10.0.\(id).5": ["http": L4Addr(protocol: .tcp, port: 8080)]],
            includeExternal: settings.global, shared: settings.shared, clusterID: id)
    }

    static func usesRemote(_ local: ServiceMeshAnnotations, peerExport: ClusterService?) -> Bool {
        guard let peerExport else { return false }
        return GlobalServicePolicy.importsRemoteBackends(local: local, remote: peerExport)
    }

    @Test(arguments: matrix)
    func twoClusterMatrix(row: MeshMatrixCase) throws {
        let c1 = try ServiceMeshAnnotations.parse(row.c1)
        let c2 = try ServiceMeshAnnotations.parse(row.c2)
        let c1Export = Self.export(c1, cluster: "c1", id: 1)
        let c2Export = Self.export(c2, cluster: "c2", id: 2)
        #expect(Self.usesRemote(c1, peerExport: c2Export) == row.c1UsesRemote)
        #expect(Self.usesRemote(c2, peerExport: c1Export) == row.c2UsesRemote)
    }

    @Test(arguments: [(true, true, true), (true, false, false), (false, true, false), (false, false, false)])
    func exportsOnlyGlobalAndShared(global: Bool, shared: Bool, exported: Bool) {
        var settings = ServiceMeshAnnotations(global: global)
        settings.shared = shared
        #expect(GlobalServicePolicy.exportsBackends(settings) == exported)
    }

    @Test func importNeedsRemoteMarkedGlobalAndShared() {
        let local = ServiceMeshAnnotations(global: true)
        var remote = ClusterService(
            cluster: "c2", namespace: "shop", name: "web", includeExternal: true, shared: true, clusterID: 2)
        #expect(GlobalServicePolicy.importsRemoteBackends(local: local, remote: remote))
        remote.shared = false
        #expect(!GlobalServicePolicy.importsRemoteBackends(local: local, remote: remote))
        remote.shared = true
        remote.includeExternal = false
        #expect(!GlobalServicePolicy.importsRemoteBackends(local: local, remote: remote))
    }
}

@Suite("Backend selection by affinity")
struct BackendSelectionTests {
    static let http = ["http": L4Addr(protocol: .tcp, port: 8080)]

    static func backend(_ cluster: String, _ ip: String, local: Bool, _ state: BackendState = .active) -> MeshBackend {
        MeshBackend(
            ip: ip, ports: http, cluster: cluster, clusterID: ClusterID(cluster == "c1" ? 1 : 2), isLocal: local,
            state: state)
    }

    static let localHealthy = [backend("c1", "10.1.0.9", local: true), backend("c1", "10.1.0.10", local: true, .terminating)]
    static let localUnhealthy = [
        backend("c1", "10.1.0.11", local: true, .quarantined), backend("c1", "10.1.0.12", local: true, .maintenance),
    ]
    static let remoteHealthy = [backend("c2", "10.2.0.3", local: false)]
    static let remoteUnhealthy = [backend("c2", "10.2.0.4", local: false, .quarantined)]

    static func keys(_ result: BackendSelectionResult) -> [String] {
        result.selected.map(\.key)
    }

    @Test(arguments: [
        (BackendState.active, true), (.terminating, true), (.quarantined, false), (.maintenance, false),
    ])
    func health(state: BackendState, healthy: Bool) {
        #expect(state.isHealthy == healthy)
    }

    @Test func noneMergesHealthyLocalAndRemote() {
        let result = BackendSelection.select(
            local: Self.localHealthy + Self.localUnhealthy, remote: Self.remoteHealthy + Self.remoteUnhealthy,
            affinity: .none)
        #expect(Self.keys(result) == ["c1/10.1.0.9", "c1/10.1.0.10", "c2/10.2.0.3"])
        #expect(result.preferred.isEmpty)
    }

    @Test func localPrefersHealthyLocal() {
        let result = BackendSelection.select(
            local: Self.localUnhealthy + Self.localHealthy, remote: Self.remoteHealthy, affinity: .local)
        #expect(Self.keys(result) == ["c1/10.1.0.9", "c1/10.1.0.10"])
        #expect(result.preferred == ["c1/10.1.0.9", "c1/10.1.0.10"])
    }

    @Test func localFallsBackToRemoteWhenNoLocalIsHealthy() {
        let result = BackendSelection.select(
            local: Self.localUnhealthy, remote: Self.remoteHealthy + Self.remoteUnhealthy, affinity: .local)
        #expect(Self.keys(result) == ["c2/10.2.0.3"])
        #expect(result.preferred.isEmpty)
    }

    @Test func localWithoutLocalBackendsUsesRemote() {
        let result = BackendSelection.select(local: [], remote: Self.remoteHealthy, affinity: .local)
        #expect(Self.keys(result) == ["c2/10.2.0.3"])
    }

    @Test func remotePrefersHealthyRemote() {
        let result = BackendSelection.select(
            local: Self.localHealthy, remote: Self.remoteHealthy + Self.remoteUnhealthy, affinity: .remote)
        #expect(Self.keys(result) == ["c2/10.2.0.3"])
        #expect(result.preferred == ["c2/10.2.0.3"])
    }

    @Test func remoteFallsBackToLocalWhenNoRemoteIsHealthy() {
        let result = BackendSelection.select(
            local: Self.localHealthy + Self.localUnhealthy, remote: Self.remoteUnhealthy, affinity: .remote)
        #expect(Self.keys(result) == ["c1/10.1.0.9", "c1/10.1.0.10"])
        #expect(result.preferred.isEmpty)
    }

    @Test(arguments: ServiceAffinity.allCases)
    func allUnhealthySelectsNothing(affinity: ServiceAffinity) {
        let result = BackendSelection.select(local: Self.localUnhealthy, remote: Self.remoteUnhealthy, affinity: affinity)
        #expect(result.selected.isEmpty)
        #expect(result.preferred.isEmpty)
    }

    @Test func orderIsByClusterThenNumericIP() {
        let remote = [
            Self.backend("c3", "10.3.0.1", local: false), Self.backend("c2", "fd00::2", local: false),
            Self.backend("c2", "10.2.0.100", local: false), Self.backend("c2", "10.2.0.20", local: false),
        ]
        let result = BackendSelection.select(local: [], remote: remote, affinity: .none)
        #expect(Self.keys(result) == ["c2/10.2.0.20", "c2/10.2.0.100", "c2/fd00::2", "c3/10.3.0.1"])
        let reversed = BackendSelection.select(local: [], remote: remote.reversed(), affinity: .none)
        #expect(reversed == result)
    }

    @Test func duplicateBackendsAppearOnce() {
        let twice = Self.remoteHealthy + Self.remoteHealthy
        let result = BackendSelection.select(local: [], remote: twice, affinity: .remote)
        #expect(Self.keys(result) == ["c2/10.2.0.3"])
    }
}
