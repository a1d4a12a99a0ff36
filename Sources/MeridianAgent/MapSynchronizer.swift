import CMeridianBPF
import MeridianCore
import MeridianDatapath

/// Brings the node's maps to a desired state with the fewest writes: it remembers what it
/// programmed and writes only the difference, in an order that never exposes a frontend
/// slot without its backend (backends first, then slots, then the service entry; removals
/// the other way round). `resync()` re-reads the maps, so drift from any cause is repaired.
/// Backend IDs and reverse-NAT indices are handed out from a high-water mark rather than
/// reused at once, and conntrack entries still naming a removed one are purged, so a live
/// connection can never be steered to a backend of another service that inherited its ID.
///
/// Backend states: a frontend's slots 1...count hold the backends new connections may choose,
/// the active ones, or the terminating ones when no backend is active (Cilium's fallback). A
/// terminating backend that is not slotted stays in the backends map with its flag set, under
/// its ID, so the connections that chose it (a socket connected to it, a service conntrack
/// entry naming it) keep it until it is gone.
struct MapSynchronizer {
    let maps: NodeMaps
    private(set) var ipcache: [IPCIDR: IPCacheEntry] = [:]
    /// NetworkPolicy ipBlock prefixes and their numbers (`mer_ipblock4`).
    private(set) var ipBlocks: [IPCIDR: UInt32] = [:]
    private(set) var slots: [SlotKey: mer_lb4_service] = [:]
    private(set) var backends: [UInt32: BackendAddress] = [:]
    /// The `MER_BACKEND_*` flag of each programmed backend.
    private(set) var backendFlags: [UInt32: UInt8] = [:]
    private(set) var reverseNAT: [UInt16: RevNATTarget] = [:]
    private var backendIDs: [BackendAddress: UInt32] = [:]
    private var revNATIndices: [RevNATTarget: UInt16] = [:]
    /// The backend IDs each programmed frontend lists (slotted or not), the frontends listing
    /// each backend, and each frontend's reverse-NAT index with the frontends using each: what
    /// lets one frontend be rewritten alone, and a backend or index go once nothing lists it.
    /// Rebuilt by a full apply, which must follow `resync()`.
    private var members: [Frontend: Set<UInt32>] = [:]
    private var listedBy: [UInt32: Set<Frontend>] = [:]
    private var frontendRevNAT: [Frontend: UInt16] = [:]
    private var revNATUsers: [UInt16: Set<Frontend>] = [:]
    private var servicesNeedFullApply = true
    /// The backend ID in each slot (1...count) of the frontends programmed since the last full
    /// apply, as `slots` holds them: rewriting a frontend of 10,000 compares arrays instead of
    /// looking up every slot.
    private var slotIDs: [Frontend: [UInt32]] = [:]
    private var nextBackendID: UInt32 = 1
    private var nextRevNAT: UInt16 = 1
    private(set) var writes = 0

    struct SlotKey: Hashable {
        var frontend: Frontend
        var slot: UInt16
    }

    struct RevNATTarget: Hashable {
        var address: IPAddress
        var port: UInt16
    }

    init(maps: NodeMaps) {
        self.maps = maps
        resync()
    }

