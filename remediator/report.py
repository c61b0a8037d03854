"""The alert-quality review: episodes, runs and silences → a ``Report`` → Markdown or JSON.

This module owns what the review counts and what it suggests. Per alert name: how often it
fired (episodes), how long it lasted, how often it resolved by itself within minutes, how
often it was silenced, remediated, verified, undone, escalated. Per playbook: runs by state,
verified, undone, refused (by which guard). The noisiest series. Suggested changes, each
derived from the numbers it quotes: the score threshold that would have halved a scored
alert's episodes, the ``for`` that would have halved a short-lived rule's, silenced alerts,
playbooks whose fixes were undone or refused.

Pure: it takes the records (``audit.EpisodeRecord``, ``RunRecord``, ``EventRecord``) and the
silences as data, and ``now_ms``; the shell (``review.py``) reads them. Definitions:

- An *episode* is one (fingerprint, startsAt). Episodes of one alert name and label set
  (``severity`` aside) with the same startsAt are one episode: Vigil's detector moves an
  alert from warning to critical by retiring one label set and keeping startsAt.
- Its *duration* runs from startsAt to the endsAt of its resolved notification; an episode
  without one is *open* (still firing, silenced before it resolved, or ``send_resolved`` off)
  and has no duration.
- It *resolved by itself* when it resolved within ``self_resolve_s`` and no run acted on it
  (a run acted when it started executing, dry runs aside).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import TypeAdapter

from remediator.audit.store import EpisodeRecord, EventKind, EventRecord, RunRecord, RunState
from remediator.errors import ConfigError
from remediator.silences import Silence
from servicekit import durations

SELF_RESOLVE_S = 300.0
TOP_SERIES = 10
MIN_EPISODES = 3  # fewer and a suggestion would be guessing
MIN_SILENCES = 2  # one silence is maintenance; two is a habit
EVENT_KINDS = frozenset({EventKind.GUARD, EventKind.VERIFY, EventKind.UNDO, EventKind.ESCALATE})
SuggestionKind = Literal["score_threshold", "lengthen_for", "silenced", "undone", "refused"]


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``1h30m``, ``45s`` → seconds (servicekit's Prometheus syntax);
    ConfigError saying what is expected."""
    try:
        value = durations.parse_duration(text)
    except durations.DurationError:
        value = 0.0
    if value > 0:
        return value
    raise ConfigError(f"{text or '(empty)'}: expected a duration like 30d, 12h, 90m")


@dataclass(frozen=True, slots=True)
class AlertStats:
    alertname: str
    episodes: int
    open: int  # no resolved notification (yet)
    self_resolved: int
    duration_total_s: float  # of the resolved episodes
    duration_median_s: float | None
    duration_p90_s: float | None
    peak_score_median: float | None  # of the episodes with a numeric ``score`` annotation
    silences: int | None  # None: Alertmanager's silences were not available
    runs: int
    runs_acted: int
    runs_verified: int
    runs_undone: int
    escalations: int


@dataclass(frozen=True, slots=True)
class PlaybookStats:
    playbook: str
    runs: int
    states: dict[str, int]  # the states that occur
    verified: int  # every verification held
    verification_failed: int
    undone: int  # state undone, or an undo step executed
    escalations: int
    refused_by: dict[str, int]  # guard -> refused runs ("other": not a guard verdict)


@dataclass(frozen=True, slots=True)
class SeriesStats:
    alertname: str
    labels: dict[str, str]  # without alertname and severity
    episodes: int
    self_resolved: int
    self_resolved_share: float
    duration_median_s: float | None


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: SuggestionKind
    subject: str  # the alert name or playbook
    setting: str | None  # what to change, e.g. "alerts[name=VigilAnomaly].severities[0].score"
    proposed: str | None
    episodes: int  # the episodes (or runs) the numbers are about
    episodes_after: int | None  # at most this many would have fired with the change
    text: str


@dataclass(frozen=True, slots=True)
class Report:
    generated_ms: int
    since_ms: int
    self_resolve_s: float
    silences_checked: bool
    notes: tuple[str, ...]
    episodes: int
    runs: int
    alerts: tuple[AlertStats, ...]
    playbooks: tuple[PlaybookStats, ...]
    noisiest: tuple[SeriesStats, ...]
    suggestions: tuple[Suggestion, ...]


REPORT = TypeAdapter(Report)


def report_json(report: Report) -> str:
    return REPORT.dump_json(report, indent=2).decode()


