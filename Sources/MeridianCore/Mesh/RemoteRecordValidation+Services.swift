import Foundation

extension RemoteRecordValidation {
    /// A service must belong to the remote by name and ID, have a DNS-1123 label as namespace
    /// and name, sit under `<ns>/<name>`, and name its ports with DNS-1123 labels (or leave
    /// them unnamed). Backend states (`backendStates`) must be exported states of addresses
    /// among the backends, so there are at most as many as backends.
    ///
    /// Backends are pod IPs and must lie inside the peer's pod CIDRs: they are what receivers
    /// program. Frontends are the peer's ClusterIPs, from a service CIDR this cluster does not
    /// record; receivers never program them (remote backends join the local Service of the
    /// same name, behind the local frontend), so they only have to parse. Hostnames map backend
    /// IPs to pod host names (DNS-1123 labels).
    public func validate(service: ClusterService, keyName: String) throws(RemoteRecordRejection) {
        try validate(service: service, keyName: keyName, kind: .service)
    }

    /// A service record (`kind` `.service`) or one of its slices (`.serviceSlice`, under
    /// `<ns>/<name>/<slice>`, with no frontends and a slice number below its count). A record
    /// announcing slices announces 2 to `ServiceSlicing.maximumSlices` of them.
    func validate(service: ClusterService, keyName: String, kind: RemoteRecordRejection.Kind) throws(RemoteRecordRejection) {
        let reject = Self.rejecter(kind, keyName)
        try checkCluster(name: service.cluster, id: service.clusterID, field: ("cluster", "clusterID"), reject)
        guard !service.namespace.isEmpty, !service.name.isEmpty else {
            throw reject(.malformed, "service has an empty namespace or name")
        }
        try checkName(service.namespace, field: "namespace", NameSyntax.dns1123LabelProblem, reject)
        try checkName(service.name, field: "name", NameSyntax.dns1123LabelProblem, reject)
        if let count = service.backendSlices, !(2...ServiceSlicing.maximumSlices).contains(count) {
            throw reject(.malformed, "backendSlices \(count) is outside 2-\(ServiceSlicing.maximumSlices)")
        }
        if kind == .serviceSlice {
            guard let count = service.backendSlices, let index = service.slice, (0..<count).contains(index) else {
                throw reject(.malformed, "a slice needs backendSlices and a slice number below it")
            }
            guard service.frontends.isEmpty else { throw reject(.malformed, "a slice has no frontends") }
        } else if service.slice != nil {
            throw reject(.malformed, "a service record is not a slice")
        }
        let expectedKey = kind == .serviceSlice ? ServiceSlicing.keyName(of: service) : service.namespacedName
        guard keyName == expectedKey else {
            throw reject(.keyMismatch, "key should be \(Self.quoted(expectedKey))")
        }
        for (role, ports) in [("frontend", service.frontends), ("backend", service.backends)] {
            for (ip, named) in ports.sorted(by: { $0.key < $1.key }) {
                guard let address = IPAddress(ip) else {
                    throw reject(.malformed, "\(role) \(Self.quoted(ip)) is not an IP address")
                }
                if role == "backend" { try checkPodAddress(address, field: "backend", reject) }
                for portName in named.keys.sorted() where !portName.isEmpty {
                    try checkName(portName, field: "port name of \(role) \(address)", NameSyntax.dns1123LabelProblem, reject)
                }
            }
        }
        for (ip, state) in (service.backendStates ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard service.backends[ip] != nil else {
                throw reject(.unknownBackendState, "state of \(Self.quoted(ip)), which is not a backend of the service")
            }
            guard let known = BackendState(rawValue: state), ClusterService.exportedBackendStates.contains(known) else {
                let exported = ClusterService.exportedBackendStates.map(\.rawValue).sorted().joined(separator: ", ")
                throw reject(.unknownBackendState, "backend \(Self.quoted(ip)) has state \(Self.quoted(state)); exported states are \(exported)")
            }
        }
        for (ip, hostname) in (service.hostnames ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard IPAddress(ip) != nil else {
                throw reject(.malformed, "hostname \(Self.quoted(ip)) is not an IP address")
            }
            try checkName(hostname, field: "hostname of \(ip)", NameSyntax.dns1123LabelProblem, reject)
        }
    }

    public func decodeServiceSlice(keyName: String, value: Data) throws(RemoteRecordRejection) -> ClusterService {
        let slice: ClusterService = try decode(value, kind: .serviceSlice, keyName: keyName)
        try validate(service: slice, keyName: keyName, kind: .serviceSlice)
        return slice
    }