    /// Reloads the cache from the maps themselves.
    mutating func resync() {
        ipcache = [:]
        for (key, value) in maps.ipcache.entries() {
            guard let prefix = try? IPCIDR(address: IPAddress(datapathValue: key.ip4), prefixLength: Int(key.prefixlen)) else { continue }
            ipcache[prefix] = IPCacheEntry(identity: value.identity,
                                           tunnelEndpoint: value.tunnel_endpoint == 0 ? nil : IPAddress(datapathValue: value.tunnel_endpoint),
                                           flags: value.flags, clusterID: value.cluster_id)
        }
        ipBlocks = Self.readIPBlocks(maps)
        backends = [:]
        backendIDs = [:]
        backendFlags = [:]
        for (id, value) in maps.backends.entries() {
            let backend = BackendAddress(address: IPAddress(datapathValue: value.address), port: UInt16(bigEndian: value.port),
                                         proto: value.proto, clusterID: value.cluster_id)
            backends[id] = backend
            backendIDs[backend] = id
            backendFlags[id] = value.flags
        }
        reverseNAT = [:]
        revNATIndices = [:]
        for (index, value) in maps.reverseNAT.entries() {
            let target = RevNATTarget(address: IPAddress(datapathValue: value.address), port: UInt16(bigEndian: value.port))
            reverseNAT[index] = target
            revNATIndices[target] = index
        }
        nextBackendID = max(nextBackendID, (backends.keys.max() ?? 0) &+ 1)
        nextRevNAT = max(nextRevNAT, (reverseNAT.keys.max() ?? 0) &+ 1)
        members = [:]
        listedBy = [:]
        frontendRevNAT = [:]
        revNATUsers = [:]
        slotIDs = [:]
        servicesNeedFullApply = true
        slots = [:]
        for (key, value) in maps.services.entries() {
            let frontend = Frontend(address: IPAddress(datapathValue: key.address), port: UInt16(bigEndian: key.dport), proto: key.proto)
            slots[SlotKey(frontend: frontend, slot: key.backend_slot)] = value
        }
    }

    /// Applies `desired`; returns how many map writes (updates and deletes) it took.
    @discardableResult
    mutating func apply(_ desired: DesiredDatapath) throws(BPFError) -> Int {
        let before = writes
        try applyIPCache(desired.ipcache)
        try applyIPBlocks(desired.ipBlocks)
        try applyServices(desired.services, states: desired.backendStates)
        return writes - before
    }

    /// What moved on the service side, for an apply that rewrites only those frontends.
    struct ServiceChanges {
        /// Every frontend's backends and the backends that are not active, as desired now.
        var frontends: [Frontend: [BackendAddress]]
        var states: [BackendAddress: BackendState]
        /// The frontends whose backends changed (absent from `frontends`: removed).
        var changed: Set<Frontend>
        /// Backends whose state changed: every frontend listing one is rewritten too.
        var changedStates: Set<BackendAddress>
    }

    /// Applies only what changed: the listed ipcache prefixes (nil: removed), the ipBlocks, and
    /// the changed frontends when given. Returns how many map writes it took. The cost follows
    /// the changes, where `apply(_:)` diffs the whole state.
    @discardableResult
    mutating func apply(ipcache changes: [IPCIDR: IPCacheEntry?], ipBlocks: [IPCIDR: UInt32], services: ServiceChanges?) throws(BPFError) -> Int {
        let before = writes
        for (prefix, entry) in changes where ipcache[prefix] != entry {
            if let entry { try writeIPCache(prefix, entry) } else { try deleteIPCache(prefix) }
        }
        try applyIPBlocks(ipBlocks)
        if let services {
            if servicesNeedFullApply {
                try applyServices(services.frontends, states: services.states)
            } else {
                try applyServices(services)
            }
        }
        return writes - before
    }

    /// What the node's ipBlock map holds: prefix to number.
    static func readIPBlocks(_ maps: NodeMaps) -> [IPCIDR: UInt32] {
        var blocks: [IPCIDR: UInt32] = [:]
        for (key, value) in maps.ipBlocks.entries() {
            guard let prefix = try? IPCIDR(address: IPAddress(datapathValue: key.ip4), prefixLength: Int(key.prefixlen)) else { continue }
            blocks[prefix] = value.identity
        }
        return blocks
    }

