"""The backtest's report: the terminal table and the JSON document. Pure.

Every label value shown in the table goes through ``escaping`` (no terminal control
characters); the JSON document keeps label values exact and lets ``json.dumps`` escape
them (ASCII output, so no byte of it can be a control sequence either). Non-finite
numbers become ``null`` in JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detector.backtest import escaping
from detector.backtest.replay import ReplayCounts
from detector.backtest.span import Span
from detector.backtest.tally import Comparison, Outcome, Page, Resolution, SeriesPages
from servicekit.durations import format_duration

SERIES_WIDTH = 72
MAX_PAGES_SHOWN = 25


@dataclass(frozen=True, slots=True)
class Run:
    """One config's backtest, ready to report."""

    config: str  # the path as given, or "(defaults)"
    counts: ReplayCounts
    outcome: Outcome
    charts: tuple[tuple[SeriesPages, str], ...] = ()  # (series, file name in --out)


@dataclass(frozen=True, slots=True)
class Setup:
    span: Span
    selector: str
    prometheus: str
    queries: int
    seconds: float


def iso(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%m-%d %H:%M")


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _dur(seconds: float) -> str:
    return format_duration(round(seconds)) if seconds >= 1 else "0s"


def resolution_text(p: Page) -> str:
    if p.resolution is Resolution.ADOPTED and p.adopted_after_s is not None:
        return f"adopted {_dur(p.adopted_after_s)}"
    return {
        Resolution.BACK_IN_BAND: "back in band",
        Resolution.ADOPTED: "adopted",
        Resolution.STALE: "went silent",
        Resolution.FIRING_AT_END: "firing at end",
    }[p.resolution]


def score_text(x: float) -> str:
    """A score with enough digits to tell 0.9999 from 0.9999999 (never rounded to 1)."""
    if not math.isfinite(x):
        return "-"
    if x >= 1.0:
        return "1"
    digits = min(12, max(4, math.ceil(-math.log10(1.0 - x)) + 1))
    return f"{math.floor(x * 10**digits) / 10**digits:.{digits}f}".rstrip("0")


def _val(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.2e}"


# --- JSON ---------------------------------------------------------------------------
def page_doc(p: Page, *, end_ms: int) -> dict[str, Any]:
    return {
        "rule": p.rule,
        "series": dict(p.series),
        "severity": p.severity,
        "anomaly_since": iso(p.since_ms),
        "fired": iso(p.fired_ms),
        "ended": iso(p.ended_ms),
        "firing_s": p.firing_s(start_ms=p.fired_ms, end_ms=end_ms),
        "resolution": p.resolution.value,
        "adopted_after_s": _finite(p.adopted_after_s),
        "peak_score": _finite(p.peak_score),
        "fired_on": {
            "score": _finite(p.score),
            "value": _finite(p.value),
            "expected": _finite(p.expected),
            "lower": _finite(p.lower),
            "upper": _finite(p.upper),
        },
        "before_range": p.before_range,
    }


def series_doc(s: SeriesPages) -> dict[str, Any]:
    return {
        "rule": s.rule,
        "series": dict(s.series),
        "pages": s.pages,
        "firing_s": s.firing_s,
        "peak_score": _finite(s.peak_score),
    }


def run_doc(run: Run, *, span: Span, top: int) -> dict[str, Any]:
    o = run.outcome
    c = run.counts
    return {
        "config": run.config,
        "series": {
            "read": c.series_seen,
            "tracked": c.series_tracked,
            "untracked": c.series_untracked,
            "refused": c.series_refused,
        },
        "samples": c.samples,
        "pages": o.n_pages,
        "rules": [
            {
                "rule": r.name,
                "pages": r.pages,
                "notifications": r.notifications,
                "series_paged": r.series_paged,
                "pages_per_day": r.per_day,
            }
            for r in o.rules
        ],
        "top_series": [series_doc(s) for s in o.top[:top]],
        "charts": [
            {"series": dict(s.series), "rule": s.rule, "file": name} for s, name in run.charts
        ],
        "alerts": [page_doc(p, end_ms=span.end_ms) for p in o.pages],
    }


def document(
    setup: Setup, runs: Sequence[Run], comparison: Comparison | None, *, top: int
) -> dict[str, Any]:
    span = setup.span
    doc: dict[str, Any] = {
        "range": {
            "start": iso(span.start_ms),
            "end": iso(span.end_ms),
            "step_s": span.step_ms / 1000,
            "warmup_s": (span.start_ms - span.first_ms) / 1000,
        },
        "selector": setup.selector,
        "prometheus": setup.prometheus,
        "queries": setup.queries,
        "seconds": round(setup.seconds, 2),
        "runs": [run_doc(r, span=span, top=top) for r in runs],
    }
    if comparison is not None:
        doc["compare"] = {
            "pages": [comparison.pages_a, comparison.pages_b],
            "per_rule": {k: list(v) for k, v in comparison.per_rule.items()},
            "series_paged_in_both": comparison.both,
            "only_first": [series_doc(s) for s in comparison.only_a],
            "only_second": [series_doc(s) for s in comparison.only_b],
        }
    return doc


# --- terminal -----------------------------------------------------------------------
def _series(labels: tuple[tuple[str, str], ...], width: int = SERIES_WIDTH) -> str:
    return escaping.clip(escaping.series_text(labels), width)


def _safe(text: str, width: int = SERIES_WIDTH) -> str:
    return escaping.clip(escaping.printable(text), width)


def run_table(run: Run, *, span: Span, top: int) -> list[str]:
    o, c = run.outcome, run.counts
    lines = [
        f"config {_safe(run.config)}: {o.n_pages} page{'' if o.n_pages == 1 else 's'}",
        f"  series: {c.series_seen} read, {c.series_tracked} tracked, "
        f"{c.series_untracked} untracked, {c.series_refused} refused; "
        f"{c.samples:,} samples",
    ]
    if o.rules:
        lines.append("")
        names = [_safe(r.name, 24) for r in o.rules]
        lines.append(f"  {'pages per day (UTC)':<20}" + "".join(f"{n:>26}" for n in names))
        days = list(o.rules[0].per_day)
        for day in days:
            lines.append(f"  {day:<20}" + "".join(f"{r.per_day.get(day, 0):>26}" for r in o.rules))
        lines.append(f"  {'total':<20}" + "".join(f"{r.pages:>26}" for r in o.rules))
        if any(r.notifications != r.pages for r in o.rules):
            lines.append(
                f"  {'notifications (by)':<20}" + "".join(f"{r.notifications:>26}" for r in o.rules)
            )
    paged = [s for s in o.top if s.pages]
    lines.append("")
    if not paged:
        lines.append("  no series would have paged")
        return lines
    lines.append(f"  top series by pages ({min(top, len(paged))} of {len(paged)})")
    lines.append(f"  {'pages':>5}  {'firing':>8}  {'peak score':>10}  series")
    for s in paged[:top]:
        lines.append(
            f"  {s.pages:>5}  {_dur(s.firing_s):>8}  {score_text(s.peak_score):>10}  "
            f"{_series(s.series)}"
        )
    counted = [p for p in o.pages if not p.before_range]
    lines.append("")
    shown = counted[:MAX_PAGES_SHOWN]
    lines.append(f"  alerts ({len(shown)} of {len(counted)}; all in the JSON)")
    lines.append(
        f"  {'fired (UTC)':<11}  {'for':>7}  {'severity':<8}  {'peak':>10}  "
        f"{'resolved':<13}  {'value vs band when it fired':<30}  series"
    )
    for p in shown:
        firing = p.firing_s(start_ms=p.fired_ms, end_ms=span.end_ms)
        why = f"{_val(p.value)} vs [{_val(p.lower)}, {_val(p.upper)}]"
        lines.append(
            f"  {_short(p.fired_ms):<11}  {_dur(firing):>7}  "
            f"{_safe(p.severity, 8):<8}  {score_text(p.peak_score):>10}  "
            f"{resolution_text(p):<13}  {why:<30}  {_series(p.series, 56)}"
        )
    return lines


def table(setup: Setup, runs: Sequence[Run], comparison: Comparison | None, *, top: int) -> str:
    span = setup.span
    warm = span.start_ms - span.first_ms
    lines = [
        f"backtest {_short(span.start_ms)} .. {_short(span.end_ms)} UTC "
        f"({_dur((span.end_ms - span.start_ms + span.step_ms) / 1000)} at "
        f"{_dur(span.step_ms / 1000)}, warm-up {_dur(warm / 1000)}) of "
        f"{_safe(setup.selector)}: {setup.queries} queries, {setup.seconds:.1f}s",
        "",
    ]
    for run in runs:
        lines.extend(run_table(run, span=span, top=top))
        lines.append("")
    if comparison is not None and len(runs) == 2:
        lines.append(f"  compared: A = {_safe(runs[0].config, 100)}")
        lines.append(f"            B = {_safe(runs[1].config, 100)}")
        lines.append(f"  {'':<24}{'A':>10}{'B':>10}")
        lines.append(f"  {'pages':<24}{comparison.pages_a:>10}{comparison.pages_b:>10}")
        for name, (pa, pb) in comparison.per_rule.items():
            lines.append(f"  {'  ' + _safe(name, 22):<24}{pa:>10}{pb:>10}")
        lines.append(f"  series paging under both: {comparison.both}")
        for which, only in (("A", comparison.only_a), ("B", comparison.only_b)):
            lines.append(f"  series paging only under {which}: {len(only)}")
            for s in only[:top]:
                lines.append(f"    {s.pages:>5}  {_series(s.series)}")
        lines.append("")
    return "\n".join(lines)
