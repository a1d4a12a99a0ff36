/// How a global service with many backends is exported: Cilium writes one record holding every
/// backend (a 5,000-backend service is about 790 KiB per update, and etcd's 1.5 MiB request
/// limit caps a service below 10,000 backends per cluster). Meridian keeps that record, without
/// backends and with `backendSlices: K`, and writes the backends in K slices at
/// `cilium/state/serviceslices/v1/<cluster>/<ns>/<name>/<i>`, each a `ClusterService` holding the
/// backends whose address hashes to it. A backend change rewrites the one slice it hashes to.
///
/// K is a function of the number of backends alone: 1 (no slices, the record exactly Cilium's)
/// up to `backendsPerSlice`, then the next power of two of the backends over `backendsPerSlice`,
/// so a slice holds 500 to 1,000 backends on average and crossing a power of two rewrites every
/// slice once. The hash is FNV-1a of the address's text, the same in every process.
public enum ServiceSlicing {
    public static let backendsPerSlice = 1_000
    /// The most slices a record may announce; 1,024 slices of 1,000 backends is far past any
    /// cluster's pods.
    public static let maximumSlices = 1_024

    public static func sliceCount(backends: Int) -> Int {
        guard backends > backendsPerSlice else { return 1 }
        let needed = (backends + backendsPerSlice - 1) / backendsPerSlice
        var count = 1
        while count < needed { count *= 2 }
        return min(count, maximumSlices)
    }

    /// The slice of `count` that the backend at `ip` belongs to.
    public static func slice(of ip: String, count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in ip.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return Int(hash % UInt64(max(1, count)))
    }

    /// `service` as exported: unchanged when it needs no slices; otherwise the record without
    /// backends, announcing the slices, and every slice (in order; a slice may be empty).
    public static func split(_ service: ClusterService) -> (record: ClusterService, slices: [ClusterService]) {
        let count = sliceCount(backends: service.backends.count)
        guard count > 1 else { return (service, []) }
        var record = service
        record.backends = [:]
        record.backendStates = nil
        record.hostnames = nil
        record.backendSlices = count
        var slices = (0..<count).map { index in
            ClusterService(cluster: service.cluster, namespace: service.namespace, name: service.name, includeExternal: service.includeExternal,
                           shared: service.shared, clusterID: service.clusterID, backendSlices: count, slice: index)
        }
        for (ip, ports) in service.backends {
            let index = slice(of: ip, count: count)
            slices[index].backends[ip] = ports
            if let state = service.backendStates?[ip] { slices[index].backendStates = (slices[index].backendStates ?? [:]).merging([ip: state]) { $1 } }
            if let hostname = service.hostnames?[ip] { slices[index].hostnames = (slices[index].hostnames ?? [:]).merging([ip: hostname]) { $1 } }
        }
        return (record, slices)
    }

    /// The record with the backends of its slices: those that announce the record's count, and
    /// of each backend the slice it hashes to (a slice cannot place a backend in another's).
    /// A record without `backendSlices` is returned as it is.
    public static func merge(_ record: ClusterService, slices: [ClusterService]) -> ClusterService {
        guard let count = record.backendSlices, count > 1 else { return record }
        var merged = record
        merged.backendSlices = nil
        for part in slices where part.backendSlices == count && part.cluster == record.cluster && part.namespacedName == record.namespacedName {
            guard let index = part.slice else { continue }
            for (ip, ports) in part.backends where slice(of: ip, count: count) == index {
                merged.backends[ip] = ports
                if let state = part.backendStates?[ip] { merged.backendStates = (merged.backendStates ?? [:]).merging([ip: state]) { $1 } }
                if let hostname = part.hostnames?[ip] { merged.hostnames = (merged.hostnames ?? [:]).merging([ip: hostname]) { $1 } }
            }
        }
        return merged
    }

    /// `records`, each with the backends of its own slices among `slices` (`merge(_:slices:)`).
    public static func merge(_ records: [ClusterService], slices: [ClusterService]) -> [ClusterService] {
        let byService = Dictionary(grouping: slices) { "\($0.cluster)/\($0.namespacedName)" }
        return records.map { merge($0, slices: byService["\($0.cluster)/\($0.namespacedName)"] ?? []) }
    }

    /// `<namespace>/<name>/<slice>`: the key of a slice below its cluster's prefix.
    public static func keyName(of slice: ClusterService) -> String {
        "\(slice.namespacedName)/\(slice.slice ?? 0)"
    }
}
