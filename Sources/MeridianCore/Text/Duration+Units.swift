/// A duration as a plain number, for reports and log fields (benches print milliseconds; the
/// control plane logs how long an export took).
extension Duration {
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    public var inMilliseconds: Double { inSeconds * 1000 }
}
