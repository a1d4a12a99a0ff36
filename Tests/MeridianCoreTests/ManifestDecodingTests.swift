import Testing
@testable import MeridianCore
import Foundation

// MARK: - Fixtures

private let seedManifest = """
apiVersion: v1
kind: Service
metadata:
  name: my-backend-service
  annotations:
    io.cilium/global-service: "true"
spec:
  selector:
    app: backend
  ports:
    - port: 80
      targetPort: 8080
"""

private func indented(_ block: String) -> String {
    block.split(separator: "\n", omittingEmptySubsequences: false)
        .map { $0.isEmpty ? "" : "  \($0)" }
        .joined(separator: "\n")
}

/// A Service document whose `metadata` and `spec` bodies are given unindented.
private func serviceManifest(metadata: String = "name: web", spec: String) -> String {
    """
    apiVersion: v1
    kind: Service
    metadata:
    \(indented(metadata))
    spec:
    \(indented(spec))
    """
}

private func serviceWithPort(_ portLines: String) -> String {
    serviceManifest(spec: "ports:\n  - " + portLines.replacingOccurrences(of: "\n", with: "\n    "))
}

private func namespaceManifest(_ name: String) -> String {
    """
    apiVersion: v1
    kind: Namespace
    metadata:
      name: \(name)
    """
}

private func decodeFailure(_ yaml: String, source: String = "test.yaml") throws -> ManifestError {
    try #require(throws: ManifestError.self) {
        try ManifestDecoder.decode(yaml, source: source)
    }
}

private func decodeSingleService(_ yaml: String) throws -> Service {
    let objects = try ManifestDecoder.decode(yaml, source: "test.yaml")
    try #require(objects.count == 1)
    guard case let .service(service) = objects[0] else {
        Issue.record("expected a Service, got \(objects[0].kind)")
        throw CancellationError()
    }
    return service
}

// MARK: - Documents and files

@Suite("Manifest documents")
struct ManifestDocumentTests {
    @Test func seedManifestDecodesAsIs() throws {
        let service = try decodeSingleService(seedManifest)
        #expect(service.apiVersion == "v1")
        #expect(service.kind == "Service")
        #expect(service.metadata.name == "my-backend-service")
        #expect(service.metadata.namespace == nil)
        #expect(service.metadata.labels.isEmpty)
        #expect(service.metadata.annotations == ["io.cilium/global-service": "true"])
        #expect(service.spec.type == .clusterIP)
        #expect(service.spec.selector == ["app": "backend"])
        #expect(service.spec.ports == [ServicePort(protocol: .tcp, port: 80, targetPort: .int(8080))])
        #expect(!service.spec.isHeadless)

        let object = KubernetesObject.service(service)
        #expect(object.kind == .service)
        #expect(object.name == "my-backend-service")
        #expect(object.namespace == "default")
    }

    @Test func multiDocumentFileSkipsEmptyAndCommentOnlyDocuments() throws {
        let yaml = """
        ---
        # only a comment here
        ---
        \(namespaceManifest("team-a"))
        ---
        ---
        \(serviceManifest(metadata: "name: web\nnamespace: team-a", spec: "ports:\n  - port: 443"))
        ---
        """
        let objects = try ManifestDecoder.decode(yaml, source: "bundle.yaml")
        #expect(objects.map(\.kind) == [.namespace, .service])
        #expect(objects.map(\.name) == ["team-a", "web"])
        #expect(objects[0].namespace == nil)
        #expect(objects[1].namespace == "team-a")
    }

    @Test(arguments: ["", "\n\n", "# nothing but a comment\n", "---\n---\n"])
    func filesWithoutObjectsDecodeToNothing(yaml: String) throws {
        #expect(try ManifestDecoder.decode(yaml, source: "empty.yaml").isEmpty)
    }

