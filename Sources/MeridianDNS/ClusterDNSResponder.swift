/// What the node agent knows about one Service when a query names it.
public enum ServiceLookupResult: Sendable, Hashable {
    /// The Service exists; an empty list (a headless Service without ready endpoints) makes
    /// the name exist with no A records, which is NODATA rather than NXDOMAIN.
    case addresses([IPv4Address])
    case noSuchService
    /// The agent cannot tell yet (its Service cache is not synced); the answer is SERVFAIL so
    /// that the client retries instead of caching a wrong NXDOMAIN.
    case unavailable
}

/// The cluster DNS server's decisions, without sockets: a query in, the response out. Kept pure
/// so that the UDP server only moves bytes and every answer can be checked byte for byte in tests.
public struct ClusterDNSResponder: Sendable {
    public var domain: ClusterDomain
    /// The clusterset zone answered beside `domain` (`clusterset.local`); nil answers only `domain`.
    public var clusterSetDomain: ClusterDomain?
    /// TTL of the A records; short, because a Service's ClusterIP can change on re-creation.
    public var ttl: UInt32
    /// The UDP payload size advertised in responses' OPT record and the cap on response size;
    /// 1232 avoids IP fragmentation on common paths (DNS Flag Day 2020).
    public var udpPayloadSize: UInt16

    public init(domain: ClusterDomain = .default, clusterSetDomain: ClusterDomain? = .clusterSet, ttl: UInt32 = 30,
                udpPayloadSize: UInt16 = 1232) {
        self.domain = domain
        self.clusterSetDomain = clusterSetDomain
        self.ttl = ttl
        self.udpPayloadSize = udpPayloadSize
    }

    /// The response to `query`, or nil when nothing must be sent because the message is itself
    /// a response (answering it could start a loop between two servers).
    ///
    /// Decision order: opcode other than QUERY → NOTIMP; not exactly one question → FORMERR;
    /// EDNS version above 0 → BADVERS; class other than IN or ANY → REFUSED; then the name:
    /// outside the domain → REFUSED, in the domain but not a Service, or an unknown Service →
    /// NXDOMAIN (authoritative), a known Service → its A records for A and ANY queries and
    /// NOERROR without answers (NODATA) for AAAA and every other type.
    public func response(to query: DNSMessage, lookup: (ServiceDNSName) -> ServiceLookupResult) -> DNSMessage? {
        guard !query.header.isResponse else { return nil }
        func reply(_ rcode: DNSResponseCode, authoritative: Bool = false, answers: [DNSResourceRecord] = []) -> DNSMessage {
            .response(to: query, rcode: rcode, authoritative: authoritative, answers: answers, udpPayloadSize: udpPayloadSize)
        }
        guard query.header.opcode == .query else { return reply(.notImplemented) }
        guard query.questions.count == 1, let question = query.questions.first else { return reply(.formatError) }
        if let edns = query.edns, edns.version != 0 { return reply(.badVersion) }
        guard question.dnsClass == .internet || question.dnsClass == .any else { return reply(.refused) }

        var resolution = domain.resolve(question.name)
        if resolution == .notInZone, let clusterSetDomain {
            resolution = clusterSetDomain.resolve(question.name, zone: .clusterSet)
        }
        switch resolution {
        case .notInZone:
            return reply(.refused)
        case .nonexistent:
            return reply(.nonExistentDomain, authoritative: true)
        case let .service(service):
            switch lookup(service) {
            case .noSuchService:
                return reply(.nonExistentDomain, authoritative: true)
            case .unavailable:
                return reply(.serverFailure)
            case let .addresses(addresses):
                guard question.type == .a || question.type == .any else { return reply(.noError, authoritative: true) }
                let answers = addresses.map { DNSResourceRecord.a(name: question.name, address: $0, ttl: ttl) }
                return reply(.noError, authoritative: true, answers: answers)
            }
        }
    }

    /// What to do with one received datagram: the encoded response to send, cut to what the
    /// client accepts over UDP (512 bytes, or its EDNS size up to `udpPayloadSize`), or nothing,
    /// and why. A message that does not parse but has a query header gets FORMERR with its id.
    public func verdict(onDatagram bytes: [UInt8], lookup: (ServiceDNSName) -> ServiceLookupResult) -> Verdict {
        let query: DNSMessage
        do {
            query = try DNSMessage(parsing: bytes)
        } catch {
            guard bytes.count >= 12 else { return .tooShort }
            let header = DNSWireReader.header(bytes)
            guard !header.isResponse else { return .response }
            return .formatError(DNSMessage.response(to: DNSMessage(header: header), rcode: .formatError, authoritative: false).encoded(), error)
        }
        guard let response = response(to: query, lookup: lookup) else { return .response }
        let limit = min(query.maxUDPResponseSize, max(DNSMessage.minimumUDPPayloadSize, Int(udpPayloadSize)))
        return .answer(response.encoded(maxSize: limit))
    }

    /// The bytes `verdict(onDatagram:lookup:)` says to send, or nil when nothing must be sent.
    public func response(toQuery bytes: [UInt8], lookup: (ServiceDNSName) -> ServiceLookupResult) -> [UInt8]? {
        switch verdict(onDatagram: bytes, lookup: lookup) {
        case let .answer(reply), let .formatError(reply, _): reply
        case .tooShort, .response: nil
        }
    }

    /// The outcome for one datagram, so that a server can count what it could not answer as asked.
    public enum Verdict: Sendable, Hashable {
        /// Send this response: answers, or the error code the query earned (REFUSED, NXDOMAIN...).
        case answer([UInt8])
        /// The message does not parse: send this FORMERR, which carries the query's id.
        case formatError([UInt8], DNSWireError)
        /// Send nothing: shorter than a DNS header, so there is not even an id to answer.
        case tooShort
        /// Send nothing: the message is a response, and answering it could start a loop between two servers.
        case response
    }
}
