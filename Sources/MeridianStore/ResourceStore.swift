import Foundation
import MeridianCore
import MeridianEtcd

/// What `apply` did to one object, as kubectl reports it.
public enum ApplyOutcome: String, Sendable, Hashable {
    case created, configured, unchanged
}

/// Kubernetes-shaped resources of one cluster, stored as JSON under `meridian/resources/`.
/// Plays the API server's part for what `meridian apply/get/delete` needs: namespaces must
/// exist, Services get a ClusterIP from the cluster's service CIDR, and a multi-document apply
/// is one etcd transaction: all of it lands or none of it does.
public struct ResourceStore: Sendable {
    public let client: any KeyValueStore

    public init(client: any KeyValueStore) {
        self.client = client
    }

    public static func key(for object: KubernetesObject) -> String {
        KeyLayout.resource(plural: object.kind.plural, namespace: object.namespace, name: object.name)
    }

    public func get(_ kind: ResourceKind, namespace: String?, name: String) async throws -> KubernetesObject? {
        let key = KeyLayout.resource(plural: kind.plural, namespace: kind.isNamespaced ? (namespace ?? "default") : nil, name: name)
        guard let kv = try await client.get(key) else { return nil }
        return try StoreCoding.decode(KubernetesObject.self, from: kv.value, key: kv.key)
    }

    /// Objects of a kind, in one namespace or (nil) all of them, sorted by namespace and name.
    public func list(_ kind: ResourceKind, namespace: String?) async throws -> [KubernetesObject] {
        let prefix = KeyLayout.resources(plural: kind.plural, namespace: kind.isNamespaced ? namespace : nil)
        return try await client.list(prefix: prefix).items.map {
            try StoreCoding.decode(KubernetesObject.self, from: $0.value, key: $0.key)
        }
    }

    /// Applies every object in one transaction. Fails without writing anything when a namespace
    /// is missing, a ClusterIP cannot be given, or the transaction would pass
    /// `EtcdTransactionLimits`; `source` names the file in errors.
    public func apply(_ objects: [KubernetesObject], source: String) async throws -> [(KubernetesObject, ApplyOutcome)] {
        let limit = EtcdTransactionLimits.maximumOperations
        guard objects.count <= limit else { throw StoreError.tooManyObjects(source: source, objects: objects.count, limit: limit) }
        let settings = try await ClusterSettings.load(from: client)
        let existingNamespaces = Set(try await list(.namespace, namespace: nil).map(\.name))
        let appliedNamespaces = Set(objects.filter { $0.kind == .namespace }.map(\.name))
        var allocator = try await ServiceIPAllocator.load(client, serviceCIDR: settings.serviceCIDR)
        var puts: [(key: String, value: Data)] = []
        var results: [(KubernetesObject, ApplyOutcome)] = []
        var seen: Set<String> = []
        for (index, original) in objects.enumerated() {
            var object = original
            let key = Self.key(for: object)
            let label = "\(source): document \(index + 1) (\(object.kind.rawValue) \"\(object.name)\")"
            guard seen.insert(key).inserted else {
                throw StoreError.duplicateObject(label: label)
            }
            if let namespace = object.namespace, !existingNamespaces.contains(namespace), !appliedNamespaces.contains(namespace) {
                throw StoreError.namespaceMissing(label: label, namespace: namespace)
            }
            let previous = try await client.get(key).map { try StoreCoding.decode(KubernetesObject.self, from: $0.value, key: $0.key) }
            if case let .pod(terminating)? = previous, terminating.metadata.isBeingDeleted {
                throw StoreError.objectTerminating(label: label)
            }
            if case var .service(service) = object {
                let previousIP: String? = if case let .service(old)? = previous { old.spec.clusterIP } else { nil }
                do {
                    if let ip = try allocator.assign(service: service, previousIP: previousIP) {
                        service.spec.clusterIP = ip
                        service.spec.clusterIPs = [ip]
                        puts.append((KeyLayout.serviceIP(ip), Data("\(object.namespace ?? "default")/\(object.name)".utf8)))
                    }
                } catch {
                    throw StoreError.clusterIPRefused(label: label, reason: error.description)
                }
                object = .service(service)
            }
            if case let .clusterProperty(property) = object, property.metadata.name == ClusterProperty.clusterID, property.spec.value != settings.name {
                throw StoreError.clusterPropertyFixed(label: label, cluster: settings.name)
            }
            if case var .serviceExport(export) = object {
                // The API server's stamp, which the oldest-export rule of the MCS API orders by.
                export.metadata.creationTimestamp = previous?.metadata.creationTimestamp ?? ISO8601DateFormatter().string(from: Date())
                object = .serviceExport(export)
            }
            let outcome: ApplyOutcome = previous == nil ? .created : previous == object ? .unchanged : .configured
            if outcome != .unchanged { puts.append((key, StoreCoding.encode(object))) }
            results.append((object, outcome))
        }
        try Self.checkFitsOneTransaction(puts, source: source)
        try await client.commit(puts: puts)
        return results
    }