def parse_report(text: str | bytes) -> Report:
    """The inverse of ``report_json`` (pydantic ValidationError if it is not one)."""
    return REPORT.validate_json(text)


# -- the core -------------------------------------------------------------------------------


@dataclass
class _Episode:
    alertname: str
    series: tuple[tuple[str, str], ...]
    parts: list[EpisodeRecord]
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def duration_ms(self) -> int | None:
        ends = [p.ends_ms for p in self.parts if p.status == "resolved"]
        if len(ends) < len(self.parts) or None in ends:
            return None
        return max(0, max(e or 0 for e in ends) - self.parts[0].starts_ms)

    @property
    def peak(self) -> float | None:
        return max((p.peak_score for p in self.parts if p.peak_score is not None), default=None)

    @property
    def detector(self) -> str | None:
        return next((p.detector for p in self.parts if p.detector), None)

    def self_resolved(self, limit_ms: int) -> bool:
        d = self.duration_ms
        return d is not None and d <= limit_ms and not any(_acted(r) for r in self.runs)


@dataclass
class _RunFacts:
    verify: list[str] = field(default_factory=list)
    undone: bool = False
    escalated: bool = False
    refused_by: str | None = None


def _acted(run: RunRecord) -> bool:
    return run.executed_ms is not None and run.state is not RunState.DRY_RUN


def _series(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in ("alertname", "severity")))


def _episodes(records: Iterable[EpisodeRecord], runs: Sequence[RunRecord]) -> list[_Episode]:
    merged: dict[tuple[str, tuple[tuple[str, str], ...], int], _Episode] = {}
    for rec in records:
        series = _series(rec.labels)
        ep = merged.setdefault(
            (rec.alertname, series, rec.starts_ms), _Episode(rec.alertname, series, [])
        )
        ep.parts.append(rec)
    by_key = {(p.fingerprint, p.starts_at): ep for ep in merged.values() for p in ep.parts}
    for run in runs:
        if (found := by_key.get((run.fingerprint, run.starts_at))) is not None:
            found.runs.append(run)
    return list(merged.values())


def _run_facts(events: Iterable[EventRecord]) -> dict[str, _RunFacts]:
    facts: dict[str, _RunFacts] = defaultdict(_RunFacts)
    for e in events:
        if e.run_id is None:
            continue
        f = facts[e.run_id]
        if e.kind is EventKind.VERIFY and e.verdict is not None:
            f.verify.append(e.verdict)
        elif e.kind is EventKind.UNDO and e.verdict == "executed":
            f.undone = True
        elif e.kind is EventKind.ESCALATE and e.verdict != "dry_run":  # dry_run: not sent
            f.escalated = True
        elif e.kind is EventKind.GUARD and e.verdict == "refuse" and f.refused_by is None:
            f.refused_by = e.name
    return facts


def _verified(f: _RunFacts) -> bool:
    return bool(f.verify) and all(v == "ok" for v in f.verify)


def _undone(run: RunRecord, f: _RunFacts) -> bool:
    return run.state is RunState.UNDONE or f.undone


def _p90(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1] if ordered else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def build_report(
    *,
    episodes: Sequence[EpisodeRecord],
    runs: Sequence[RunRecord],
    events: Sequence[EventRecord],
    silences: Sequence[Silence] | None,
    now_ms: int,
    since_ms: int,
    self_resolve_s: float = SELF_RESOLVE_S,
    notes: Sequence[str] = (),
) -> Report:
    """The review of ``[since_ms, now_ms]``. ``silences`` None: Alertmanager's silences are
    unknown (say why in ``notes``); the report is complete otherwise."""
    limit_ms = int(self_resolve_s * 1000)
    eps = _episodes(episodes, runs)
    facts = _run_facts(events)
    window = [s for s in silences or () if since_ms <= s.starts_ms <= now_ms]
    by_alert: dict[str, list[_Episode]] = defaultdict(list)
    for ep in eps:
        by_alert[ep.alertname].append(ep)
    runs_by_alert: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        runs_by_alert[run.alertname].append(run)
    alerts: list[AlertStats] = []
    suggestions: list[Suggestion] = []
    matched: set[str] = set()
    for name in sorted(set(by_alert) | set(runs_by_alert)):
        mine, alert_runs = by_alert.get(name, []), runs_by_alert.get(name, [])
        hit = [s for s in window if any(s.matches(dict(p.labels)) for ep in mine for p in ep.parts)]
        matched.update(s.id for s in hit)
        stats = _alert_stats(
            name, mine, alert_runs, facts, limit_ms, None if silences is None else len(hit)
        )
        alerts.append(stats)
        suggestions += _alert_suggestions(stats, mine, hit, limit_ms)
    playbooks = _playbook_stats(runs, facts)
    for pb in playbooks:
        suggestions += _playbook_suggestions(pb, runs)
    extra = list(notes)
    if silences is not None and (unmatched := len(window) - len(matched)):
        extra.append(
            f"{unmatched} silence(s) created in the window match no alert seen in "
            "it (Alertmanager does not notify silenced alerts, so an alert silenced "
            "before it fired leaves no trace here)"
        )
    alerts.sort(key=lambda a: (-a.episodes, a.alertname))
    return Report(
        generated_ms=now_ms,
        since_ms=since_ms,
        self_resolve_s=self_resolve_s,
        silences_checked=silences is not None,
        notes=tuple(extra),
        episodes=len(eps),
        runs=len(runs),
        alerts=tuple(alerts),
        playbooks=tuple(playbooks),
        noisiest=_noisiest(eps, limit_ms),
        suggestions=tuple(suggestions),
    )


