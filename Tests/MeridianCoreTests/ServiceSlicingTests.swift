import MeridianCore
import Testing

/// Splitting a large global service's backends into slices and merging them back.
@Suite("Service slicing")
struct ServiceSlicingTests {
    static func service(backends count: Int) -> ClusterService {
        var service = ClusterService(cluster: "c2", namespace: "shop", name: "web", frontends: ["10.102.0.10": ["http": L4Addr(protocol: .tcp, port: 80)]],
                                     includeExternal: true, shared: true, clusterID: 2)
        for index in 0..<count {
            let ip = "10.2.\(index / 250).\(index % 250 + 2)"
            service.backends[ip] = ["http": L4Addr(protocol: .tcp, port: 8080)]
            if index % 7 == 0 { service.backendStates = (service.backendStates ?? [:]).merging([ip: "terminating"]) { $1 } }
        }
        return service
    }

    @Test("one record up to 1,000 backends, then a power of two of slices holding about 500 to 1,000 each")
    func counts() {
        #expect([1, 1_000, 1_001, 2_000, 2_001, 10_000, 1_000_000, 2_000_000].map { ServiceSlicing.sliceCount(backends: $0) }
            == [1, 1, 2, 2, 4, 16, 1_024, 1_024])
        let (record, slices) = ServiceSlicing.split(Self.service(backends: 10_000))
        #expect(record.backendSlices == 16 && record.backends.isEmpty && record.backendStates == nil && !record.frontends.isEmpty)
        #expect(slices.count == 16 && slices.allSatisfy { $0.backends.count < 1_000 && $0.frontends.isEmpty })
        #expect(slices.map(\.slice) == Array(0..<16).map { $0 })
        let small = Self.service(backends: 900)
        #expect(ServiceSlicing.split(small).record == small && ServiceSlicing.split(small).slices.isEmpty)
    }

    @Test("merging the slices gives the service back, states included; one backend changes one slice")
    func roundTrip() {
        let service = Self.service(backends: 3_000)
        let (record, slices) = ServiceSlicing.split(service)
        #expect(ServiceSlicing.merge(record, slices: slices) == service)
        var changed = service
        changed.backends["10.2.3.7"] = nil
        changed.backendStates?["10.2.3.7"] = nil
        let after = ServiceSlicing.split(changed).slices
        #expect(zip(slices, after).filter { $0 != $1 }.map(\.0.slice) == [ServiceSlicing.slice(of: "10.2.3.7", count: 4)])
    }

    @Test("a slice cannot place a backend that hashes elsewhere, and slices of another count, cluster or service are ignored")
    func mergeTakesOnlyWhatBelongs() {
        let (record, slices) = ServiceSlicing.split(Self.service(backends: 2_500))
        var intruder = slices[0]
        let elsewhere = (0..<250).map { "10.9.0.\($0)" }.first { ServiceSlicing.slice(of: $0, count: 4) != 0 }!
        intruder.backends[elsewhere] = ["http": L4Addr(protocol: .tcp, port: 8080)]
        var stale = slices[1]
        stale.backendSlices = 8
        stale.backends["10.9.1.1"] = ["http": L4Addr(protocol: .tcp, port: 8080)]
        var foreign = slices[2]
        foreign.cluster = "c3"
        foreign.backends["10.9.2.1"] = ["http": L4Addr(protocol: .tcp, port: 8080)]
        let merged = ServiceSlicing.merge(record, slices: [intruder, stale, foreign] + slices[1...])
        #expect(merged.backends.count == 2_500)
        #expect(merged.backends[elsewhere] == nil)
    }
}
