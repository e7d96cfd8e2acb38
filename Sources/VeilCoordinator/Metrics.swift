import CoreMetrics
import Foundation
import Prometheus
import Synchronization

/// What a coordinator replica reports about itself, recorded through swift-metrics so any
/// `MetricsFactory` can receive it; ``PrometheusExposition`` is the one `veil coordinator`
/// serves at `/metrics`.
///
/// Invariant: every label value is bounded by the manifest or by Veil's own enums — a client
/// cannot create series (a service name the manifest does not list is counted as
/// ``unlistedService``; outcomes are ``CoordinatorError/code`` values).
public struct CoordinatorMetrics: Sendable {
    /// The `service` label of activations that named a service the manifest does not have.
    /// Service names are DNS labels, which cannot contain `_`, so it never collides.
    public static let unlistedService = "_unlisted"

    public enum Name {
        public static let activations = "veil_activations_total"
        public static let activationSeconds = "veil_activation_duration_seconds"
        public static let verificationSeconds = "veil_evidence_verification_duration_seconds"
        public static let generation = "veil_state_generation"
        public static let historyEntries = "veil_history_entries"
        public static let manifestSet = "veil_manifest_set"
        public static let certificateExpiry = "veil_coordinator_certificate_expiry_timestamp_seconds"
        public static let recovery = "veil_recovery_mode"
        public static let recoverySharesReceived = "veil_recovery_shares_received"
        public static let recoverySharesRequired = "veil_recovery_shares_required"
        public static let simulated = "veil_simulated"
        public static let connectionsRefused = "veil_connections_refused_total"
        public static let connectionsWithoutRequest = "veil_connections_without_request_total"
        public static let tcbRefusalsAhead = "veil_tcb_refusals_ahead_total"
        public static let renewals = "veil_renewals_total"
    }

    let factory: any MetricsFactory
    let activationDuration: CoreMetrics.Timer
    let verificationDuration: CoreMetrics.Timer

    public init(factory: any MetricsFactory) {
        self.factory = factory
        activationDuration = CoreMetrics.Timer(label: Name.activationSeconds, dimensions: [], factory: factory)
        verificationDuration = CoreMetrics.Timer(label: Name.verificationSeconds, dimensions: [], factory: factory)
    }

    /// Records nothing (coordinators opened by tests and tools that serve no `/metrics`).
    public static let disabled = CoordinatorMetrics(factory: NOOPMetricsHandler.instance)

    /// Counts one activation attempt that reached the coordinator's checks.
    func countActivation(service: String, outcome: String) {
        CoreMetrics.Counter(label: Name.activations, dimensions: [("service", service), ("outcome", outcome)], factory: factory).increment()
    }

    /// Counts one renewal request from a running service's agent.
    func countRenewal(service: String, outcome: String) {
        CoreMetrics.Counter(label: Name.renewals, dimensions: [("service", service), ("outcome", outcome)], factory: factory).increment()
    }

    /// Counts one connection closed on arrival because a connection cap was reached.
    func countConnectionRefused(reason: String) {
        CoreMetrics.Counter(label: Name.connectionsRefused, dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// Counts one service whose package new Intel collateral makes refuse its platform.
    func tcbRefusalAhead(service: String) {
        CoreMetrics.Counter(label: Name.tcbRefusalsAhead, dimensions: [("service", service)], factory: factory).increment()
    }

    /// Counts one connection that ended without an answer written on it.
    func countConnectionWithoutRequest() {
        CoreMetrics.Counter(label: Name.connectionsWithoutRequest, factory: factory).increment()
    }

    /// Values read from the coordinator when scraped rather than pushed on every change.
    public struct Snapshot: Sendable {
        public var generation: UInt64 = 0
        public var historyEntries = 0
        public var manifestSet = false
        public var certificateExpiry: Date?
        public var recovering = false
        public var recoverySharesReceived = 0
        public var recoverySharesRequired = 0
        public var simulated = false

        public init() {}
    }

    func record(_ snapshot: Snapshot) {
        gauge(Name.generation).record(Double(snapshot.generation))
        gauge(Name.historyEntries).record(snapshot.historyEntries)
        gauge(Name.manifestSet).record(snapshot.manifestSet ? 1 : 0)
        gauge(Name.recovery).record(snapshot.recovering ? 1 : 0)
        gauge(Name.recoverySharesReceived).record(snapshot.recoverySharesReceived)
        gauge(Name.recoverySharesRequired).record(snapshot.recoverySharesRequired)
        gauge(Name.simulated).record(snapshot.simulated ? 1 : 0)
        if let expiry = snapshot.certificateExpiry {
            gauge(Name.certificateExpiry).record(expiry.timeIntervalSince1970)
        }
    }

    private func gauge(_ label: String) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: label, dimensions: [], factory: factory)
    }
}

