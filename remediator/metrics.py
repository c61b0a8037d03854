"""The remediator's Prometheus metrics, registered on a registry passed in (never the
default). This module owns their names, help texts and units (``vigil_`` prefix)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from servicekit import metrics as servicekit_metrics

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class RemediatorMetrics:
    webhooks: Counter
    alerts_received: Counter
    duplicates: Counter
    runs: Counter
    refusals: Counter
    action_seconds: Histogram
    verifications: Counter
    escalations: Counter
    breakers: Counter
    errors: Counter
    first_action_seconds: Histogram
    playbooks_loaded: Gauge
    playbook_problems: Gauge
    paused: Gauge
    leader: Gauge
    reload_ok: Gauge
    reload_success_ts: Gauge
    reloads: Counter


def build_metrics(registry: CollectorRegistry) -> RemediatorMetrics:
    make = servicekit_metrics.with_process_metrics(registry)
    counter, gauge = make.counter, make.gauge

    def hist(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
        return make.histogram(name, doc, buckets=_BUCKETS, labels=labels)

    return RemediatorMetrics(
        webhooks=counter("vigil_webhook_requests", "Webhook requests by HTTP status.", ("code",)),
        alerts_received=counter(
            "vigil_webhook_alerts", "Alerts in accepted notifications, by status.", ("status",)
        ),
        duplicates=counter(
            "vigil_runs_deduplicated",
            "Runs not started because one already exists for (playbook, fingerprint, startsAt).",
            ("playbook",),
        ),
        runs=counter(
            "vigil_runs", "Runs by playbook and the state they reached.", ("playbook", "state")
        ),
        refusals=counter(
            "vigil_guard_refusals", "Guard verdicts that refused a run.", ("playbook", "guard")
        ),
        action_seconds=hist(
            "vigil_action_seconds",
            "Time of one action call, by action and outcome.",
            ("action", "outcome"),
        ),
        verifications=counter(
            "vigil_verifications", "Verification results by playbook.", ("playbook", "result")
        ),
        escalations=counter(
            "vigil_escalations",
            "Escalations sent to Alertmanager, by playbook and result.",
            ("playbook", "result"),
        ),
        breakers=counter(
            "vigil_circuit_breaker_trips",
            "Times a playbook's circuit breaker tripped it to shadow mode.",
            ("playbook",),
        ),
        errors=counter(
            "vigil_remediator_errors", "Unexpected errors, by where they happened.", ("where",)
        ),
        first_action_seconds=hist(
            "vigil_webhook_to_first_action_seconds",
            "From a notification's arrival to its run's first action call.",
        ),
        playbooks_loaded=gauge("vigil_playbooks_loaded", "Playbooks loaded and valid."),
        playbook_problems=gauge(
            "vigil_playbook_problems", "Problems found in playbook files at the last (re)load."
        ),
        paused=gauge("vigil_remediator_paused", "1 while the kill switch is on."),
        leader=gauge("vigil_remediator_leader", "1 while this replica leads (starts runs)."),
        reload_ok=gauge(
            "vigil_config_last_reload_successful",
            "1 if the last reload of the "
            "config and playbooks (SIGHUP, POST /-/reload) succeeded, else 0.",
        ),
        reload_success_ts=gauge(
            "vigil_config_last_reload_success_timestamp_seconds",
            "When the config and playbooks were last loaded without a problem (Unix time).",
        ),
        reloads=counter(
            "vigil_config_reloads",
            "Reloads of the config and playbooks, by "
            "result (success, failure), as the detector counts its own.",
            ("result",),
        ),
    )


def zero_playbook_series(
    m: RemediatorMetrics, playbooks: Iterable[str], guards: Iterable[str]
) -> None:
    """Export 0 for each loaded playbook's counters before anything happens, so a rate
    or increase over them is 0, not an absent series that a dashboard shows as "no data"
    and an alert rule cannot tell from a broken scrape."""
    guards = tuple(guards)
    for name in playbooks:
        m.duplicates.labels(name)
        m.breakers.labels(name)
        for guard in guards:
            m.refusals.labels(name, guard)
        for result in ("ok", "failed"):
            m.escalations.labels(name, result)
    for where in ("audit", "runner"):
        m.errors.labels(where)
    for result in ("success", "failure"):
        m.reloads.labels(result)
