import CLibBPF
import CMeridianBPF
import Glibc

/// Reads the datapath's trace and drop records from the `mer_events` ring buffer.
public final class EventReader: @unchecked Sendable {
    // Used from one task at a time; the ring buffer is owned by this instance.
    private var ring: OpaquePointer?
    private let sink: Sink

    final class Sink {
        var events: [mer_event] = []
    }

    public init(mapFD: Int32) throws(BPFError) {
        let sink = Sink()
        self.sink = sink
        let callback: ring_buffer_sample_fn = { context, data, size in
            guard let context, let data, size >= MemoryLayout<mer_event>.size else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue()
            sink.events.append(data.loadUnaligned(as: mer_event.self))
            return 0
        }
        guard let ring = ring_buffer__new(mapFD, callback, Unmanaged.passUnretained(sink).toOpaque(), nil) else {
            throw BPFError("open events ring buffer", errno: Glibc.errno)
        }
        self.ring = ring
    }

    deinit {
        ring_buffer__free(ring)
    }

    /// Events waiting in the ring, without blocking.
    public func drain() -> [mer_event] {
        _ = ring_buffer__consume(ring)
        defer { sink.events.removeAll(keepingCapacity: true) }
        return sink.events
    }

    /// Waits up to `timeoutMilliseconds` for events.
    public func poll(timeoutMilliseconds: Int32) -> [mer_event] {
        _ = ring_buffer__poll(ring, timeoutMilliseconds)
        return drain()
    }
}