    public func decodeService(keyName: String, value: Data) throws(RemoteRecordRejection) -> ClusterService {
        let service: ClusterService = try decode(value, kind: .service, keyName: keyName)
        try validate(service: service, keyName: keyName)
        return service
    }
}

extension RemoteRecordValidation {
    /// Ports an exported service may list; Kubernetes puts no number on a Service's ports, but a
    /// receiver builds one frontend per port.
    public static let maximumExportedPorts = 100

    /// A Multi-Cluster Services export must belong to the remote by name, sit under
    /// `<ns>/<name>` with DNS-1123 labels, carry a timestamp that parses (it decides conflicts:
    /// one in the far past would make the peer's export win them all, so it may not lie before
    /// 2000 or more than a day ahead), and list at most `maximumExportedPorts` valid ports with
    /// distinct names. Annotations other than the carried ones are refused: they would reach
    /// every ServiceImport.
    public func validate(export: ExportedServiceSpec, keyName: String) throws(RemoteRecordRejection) {
        let reject = Self.rejecter(.serviceExport, keyName)
        guard !export.cluster.isEmpty else { throw reject(.malformed, "cluster is empty") }
        guard export.cluster == remoteName else {
            throw reject(.wrongCluster, "cluster \(Self.quoted(export.cluster)) is not the remote cluster \"\(remoteName)\"")
        }
        try checkName(export.namespace, field: "namespace", NameSyntax.dns1123LabelProblem, reject)
        try checkName(export.name, field: "name", NameSyntax.dns1123LabelProblem, reject)
        guard keyName == export.namespacedName else {
            throw reject(.keyMismatch, "key should be \(Self.quoted(export.namespacedName))")
        }
        guard let created = ISO8601DateFormatter().date(from: export.exportCreationTimestamp) else {
            throw reject(.malformed, "exportCreationTimestamp \(Self.quoted(export.exportCreationTimestamp)) is not an RFC 3339 time")
        }
        let earliest = Date(timeIntervalSince1970: 946_684_800)
        guard created >= earliest, created <= Date().addingTimeInterval(86_400) else {
            throw reject(.malformed, "exportCreationTimestamp \(export.exportCreationTimestamp) lies before 2000 or in the future")
        }
        guard export.ports.count <= Self.maximumExportedPorts else {
            throw reject(.malformed, "\(export.ports.count) ports; an export may list at most \(Self.maximumExportedPorts)")
        }
        var names: Set<String> = []
        for port in export.ports {
            guard (1...65_535).contains(port.port) else { throw reject(.malformed, "port \(port.port) is outside 1-65535") }
            if let name = port.name {
                try checkName(name, field: "port name", NameSyntax.dns1123LabelProblem, reject)
            }
            if let appProtocol = port.appProtocol {
                try checkName(appProtocol, field: "appProtocol", NameSyntax.qualifiedNameProblem, reject)
            }
            guard names.insert(port.name ?? "").inserted else {
                throw reject(.malformed, "port name \(Self.quoted(port.name ?? "")) is listed twice")
            }
        }
        guard ["None", "ClientIP"].contains(export.sessionAffinity) else {
            throw reject(.malformed, "sessionAffinity \(Self.quoted(export.sessionAffinity)) is neither None nor ClientIP")
        }
        if let key = export.annotations.keys.sorted().first(where: { !ExportedServiceSpec.carriedAnnotation($0) }) {
            throw reject(.malformed, "annotation \(Self.quoted(key)) is not one an export carries")
        }
        do {
            _ = try ServiceMeshAnnotations.parse(export.annotations.merging([ServiceMeshAnnotations.Key.global: "true"]) { _, forced in forced })
        } catch {
            throw reject(.malformed, "annotation \(error.description)")
        }
        if !export.labels.isEmpty {
            do throws(FieldError) {
                try NameSyntax.validateLabelMap(export.labels, at: FieldPath().field("labels"))
            } catch {
                throw reject(.invalidName, "labels: \(TerminalSafe.escape(error.message, maxScalars: 256))")
            }
        }
    }

    public func decodeServiceExport(keyName: String, value: Data) throws(RemoteRecordRejection) -> ExportedServiceSpec {
        let export: ExportedServiceSpec = try decode(value, kind: .serviceExport, keyName: keyName)
        try validate(export: export, keyName: keyName)
        return export
    }
}
