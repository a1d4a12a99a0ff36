import CoreMetrics
import Prometheus

/// The one place a daemon turns swift-metrics on: a Prometheus registry becomes the process's
/// metrics backend, so every `Counter`, `Gauge` and `Timer` the libraries make lands in it.
/// Libraries use CoreMetrics only; without this call their metrics go nowhere.
public enum MeridianMetricsSystem {
    /// Buckets for durations: from half a millisecond (a store read on loopback) to ten seconds.
    public static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10),
    ]

    /// Makes the registry and bootstraps swift-metrics with it. Call once per process, before
    /// any metric is made.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        MetricsSystem.bootstrap(factory)
        return registry
    }
}
