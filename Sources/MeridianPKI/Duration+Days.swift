extension Duration {
    /// Certificate lifetimes are naturally stated in days; the standard library stops at seconds.
    public static func days(_ days: Int) -> Duration {
        .seconds(Int64(days) * 86_400)
    }

    var timeInterval: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