    private mutating func applyIPBlocks(_ desired: [IPCIDR: UInt32]) throws(BPFError) {
        for (prefix, number) in desired where ipBlocks[prefix] != number {
            guard let ip = prefix.address.datapathValue else { continue }
            try maps.ipBlocks.update(mer_ipblock_key(prefixlen: UInt32(prefix.prefixLength), ip4: ip),
                                     mer_ipblock_value(identity: number, pad: 0))
            ipBlocks[prefix] = number
            writes += 1
        }
        for prefix in ipBlocks.keys where desired[prefix] == nil {
            if let ip = prefix.address.datapathValue {
                try maps.ipBlocks.delete(mer_ipblock_key(prefixlen: UInt32(prefix.prefixLength), ip4: ip))
                writes += 1
            }
            ipBlocks[prefix] = nil
        }
    }

    private mutating func applyIPCache(_ desired: [IPCIDR: IPCacheEntry]) throws(BPFError) {
        for (prefix, entry) in desired where ipcache[prefix] != entry { try writeIPCache(prefix, entry) }
        for prefix in ipcache.keys where desired[prefix] == nil { try deleteIPCache(prefix) }
    }

    private mutating func writeIPCache(_ prefix: IPCIDR, _ entry: IPCacheEntry) throws(BPFError) {
        guard let ip = prefix.address.datapathValue else { return }
        var value = mer_ipcache_value()
        value.identity = entry.identity
        value.tunnel_endpoint = entry.tunnelEndpoint?.datapathValue ?? 0
        value.flags = entry.flags
        value.cluster_id = entry.clusterID
        try maps.ipcache.update(mer_ipcache_key(prefixlen: UInt32(prefix.prefixLength), ip4: ip), value)
        ipcache[prefix] = entry
        writes += 1
    }

    private mutating func deleteIPCache(_ prefix: IPCIDR) throws(BPFError) {
        if let ip = prefix.address.datapathValue {
            try maps.ipcache.delete(mer_ipcache_key(prefixlen: UInt32(prefix.prefixLength), ip4: ip))
            writes += 1
        }
        ipcache[prefix] = nil
    }

    /// Backends one frontend programs at most.
    static let maximumBackendsPerFrontend = 16_384

    /// The datapath flag of a backend state: anything but active takes no new connections
    /// while an active backend exists.
    static func flag(of state: BackendState) -> UInt8 {
        state == .active ? UInt8(MER_BACKEND_ACTIVE) : UInt8(MER_BACKEND_TERMINATING)
    }

    /// Programs every frontend of `desired` and removes every other one the maps hold, with
    /// the slots past a frontend's count and the backends and reverse-NAT entries nothing lists.
    private mutating func applyServices(_ desired: [Frontend: [BackendAddress]], states: [BackendAddress: BackendState]) throws(BPFError) {
        members = [:]
        listedBy = [:]
        frontendRevNAT = [:]
        revNATUsers = [:]
        slotIDs = [:]
        var released = Released()
        let programmed = Set(slots.keys.lazy.map(\.frontend))
        for frontend in Set(desired.keys).union(programmed).sorted() {
            try program(frontend, desired[frontend], states: states, released: &released)
        }
        for key in slots.keys where key.slot != 0 && key.slot > slots[SlotKey(frontend: key.frontend, slot: 0)]?.count ?? 0 {
            try deleteSlot(key)
        }
        try remove(backends: Set(backends.keys).subtracting(listedBy.keys), reverseNAT: Set(reverseNAT.keys).subtracting(revNATUsers.keys))
        servicesNeedFullApply = false
    }

    /// Rewrites only the frontends that changed or list a backend whose state did.
    private mutating func applyServices(_ changes: ServiceChanges) throws(BPFError) {
        var frontends = changes.changed
        for backend in changes.changedStates {
            if let id = backendIDs[backend] { frontends.formUnion(listedBy[id] ?? []) }
        }
        var released = Released()
        for frontend in frontends.sorted() {
            try program(frontend, changes.frontends[frontend], states: changes.states, released: &released)
        }
        try remove(backends: released.backends.filter { listedBy[$0] == nil }, reverseNAT: released.reverseNAT.filter { revNATUsers[$0] == nil })
    }

