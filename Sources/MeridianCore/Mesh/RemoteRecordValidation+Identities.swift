import Foundation

extension RemoteRecordValidation {
    /// An identity entry (`id/<ID>` → label string) must have a decimal ID in the remote's
    /// range (reserved numbers are refused), a label string within
    /// `RemoteRecordLimits.identityBytes` that parses, holds only printable characters and no
    /// `reserved:` label, and, when it carries the cluster label, the remote's name in it.
    ///
    /// - Returns: the numeric identity and its labels.
    public func validateIdentity(
        keyName: String, labels: String
    ) throws(RemoteRecordRejection) -> (id: UInt32, labels: LabelSet) {
        let reject = Self.rejecter(.identity, keyName)
        try checkSize(labels.utf8.count, .identity, reject)
        return try checkIdentityRecord(keyName: keyName, labels: labels, reject)
    }

    /// Refuses the value by size before reading it as UTF-8, then checks it as
    /// `validateIdentity(keyName:labels:)` does.
    public func decodeIdentity(
        keyName: String, value: Data
    ) throws(RemoteRecordRejection) -> (id: UInt32, labels: LabelSet) {
        let reject = Self.rejecter(.identity, keyName)
        try checkSize(value.count, .identity, reject)
        guard let text = String(data: value, encoding: .utf8) else {
            throw reject(.malformed, "label string is not UTF-8")
        }
        return try checkIdentityRecord(keyName: keyName, labels: text, reject)
    }

    private func checkIdentityRecord(
        keyName: String, labels: String, _ reject: Reject
    ) throws(RemoteRecordRejection) -> (id: UInt32, labels: LabelSet) {
        guard !keyName.isEmpty, keyName.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let id = UInt32(keyName) else {
            throw reject(.malformed, "identity key is not a decimal number")
        }
        guard String(id) == keyName else {
            throw reject(.keyMismatch, "key should be \"\(id)\" (no leading zeros)")
        }
        try checkIdentity(id, reject)
        let set: LabelSet
        do {
            set = try LabelSet(ciliumString: labels)
        } catch {
            throw reject(.malformed, TerminalSafe.escape(error.description, maxScalars: 256))
        }
        for label in set where TerminalSafe.containsNonPrintable(label.description) {
            throw reject(.invalidName, "label \(Self.quoted(label.description)) holds a non-printing character")
        }
        if let label = set.first(where: { $0.source == LabelSource.reserved }) {
            throw reject(.reservedLabel, "label \(Self.quoted(label.description)) has the reserved source; only the local cluster assigns it")
        }
        if let cluster = set.clusterName, cluster != remoteName {
            throw reject(.wrongCluster, "label \(LabelKeys.cluster)=\(Self.quoted(cluster)) names another cluster than \(remoteName)")
        }
        // Without its cluster label an identity would escape selectors that exclude the cluster.
        guard let clusterLabel = set[LabelKeys.cluster], clusterLabel.source == LabelSource.k8s else {
            throw reject(.wrongCluster, "an identity of \(remoteName) must carry \(LabelSource.k8s):\(LabelKeys.cluster)=\(remoteName)")
        }
        return (id, set)
    }
}
