"""The detector's Prometheus metrics, registered on a registry passed in (never the default).

This module owns metric names, help texts and units (``vigil_`` prefix, base units).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from servicekit import metrics as servicekit_metrics

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class IngestMetrics:
    requests: Counter
    samples_received: Counter
    samples_accepted: Counter
    samples_dropped: Counter
    histograms_received: Counter
    exemplars_received: Counter
    metadata_received: Counter
    series_new: Counter
    series_dropped: Counter
    anomalous_samples: Counter
    active_series: Gauge
    queue_samples: Gauge
    queue_capacity: Gauge
    decode_seconds: Histogram
    request_seconds: Histogram
    detect_seconds: Histogram
    detector_samples: Counter
    detector_seconds: Counter
    loop_lag_seconds: Histogram
    worker_errors: Counter
    ingest_path: Counter
    warm_starts: Counter
    stuck_series: Gauge
    entities: Gauge
    entity_evaluations: Counter
    entity_eval_seconds: Histogram
    absent_series: Gauge
    warm_start_samples: Counter
    periods_detected: Counter
    rechecks: Counter
    recheck_lag: Gauge
    period_moves: Counter


def build_metrics(registry: CollectorRegistry) -> IngestMetrics:
    make = servicekit_metrics.with_process_metrics(registry)
    counter = make.counter

    def hist(name: str, doc: str) -> Histogram:
        return make.histogram(name, doc, buckets=_LATENCY_BUCKETS)

    return IngestMetrics(
        requests=counter(
            "vigil_remote_write_requests",
            "Remote-write requests by protocol version and HTTP status.",
            ("version", "code"),
        ),
        samples_received=counter(
            "vigil_samples_received", "Float samples decoded from accepted remote-write requests."
        ),
        samples_accepted=counter(
            "vigil_samples_accepted",
            "Samples applied to tracked series (including staleness markers).",
        ),
        samples_dropped=counter(
            "vigil_samples_dropped", "Samples not applied, by reason.", ("reason",)
        ),
        histograms_received=counter(
            "vigil_histograms_received",
            "Native histogram samples received (counted, not analysed yet).",
        ),
        exemplars_received=counter(
            "vigil_exemplars_received", "Exemplars received (counted, not analysed yet)."
        ),
        metadata_received=counter("vigil_metadata_received", "Metric metadata entries received."),
        series_new=counter("vigil_series_created", "Series that started being tracked."),
        series_dropped=counter(
            "vigil_series_dropped", "New series not tracked, by reason.", ("reason",)
        ),
        anomalous_samples=counter(
            "vigil_anomalous_samples",
            "Samples whose anomaly score reached the reporting threshold.",
        ),
        active_series=Gauge("vigil_active_series", "Series tracked now.", registry=registry),
        queue_samples=Gauge(
            "vigil_ingest_queue_samples", "Samples waiting for the detectors.", registry=registry
        ),
        queue_capacity=Gauge(
            "vigil_ingest_queue_capacity_samples",
            "Samples the ingest queue holds before writes are refused with 503.",
            registry=registry,
        ),
        decode_seconds=hist(
            "vigil_remote_write_decode_seconds",
            "Time to decompress, decode and resolve the series of one request.",
        ),
        request_seconds=hist(
            "vigil_remote_write_request_seconds", "Time to handle one remote-write request."
        ),
        detect_seconds=hist(
            "vigil_detect_batch_seconds", "Time the detector worker spends on one batch."
        ),
        loop_lag_seconds=hist(
            "vigil_event_loop_lag_seconds",
            "How late the event loop runs a timer scheduled every 100 ms.",
        ),
        detector_samples=counter(
            "vigil_detector_samples", "Samples scored, by detector family.", ("detector",)
        ),
        detector_seconds=counter(
            "vigil_detector_seconds",
            "Time in each detector family's kernel (its rate is the share of a core it takes).",
            ("detector",),
        ),
        worker_errors=counter(
            "vigil_worker_errors",
            "Unexpected errors in the detector worker (the batch is dropped and logged).",
        ),
        entities=Gauge(
            "vigil_entities", "Entities scored together (entities rules).", registry=registry
        ),
        entity_evaluations=counter("vigil_entity_evaluations", "Entity vectors scored."),
        entity_eval_seconds=hist(
            "vigil_entity_evaluation_seconds", "Time to score every entity with new data once."
        ),
        stuck_series=Gauge(
            "vigil_stuck_series",
            "Tracked series repeating one value unusually long (see presence in the config).",
            registry=registry,
        ),
        absent_series=Gauge(
            "vigil_absent_series",
            "Tracked series silent for many of their usual intervals without a staleness marker.",
            registry=registry,
        ),
        warm_starts=counter(
            "vigil_warm_starts",
            "Warm starts of new series from Prometheus "
            "history, by result (ok, empty, error, skipped).",
            ("result",),
        ),
        warm_start_samples=counter(
            "vigil_warm_start_samples", "History samples learned by warm starts."
        ),
        periods_detected=counter(
            "vigil_seasonal_periods_detected",
            "Series given their own seasonal period from their history, by period (daily, "
            "weekly, other): at warm start, or a weekly one found by a re-check.",
            ("period",),
        ),
        rechecks=counter(
            "vigil_seasonal_rechecks",
            "Re-checks of the seasonal period of live series on a daily profile, by result "
            "(moved: to a weekly profile, kept, short: too little history to tell, error).",
            ("result",),
        ),
        recheck_lag=Gauge(
            "vigil_seasonal_recheck_lag_seconds",
            "How long the series longest due for a seasonal re-check has waited past its due "
            "time (0: none waiting). Growing past recheck_interval_s: more daily series than "
            "recheck_per_s can re-check in an interval.",
            registry=registry,
        ),
        period_moves=counter(
            "vigil_seasonal_moves",
            "Live series moved to a longer period's profile by the detector worker after a "
            "re-check, by result (moved; refused: warming, or moved or reconfigured meanwhile).",
            ("result",),
        ),
        ingest_path=counter(
            "vigil_remote_write_ingest_path",
            "Requests decoded on the event "
            "loop (inline: all series known) or in the decode thread (thread: "
            "new series, a big body, or the registry busy).",
            ("path",),
        ),
    )


@dataclass(frozen=True, slots=True)
class AlertMetrics:
    events: Counter
    firing: Gauge
    sent: Counter
    send_failures: Counter
    rejected: Counter
    dropped: Counter
    pending: Gauge
    post_seconds: Histogram
    delivery_seconds: Histogram
    enrich_failures: Counter
    enrich_seconds: Histogram
    writeback_samples: Counter
    writeback_failures: Counter
    writeback_dropped: Counter
    writeback_seconds: Histogram


def build_alert_metrics(registry: CollectorRegistry) -> AlertMetrics:
    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=registry)

    def hist(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
        return Histogram(name, doc, labels, buckets=_LATENCY_BUCKETS, registry=registry)

    return AlertMetrics(
        events=counter(
            "vigil_alert_events",
            "Alert lifecycle transitions of series, by kind "
            "(fire, escalate, resolve, stale, restored).",
            ("kind",),
        ),
        firing=Gauge(
            "vigil_alerts_firing",
            "Alerts firing now (aggregated alerts count once).",
            registry=registry,
        ),
        sent=counter("vigil_alerts_sent", "Alerts accepted by an Alertmanager.", ("alertmanager",)),
        send_failures=counter(
            "vigil_alert_send_failures",
            "POSTs to an Alertmanager that failed and will be retried (connection, timeout, 5xx).",
            ("alertmanager",),
        ),
        rejected=counter(
            "vigil_alerts_rejected",
            "Alerts an Alertmanager refused with a 4xx (not retried; logged).",
            ("alertmanager",),
        ),
        dropped=counter(
            "vigil_alerts_dropped",
            "Alert updates dropped because the queue of an Alertmanager was full.",
            ("alertmanager",),
        ),
        pending=Gauge(
            "vigil_alerts_pending",
            "Alert updates waiting to be sent, per Alertmanager.",
            ("alertmanager",),
            registry=registry,
        ),
        post_seconds=hist(
            "vigil_alert_post_seconds", "Time of one POST to an Alertmanager.", ("alertmanager",)
        ),
        delivery_seconds=hist(
            "vigil_alert_delivery_seconds",
            "From the lifecycle event (fire or resolve) to its acceptance by an Alertmanager.",
            ("alertmanager",),
        ),
        enrich_failures=counter(
            "vigil_alert_enrichment_failures",
            "Enrichments that failed or ran out of time; the alert went without.",
            ("enricher",),
        ),
        enrich_seconds=hist(
            "vigil_alert_enrichment_seconds", "Time of one enrichment.", ("enricher",)
        ),
        writeback_samples=counter(
            "vigil_writeback_samples",
            "Samples of vigil_anomaly_score, "
            "_expected, _lower and _upper (or vmanomaly's) written "
            "back.",
        ),
        writeback_failures=counter(
            "vigil_writeback_failures", "Write-back requests that failed, by reason.", ("reason",)
        ),
        writeback_dropped=counter(
            "vigil_writeback_dropped_series",
            "Series left out of a "
            "write-back (over writeback.max_series, or a send still "
            "retrying).",
        ),
        writeback_seconds=hist("vigil_writeback_seconds", "Time to build and send one write-back."),
    )


_CHECKPOINT_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class CheckpointMetrics:
    written: Counter
    failures: Counter
    skipped: Counter
    last_success: Gauge
    age: Gauge  # its value comes from a function the app sets (it owns the clock)
    series: Gauge
    interval: Gauge
    snapshot_seconds: Histogram
    write_seconds: Histogram


def build_checkpoint_metrics(registry: CollectorRegistry) -> CheckpointMetrics:
    def hist(name: str, doc: str) -> Histogram:
        return Histogram(name, doc, buckets=_CHECKPOINT_BUCKETS, registry=registry)

    m = CheckpointMetrics(
        written=Counter(
            "vigil_checkpoints_written",
            "Checkpoints written to --state-dir, by reason (periodic, shutdown).",
            ("reason",),
            registry=registry,
        ),
        failures=Counter(
            "vigil_checkpoint_failures",
            "Checkpoints that could not be taken "
            "or written (logged; the previous one stays current).",
            registry=registry,
        ),
        skipped=Counter(
            "vigil_checkpoints_skipped",
            "Checkpoints found unusable at start "
            "and skipped, by reason (missing, version, checksum, unreadable).",
            ("reason",),
            registry=registry,
        ),
        last_success=Gauge(
            "vigil_checkpoint_last_success_timestamp_seconds",
            "When the "
            "state in the newest checkpoint (written or restored) was taken; "
            "0 before any.",
            registry=registry,
        ),
        age=Gauge(
            "vigil_checkpoint_age_seconds",
            "Seconds since the state in the newest "
            "checkpoint (written or restored) was taken; NaN before any.",
            registry=registry,
        ),
        series=Gauge(
            "vigil_checkpoint_series",
            "Series in the newest checkpoint written or restored.",
            registry=registry,
        ),
        interval=Gauge(
            "vigil_checkpoint_interval_seconds",
            "How often a checkpoint is "
            "written while serving (checkpoint.interval_s); 0: only at shutdown "
            "or no --state-dir.",
            registry=registry,
        ),
        snapshot_seconds=hist(
            "vigil_checkpoint_snapshot_seconds",
            "Time the detector worker paused between two batches to copy the state.",
        ),
        write_seconds=hist(
            "vigil_checkpoint_write_seconds",
            "Time to write one checkpoint (in a thread, off the event loop and the worker).",
        ),
    )
    # 0 from the start: a rate over them is 0, not "no data"
    for reason in ("periodic", "shutdown"):
        m.written.labels(reason)
    for reason in ("missing", "version", "checksum", "unreadable"):
        m.skipped.labels(reason)
    return m


# why a series' learned state was dropped: its detector changed in a config reload
# (config_changed), a reload tracks again a series an earlier one stopped tracking
# (tracked_again: its state stopped then), or a checkpoint held a state layout this
# version cannot carry over (layout_changed); its transform changed is config_changed too
RESET_REASONS = ("config_changed", "tracked_again", "layout_changed")


@dataclass(frozen=True, slots=True)
class StateMetrics:
    """Config reloads and series that start learning afresh."""

    reload_successful: Gauge
    reload_success_time: Gauge
    reloads: Counter
    resets: Counter


def build_state_metrics(registry: CollectorRegistry) -> StateMetrics:
    m = StateMetrics(
        reload_successful=Gauge(
            "vigil_config_last_reload_successful",
            "Whether the last "
            "config reload (SIGHUP or POST /-/reload) succeeded: 1, or "
            "0 when it was refused and the running config kept.",
            registry=registry,
        ),
        reload_success_time=Gauge(
            "vigil_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (at start or by the last successful reload).",
            registry=registry,
        ),
        reloads=Counter(
            "vigil_config_reloads",
            "Config reloads, by result (success, failure).",
            ("result",),
            registry=registry,
        ),
        resets=Counter(
            "vigil_series_state_reset",
            "Series whose learned state was dropped "
            "and that start learning afresh, by reason (config_changed: its "
            "detector or transform changed in a reload; tracked_again: a reload "
            "tracks it again after an earlier one stopped tracking it; "
            "layout_changed: a checkpoint from another version could not be "
            "carried over).",
            ("reason",),
            registry=registry,
        ),
    )
    m.reload_successful.set(1)
    for result in ("success", "failure"):
        m.reloads.labels(result)
    for reason in RESET_REASONS:
        m.resets.labels(reason)
    return m