    /// Backend IDs and reverse-NAT indices a frontend stopped using during an apply.
    private struct Released {
        var backends: Set<UInt32> = []
        var reverseNAT: Set<UInt16> = []
    }

    /// Programs one frontend (nil: removes it): its backends and reverse NAT entry first, so
    /// every slot written resolves, then the slots, then the service entry with the count, and
    /// only then the slots past the new count.
    private mutating func program(_ frontend: Frontend, _ desired: [BackendAddress]?, states: [BackendAddress: BackendState],
                                  released: inout Released) throws(BPFError) {
        let master = SlotKey(frontend: frontend, slot: 0)
        let oldCount = UInt16(slots[master]?.count ?? 0)
        var listed: Set<UInt32> = []
        var revNAT: UInt16?
        var count: UInt16 = 0
        if let desired {
            let index = try revNATIndex(for: RevNATTarget(address: frontend.address, port: frontend.port))
            revNAT = index
            // A frontend's slots are numbered in 16 bits; past the cap the rest of the backends
            // (imported ones come after local ones) are left out rather than trapping.
            let members = desired.prefix(Self.maximumBackendsPerFrontend)
            var memberIDs: [UInt32] = []
            memberIDs.reserveCapacity(members.count)
            var activeIDs: [UInt32] = []
            for backend in members {
                let state = states[backend] ?? .active
                let id = try backendID(for: backend, flags: Self.flag(of: state))
                memberIDs.append(id)
                if state == .active { activeIDs.append(id) }
            }
            listed = Set(memberIDs)
            // New connections choose among the active backends, or all of them when none is
            // active (Cilium's fallback), in slot order.
            let slotted = activeIDs.isEmpty ? memberIDs : activeIDs
            // The slots this frontend was last programmed with, when known, spare a lookup per slot.
            let previous = slotIDs[frontend]
            for (offset, id) in slotted.enumerated() {
                if let previous, offset < previous.count, previous[offset] == id { continue }
                var slot = mer_lb4_service()
                slot.backend_id = id
                try writeSlotIfChanged(SlotKey(frontend: frontend, slot: UInt16(offset + 1)), slot)
            }
            count = UInt16(slotted.count)
            var entry = mer_lb4_service()
            entry.count = count
            entry.rev_nat_index = index
            try writeSlotIfChanged(master, entry)
            slotIDs[frontend] = slotted
        } else {
            if slots[master] != nil { try deleteSlot(master) }
            slotIDs[frontend] = nil
        }
        if oldCount > count {
            for slot in (count + 1)...oldCount where slots[SlotKey(frontend: frontend, slot: slot)] != nil {
                try deleteSlot(SlotKey(frontend: frontend, slot: slot))
            }
        }
        for id in (members[frontend] ?? []).subtracting(listed) {
            listedBy[id]?.remove(frontend)
            if listedBy[id]?.isEmpty == true { listedBy[id] = nil }
            released.backends.insert(id)
        }
        for id in listed { listedBy[id, default: []].insert(frontend) }
        members[frontend] = listed.isEmpty ? nil : listed
        if let old = frontendRevNAT[frontend], old != revNAT {
            revNATUsers[old]?.remove(frontend)
            if revNATUsers[old]?.isEmpty == true { revNATUsers[old] = nil }
            released.reverseNAT.insert(old)
        }
        frontendRevNAT[frontend] = revNAT
        if let revNAT { revNATUsers[revNAT, default: []].insert(frontend) }
    }

