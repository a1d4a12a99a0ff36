import Foundation

extension RemoteRecordValidation {
    /// An ipcache entry must sit under its own IP (or `IP/length` when it has a `Mask`), cover
    /// only addresses inside the peer's pod CIDRs (never `/0`), carry a tunnel endpoint
    /// (`HostIP`) that parses and can be tunnelled to, an identity of the remote's own range
    /// (identity 0 is malformed, 1...255 reserved), and valid names: `K8sNamespace` a DNS-1123
    /// label, `K8sPodName` a DNS-1123 subdomain (both may be empty), named ports IANA service
    /// names.
    public func validate(ipIdentityPair pair: IPIdentityPair, keyName: String) throws(RemoteRecordRejection) {
        let reject = Self.rejecter(.ipIdentityPair, keyName)
        let prefix: IPCIDR
        do {
            prefix = try pair.prefix()
        } catch {
            throw reject(.malformed, TerminalSafe.escape(error.description, maxScalars: 256))
        }
        if !pair.hostIP.isEmpty {
            guard let hostIP = IPAddress(pair.hostIP) else {
                throw reject(.malformed, "HostIP \(Self.quoted(pair.hostIP)) is not an IP address")
            }
            try checkUsable(hostIP, field: "HostIP", reject)
        }
        // Keys are canonical, so one address has one key: the address, or `address/length`.
        let keyMatches: Bool
        if pair.mask == nil {
            keyMatches = keyName == prefix.address.description
        } else {
            keyMatches = keyName == prefix.description
        }
        guard keyMatches else {
            let expected = pair.mask == nil ? prefix.address.description : prefix.description
            throw reject(.keyMismatch, "key should be \"\(expected)\" for IP \(Self.quoted(pair.ip))")
        }
        try checkPodPrefix(prefix, field: "IP", reject)
        try checkIdentity(pair.id, reject)
        if !pair.k8sNamespace.isEmpty {
            try checkName(pair.k8sNamespace, field: "K8sNamespace", NameSyntax.dns1123LabelProblem, reject)
        }
        if !pair.k8sPodName.isEmpty {
            try checkName(pair.k8sPodName, field: "K8sPodName", NameSyntax.dns1123SubdomainProblem, reject)
        }
        for port in pair.namedPorts ?? [] {
            try checkName(port.name, field: "named port", NameSyntax.ianaServiceNameProblem, reject)
        }
    }

    public func decodeIPIdentityPair(keyName: String, value: Data) throws(RemoteRecordRejection) -> IPIdentityPair {
        let pair: IPIdentityPair = try decode(value, kind: .ipIdentityPair, keyName: keyName)
        try validate(ipIdentityPair: pair, keyName: keyName)
        return pair
    }
}
