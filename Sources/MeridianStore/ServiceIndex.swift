import Foundation
import MeridianCore

/// The service-side records of a store, decoded as they change and indexed by service name
/// (`<namespace>/<name>`), with the names each change touched. It exists so that one backend
/// moving costs the work of its own service: building `ServiceRecords` from every record made
/// each change walk every pod, status and imported backend of the cluster (tens of thousands
/// under one large global service) before the merge even started.
///
/// A pod touches the Services of its namespace that select it before or after the change; a
/// pod status, the Services that select its pod; a Service, its own name (and its selection is
/// found again from its namespace's pods); an imported record or slice and a ServiceImport,
/// their name. `records(of:)` gives one name's records in the shape the merges take.
public struct ServiceIndex: Sendable {
    /// Which kind of record a key holds.
    public enum Kind: Sendable, Hashable {
        case service, pod, podStatus, remoteService, remoteSlice, serviceImport
    }

    private var services: [String: Service] = [:]
    private var servicesByNamespace: [String: Set<String>] = [:]
    /// Pods by `<namespace>/<name>` with their statuses, and the names of each namespace's pods.
    private var pods: [String: ObservedPod] = [:]
    private var podsByNamespace: [String: Set<String>] = [:]
    private var statuses: [String: PodStatus] = [:]
    /// The pods each Service selects, ready or not, in name order (the order backends take).
    private var selected: [String: SelectedPods] = [:]
    private var imports: [String: ServiceImport] = [:]
    /// Imported ClusterServices and their slices, by service name, then by record key.
    private var remote: [String: [String: ClusterService]] = [:]
    private var remoteSlices: [String: [String: ClusterService]] = [:]
    /// The name each key was indexed under, for its deletion.
    private var names: [Kind: [String: String]] = [:]
    private var touched: Set<String> = []

    public init() {}

    /// Sets the record at `key` (nil: deleted; a record that does not decode counts as deleted).
    public mutating func update(_ kind: Kind, key: String, value: Data?) {
        if let old = names[kind]?.removeValue(forKey: key) { remove(kind, key: key, name: old) }
        guard let value, let name = insert(kind, key: key, value: value) else { return }
        names[kind, default: [:]][key] = name
    }

    /// The service names touched since the last call.
    public mutating func takeTouched() -> Set<String> {
        defer { touched = [] }
        return touched
    }

    /// Every name with a record of any kind (a Service, a ServiceImport or an imported record).
    public var allNames: Set<String> {
        Set(services.keys).union(imports.keys).union(remote.keys).union(remoteSlices.keys)
    }

    /// The keys indexed of one kind (those that decoded).
    public func keys(of kind: Kind) -> [String] {
        Array((names[kind] ?? [:]).keys)
    }

    /// The names of the Services in `namespace`.
    public func serviceNames(in namespace: String) -> Set<String> {
        servicesByNamespace[namespace] ?? []
    }

    /// The Service of `name`, if the store has one.
    public func service(_ name: String) -> Service? {
        services[name]
    }

    /// The records of one name: its Service with the pods it selects (with their statuses),
    /// its ServiceImport, and the imported ClusterServices with their slices merged in.
    public func records(of name: String) -> ServiceRecords {
        let service = services[name]
        let selectedPods = (selected[name]?.names ?? []).compactMap { pods[$0] }
        let slices = Array((remoteSlices[name] ?? [:]).values)
        let remote = ServiceSlicing.merge(Array((remote[name] ?? [:]).values), slices: slices)
        return ServiceRecords(services: service.map { [$0] } ?? [], pods: selectedPods, remote: remote, imports: imports[name].map { [$0] } ?? [])
    }

    // MARK: Indexing

    private static func namespacedName(_ metadata: ObjectMeta) -> String {
        "\(metadata.namespace ?? KubernetesObject.defaultNamespace)/\(metadata.name)"
    }

    private static func namespace(of name: String) -> String {
        String(name.prefix { $0 != "/" })
    }

