import Foundation

extension PodTemplateSpec {
    /// A short name for this exact template, the `pod-template-hash` of Kubernetes: it goes
    /// into the names and labels of the pods made from the template, so that a controller
    /// can tell pods of the current template from those of an earlier one.
    ///
    /// It is the 32-bit FNV-1a hash of a canonical encoding of the template, written as
    /// Kubernetes writes it (the decimal digits mapped onto consonants and digits), so it
    /// is the same on every machine and every run. Unset optionals and empty lists and maps
    /// do not enter the encoding, so an optional field added to the model later leaves the
    /// hash of templates that do not use it unchanged, and no rollout follows an upgrade.
    public var templateHash: String {
        var encoder = CanonicalTemplateEncoder()
        encoder.encode(self)
        return SafeAlphabet.encode(String(encoder.hash))
    }
}

/// The characters Kubernetes uses for generated name parts: no vowels, so no words, and no
/// look-alikes such as 0/o or 1/l.
enum SafeAlphabet {
    static let characters = Array("bcdfghjklmnpqrstvwxz2456789")

    static func encode(_ text: String) -> String {
        String(text.utf8.map { characters[Int($0) % characters.count] })
    }

    static func randomString(length: Int, using generator: inout some RandomNumberGenerator) -> String {
        String((0..<length).map { _ in characters[Int.random(in: 0..<characters.count, using: &generator)] })
    }
}

/// Feeds a template into FNV-1a field by field. Each value is written as its field path,
/// its byte length and its bytes, so no two different templates share an encoding.
private struct CanonicalTemplateEncoder {
    private(set) var hash: UInt32 = 2_166_136_261

    mutating func encode(_ template: PodTemplateSpec) {
        write(map: template.metadata.labels, at: "metadata.labels")
        write(map: template.metadata.annotations, at: "metadata.annotations")
        let spec = template.spec
        for (index, container) in spec.containers.enumerated() {
            encode(container, at: "spec.containers[\(index)]")
        }
        write(spec.nodeName, at: "spec.nodeName")
        write(spec.restartPolicy?.rawValue, at: "spec.restartPolicy")
        write(spec.terminationGracePeriodSeconds.map(String.init), at: "spec.terminationGracePeriodSeconds")
    }

    private mutating func encode(_ container: Container, at path: String) {
        write(container.name, at: "\(path).name")
        write(container.image, at: "\(path).image")
        write(list: container.command, at: "\(path).command")
        write(list: container.args, at: "\(path).args")
        for (index, port) in container.ports.enumerated() {
            let portPath = "\(path).ports[\(index)]"
            write(port.name, at: "\(portPath).name")
            write(String(port.containerPort), at: "\(portPath).containerPort")
            write(port.protocol.rawValue, at: "\(portPath).protocol")
        }
        for (index, variable) in container.env.enumerated() {
            write(variable.name, at: "\(path).env[\(index)].name")
            write(variable.value, at: "\(path).env[\(index)].value")
        }
        if let probe = container.readinessProbe {
            // The probe's canonical JSON (sorted keys): any change of it is a new template.
            write(Self.canonicalJSON(probe), at: "\(path).readinessProbe")
        }
        if let lifecycle = container.lifecycle {
            write(Self.canonicalJSON(lifecycle), at: "\(path).lifecycle")
        }
    }

    private static func canonicalJSON(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    private mutating func write(map: [String: String], at path: String) {
        for (key, value) in map.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            write(value, at: "\(path)[\(key)]")
        }
    }

    private mutating func write(list: [String], at path: String) {
        for (index, element) in list.enumerated() {
            write(element, at: "\(path)[\(index)]")
        }
    }

    private mutating func write(_ value: String?, at path: String) {
        guard let value else { return }
        for part in [path, String(value.utf8.count), value] {
            bytes(part.utf8)
            bytes(CollectionOfOne(0))
        }
    }

    private mutating func bytes(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            hash ^= UInt32(byte)
            hash &*= 16_777_619
        }
    }
}