    @Test func oneBadDocumentFailsTheWholeFile() throws {
        let yaml = [
            namespaceManifest("team-a"),
            serviceManifest(metadata: "name: first", spec: "ports:\n  - port: 80"),
            serviceManifest(metadata: "name: third", spec: "ports:\n  - port: 0"),
            serviceManifest(metadata: "name: fourth", spec: "ports:\n  - port: 81"),
        ].joined(separator: "\n---\n")

        var decoded: [KubernetesObject]?
        let error = try #require(throws: ManifestError.self) {
            decoded = try ManifestDecoder.decode(yaml, source: "bundle.yaml")
        }
        #expect(decoded == nil)
        #expect(error.source == "bundle.yaml")
        #expect(error.documentIndex == 3)
        #expect(error.kind == "Service")
        #expect(error.name == "third")
        #expect(error.field == "spec.ports[0].port")
        #expect(error.message.contains("between 1 and 65535"))
    }

    @Test func documentIndexCountsOnlyNonEmptyDocuments() throws {
        let yaml = "---\n# comment\n---\n---\n" + serviceManifest(spec: "ports:\n  - port: 70000")
        let error = try decodeFailure(yaml)
        #expect(error.documentIndex == 1)
    }

    @Test func descriptionNamesFileDocumentObjectAndField() throws {
        let yaml = namespaceManifest("team-a") + "\n---\n"
            + serviceManifest(metadata: "name: my-backend-service", spec: "ports:\n  - port: 70000")
        let error = try decodeFailure(yaml, source: "app.yaml")
        #expect(error.description == """
            app.yaml: document 2 (Service "my-backend-service"): spec.ports[0].port: \
            must be between 1 and 65535, got 70000
            """)
    }

    @Test func descriptionWithoutObjectOrField() {
        let error = ManifestError(source: "a.yaml", documentIndex: 4, message: "invalid YAML")
        #expect(error.description == "a.yaml: document 4: invalid YAML")
    }

    @Test func malformedYAMLNamesDocumentLineAndColumn() throws {
        let yaml = """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: fine
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: broken
           labels: {}
        """
        let error = try decodeFailure(yaml)
        #expect(error.documentIndex == 2)
        #expect(error.field == nil)
        #expect(error.message.hasPrefix("invalid YAML at line 10, column"))
    }

    @Test func unterminatedFlowSequenceIsASyntaxError() throws {
        let error = try decodeFailure(serviceManifest(spec: "ports: [80"))
        #expect(error.documentIndex == 1)
        #expect(error.message.contains("invalid YAML"))
    }

    @Test func duplicateKeysAreRejected() throws {
        let yaml = """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: a
          name: b
        """
        let error = try decodeFailure(yaml)
        #expect(error.documentIndex == 1)
        #expect(error.message.contains("duplicate key \"name\""))
    }

    @Test func documentMustBeAMapping() throws {
        let error = try decodeFailure("- one\n- two\n")
        #expect(error.documentIndex == 1)
        #expect(error.field == nil)
        #expect(error.message == "expected a mapping, got a list")
    }

    @Test func mergeKeysAreRejectedRatherThanSilentlyDropped() throws {
        let yaml = """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        spec:
          ports:
            - &http
              port: 80
            - <<: *http
              name: alt
        """
        let error = try decodeFailure(yaml)
        #expect(error.field == "spec.ports[1]")
        #expect(error.message.contains("merge keys"))
    }

    @Test func kubernetesFieldsMeridianDoesNotUseAreIgnored() throws {
        let yaml = """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          generation: 4
          managedFields: []
        spec:
          internalTrafficPolicy: Cluster
          ports:
            - port: 80
              appProtocol: http
        status:
          loadBalancer: {}
        """
        let service = try decodeSingleService(yaml)
        #expect(service.spec.ports.map(\.port) == [80])
    }
}

// MARK: - Kind and apiVersion

@Suite("Manifest kind and apiVersion")
struct ManifestKindTests {
    @Test func missingKindListsSupportedKinds() throws {
        let error = try decodeFailure("apiVersion: v1\nmetadata:\n  name: web\n")
        #expect(error.field == "kind")
        #expect(error.kind == nil)
        #expect(error.name == "web")
        #expect(error.message == "is required; supported kinds: Namespace, Service, Pod, Deployment, NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, ServiceExport, ClusterProperty")
    }

    @Test func unsupportedKindListsSupportedKinds() throws {
        let yaml = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\n"
        let error = try decodeFailure(yaml)
        #expect(error.field == "kind")
        #expect(error.kind == "StatefulSet")
        #expect(error.message == "unsupported kind \"StatefulSet\"; supported kinds: Namespace, Service, Pod, Deployment, NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, ServiceExport, ClusterProperty")
    }

    @Test func kindIsCaseSensitiveButSuggestsTheRightSpelling() throws {
        let error = try decodeFailure("apiVersion: v1\nkind: service\nmetadata:\n  name: web\n")
        #expect(error.field == "kind")
        #expect(error.message.contains("did you mean Service?"))
    }

    @Test(arguments: ["apps/v1", "v2", "core/v1"])
    func wrongAPIVersionIsRejected(apiVersion: String) throws {
        let yaml = "apiVersion: \(apiVersion)\nkind: Namespace\nmetadata:\n  name: team-a\n"
        let error = try decodeFailure(yaml)
        #expect(error.field == "apiVersion")
        #expect(error.message == "Namespace must use apiVersion \"v1\", got \"\(apiVersion)\"")
    }

    @Test func missingAPIVersionIsRejected() throws {
        let error = try decodeFailure("kind: Service\nmetadata:\n  name: web\n")
        #expect(error.field == "apiVersion")
        #expect(error.message.contains("is required"))
    }
}

// MARK: - Metadata

@Suite("Manifest metadata")
struct ManifestMetadataTests {
    @Test func missingNameIsRejected() throws {
        let error = try decodeFailure(serviceManifest(metadata: "labels:\n  app: web", spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.name")
        #expect(error.message == "is required")
    }

    @Test func missingMetadataIsRejected() throws {
        let error = try decodeFailure("apiVersion: v1\nkind: Namespace\n")
        #expect(error.field == "metadata")
        #expect(error.message == "is required")
    }

    @Test(arguments: [
        "My-Service", "-web", "web-", "web_api", "web.api", String(repeating: "a", count: 64),
    ])
    func serviceNameMustBeADNSLabel(name: String) throws {
        let error = try decodeFailure(serviceManifest(metadata: "name: \(name)", spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.name")
        #expect(error.message.hasPrefix("invalid name \"\(name)\""))
    }

    @Test(arguments: ["Team-A", "team_a", "team.a"])
    func namespaceObjectNameMustBeADNSLabel(name: String) throws {
        let error = try decodeFailure(namespaceManifest(name))
        #expect(error.field == "metadata.name")
        #expect(error.kind == "Namespace")
    }

    @Test(arguments: ["a", "web-1", "0abc", String(repeating: "z", count: 63)])
    func validNamesAreAccepted(name: String) throws {
        let objects = try ManifestDecoder.decode(namespaceManifest(name), source: "ns.yaml")
        #expect(objects.map(\.name) == [name])
    }

    @Test func serviceNamespaceMustBeADNSLabel() throws {
        let error = try decodeFailure(serviceManifest(metadata: "name: web\nnamespace: Team_A", spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.namespace")
        #expect(error.message.contains("\"Team_A\""))
    }

    @Test func emptyNamespaceMeansTheDefaultNamespace() throws {
        let service = try decodeSingleService(serviceManifest(metadata: "name: web\nnamespace: \"\"", spec: "ports:\n  - port: 80"))
        #expect(service.metadata.namespace == nil)
        #expect(KubernetesObject.service(service).namespace == "default")
    }

    @Test func namespaceObjectIgnoresMetadataNamespace() throws {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  namespace: elsewhere\n"
        let objects = try ManifestDecoder.decode(yaml, source: "ns.yaml")
        #expect(objects[0].metadata.namespace == nil)
        #expect(objects[0].namespace == nil)
    }

    @Test func validLabelsAndNullValuesAreAccepted() throws {
        let metadata = """
        name: web
        labels:
          app.kubernetes.io/name: web
          tier: ""
          Version: v1.2_3
          track:
        """
        let service = try decodeSingleService(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(service.metadata.labels == [
            "app.kubernetes.io/name": "web", "tier": "", "Version": "v1.2_3", "track": "",
        ])
    }

    @Test(arguments: [
        ("bad key", "x", "invalid label key"),
        ("-app", "x", "invalid label key"),
        ("Example.com/app", "x", "prefix"),
        ("a/b/c", "x", "at most one '/'"),
        ("example.com/", "x", "name after '/'"),
        (String(repeating: "k", count: 64), "x", "at most 63"),
        ("app", "has space", "invalid label value"),
        ("app", "-lead", "invalid label value"),
        ("app", String(repeating: "v", count: 64), "invalid label value"),
    ])
    func invalidLabelsNameTheLabel(key: String, value: String, fragment: String) throws {
        let metadata = "name: web\nlabels:\n  \"\(key)\": \"\(value)\""
        let error = try decodeFailure(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.labels[\"\(key)\"]")
        #expect(error.message.contains(fragment))
    }

    @Test func unquotedNumberAsLabelValueIsATypeError() throws {
        let metadata = "name: web\nlabels:\n  version: 1.0"
        let error = try decodeFailure(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.labels[\"version\"]")
        #expect(error.message == "expected a string, got number 1.0; quote it to use it as text: \"1.0\"")
    }

    @Test func unquotedBooleanAnnotationIsATypeError() throws {
        let metadata = "name: web\nannotations:\n  io.cilium/global-service: true"
        let error = try decodeFailure(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.annotations[\"io.cilium/global-service\"]")
        #expect(error.message.hasPrefix("expected a string, got boolean true"))
    }

    @Test func invalidAnnotationKeyIsRejected() throws {
        let metadata = "name: web\nannotations:\n  \"not a key\": \"x\""
        let error = try decodeFailure(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(error.field == "metadata.annotations[\"not a key\"]")
        #expect(error.message.contains("invalid annotation key"))
    }

    @Test(arguments: [
        ("service.cilium.io/affinity", "sideways"),
        ("service.cilium.io/global", "maybe"),
        ("io.cilium/global-service", "yes please"),
        ("io.cilium/service-affinity", "closest"),
    ])
    func invalidMeshAnnotationNamesTheAnnotation(key: String, value: String) throws {
        let metadata = "name: web\nannotations:\n  \(key): \"\(value)\""
        let error = try decodeFailure(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(error.documentIndex == 1)
        #expect(error.field == "metadata.annotations[\"\(key)\"]")
        #expect(error.message.contains("\"\(value)\""))
        #expect(error.message.hasPrefix("expected "))
    }

    @Test func validMeshAnnotationsAreKept() throws {
        let metadata = """
        name: web
        annotations:
          service.cilium.io/global: "true"
          service.cilium.io/shared: "false"
          service.cilium.io/affinity: "local"
        """
        let service = try decodeSingleService(serviceManifest(metadata: metadata, spec: "ports:\n  - port: 80"))
        #expect(service.metadata.annotations["service.cilium.io/affinity"] == "local")
        #expect(service.metadata.annotations.count == 3)
    }
}

// MARK: - Service spec

@Suite("Manifest Service spec")
struct ManifestServiceSpecTests {
    @Test func fullServiceDecodes() throws {
        let spec = """
        type: NodePort
        clusterIP: 10.96.0.20
        clusterIPs: ["10.96.0.20", "fd00::20"]
        sessionAffinity: ClientIP
        selector:
          app: web
        ports:
          - name: http
            port: 80
            targetPort: http
            nodePort: 30080
          - name: dns
            protocol: UDP
            port: 53
          - name: signalling
            protocol: SCTP
            port: 9000
            targetPort: 9001
        """
        let service = try decodeSingleService(serviceManifest(spec: spec))
        #expect(service.spec.type == .nodePort)
        #expect(service.spec.clusterIPs == ["10.96.0.20", "fd00::20"])
        #expect(service.spec.sessionAffinity == "ClientIP")
        #expect(service.spec.ports == [
            ServicePort(name: "http", protocol: .tcp, port: 80, targetPort: .string("http"), nodePort: 30080),
            ServicePort(name: "dns", protocol: .udp, port: 53),
            ServicePort(name: "signalling", protocol: .sctp, port: 9000, targetPort: .int(9001)),
        ])
        #expect(service.spec.ports[1].effectiveTargetPort == .int(53))
    }

    @Test func portOfWrongTypeNamesTheField() throws {
        let error = try decodeFailure(serviceWithPort("port: \"eighty\""))
        #expect(error.field == "spec.ports[0].port")
        #expect(error.message == "expected an integer, got string \"eighty\"")
    }

    @Test func quotedNumberIsNotAnInteger() throws {
        let error = try decodeFailure(serviceWithPort("port: \"80\""))
        #expect(error.field == "spec.ports[0].port")
        #expect(error.message.hasPrefix("expected an integer"))
    }

    @Test func portsMustBeAList() throws {
        let error = try decodeFailure(serviceManifest(spec: "ports:\n  port: 80"))
        #expect(error.field == "spec.ports")
        #expect(error.message == "expected a list, got a mapping")
    }

    @Test(arguments: [0, -1, 65536, 70000])
    func portOutOfRangeIsRejected(port: Int) throws {
        let error = try decodeFailure(serviceWithPort("port: \(port)"))
        #expect(error.field == "spec.ports[0].port")
        #expect(error.message == "must be between 1 and 65535, got \(port)")
    }

    @Test func portNumberIsRequired() throws {
        let error = try decodeFailure(serviceWithPort("name: http"))
        #expect(error.field == "spec.ports[0].port")
        #expect(error.message == "is required")
    }

    @Test(arguments: [
        ("http", IntOrString.string("http")),
        ("8080", IntOrString.int(8080)),
        ("metrics-2", IntOrString.string("metrics-2")),
    ])
    func targetPortAcceptsNumbersAndNames(yaml: String, expected: IntOrString) throws {
        let service = try decodeSingleService(serviceWithPort("port: 80\ntargetPort: \(yaml)"))
        #expect(service.spec.ports[0].targetPort == expected)
    }

    @Test func absentTargetPortDefaultsToThePort() throws {
        let service = try decodeSingleService(serviceWithPort("port: 80"))
        #expect(service.spec.ports[0].targetPort == nil)
        #expect(service.spec.ports[0].effectiveTargetPort == .int(80))
    }

    @Test(arguments: [
        ("HTTP", "lowercase"),
        ("\"8080\"", "at least one letter"),
        ("averyverylongname", "at most 15"),
        ("-http", "start and end"),
        ("http--alt", "'--'"),
        ("0", "between 1 and 65535"),
        ("70000", "between 1 and 65535"),
    ])
    func invalidTargetPortIsRejected(yaml: String, fragment: String) throws {
        let error = try decodeFailure(serviceWithPort("port: 80\ntargetPort: \(yaml)"))
        #expect(error.field == "spec.ports[0].targetPort")
        #expect(error.message.contains(fragment))
    }

    @Test func targetPortOfWrongTypeIsRejected() throws {
        let error = try decodeFailure(serviceWithPort("port: 80\ntargetPort: 80.5"))
        #expect(error.field == "spec.ports[0].targetPort")
        #expect(error.message == "expected an integer or a string, got number 80.5")
    }

    @Test(arguments: ["tcp", "ICMP", "HTTP"])
    func unknownProtocolIsRejected(value: String) throws {
        let error = try decodeFailure(serviceWithPort("port: 80\nprotocol: \(value)"))
        #expect(error.field == "spec.ports[0].protocol")
        #expect(error.message == "expected one of TCP, UDP, SCTP, got \"\(value)\"")
    }

    @Test func portsAreRequiredForClusterIPServices() throws {
        let error = try decodeFailure(serviceManifest(spec: "selector:\n  app: web"))
        #expect(error.field == "spec.ports")
        #expect(error.message == "at least one port is required")
    }

    @Test func missingSpecMeansMissingPorts() throws {
        let error = try decodeFailure("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n")
        #expect(error.field == "spec.ports")
    }

    @Test func headlessServiceMayOmitPorts() throws {
        let service = try decodeSingleService(serviceManifest(spec: "clusterIP: None\nselector:\n  app: db"))
        #expect(service.spec.isHeadless)
        #expect(service.spec.ports.isEmpty)
    }

    @Test func externalNameServiceNeedsAHostButNoPorts() throws {
        let service = try decodeSingleService(serviceManifest(spec: "type: ExternalName\nexternalName: db.example.com."))
        #expect(service.spec.type == .externalName)
        #expect(service.spec.externalName == "db.example.com.")

        let missing = try decodeFailure(serviceManifest(spec: "type: ExternalName"))
        #expect(missing.field == "spec.externalName")
        #expect(missing.message == "is required when type is ExternalName")

        let invalid = try decodeFailure(serviceManifest(spec: "type: ExternalName\nexternalName: Not_A_Host"))
        #expect(invalid.field == "spec.externalName")
    }

    @Test func secondUnnamedPortIsRejected() throws {
        let spec = "ports:\n  - name: http\n    port: 80\n  - port: 443"
        let error = try decodeFailure(serviceManifest(spec: spec))
        #expect(error.field == "spec.ports[1].name")
        #expect(error.message == "is required when a Service has more than one port")
    }

    @Test func duplicatePortNamesAreRejected() throws {
        let spec = "ports:\n  - name: web\n    port: 80\n  - name: web\n    port: 443"
        let error = try decodeFailure(serviceManifest(spec: spec))
        #expect(error.field == "spec.ports[1].name")
        #expect(error.message == "duplicate port name \"web\" (already used by spec.ports[0])")
    }

    @Test func invalidPortNameIsRejected() throws {
        let error = try decodeFailure(serviceWithPort("name: Web_Port\nport: 80"))
        #expect(error.field == "spec.ports[0].name")
        #expect(error.message.hasPrefix("invalid port name \"Web_Port\""))
    }

    @Test func duplicatePortAndProtocolIsRejected() throws {
        let spec = "ports:\n  - name: a\n    port: 80\n  - name: b\n    port: 80\n    protocol: TCP"
        let error = try decodeFailure(serviceManifest(spec: spec))
        #expect(error.field == "spec.ports[1]")
        #expect(error.message == "duplicate port 80/TCP (already used by spec.ports[0])")
    }

    @Test func samePortWithDifferentProtocolsIsAllowed() throws {
        let spec = "ports:\n  - name: dns-tcp\n    port: 53\n  - name: dns-udp\n    port: 53\n    protocol: UDP"
        let service = try decodeSingleService(serviceManifest(spec: spec))
        #expect(service.spec.ports.map(\.protocol) == [.tcp, .udp])
    }

    @Test(arguments: ["None", "\"\"", "10.96.0.10", "0.0.0.0", "fd00::10", "::1", "\"::\"", "::ffff:10.0.0.1",
                      "2001:db8:0:0:0:0:0:1", "FD00:ABCD::1"])
    func validClusterIPsAreAccepted(clusterIP: String) throws {
        let service = try decodeSingleService(serviceManifest(spec: "clusterIP: \(clusterIP)\nports:\n  - port: 80"))
        #expect(service.spec.clusterIP != nil)
    }

    @Test(arguments: ["10.96.0.256", "10.96.0", "010.96.0.1", "10.96.0.1.5", "fd00:::1", "1::2::3",
                      "1:2:3:4:5:6:7:8:9", "2001:db8::12345", "web", "none", "10.0.0.1/32"])
    func invalidClusterIPsAreRejected(clusterIP: String) throws {
        let error = try decodeFailure(serviceManifest(spec: "clusterIP: \"\(clusterIP)\"\nports:\n  - port: 80"))
        #expect(error.field == "spec.clusterIP")
        #expect(error.message.contains("IPv4 or IPv6 address, got \"\(clusterIP)\""))
    }

    @Test func clusterIPsMustMatchClusterIPAndDifferInFamily() throws {
        let mismatch = try decodeFailure(serviceManifest(
            spec: "clusterIP: 10.96.0.1\nclusterIPs: [\"10.96.0.2\"]\nports:\n  - port: 80"
        ))
        #expect(mismatch.field == "spec.clusterIPs[0]")

        let sameFamily = try decodeFailure(serviceManifest(
            spec: "clusterIPs: [\"10.96.0.1\", \"10.96.0.2\"]\nports:\n  - port: 80"
        ))
        #expect(sameFamily.field == "spec.clusterIPs[1]")

        let notAnAddress = try decodeFailure(serviceManifest(spec: "clusterIPs: [\"fd00::1\", \"x\"]\nports:\n  - port: 80"))
        #expect(notAnAddress.field == "spec.clusterIPs[1]")
    }

    @Test(arguments: [ServiceType.nodePort, .loadBalancer])
    func headlessIsOnlyForClusterIPServices(type: ServiceType) throws {
        let error = try decodeFailure(serviceManifest(spec: "type: \(type.rawValue)\nclusterIP: None\nports:\n  - port: 80"))
        #expect(error.field == "spec.clusterIP")
        #expect(error.message.contains("headless"))
    }

    @Test func unknownServiceTypeIsRejected() throws {
        let error = try decodeFailure(serviceManifest(spec: "type: Ingress\nports:\n  - port: 80"))
        #expect(error.field == "spec.type")
        #expect(error.message == "expected one of ClusterIP, NodePort, LoadBalancer, ExternalName, got \"Ingress\"")
    }

    @Test func nodePortOnlyForNodePortAndLoadBalancer() throws {
        let error = try decodeFailure(serviceWithPort("port: 80\nnodePort: 30080"))
        #expect(error.field == "spec.ports[0].nodePort")
        #expect(error.message.contains("NodePort or LoadBalancer"))

        let accepted = try decodeSingleService(serviceManifest(
            spec: "type: LoadBalancer\nports:\n  - port: 80\n    nodePort: 30080"
        ))
        #expect(accepted.spec.ports[0].nodePort == 30080)
    }

    @Test func unknownSessionAffinityIsRejected() throws {
        let error = try decodeFailure(serviceManifest(spec: "sessionAffinity: Sticky\nports:\n  - port: 80"))
        #expect(error.field == "spec.sessionAffinity")
        #expect(error.message == "expected one of None, ClientIP, got \"Sticky\"")
    }

    @Test func invalidSelectorNamesTheKey() throws {
        let error = try decodeFailure(serviceManifest(spec: "selector:\n  app: \"not valid!\"\nports:\n  - port: 80"))
        #expect(error.field == "spec.selector[\"app\"]")
        #expect(error.message.hasPrefix("invalid label value \"not valid!\""))
    }
}

// MARK: - Storage form

@Suite("Kubernetes object JSON round trip")
struct KubernetesObjectCodingTests {
    private static let richService = serviceManifest(
        metadata: """
        name: web
        namespace: shop
        labels:
          app: web
        annotations:
          service.cilium.io/global: "true"
          service.cilium.io/affinity: remote
        """,
        spec: """
        type: NodePort
        clusterIP: 10.96.0.20
        clusterIPs: ["10.96.0.20"]
        sessionAffinity: ClientIP
        selector:
          app: web
        ports:
          - name: http
            port: 80
            targetPort: http
            nodePort: 30080
          - name: metrics
            protocol: UDP
            port: 9090
            targetPort: 9091
        """
    )

    @Test func decodedServiceSurvivesJSON() throws {
        let service = try decodeSingleService(Self.richService)
        let data = try JSONEncoder().encode(service)
        let restored = try JSONDecoder().decode(Service.self, from: data)
        #expect(restored == service)
    }

    @Test func objectEnvelopeSurvivesJSONAsPlainKubernetesJSON() throws {
        let objects = try ManifestDecoder.decode(Self.richService + "\n---\n" + namespaceManifest("shop"), source: "t.yaml")
        for object in objects {
            let data = try JSONEncoder().encode(object)
            let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(json["kind"] as? String == object.kind.rawValue)
            #expect(json["apiVersion"] as? String == "v1")
            #expect(try JSONDecoder().decode(KubernetesObject.self, from: data) == object)
        }
    }

    @Test func targetPortKeepsItsJSONType() throws {
        let ports = [ServicePort(port: 80, targetPort: .int(8080)), ServicePort(port: 81, targetPort: "http")]
        let json = try #require(String(data: JSONEncoder().encode(ports.map(\.targetPort)), encoding: .utf8))
        #expect(json == #"[8080,"http"]"#)
    }

    @Test func objectMetaDefaultsMissingMapsToEmpty() throws {
        let meta = try JSONDecoder().decode(ObjectMeta.self, from: Data(#"{"name":"web"}"#.utf8))
        #expect(meta == ObjectMeta(name: "web"))
        #expect(meta.labels.isEmpty && meta.annotations.isEmpty)
    }

    @Test func serviceJSONFromKubernetesAppliesDefaults() throws {
        let json = #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#
        let object = try JSONDecoder().decode(KubernetesObject.self, from: Data(json.utf8))
        guard case let .service(service) = object else {
            Issue.record("expected a Service")
            return
        }
        #expect(service.spec.type == .clusterIP)
        #expect(service.spec.ports == [ServicePort(protocol: .tcp, port: 80)])
    }

    @Test func unknownKindInStoredJSONFailsToDecode() {
        let json = #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"}}"#
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(KubernetesObject.self, from: Data(json.utf8))
        }
    }

    @Test func metadataCanBeStampedThroughTheEnvelope() {
        var object = KubernetesObject.namespace(Namespace(metadata: ObjectMeta(name: "shop")))
        object.metadata.uid = "1234"
        #expect(object.metadata.uid == "1234")
        #expect(object.kind == .namespace)
    }
}

// MARK: - Resource kinds

@Suite("Resource kinds")
struct ResourceKindTests {
    @Test(arguments: [
        ("svc", ResourceKind.service), ("service", .service), ("services", .service), ("Service", .service),
        ("SVC", .service), ("ns", .namespace), ("namespace", .namespace), ("Namespaces", .namespace),
        ("NAMESPACE", .namespace), ("po", .pod), ("pods", .pod), ("Pod", .pod), ("deploy", .deployment),
        ("deployments", .deployment), ("Deployment", .deployment),
    ])
    func userInputNamesAKind(input: String, expected: ResourceKind) {
        #expect(ResourceKind(userInput: input) == expected)
    }

    @Test(arguments: ["statefulsets", "svcs", "", "name space", "replicaset", "deploys"])
    func unknownUserInputIsNil(input: String) {
        #expect(ResourceKind(userInput: input) == nil)
    }

    @Test func kindProperties() {
        #expect(ResourceKind.service.plural == "services")
        #expect(ResourceKind.namespace.plural == "namespaces")
        #expect(ResourceKind.service.isNamespaced)
        #expect(!ResourceKind.namespace.isNamespaced)
        #expect(ResourceKind.pod.plural == "pods")
        #expect(ResourceKind.deployment.plural == "deployments")
        #expect(ResourceKind.pod.isNamespaced && ResourceKind.deployment.isNamespaced)
        #expect([ResourceKind.namespace, .service, .pod].allSatisfy { $0.apiVersion == "v1" })
        #expect(ResourceKind.deployment.apiVersion == "apps/v1")
    }
}
