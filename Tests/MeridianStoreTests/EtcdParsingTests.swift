import Foundation
import MeridianEtcd
import Testing

@Suite struct EtcdParsingTests {
    @Test func endpointsParse() throws {
        #expect(try EtcdEndpoint(url: "https://127.0.0.1:2379") == .tcp(host: "127.0.0.1", port: 2379))
        #expect(try EtcdEndpoint(url: "https://[::1]:2379") == .tcp(host: "::1", port: 2379))
        #expect(try EtcdEndpoint(url: "unixs:///run/etcd.sock") == .unix(path: "/run/etcd.sock"))
        #expect(throws: EtcdError.self) { try EtcdEndpoint(url: "https://127.0.0.1:0") }
        #expect(throws: EtcdError.self) { try EtcdEndpoint(url: "ftp://x:1") }
    }

    @Test func prefixRangeEndCoversExactlyThePrefix() {
        #expect(EtcdClient.prefixEnd("cilium/state/") == Data("cilium/state0".utf8))
        #expect(EtcdClient.prefixEnd("a\u{7f}") == Data([0x61, 0x80]))
        #expect(EtcdClient.prefixEnd("") == Data([0]))
    }
}