def _alert_stats(
    name: str,
    eps: list[_Episode],
    runs: list[RunRecord],
    facts: Mapping[str, _RunFacts],
    limit_ms: int,
    silences: int | None,
) -> AlertStats:
    durations = [d / 1000 for ep in eps if (d := ep.duration_ms) is not None]
    peaks = [p for ep in eps if (p := ep.peak) is not None]
    return AlertStats(
        alertname=name,
        episodes=len(eps),
        open=len(eps) - len(durations),
        self_resolved=sum(ep.self_resolved(limit_ms) for ep in eps),
        duration_total_s=sum(durations),
        duration_median_s=_median(durations),
        duration_p90_s=_p90(durations),
        peak_score_median=_median(peaks),
        silences=silences,
        runs=len(runs),
        runs_acted=sum(_acted(r) for r in runs),
        runs_verified=sum(_verified(facts[r.id]) for r in runs if r.id in facts),
        runs_undone=sum(_undone(r, facts.get(r.id, _RunFacts())) for r in runs),
        escalations=sum(facts[r.id].escalated for r in runs if r.id in facts),
    )


def _playbook_stats(
    runs: Sequence[RunRecord], facts: Mapping[str, _RunFacts]
) -> list[PlaybookStats]:
    by_pb: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_pb[run.playbook].append(run)
    out = []
    for name in sorted(by_pb):
        mine = by_pb[name]
        fs = [facts.get(r.id, _RunFacts()) for r in mine]
        refused = Counter(
            f.refused_by or "other"
            for r, f in zip(mine, fs, strict=True)
            if r.state is RunState.REFUSED
        )
        out.append(
            PlaybookStats(
                playbook=name,
                runs=len(mine),
                states=dict(sorted(Counter(r.state.value for r in mine).items())),
                verified=sum(_verified(f) for f in fs),
                verification_failed=sum("failed" in f.verify for f in fs),
                undone=sum(_undone(r, f) for r, f in zip(mine, fs, strict=True)),
                escalations=sum(f.escalated for f in fs),
                refused_by=dict(sorted(refused.items())),
            )
        )
    return out


def _noisiest(eps: Sequence[_Episode], limit_ms: int) -> tuple[SeriesStats, ...]:
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[_Episode]] = defaultdict(list)
    for ep in eps:
        groups[(ep.alertname, ep.series)].append(ep)
    rows = []
    for (name, series), mine in groups.items():
        quiet = sum(ep.self_resolved(limit_ms) for ep in mine)
        durations = [d / 1000 for ep in mine if (d := ep.duration_ms) is not None]
        rows.append(
            SeriesStats(
                alertname=name,
                labels=dict(series),
                episodes=len(mine),
                self_resolved=quiet,
                self_resolved_share=quiet / len(mine),
                duration_median_s=_median(durations),
            )
        )
    rows.sort(key=lambda s: (-s.episodes, -s.self_resolved, s.alertname, sorted(s.labels.items())))
    return tuple(rows[:TOP_SERIES])


# -- suggestions ----------------------------------------------------------------------------