    /// Removes backends and reverse-NAT entries no frontend uses, after purging the
    /// connections that still name them.
    private mutating func remove(backends removedBackends: Set<UInt32>, reverseNAT removedRevNAT: Set<UInt16>) throws(BPFError) {
        if !removedBackends.isEmpty || !removedRevNAT.isEmpty {
            try purgeConntrack(backends: removedBackends, reverseNAT: removedRevNAT)
        }
        for id in removedBackends {
            try maps.backends.delete(id)
            if let backend = backends.removeValue(forKey: id) { backendIDs[backend] = nil }
            backendFlags[id] = nil
            writes += 1
        }
        for index in removedRevNAT {
            try maps.reverseNAT.delete(index)
            if let target = reverseNAT.removeValue(forKey: index) { revNATIndices[target] = nil }
            writes += 1
        }
    }

    /// Removes the service legs that chose a removed backend and forgets reverse NAT on the
    /// connections of a removed frontend, before either ID can be handed out again.
    private mutating func purgeConntrack(backends removed: Set<UInt32>, reverseNAT removedRevNAT: Set<UInt16>) throws(BPFError) {
        for (key, entry) in maps.conntrack.entries() {
            let staleService = key.dir == UInt8(MER_CT_DIR_SERVICE) && removed.contains(entry.backend_id)
            let staleRevNAT = entry.rev_nat_index != 0 && removedRevNAT.contains(entry.rev_nat_index)
            if staleService || staleRevNAT {
                try maps.conntrack.delete(key)
                writes += 1
            }
        }
    }

    /// The ID of `backend`, programmed with `flags`: an existing backend keeps its ID and only
    /// its flag is rewritten when it changed.
    private mutating func backendID(for backend: BackendAddress, flags: UInt8) throws(BPFError) -> UInt32 {
        let id: UInt32
        if let existing = backendIDs[backend] {
            guard backendFlags[existing] != flags else { return existing }
            id = existing
        } else {
            var fresh = nextBackendID
            while fresh == 0 || backends[fresh] != nil { fresh &+= 1 }
            nextBackendID = fresh &+ 1
            id = fresh
        }
        guard let address = backend.address.datapathValue else { throw BPFError("backend \(backend.address) is not IPv4", errno: 22) }
        try maps.backends.update(id, mer_lb4_backend(address: address, port: backend.port.bigEndian, proto: backend.proto,
                                                         flags: flags, cluster_id: backend.clusterID, pad: 0))
        backends[id] = backend
        backendIDs[backend] = id
        backendFlags[id] = flags
        writes += 1
        return id
    }

    private mutating func revNATIndex(for target: RevNATTarget) throws(BPFError) -> UInt16 {
        if let index = revNATIndices[target] { return index }
        var index = nextRevNAT
        while index == 0 || reverseNAT[index] != nil { index &+= 1 }
        nextRevNAT = index &+ 1
        guard let address = target.address.datapathValue else { throw BPFError("frontend \(target.address) is not IPv4", errno: 22) }
        try maps.reverseNAT.update(index, mer_lb4_revnat(address: address, port: target.port.bigEndian, pad: 0))
        reverseNAT[index] = target
        revNATIndices[target] = index
        writes += 1
        return index
    }

    private mutating func writeSlotIfChanged(_ key: SlotKey, _ value: mer_lb4_service) throws(BPFError) {
        guard slots[key].map({ !Self.same($0, value) }) ?? true else { return }
        try maps.services.update(cKey(key), value)
        slots[key] = value
        writes += 1
    }

    private mutating func deleteSlot(_ key: SlotKey) throws(BPFError) {
        try maps.services.delete(cKey(key))
        slots[key] = nil
        writes += 1
    }

    private func cKey(_ key: SlotKey) -> mer_lb4_key {
        var c = mer_lb4_key()
        c.address = key.frontend.address.datapathValue ?? 0
        c.dport = key.frontend.port.bigEndian
        c.proto = key.frontend.proto
        c.backend_slot = key.slot
        return c
    }

    private static func same(_ a: mer_lb4_service, _ b: mer_lb4_service) -> Bool {
        a.backend_id == b.backend_id && a.count == b.count && a.rev_nat_index == b.rev_nat_index && a.flags == b.flags
    }
}
