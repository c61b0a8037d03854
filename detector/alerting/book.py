"""Alert events → the alerts on-call reads: grouping, labels, annotations and links.

This module owns the book of active alerts (one per series, or one per group of series
when the rule aggregates ``by`` labels) and renders each as Alertmanager's v2 alert JSON.
It is pure: the time comes in as ``now_ms``, series facts through ``SeriesInfo``; sending
is ``detector.alerting.delivery``'s job.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from opentelemetry.trace import SpanContext

from detector.alerting import wording
from detector.alerting.state import AlertEvent, EventKind
from detector.config import TEMPLATE_FIELD, AlertRule
from servicekit import telemetry

Labels = list[tuple[str, str]]
RELATED_LABELS = ("namespace", "service", "deployment", "pod", "node", "instance", "job")
RELATED_SCAN = 200  # newest alerts looked at per shared label: bounded work in a storm
_BAD_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True, slots=True)
class Reading:
    """The latest values of a series as the detector saw them."""

    ts_ms: int
    value: float
    expected: float
    lower: float
    upper: float
    score: float


class SeriesInfo(Protocol):
    """What the book needs to know about a series (the app answers from its tables)."""

    def labels_of(self, slot: int) -> Labels: ...
    def is_rate(self, slot: int) -> bool: ...
    def detector_of(self, slot: int) -> tuple[str, dict[str, Any]]: ...
    def reading(self, slot: int) -> Reading: ...
    def weekly(self, slot: int) -> bool | None: ...  # None: no seasonal profile


@dataclass(frozen=True, slots=True)
class Links:
    """Where an alert points: the detector itself, Prometheus, Grafana."""

    external_url: str
    prometheus_url: str | None = None
    grafana_url: str | None = None
    dashboard_uid: str = "vigil-anomaly"

    def generator(self, selector: str, *, since_ms: int, now_ms: int) -> str:
        if self.prometheus_url is None:
            return f"{self.external_url.rstrip('/')}/api/v1/anomalies"
        minutes = max(60, math.ceil((now_ms - since_ms) / 60000) + 60)
        query = urlencode({"g0.expr": selector, "g0.tab": "0", "g0.range_input": f"{minutes}m"})
        return f"{self.prometheus_url.rstrip('/')}/graph?{query}"

    def dashboard(self, labels: Labels, *, since_ms: int, now_ms: int) -> str | None:
        """The series with its written-back band over the anomaly and the hour before:
        Grafana's vigil-anomaly dashboard (variables ``metric`` and ``selector``, the
        label matchers without braces), else a Prometheus graph of the four series."""
        start = min(since_ms, now_ms) - 3600_000
        end = max(now_ms, since_ms) + 600_000
        name = dict(labels).get("__name__", "")
        inner = wording.matchers(labels)[1:-1]
        if self.grafana_url is not None:
            query = urlencode(
                {
                    "orgId": "1",
                    "var-metric": name,
                    "var-selector": inner,
                    "from": str(start),
                    "to": str(end),
                }
            )
            return f"{self.grafana_url.rstrip('/')}/d/{self.dashboard_uid}/vigil-anomaly?{query}"
        if self.prometheus_url is None:
            return None
        band = wording.matchers([("metric_name", name), *labels])
        exprs = [wording.selector(labels)] + [
            f"vigil_anomaly_{kind}{band}" for kind in ("expected", "lower", "upper")
        ]
        params: dict[str, str] = {}
        for i, expr in enumerate(exprs):
            params.update(
                {
                    f"g{i}.expr": expr,
                    f"g{i}.tab": "0",
                    f"g{i}.range_input": f"{max(60, (end - start) // 60000)}m",
                    f"g{i}.end_input": wording.iso(end)[:19].replace("T", " "),
                }
            )
        return f"{self.prometheus_url.rstrip('/')}/graph?{urlencode(params)}"

    def runbook(self, alertname: str) -> str:
        return f"{self.external_url.rstrip('/')}/runbooks/{quote(alertname)}"


@dataclass
class Member:
    """One anomalous series of an alert."""

    slot: int
    labels: Labels
    level: int
    since_ms: int
    peak: float
    reading: Reading


@dataclass
class Alert:
    """One alert as Alertmanager knows it (its labels are its identity)."""

    key: tuple[Any, ...]
    rule_index: int
    rule: AlertRule
    group: Labels  # the `by` labels of an aggregated alert; [] for a single series
    starts_ms: int
    level: int = 0
    members: dict[int, Member] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # enrichment annotations
    resolved_ms: int | None = None
    resolution: str = ""  # why it resolved (set when it does)
    retired: list[dict[str, str]] = field(default_factory=list)  # label sets to resolve
    pairs: set[tuple[str, str]] = field(default_factory=set)  # its entries in the book's index
    enriching: bool = False  # its enrichers were started (once per alert)
    trace: SpanContext | None = None  # the detect span of its first traced event

    @property
    def is_firing(self) -> bool:
        return self.resolved_ms is None

    def worst(self) -> list[Member]:
        return sorted(self.members.values(), key=lambda m: (-m.peak, -m.reading.score, m.slot))


def resolution(ev: AlertEvent) -> str:
    """Why the last series of an alert stopped being anomalous, in words."""
    if ev.kind is EventKind.STALE:
        return "series went stale"
    if ev.kind is EventKind.RECONFIGURED:
        return "its alert rule changed in a config reload"
    if ev.adopted_after_s is not None:
        return f"new level adopted after {wording.setting_duration(ev.adopted_after_s)}"
    return "back inside its band"


def sanitize(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Series labels as alert labels: the metric name becomes ``metric_name``, reserved
    ``__*`` labels go, invalid names are repaired and empty values dropped."""
    out: dict[str, str] = {}
    for name, value in labels:
        if not value:
            continue
        if name == "__name__":
            out.setdefault("metric_name", value)
            continue
        if name.startswith("__"):
            continue
        fixed = _BAD_LABEL_CHARS.sub("_", name)
        if fixed[0].isdigit():
            fixed = "_" + fixed
        out[fixed] = value
    return out