def score_threshold(peaks: Sequence[float]) -> tuple[float, int] | None:
    """The threshold at or above which at most half of ``peaks`` lie, dropping as few as
    possible, and how many stay; None when ties make that impossible. It lies between the
    highest dropped and the lowest kept peak (halfway in ``-log10(1 - score)`` for scores in
    (0, 1), where Vigil's scores crowd towards 1), rounded to the fewest decimals that still
    separate them."""
    desc = sorted(peaks, reverse=True)
    keep = len(desc) // 2
    while keep > 0 and desc[keep - 1] == desc[keep]:
        keep -= 1
    if keep == 0:
        return None
    lo, hi = desc[keep], desc[keep - 1]
    if 0.0 < lo and hi < 1.0:
        mid = 1.0 - 10 ** -((-math.log10(1.0 - lo) - math.log10(1.0 - hi)) / 2)
    else:
        mid = (lo + hi) / 2
    for decimals in range(0, 17):
        if lo < (y := round(mid, decimals)) <= hi:
            return y, keep
    return mid, keep


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    shown = [f"{n}{u}" for n, u in parts if n]
    return "".join(shown[:2])


def _alert_suggestions(
    stats: AlertStats, eps: list[_Episode], hit: list[Silence], limit_ms: int
) -> list[Suggestion]:
    name, n, out = stats.alertname, stats.episodes, []
    detector = next((ep.detector for ep in eps if ep.detector), None)
    peaks = [p for ep in eps if (p := ep.peak) is not None]
    if len(peaks) >= MIN_EPISODES and (found := score_threshold(peaks)) is not None:
        y, keep = found
        low = min(peaks)
        if detector is not None:
            setting = f"alerts[name={name}].severities[0].score"
            where = f"`{setting}` in the detector config"
        else:
            setting, where = f"score threshold of {name}", f"the score threshold of {name}"
        out.append(
            Suggestion(
                kind="score_threshold",
                subject=name,
                setting=setting,
                proposed=str(y),
                episodes=len(peaks),
                episodes_after=keep,
                text=(
                    f"{name}: raise {where} from its current value (at most {low}, the lowest "
                    f"peak score that fired) to {y}. {keep} of {len(peaks)} episodes peaked at "
                    f"or above {y}, so at most {keep} would have fired; the other "
                    f"{len(peaks) - keep} peaked between {low} and {sorted(peaks)[-keep - 1]} "
                    f"(median peak {_num(stats.peak_score_median)})."
                ),
            )
        )
    durations = sorted(d for ep in eps if (d := ep.duration_ms) is not None)
    short = sum(d <= limit_ms for d in durations)
    if len(durations) >= MIN_EPISODES and 2 * short > len(durations):
        k = len(durations) // 2
        minutes = durations[len(durations) - k - 1] // 60_000 + 1
        after = sum(d > minutes * 60_000 for d in durations) + stats.open
        if detector is not None:
            setting, change = (
                f"alerts[name={name}].for_s",
                f"raise `alerts[name={name}].for_s` by {minutes * 60} (seconds)",
            )
        else:
            setting, change = f"for of {name}", f"lengthen `for` of the rule {name} by {minutes}m"
        out.append(
            Suggestion(
                kind="lengthen_for",
                subject=name,
                setting=setting,
                proposed=f"+{minutes}m",
                episodes=n,
                episodes_after=after,
                text=(
                    f"{name}: {change}. {short} of {len(durations)} resolved episodes lasted "
                    f"{_dur(limit_ms / 1000)} or less ({stats.self_resolved} resolved with no "
                    f"remediation; median {_dur(stats.duration_median_s)}); only {after} of {n} "
                    f"episodes lasted longer than {minutes}m or are still open, so at most "
                    f"{after} would have fired. Every real {name} would page {minutes}m later."
                ),
            )
        )
    if len(hit) >= MIN_SILENCES:
        who = ", ".join(sorted({s.created_by or "?" for s in hit}))
        out.append(
            Suggestion(
                kind="silenced",
                subject=name,
                setting=None,
                proposed=None,
                episodes=n,
                episodes_after=None,
                text=(
                    f"{name}: silenced {len(hit)} times in the window (by {who}) for {n} "
                    f"episodes: people mute it rather than act on it. Fix what it detects, "
                    f"route it to a ticket instead of a page, or remove it."
                ),
            )
        )
    return out