/// The Prometheus text exposition of one replica's metrics: its own registry (not the
/// process-wide default, so several coordinators in one process never share series), and a
/// factory that gives every family its `# HELP` text and its buckets.
public final class PrometheusExposition: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public let metrics: CoordinatorMetrics
    /// Reads the values reported at scrape time (set once the replica knows what it serves).
    private let source: Mutex<(@Sendable () -> CoordinatorMetrics.Snapshot)?> = Mutex(nil)

    public init() {
        metrics = CoordinatorMetrics(factory: DocumentedPrometheusFactory(registry: registry))
    }

    /// Makes `read` the source of the scrape-time gauges (the recovery phase, then the coordinator).
    public func report(_ read: @escaping @Sendable () -> CoordinatorMetrics.Snapshot) {
        source.withLock { $0 = read }
    }

    /// The text format (version 0.0.4) with the scrape-time gauges brought up to date.
    public func scrape() -> [UInt8] {
        if let read = source.withLock({ $0 }) { metrics.record(read()) }
        return registry.emitToBuffer()
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// A swift-metrics factory over a Prometheus registry that knows Veil's metric families: the
/// help text promtool and operators expect, and latency buckets sized for attestation.
struct DocumentedPrometheusFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry

    typealias Name = CoordinatorMetrics.Name
    static let help: [String: String] = [
        Name.activations: "Activation requests that reached verification, by service and outcome (activated or the refusal code).",
        Name.activationSeconds: "Time from receiving an activation request to its answer, refusals included.",
        Name.verificationSeconds: "Time spent verifying activation evidence (quote, report or simulated signature and its collateral).",
        Name.generation: "Generation of the coordinator state this replica last read or wrote; it only grows.",
        Name.historyEntries: "Number of entries in the signed history of manifest changes.",
        Name.manifestSet: "1 once a manifest is set, 0 while the coordinator awaits one.",
        Name.certificateExpiry: "Unix time at which the coordinator's current TLS certificate expires (renewed at two thirds of its validity).",
        Name.recovery: "1 while this replica lacks the state key and serves only recovery, else 0.",
        Name.recoverySharesReceived: "Recovery shares accepted so far in the current recovery.",
        Name.recoverySharesRequired: "Recovery shares needed to recover the state key (0 outside recovery).",
        Name.simulated: "1 when this coordinator runs on the simulated TEE, which gives no confidentiality.",
        Name.connectionsRefused: "Connections closed on arrival because a cap on open connections (per peer address or in total) was reached.",
        Name.renewals: "Certificate renewals asked for by running services' agents, by service and outcome (renewed, or the refusal's error code).",
        Name.tcbRefusalsAhead: "Services whose platform new Intel collateral (a TCB recovery) made their package refuse, reported before the next activation is refused.",
        Name.connectionsWithoutRequest: "Connections that ended without an answer: closed by the idle deadline (no complete request head in time), scans, failed TLS handshakes.",
    ]
    static let buckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    private func help(_ label: String) -> String { Self.help[label] ?? "" }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help(label))
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        // Veil records only point-in-time values; aggregated recorders would need value buckets.
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: help(label))
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(name: label, labels: dimensions, buckets: Self.buckets, help: help(label))
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { registry.unregisterDurationHistogram(histogram) }
    }
}

extension Duration {
    /// Whole nanoseconds (saturating), as swift-metrics' timers take them.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled &+ attoseconds / 1_000_000_000
    }
}

extension Coordinator {
    /// The scrape-time values of this replica; `certificateExpiry` is its serving identity's.
    public func metricsSnapshot(certificateExpiry: Date?) -> CoordinatorMetrics.Snapshot {
        let snapshot = current
        var values = CoordinatorMetrics.Snapshot()
        values.generation = snapshot.state.generation
        values.historyEntries = snapshot.state.log?.count ?? 0
        values.manifestSet = snapshot.manifest != nil
        values.certificateExpiry = certificateExpiry
        values.simulated = isSimulated
        return values
    }
}

extension RecoveryCoordinator {
    public func metricsSnapshot(certificateExpiry: Date?) -> CoordinatorMetrics.Snapshot {
        var values = CoordinatorMetrics.Snapshot()
        values.recovering = !isRecovered
        values.recoverySharesReceived = receivedShareCount
        values.recoverySharesRequired = data?.threshold ?? 0
        values.certificateExpiry = certificateExpiry
        values.simulated = evidenceProvider.isSimulated
        return values
    }
}
