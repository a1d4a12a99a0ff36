import Foundation

/// One member's own view, from etcd's Maintenance.Status.
public struct EtcdMemberStatus: Sendable, Hashable, Codable {
    public var memberID: UInt64
    /// The leader this member follows (0: it knows none, so it cannot serve writes).
    public var leader: UInt64
    public var raftTerm: UInt64
    public var raftIndex: UInt64
    public var backendBytes: Int64
    public var version: String

    public var isLeader: Bool { leader != 0 && leader == memberID }
}

/// The health of a store of one or more etcd members, as operators read it in `clustermesh
/// status` and `lab status`: every configured member asked on its own, whether it answers, which
/// leader it follows, and whether a majority agrees on one, which is what writes need.
public struct EtcdStoreHealth: Sendable, Hashable, Codable {
    /// One configured member: what it said about itself, or why it said nothing.
    public struct Member: Sendable, Hashable, Codable {
        public var endpoint: String
        public var status: EtcdMemberStatus?
        /// Why the member did not answer.
        public var error: String?

        public var state: String {
            guard let status else { return "unreachable" }
            if status.leader == 0 { return "no leader" }
            return status.isLeader ? "leader" : "follower"
        }
    }

    public var members: [Member]

    /// True when a majority of the configured members answer and follow the same leader.
    public var hasQuorum: Bool {
        let leaders = members.compactMap { $0.status?.leader }.filter { $0 != 0 }
        let votes = Dictionary(grouping: leaders, by: { $0 }).values.map(\.count).max() ?? 0
        return votes > members.count / 2
    }

    public var leaderEndpoint: String? { members.first { $0.status?.isLeader == true }?.endpoint }

    /// One line: `3/3 members, leader https://...` or `1/3 members answer: no quorum`.
    public var summary: String {
        let answering = members.filter { $0.status != nil }.count
        guard hasQuorum else { return "\(answering)/\(members.count) members answer: no quorum, writes fail" }
        return "\(answering)/\(members.count) members healthy, leader \(leaderEndpoint ?? "?")"
    }

    /// Asks each member of `configuration` on its own connection, in parallel, with `timeout`.
    public static func check(_ configuration: EtcdClientConfiguration, timeout: Duration = .seconds(2)) async -> EtcdStoreHealth {
        await withTaskGroup(of: (Int, Member).self) { group in
            for (index, endpoint) in configuration.endpoints.enumerated() {
                group.addTask {
                    var single = configuration.member(endpoint)
                    single.requestTimeout = timeout
                    single.maxReconnectBackoff = .milliseconds(200)
                    do {
                        let status = try await EtcdClient.withClient(single) { try await $0.memberStatus() }
                        return (index, Member(endpoint: endpoint.description, status: status))
                    } catch {
                        return (index, Member(endpoint: endpoint.description, error: "\(error)"))
                    }
                }
            }
            var members = [Member?](repeating: nil, count: configuration.endpoints.count)
            for await (index, member) in group { members[index] = member }
            return EtcdStoreHealth(members: members.compactMap { $0 })
        }
    }
}