    /// Refuses an apply that etcd would refuse as one transaction, before anything is sent.
    private static func checkFitsOneTransaction(_ puts: [(key: String, value: Data)], source: String) throws(StoreError) {
        let operationLimit = EtcdTransactionLimits.maximumOperations
        guard puts.count <= operationLimit else {
            throw .tooManyOperations(source: source, operations: puts.count, limit: operationLimit)
        }
        let bytes = EtcdTransactionLimits.requestBytes(puts: puts, deletes: [])
        let byteLimit = EtcdTransactionLimits.maximumRequestBytes
        guard bytes <= byteLimit else { throw .requestTooLarge(source: source, bytes: bytes, limit: byteLimit) }
    }

    /// Deletes one object (and, for a namespace, everything in it). Returns false if absent.
    ///
    /// A pod bound to a node is deleted gracefully, as Kubernetes does: it is stamped with a
    /// `deletionTimestamp` and the grace period (`gracePeriodSeconds`, else its spec's), shows as
    /// Terminating, its endpoints turn terminating, and its node removes it once it has stopped
    /// it. `force` removes the record at once (its node then stops it without a grace period's
    /// worth of serving). Pods inside a deleted namespace go at once too.
    public func delete(_ kind: ResourceKind, namespace: String?, name: String, gracePeriodSeconds: Int? = nil,
                       force: Bool = false) async throws -> Bool {
        guard let object = try await get(kind, namespace: namespace, name: name) else { return false }
        if case let .pod(pod) = object, pod.spec.nodeName != nil, !force {
            guard !pod.metadata.isBeingDeleted else { return true }
            var marked = pod.markedForDeletion(at: ISO8601DateFormatter().string(from: Date()))
            if let gracePeriodSeconds { marked.metadata.deletionGracePeriodSeconds = gracePeriodSeconds }
            try await client.commit(puts: [(Self.key(for: object), StoreCoding.encode(KubernetesObject.pod(marked)))])
            return true
        }
        var deletes = [Self.key(for: object)]
        if case let .service(service) = object, let ip = service.spec.clusterIP, IPAddress(ip) != nil {
            deletes.append(KeyLayout.serviceIP(ip))
        }
        if kind == .namespace {
            for namespacedKind in ResourceKind.allCases where namespacedKind.isNamespaced {
                for contained in try await list(namespacedKind, namespace: name) {
                    deletes.append(Self.key(for: contained))
                    if case let .service(service) = contained, let ip = service.spec.clusterIP, IPAddress(ip) != nil {
                        deletes.append(KeyLayout.serviceIP(ip))
                    }
                }
            }
        }
        try await client.commit(puts: [], deletes: deletes)
        return true
    }
}

/// Hands out ClusterIPs (and ClusterSetIPs) from the service CIDR; the claim is a key under
/// `meridian/ipam/services/` naming its owner, written in the same transaction as the Service.
public struct ServiceIPAllocator: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let cidr: IPCIDR
    /// Address → owner (`namespace/name` for a Service).
    public private(set) var used: [String: String]

    public static func load(_ client: any KeyValueStore, serviceCIDR: String) async throws -> ServiceIPAllocator {
        guard let cidr = IPCIDR(serviceCIDR) else { throw StoreError.malformed(key: KeyLayout.clusterSettings, detail: "service CIDR \(serviceCIDR)") }
        let claims = try await client.list(prefix: KeyLayout.serviceIPPrefix).items
        var used: [String: String] = [:]
        for claim in claims { used[String(claim.key.dropFirst(KeyLayout.serviceIPPrefix.count))] = claim.stringValue }
        return ServiceIPAllocator(cidr: cidr, used: used)
    }

    /// The ClusterIP the service gets, or nil when it needs none (headless) or keeps its own.
    mutating func assign(service: Service, previousIP: String?) throws(Failure) -> String? {
        let owner = "\(service.metadata.namespace ?? "default")/\(service.metadata.name)"
        let requested = service.spec.clusterIP.flatMap { $0.isEmpty ? nil : $0 }
        if requested == ServiceSpec.headlessClusterIP { return nil }
        if let previousIP, IPAddress(previousIP) != nil {
            if let requested, requested != previousIP {
                throw Failure(description: "field is immutable: was \(previousIP), requested \(requested)")
            }
            return previousIP
        }
        if let requested {
            guard let address = IPAddress(requested), cidr.contains(address) else {
                throw Failure(description: "\(requested) is not inside the service CIDR \(cidr)")
            }
            if let holder = used[requested], holder != owner {
                throw Failure(description: "\(requested) is already allocated to \(holder)")
            }
            used[requested] = owner
            return requested
        }
        return try allocate(owner: owner)
    }

    /// The first free address of the CIDR (from the 10th on), now held by `owner`.
    public mutating func allocate(owner: String) throws(Failure) -> String {
        let base = cidr.address.bytes
        let size = UInt32(1) << UInt32(32 - cidr.prefixLength)
        guard cidr.family == .ipv4, size > 12 else { throw Failure(description: "service CIDR \(cidr) is too small") }
        let start = base.reduce(UInt32(0)) { ($0 << 8) | UInt32($1) }
        for offset in UInt32(10)..<(size - 1) {
            let value = start + offset
            let text = "\(value >> 24).\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
            if used[text] == nil {
                used[text] = owner
                return text
            }
        }
        throw Failure(description: "service CIDR \(cidr) is exhausted")
    }

    /// Records that `address` is held by `owner` (a claim another writer made first).
    public mutating func markUsed(_ address: String, by owner: String) {
        used[address] = owner
    }
}