    /// Indexes a record; returns the name it is under, or nil when it is not one (it does not decode).
    private mutating func insert(_ kind: Kind, key: String, value: Data) -> String? {
        switch kind {
        case .service:
            guard case let .service(service)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            let name = Self.namespacedName(service.metadata)
            let namespace = Self.namespace(of: name)
            services[name] = service
            servicesByNamespace[namespace, default: []].insert(name)
            selected[name] = SelectedPods((podsByNamespace[namespace] ?? []).filter { pods[$0].map { ServiceBackendResolver.selects(service, $0.pod) } ?? false })
            touched.insert(name)
            return name
        case .pod:
            guard case let .pod(pod)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            let name = Self.namespacedName(pod.metadata)
            pods[name] = ObservedPod(pod: pod, status: statuses[name])
            podsByNamespace[Self.namespace(of: name), default: []].insert(name)
            for service in serviceNames(in: Self.namespace(of: name)) {
                guard let selecting = services[service], ServiceBackendResolver.selects(selecting, pod) else { continue }
                selected[service, default: SelectedPods([])].insert(name)
                touched.insert(service)
            }
            return name
        case .podStatus:
            guard let status = try? StoreCoding.decode(PodStatus.self, from: value, key: key) else { return nil }
            let name = String(key.dropFirst(KeyLayout.podStatusPrefix.count))
            statuses[name] = status
            pods[name]?.status = status
            touchSelecting(name)
            return name
        case .remoteService, .remoteSlice:
            guard let record = try? StoreCoding.decode(ClusterService.self, from: value, key: key) else { return nil }
            let name = record.namespacedName
            if kind == .remoteService { remote[name, default: [:]][key] = record } else { remoteSlices[name, default: [:]][key] = record }
            touched.insert(name)
            return name
        case .serviceImport:
            guard case let .serviceImport(imported)? = try? StoreCoding.decode(KubernetesObject.self, from: value, key: key) else { return nil }
            let name = Self.namespacedName(imported.metadata)
            imports[name] = imported
            touched.insert(name)
            return name
        }
    }

    private mutating func remove(_ kind: Kind, key: String, name: String) {
        switch kind {
        case .service:
            services[name] = nil
            servicesByNamespace[Self.namespace(of: name)]?.remove(name)
            selected[name] = nil
            touched.insert(name)
        case .pod:
            touchSelecting(name)
            for service in serviceNames(in: Self.namespace(of: name)) { selected[service]?.remove(name) }
            pods[name] = nil
            podsByNamespace[Self.namespace(of: name)]?.remove(name)
        case .podStatus:
            statuses[name] = nil
            pods[name]?.status = nil
            touchSelecting(name)
        case .remoteService:
            remote[name]?[key] = nil
            if remote[name]?.isEmpty == true { remote[name] = nil }
            touched.insert(name)
        case .remoteSlice:
            remoteSlices[name]?[key] = nil
            if remoteSlices[name]?.isEmpty == true { remoteSlices[name] = nil }
            touched.insert(name)
        case .serviceImport:
            imports[name] = nil
            touched.insert(name)
        }
    }

    /// Touches the Services that select the pod `name`.
    private mutating func touchSelecting(_ podName: String) {
        for service in serviceNames(in: Self.namespace(of: podName)) where selected[service]?.contains(podName) == true {
            touched.insert(service)
        }
    }
}

/// Pod names (`<namespace>/<name>`, one namespace) kept in the byte order of their names, so a
/// service's backends come out in order without sorting them on every change.
struct SelectedPods: Sendable {
    private(set) var names: [String] = []

    init(_ names: some Sequence<String>) {
        self.names = names.sorted(by: Self.precedes)
    }

    static func precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// Where `name` is, or would go.
    private func index(of name: String) -> Int {
        var low = 0, high = names.count
        while low < high {
            let middle = (low + high) / 2
            if Self.precedes(names[middle], name) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    func contains(_ name: String) -> Bool {
        let at = index(of: name)
        return at < names.count && names[at] == name
    }

    mutating func insert(_ name: String) {
        let at = index(of: name)
        if at == names.count || names[at] != name { names.insert(name, at: at) }
    }

    mutating func remove(_ name: String) {
        let at = index(of: name)
        if at < names.count, names[at] == name { names.remove(at: at) }
    }
}
