"""The detector's part of the Vigil console: the page at /, its assets, and its JSON.

This module owns the console routes of the detector: ``/`` and ``/console/<asset>`` (the
static files shipped in ``detector/web/assets/`` and the shared ones in ``servicekit/console/``,
served by ``servicekit.console`` with a strict Content-Security-Policy),
``GET /api/v1/anomalies/recent`` (the series alerting now or lately, with their alert,
links and chart summary) and ``GET /api/v1/anomalies/{id}/history`` (one series'
recent samples, expected band, score and anomalous stretches, from ``detector.pipeline.history``).
It reads the alert book, the registry and the pipeline tables; it changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from detector.alerting import wording
from detector.alerting.book import Alert, AlertBook, Member, Reading
from detector.pipeline.history import FIELDS, History, TrackView
from detector.pipeline.worker import Pipeline
from detector.series.registry import SeriesRegistry
from servicekit import console as shared_console

ASSETS = Path(__file__).parent / "assets"  # this service's own; servicekit has the rest
SECURITY_HEADERS = shared_console.SECURITY_HEADERS
_FNV_OFFSET, _FNV_PRIME, _MASK = 14695981039346656037, 1099511628211, (1 << 64) - 1


@dataclass(frozen=True)
class Sources:
    """What the console reads, handed over by build_app."""

    history: History
    registry: SeriesRegistry
    pipeline: Pipeline
    book: AlertBook
    now_ms: Callable[[], int]
    alertmanagers: Sequence[str] = ()
    remediator_url: str | None = None
    prometheus_url: str | None = None


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and
    values, each followed by 0xff), as it prints it: the key of the remediator's runs."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def _num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else float(x)


def _nums(values: Any) -> list[float | None]:
    return [None if math.isnan(x) or math.isinf(x) else x for x in values.tolist()]


def _alert_labels(
    book: AlertBook, registry: SeriesRegistry, slot: int, level: int
) -> dict[str, str] | None:
    """The labels the series' alert had (its alert has left the book); None: no rule."""
    rule_index = registry.alert_rule_of(slot)
    if not 0 <= rule_index < len(book.rules):
        return None
    rule = book.rules[rule_index]
    labels = list(registry.labels_of(slot))
    group = [] if rule.by is None else [(n, dict(labels).get(n, "")) for n in rule.by]
    nan = math.nan
    alert = Alert(
        key=(),
        rule_index=rule_index,
        rule=rule,
        group=group,
        starts_ms=0,
        level=level,
        members={slot: Member(slot, labels, level, 0, 0.0, Reading(0, nan, nan, nan, nan, nan))},
    )
    return book.labels(alert)


def _fingerprints(
    book: AlertBook, labels: dict[str, str], rule_index: int, level: int
) -> list[str]:
    """The fingerprints the alert had: one per severity it went through (an escalation
    resolves the lower severity's alert and starts a new one), the current one last."""
    if not 0 <= rule_index < len(book.rules):
        return [fingerprint(labels)]
    levels = book.rules[rule_index].severities[: max(1, level)]
    out = [
        fingerprint({**labels, "severity": s.severity})
        for s in levels
        if s.severity != labels.get("severity")
    ]
    return [*out, fingerprint(labels)]


def _links(
    src: Sources,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    fingerprints: list[str],
) -> dict[str, str]:
    out: dict[str, str] = {}
    if labels is not None:
        matchers = wording.matchers(sorted(labels.items()))
        for i, am in enumerate(src.alertmanagers):
            out[f"alertmanager{i or ''}"] = f"{am.rstrip('/')}/#/alerts?filter=" + quote(
                matchers, safe=""
            )
        if src.remediator_url is not None:
            out["runs"] = (
                f"{src.remediator_url.rstrip('/')}/#runs?fingerprint={','.join(fingerprints)}"
            )
    for name in ("runbook_url", "dashboard_url"):
        if annotations and annotations.get(name):
            out[name.removesuffix("_url")] = annotations[name]
    return out


