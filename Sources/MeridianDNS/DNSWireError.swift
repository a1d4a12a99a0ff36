/// Why received bytes are not a DNS message this codec can read.
///
/// Queries come from untrusted pods, so every case says what was wrong and the byte offset in
/// the message where the offending item starts; a server can log it beside a hex dump and answer
/// FORMERR instead of guessing.
public enum DNSWireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The message ended inside `element`, which starts at `offset`.
    case truncated(Element, offset: Int)
    /// A length byte of 64...191: more than the 63 bytes a label may hold, or one of the label
    /// types 0b01/0b10 that RFC 6891 §5 retired.
    case labelTooLong(length: Int, offset: Int)
    /// The name starting at `offset` exceeds 255 bytes in wire form once pointers are followed.
    case nameTooLong(offset: Int)
    /// The compression pointer at `offset` points at or past the end of the message.
    case pointerOutOfRange(target: Int, offset: Int)
    /// The compression pointer at `offset` jumps to `target` a second time while reading one name.
    case pointerLoop(target: Int, offset: Int)
    /// A second OPT record (RFC 6891 §6.1.1 allows one) starts at `offset`.
    case multipleOPTRecords(offset: Int)
    /// The OPT record starting at `offset` is owned by a name other than the root.
    case optOwnerNotRoot(offset: Int)

    /// The part of a message that was cut off, so a truncation error says more than "too short".
    public enum Element: Sendable, Hashable, CustomStringConvertible {
        /// The fixed 12-byte header.
        case header
        /// A label length byte or the terminating root byte of a name.
        case name
        /// The bytes a label's length byte announced.
        case label
        /// The second byte of a compression pointer.
        case compressionPointer
        /// QTYPE and QCLASS after a question's name.
        case question
        /// TYPE, CLASS, TTL and RDLENGTH after a resource record's name.
        case record
        /// The RDATA a record's RDLENGTH announced.
        case recordData

        public var description: String {
            switch self {
            case .header: "header"
            case .name: "name"
            case .label: "label"
            case .compressionPointer: "compression pointer"
            case .question: "question type/class"
            case .record: "record type/class/TTL/length"
            case .recordData: "record data"
            }
        }
    }

    /// Where in the message the malformed item starts.
    public var offset: Int {
        switch self {
        case let .truncated(_, offset), let .labelTooLong(_, offset), let .nameTooLong(offset),
             let .pointerOutOfRange(_, offset), let .pointerLoop(_, offset), let .multipleOPTRecords(offset),
             let .optOwnerNotRoot(offset):
            offset
        }
    }

    public var description: String {
        switch self {
        case let .truncated(element, offset): "message ends inside \(element) at offset \(offset)"
        case let .labelTooLong(length, offset): "label length \(length) > 63 at offset \(offset)"
        case let .nameTooLong(offset): "name at offset \(offset) is longer than 255 bytes"
        case let .pointerOutOfRange(target, offset): "compression pointer at offset \(offset) points to \(target), past the end"
        case let .pointerLoop(target, offset): "compression pointer at offset \(offset) loops back to \(target)"
        case let .multipleOPTRecords(offset): "second OPT record at offset \(offset)"
        case let .optOwnerNotRoot(offset): "OPT record at offset \(offset) is not owned by the root name"
        }
    }
}