def _playbook_suggestions(pb: PlaybookStats, runs: Sequence[RunRecord]) -> list[Suggestion]:
    out = []
    acted = sum(1 for r in runs if r.playbook == pb.playbook and _acted(r))
    if pb.undone:
        alerts = ", ".join(sorted({r.alertname for r in runs if r.playbook == pb.playbook}))
        out.append(
            Suggestion(
                kind="undone",
                subject=pb.playbook,
                setting=None,
                proposed=None,
                episodes=acted,
                episodes_after=None,
                text=(
                    f"playbook {pb.playbook}: {pb.undone} of {acted} runs that acted were undone "
                    f"({pb.verification_failed} failed verification): its steps did not fix "
                    f"{alerts}. Fix the steps or the verify query, or set mode: approval until "
                    "they work."
                ),
            )
        )
    refused = sum(pb.refused_by.values())
    if refused >= MIN_SILENCES and 2 * refused >= pb.runs:
        guard, count = max(pb.refused_by.items(), key=lambda kv: (kv[1], kv[0]))
        setting, why = _REFUSALS.get(
            guard,
            (
                f"guards.{guard}",
                ("check that these refusals are intended, or stop matching these alerts"),
            ),
        )
        out.append(
            Suggestion(
                kind="refused",
                subject=pb.playbook,
                setting=setting,
                proposed=None,
                episodes=pb.runs,
                episodes_after=None,
                text=(
                    f"playbook {pb.playbook}: refused {refused} of {pb.runs} runs, {count} by "
                    f"the {guard} guard ({setting}): {why}."
                ),
            )
        )
    return out


_REFUSALS = {  # guard -> (its playbook setting, what many refusals by it mean)
    "cooldown": (
        "guards.cooldown_s",
        "its alert came back on a target within the cooldown "
        "of an earlier run there, so the fix does not last; fix the cause, or let a "
        "person handle it",
    ),
    "rate": (
        "guards.rate",
        "more alerts than the rate limit lets it act on; find why the "
        "alert fires so often before raising the limit",
    ),
    "silence": (
        "guards.respect_silences",
        "its alerts were silenced when the runs were decided; people are already handling them",
    ),
}


# -- Markdown -------------------------------------------------------------------------------


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.12g}"  # no float noise like 0.9999400000000001


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def _labels(labels: Mapping[str, str]) -> str:
    text = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + text.replace("|", "\\|") + "}"  # a | would end the table cell


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "–"


def render_markdown(r: Report) -> str:
    lines = [
        "# Alert-quality review",
        "",
        f"{_ts(r.since_ms)} → {_ts(r.generated_ms)} "
        f"({_dur((r.generated_ms - r.since_ms) / 1000)}): {r.episodes} episodes of "
        f"{len(r.alerts)} alerts, {r.runs} runs of {len(r.playbooks)} playbooks. "
        f"*Self-resolved*: resolved within {_dur(r.self_resolve_s)} with no remediation "
        "acting on it.",
        "",
    ]
    lines += [f"> {note}" for note in r.notes] + ([""] if r.notes else [])
    lines += ["## Suggested changes", ""]
    lines += [f"{i}. {s.text}" for i, s in enumerate(r.suggestions, 1)] or [
        "None: no alert or playbook stands out in this window."
    ]
    lines += [
        "",
        "## Alerts",
        "",
        "| alert | episodes | open | self-resolved | median | p90 | total | "
        "median peak score | silences | runs | acted | verified | undone | escalated |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {a.alertname} | {a.episodes} | {a.open} | {a.self_resolved} | "
        f"{_dur(a.duration_median_s)} | {_dur(a.duration_p90_s)} | "
        f"{_dur(a.duration_total_s if a.duration_median_s is not None else None)} | "
        f"{_num(a.peak_score_median)} | "
        f"{_opt(a.silences)} | {a.runs} | {a.runs_acted} | {a.runs_verified} | "
        f"{a.runs_undone} | {a.escalations} |"
        for a in r.alerts
    ]
    lines += [
        "",
        "## Playbooks",
        "",
        "| playbook | runs | states | verified | verification failed | undone | "
        "escalated | refused by |",
        "|---|--:|---|--:|--:|--:|--:|---|",
    ]
    lines += [
        f"| {p.playbook} | {p.runs} | {_counts(p.states)} | {p.verified} | "
        f"{p.verification_failed} | {p.undone} | {p.escalations} | "
        f"{_counts(p.refused_by)} |"
        for p in r.playbooks
    ]
    lines += [
        "",
        f"## Noisiest series (top {TOP_SERIES} by episodes)",
        "",
        "| alert | series | episodes | self-resolved | median |",
        "|---|---|--:|--:|--:|",
    ]
    lines += [
        f"| {s.alertname} | `{_labels(s.labels)}` | {s.episodes} | {s.self_resolved} "
        f"({s.self_resolved_share:.0%}) | {_dur(s.duration_median_s)} |"
        for s in r.noisiest
    ]
    return "\n".join(lines) + "\n"