def render_template(text: str, fields: Mapping[str, str], labels: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("labels."):
            return labels.get(name[7:], "")
        return fields.get(name, "")

    return TEMPLATE_FIELD.sub(one, text)


class AlertBook:
    """The active alerts, keyed by rule and series (or group)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        info: SeriesInfo,
        links: Links,
        related_window_s: float = 900.0,
        max_related: int = 5,
    ) -> None:
        self.rules = tuple(rules)
        self.info = info
        self.links = links
        self.related_window_ms = related_window_s * 1000.0
        self.max_related = max_related
        self.alerts: dict[tuple[Any, ...], Alert] = {}
        self._by_slot: dict[int, tuple[Any, ...]] = {}
        self.recent: deque[Alert] = deque()  # resolved within the related window, oldest first
        # (label, value) -> alerts (firing or recent) with a member carrying it, oldest first
        self._index: dict[tuple[str, str], dict[int, Alert]] = {}

    # --- state ---------------------------------------------------------------------
    def _key(self, rule_index: int, labels: Labels) -> tuple[tuple[Any, ...], Labels]:
        rule = self.rules[rule_index]
        if rule.by is None:
            return (rule_index, tuple(labels)), []
        as_dict = dict(labels)
        group = [(name, as_dict.get(name, "")) for name in rule.by]
        return (rule_index, tuple(group)), group

    def apply(
        self, events: Iterable[AlertEvent], rule_of: Callable[[int], int], now_ms: int
    ) -> list[Alert]:
        """Apply lifecycle events; return the alerts that changed (to send now)."""
        changed: dict[tuple[Any, ...], Alert] = {}
        for ev in events:
            if ev.kind in (EventKind.FIRE, EventKind.RESTORED, EventKind.ESCALATE):
                alert = self._admit(ev, rule_of(ev.slot))
            else:
                alert = self._leave(ev, now_ms)
            if alert is not None:
                changed[alert.key] = alert
        self._forget(now_ms)
        return list(changed.values())

    def _admit(self, ev: AlertEvent, rule_index: int) -> Alert | None:
        if rule_index < 0 or rule_index >= len(self.rules):
            return None
        labels = self.info.labels_of(ev.slot)
        key, group = self._key(rule_index, labels)
        alert = self.alerts.get(key)
        if alert is None:
            alert = self.alerts[key] = Alert(
                key=key,
                rule_index=rule_index,
                rule=self.rules[rule_index],
                group=group,
                starts_ms=ev.since_ms,
            )
        if alert.trace is None and ev.trace is not None:
            alert.trace = ev.trace
        reading = Reading(ev.ts_ms, ev.value, ev.expected, ev.lower, ev.upper, ev.score)
        member = alert.members.get(ev.slot)
        if member is None:
            alert.members[ev.slot] = Member(
                ev.slot, labels, ev.level, ev.since_ms, ev.peak, reading
            )
            for pair in labels:
                if pair[0] in RELATED_LABELS and pair not in alert.pairs:
                    alert.pairs.add(pair)
                    self._index.setdefault(pair, {})[id(alert)] = alert
        else:
            member.level = max(member.level, ev.level)
            member.peak = max(member.peak, ev.peak)
            member.reading = Reading(
                ev.ts_ms,
                ev.value,
                member.reading.expected,
                member.reading.lower,
                member.reading.upper,
                ev.score,
            )
        self._by_slot[ev.slot] = key
        alert.starts_ms = min(alert.starts_ms, ev.since_ms)
        if ev.level > alert.level:
            if alert.level:
                alert.retired.append(self.labels(alert))  # the lower severity resolves
            alert.level = ev.level
        return alert

    def _leave(self, ev: AlertEvent, now_ms: int) -> Alert | None:
        key = self._by_slot.pop(ev.slot, None)
        alert = self.alerts.get(key) if key is not None else None
        if alert is None:
            return None
        member = alert.members.pop(ev.slot, None)
        if not alert.members:
            alert.resolved_ms = now_ms
            alert.resolution = resolution(ev)
            if member is not None:
                alert.members[ev.slot] = member  # keep the last words for the resolve
                member.reading = Reading(
                    ev.ts_ms, ev.value, ev.expected, ev.lower, ev.upper, ev.score
                )
            del self.alerts[key]  # type: ignore[arg-type]  # key is not None here
            self.recent.append(alert)
        return alert

    def _forget(self, now_ms: int) -> None:
        """Drop resolved alerts older than the related window (they resolve in time order,
        so only the front of the queue is looked at)."""
        while self.recent:
            a = self.recent[0]
            if a.resolved_ms is not None and now_ms - a.resolved_ms <= self.related_window_ms:
                break
            self.recent.popleft()
            for pair in a.pairs:
                entries = self._index.get(pair)
                if entries is not None:
                    entries.pop(id(a), None)
                    if not entries:
                        del self._index[pair]

    def firing(self) -> list[Alert]:
        return list(self.alerts.values())

    def move(self, moves: Sequence[tuple[Alert, int]]) -> None:
        """Give firing alerts their rule's new index (a config reload reordered the rules
        without changing theirs); all are taken out first, so indices may swap."""
        for alert, _ in moves:
            del self.alerts[alert.key]
        for alert, rule_index in moves:
            alert.rule_index = rule_index
            alert.key = (rule_index, *alert.key[1:])
            self.alerts[alert.key] = alert
            for slot in alert.members:
                self._by_slot[slot] = alert.key

    def refresh(self, alert: Alert) -> None:
        """Update the members' values and scores from the detector's latest; the expected
        value and band stay those from before the anomaly (what was expected)."""
        for member in alert.members.values():
            now = self.info.reading(member.slot)
            was = member.reading
            member.reading = Reading(
                now.ts_ms, now.value, was.expected, was.lower, was.upper, now.score
            )

    # --- rendering -----------------------------------------------------------------
    def labels(self, alert: Alert) -> dict[str, str]:
        rule = alert.rule
        if rule.by is None:
            labels = sanitize(next(iter(alert.members.values())).labels)
        else:
            labels = sanitize(alert.group)
        labels.update(rule.labels)
        labels["alertname"] = rule.name
        labels["severity"] = rule.severities[max(1, alert.level) - 1].severity
        return labels

    def related(self, alert: Alert, now_ms: int) -> list[str]:
        """Other anomalies sharing namespace/service/pod/node/... in the window, ranked."""
        mine = {(k, v) for m in alert.members.values() for k, v in m.labels if k in RELATED_LABELS}
        ranked = []
        candidates: dict[int, Alert] = {}
        for pair in mine:
            entries = self._index.get(pair, {})
            for other in list(entries.values())[-RELATED_SCAN:]:
                candidates[id(other)] = other
        for other in candidates.values():
            if (
                other.key == alert.key
                or abs(other.starts_ms - alert.starts_ms) > self.related_window_ms
            ):
                continue
            for m in other.members.values():
                shared = mine & {(k, v) for k, v in m.labels if k in RELATED_LABELS}
                if shared:
                    ranked.append((len(shared), m.peak, m, other))
        ranked.sort(key=lambda r: (-r[0], -r[1], r[2].slot))
        out = []
        for _, _, m, other in ranked[: self.max_related]:
            state = "firing" if other.is_firing else "resolved"
            out.append(
                f"{wording.selector(m.labels)} score {wording.score(m.peak)} since "
                f"{wording.iso(m.since_ms)} ({state})"
            )
        return out

    def _fields(self, alert: Alert, member: Member, now_ms: int) -> dict[str, str]:
        r = member.reading
        metric = dict(member.labels).get("__name__", "")
        rate = self.info.is_rate(member.slot)

        def fmt(x: float) -> str:
            return wording.format_value(x, metric=metric, rate=rate)

        direction = "above" if r.value > r.upper else "below" if r.value < r.lower else "within"
        weekly = self.info.weekly(member.slot)
        kind, _ = self.info.detector_of(member.slot)
        return {
            "alertname": alert.rule.name,
            "severity": alert.rule.severities[max(1, alert.level) - 1].severity,
            "value": fmt(r.value),
            "expected": fmt(r.expected),
            "lower": fmt(r.lower),
            "upper": fmt(r.upper),
            "band": f"{fmt(r.lower)}–{fmt(r.upper)}",
            "direction": direction,
            "score": wording.score(member.peak),
            "since": wording.iso(member.since_ms),
            "duration": wording.format_duration(max(now_ms, r.ts_ms) - member.since_ms),
            "series": wording.selector(member.labels),
            "metric": metric,
            "what": wording.what(member.labels, rate=rate),
            "context": "" if weekly is None else " " + wording.time_of_week(r.ts_ms, weekly=weekly),
            "detector": kind,
            "members": str(len(alert.members)),
            "worst": wording.selector(member.labels),
        }

    def annotations(self, alert: Alert, now_ms: int) -> dict[str, str]:
        worst = alert.worst()
        member = worst[0]
        f = self._fields(alert, member, now_ms)
        labels = dict(member.labels)
        _, settings = self.info.detector_of(member.slot)
        ann = {
            "value": f["value"],
            "expected": f["expected"],
            "lower": f["lower"],
            "upper": f["upper"],
            "direction": f["direction"],
            "score": f["score"],
            "anomalous_since": f["since"],
            "detector": f["detector"],
            "detector_settings": json.dumps(settings, sort_keys=True, separators=(",", ":")),
            "series": f["series"],
        }
        state = "was" if not alert.is_firing else "is"
        if alert.rule.by is None:
            ann["summary"] = (
                f"{f['what']} {state} {f['value']}, expected {f['band']}"
                f"{f['context']}, anomalous for {f['duration']}"
            )
            ann["description"] = (
                f"{f['what']} {state} {f['value']}, {f['direction']} the expected band "
                f"{f['band']}{f['context']} (expected {f['expected']}). Anomaly score "
                f"{f['score']} (one normal sample in {_rarity(member.peak)} scores "
                f"as high); anomalous since {f['since']} ({f['duration']}), detector "
                f"{f['detector']}."
            )
        else:
            group = ", ".join(f"{k}={v}" for k, v in alert.group if v) or "all series"
            ann["summary"] = (
                f"{len(alert.members)} anomalous series in {group}; worst: "
                f"{f['what']} {state} {f['value']}, expected {f['band']}"
            )
            ann["description"] = ann["summary"] + f", anomalous for {f['duration']}."
            listed = [(m, self._fields(alert, m, now_ms)) for m in worst[: alert.rule.max_listed]]
            ann["members"] = "\n".join(
                f"{wording.selector(m.labels)}: {mf['value']} (expected {mf['band']}), score "
                f"{wording.score(m.peak)}"
                for m, mf in listed
            )
        if alert.resolution and not alert.is_firing:
            ann["resolution"] = alert.resolution
            ann["summary"] += f"; resolved: {alert.resolution}"
            ann["description"] += f" Resolved: {alert.resolution}."
        related = self.related(alert, now_ms)
        if related:
            ann["related"] = "\n".join(related)
        ann["runbook_url"] = (
            render_template(alert.rule.runbook_url, f, labels)
            if alert.rule.runbook_url
            else self.links.runbook(alert.rule.name)
        )
        dashboard = self.links.dashboard(member.labels, since_ms=alert.starts_ms, now_ms=now_ms)
        if dashboard is not None:
            ann["dashboard_url"] = dashboard
        if alert.trace is not None:  # the request, detection and delivery that raised it
            ann["trace_id"] = telemetry.hex_ids(alert.trace)[0]
            ann["traceparent"] = telemetry.traceparent(alert.trace)
        for name, template in alert.rule.annotations.items():
            ann[name] = render_template(template, f, labels)
        ann.update(alert.extra)
        return ann

    def render(self, alert: Alert, *, now_ms: int, resend_s: float) -> list[dict[str, Any]]:
        """Alertmanager v2 JSON for the alert (and for label sets it retired)."""
        starts = min(alert.starts_ms, now_ms)
        ends = (
            alert.resolved_ms
            if alert.resolved_ms is not None
            else now_ms + int(4 * resend_s * 1000)
        )
        ends = max(ends, starts + 1)
        member = alert.worst()[0]
        body = {
            "labels": self.labels(alert),
            "annotations": self.annotations(alert, now_ms),
            "startsAt": wording.iso(starts),
            "endsAt": wording.iso(ends),
            "generatorURL": self.links.generator(
                wording.selector(member.labels), since_ms=starts, now_ms=now_ms
            ),
        }
        out = [
            {**body, "labels": old, "endsAt": wording.iso(max(now_ms, starts + 1))}
            for old in alert.retired
        ]
        alert.retired.clear()
        out.append(body)
        return out


def _rarity(score: float) -> str:
    if not score < 1.0:
        return "more than a million"
    return f"{1.0 / max(1e-12, 1.0 - score):,.0f}"
