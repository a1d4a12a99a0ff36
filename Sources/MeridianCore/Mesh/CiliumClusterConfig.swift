import Foundation

/// The configuration a cluster publishes under `cilium/cluster-config/<cluster>`.
///
/// A remote cluster reads it before anything else: without it the connection does not
/// proceed, and its ID and capabilities decide how the rest of the remote's data is read
/// (sync canaries, the KVStoreMesh cache prefix, the identity layout).
/// JSON: `{"id":3,"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`;
/// absent capabilities are omitted, unknown keys are ignored on read.
public struct CiliumClusterConfig: Codable, Sendable, Hashable {
    /// Features the publishing cluster supports; every field is optional on the wire.
    public struct Capabilities: Codable, Sendable, Hashable {
        /// The cluster writes `cilium/synced/<cluster>/<prefix>` once each prefix is fully written.
        public var syncedCanaries: Bool?
        /// The data is read from `cilium/cache/...` (KVStoreMesh) instead of `cilium/state/...`.
        public var cached: Bool?
        /// 255 or 511; absent means 255.
        public var maxConnectedClusters: UInt32?
        public var serviceExportsEnabled: Bool?
        /// `""`, `services-and-endpointslices` or `endpointslices-only`.
        public var endpointSlicesExportMode: String?

        public init(
            syncedCanaries: Bool? = nil,
            cached: Bool? = nil,
            maxConnectedClusters: UInt32? = nil,
            serviceExportsEnabled: Bool? = nil,
            endpointSlicesExportMode: String? = nil
        ) {
            self.syncedCanaries = syncedCanaries
            self.cached = cached
            self.maxConnectedClusters = maxConnectedClusters
            self.serviceExportsEnabled = serviceExportsEnabled
            self.endpointSlicesExportMode = endpointSlicesExportMode
        }
    }

    public var id: UInt32
    public var capabilities: Capabilities

    public init(id: UInt32, capabilities: Capabilities = Capabilities()) {
        self.id = id
        self.capabilities = capabilities
    }

    private enum CodingKeys: String, CodingKey {
        case id, capabilities
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(UInt32.self, forKey: .id) ?? 0
        capabilities = try container.decodeIfPresent(Capabilities.self, forKey: .capabilities) ?? Capabilities()
    }

    /// The mesh size the config announces: `.c255` when absent or 0, nil for a value this
    /// implementation does not know (the connection must then be refused).
    public var effectiveMaxConnectedClusters: MaxConnectedClusters? {
        guard let value = capabilities.maxConnectedClusters, value != 0 else { return .c255 }
        return MaxConnectedClusters(rawValue: value)
    }
}

/// JSON coders configured for records stored in etcd.
///
/// Keys are sorted and slashes are not escaped, so that encoding the same record twice gives
/// the same bytes and an unchanged record never causes a spurious etcd write.
public enum CiliumJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        JSONDecoder()
    }
}
