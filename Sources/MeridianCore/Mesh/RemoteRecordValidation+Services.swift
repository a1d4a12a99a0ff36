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
        let reject = Self.rejecter(.service, keyName)
        try checkCluster(name: service.cluster, id: service.clusterID, field: ("cluster", "clusterID"), reject)
        guard !service.namespace.isEmpty, !service.name.isEmpty else {
            throw reject(.malformed, "service has an empty namespace or name")
        }
        try checkName(service.namespace, field: "namespace", NameSyntax.dns1123LabelProblem, reject)
        try checkName(service.name, field: "name", NameSyntax.dns1123LabelProblem, reject)
        guard keyName == service.namespacedName else {
            throw reject(.keyMismatch, "key should be \(Self.quoted(service.namespacedName))")
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

    public func decodeService(keyName: String, value: Data) throws(RemoteRecordRejection) -> ClusterService {
        let service: ClusterService = try decode(value, kind: .service, keyName: keyName)
        try validate(service: service, keyName: keyName)
        return service
    }
}