def _entry(
    src: Sources,
    *,
    slot: int | None,
    labels: list[tuple[str, str]],
    alert: Alert | None,
    view: TrackView | None,
    now_ms: int,
) -> dict[str, Any]:
    book = src.book
    annotations = None
    if alert is not None:
        if alert.is_firing:
            book.refresh(alert)
        alert_labels: dict[str, str] | None = book.labels(alert)
        annotations = book.annotations(alert, now_ms)
    elif slot is not None and view is not None:
        alert_labels = _alert_labels(book, src.registry, slot, view.level)
    else:
        alert_labels = None
    if alert is not None and alert.is_firing:
        state = "firing"
    elif view is not None and view.is_active:
        state = "pending" if not view.stretches or view.stretches[-1][1] is not None else "firing"
    else:
        state = "resolved"
    p = src.pipeline
    fingerprints: list[str] = []
    if alert_labels is not None:
        rule_index = (
            alert.rule_index
            if alert is not None
            else src.registry.alert_rule_of(slot)
            if slot is not None
            else -1
        )
        level = max(alert.level if alert is not None else 0, view.level if view is not None else 0)
        fingerprints = _fingerprints(book, alert_labels, rule_index, level)
    since = None
    if view is not None and view.stretches:
        since = view.stretches[-1][0]
    elif alert is not None:
        since = alert.starts_ms
    ended = (
        view.stretches[-1][1]
        if view is not None and view.stretches
        else (alert.resolved_ms if alert is not None else None)
    )
    return {
        "id": slot if view is not None else None,
        "series": wording.selector(labels),
        "labels": dict(labels),
        "state": state,
        "since_ms": since,
        "ended_ms": ended,
        # why its alert resolved ("back inside its band", "new level adopted after 1 h")
        "resolution": alert.resolution
        if alert is not None and not alert.is_firing and alert.resolution
        else None,
        "last_ms": view.last_ms if view is not None else None,
        "peak": _num(view.peak) if view is not None else None,
        "score": _num(float(p.last_score[slot])) if slot is not None else None,
        "rate": src.registry.is_counter(slot) if slot is not None else False,
        "alert": None
        if alert_labels is None
        else {
            "labels": alert_labels,
            "fingerprint": fingerprint(alert_labels),
            "fingerprints": fingerprints,
            "annotations": annotations,
            "enrichment": dict(alert.extra) if alert is not None else {},
        },
        "links": _links(src, alert_labels, annotations, fingerprints),
    }


def recent(src: Sources, *, now_ms: int) -> list[dict[str, Any]]:
    """The series with a chart (anomalous now or lately), newest first, then the members
    of firing alerts without one (history off or full)."""
    by_slot: dict[int, Alert] = {}
    for alert in [*src.book.recent, *src.book.firing()]:  # firing wins over resolved
        for slot in alert.members:
            by_slot[slot] = alert
    out = []
    seen = set()
    for view in src.history.tracks(now_ms=now_ms):
        if view.slot >= src.registry.n_tracked:
            continue
        seen.add(view.slot)
        out.append(
            _entry(
                src,
                slot=view.slot,
                labels=list(src.registry.labels_of(view.slot)),
                alert=by_slot.get(view.slot),
                view=view,
                now_ms=now_ms,
            )
        )
    for alert in src.book.firing():
        for member in alert.worst():
            if member.slot not in seen:
                out.append(
                    _entry(
                        src,
                        slot=member.slot,
                        labels=member.labels,
                        alert=alert,
                        view=None,
                        now_ms=now_ms,
                    )
                )
    return out


def history(src: Sources, slot: int) -> dict[str, Any] | None:
    """One series' recent samples for its chart; None when none are kept."""
    view = src.history.history(slot)
    if view is None or slot >= src.registry.n_tracked:
        return None
    p = src.pipeline
    rule_index = src.registry.alert_rule_of(slot)
    threshold = (
        src.book.rules[rule_index].severities[0].score
        if 0 <= rule_index < len(src.book.rules)
        else None
    )
    doc: dict[str, Any] = {
        "id": slot,
        "series": wording.selector(src.registry.labels_of(slot)),
        "rate": src.registry.is_counter(slot),
        "ts_ms": view.ts.tolist(),
        "stretches": [list(s) for s in view.stretches],
        "threshold": threshold,
        "baseline": {
            "expected": _num(float(p.al_base_exp[slot])),
            "lower": _num(float(p.al_base_lo[slot])),
            "upper": _num(float(p.al_base_hi[slot])),
        },
    }
    for i, name in enumerate(FIELDS):
        doc[name] = _nums(view.data[i])
    return doc


def add_routes(app: web.Application, src: Sources) -> None:
    """Register the console's page, assets and JSON endpoints on ``app``."""
    shared_console.add_asset_routes(
        app, own=ASSETS, page=shared_console.Page(title="Anomalies", script="anomalies.js")
    )

    async def handle_recent(request: web.Request) -> web.Response:
        now = src.now_ms()
        return web.json_response(
            {
                "status": "success",
                "now_ms": now,
                "remediator_url": src.remediator_url,
                "data": recent(src, now_ms=now),
            },
            headers=SECURITY_HEADERS,
        )

    async def handle_history(request: web.Request) -> web.Response:
        text = request.match_info["id"]
        doc = history(src, int(text)) if text.isdigit() else None
        if doc is None:
            return web.json_response(
                {
                    "status": "error",
                    "error": f"no recent history for "
                    f"series {text!r} (see /api/v1/anomalies/recent)",
                },
                status=404,
                headers=SECURITY_HEADERS,
            )
        return web.json_response({"status": "success", "data": doc}, headers=SECURITY_HEADERS)

    app.router.add_get("/api/v1/anomalies/recent", handle_recent)
    app.router.add_get("/api/v1/anomalies/{id}/history", handle_history)
