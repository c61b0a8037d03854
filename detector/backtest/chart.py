"""One series' backtest as an SVG chart, and the bounded trace it is drawn from. Pure.

The chart has two panels on one time axis: the value the detector saw (the value, or a
counter's rate) with its expected band, and the anomaly score on a "nines" scale
(``-log10(1 - score)``: 3 = 0.999, 4 = 0.9999) with the alert rule's thresholds; the
stretches where the alert was firing are shaded across both. ``Trace`` keeps at most
``buckets`` time buckets per series (value min and max, band outer edges, score max),
so a chart costs the same memory over an hour or a year.

Every text that comes from a label goes through ``escaping`` (printable, then XML
escaped); numbers are formatted here. The SVG is written by hand: no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from detector.backtest import escaping
from detector.backtest.tally import Page
from detector.series.registry import Labels

WIDTH, HEIGHT = 960, 444
LEFT, RIGHT = 72, 24
VALUE_TOP, VALUE_BOTTOM = 60, 276
SCORE_TOP, SCORE_BOTTOM = 308, 404
MAX_NINES = 8.0
TICK_STEPS_S = (
    300,
    900,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
)


class Trace:
    """Per time bucket: value min/max, band lower min / upper max, score max (NaN: no
    scored sample in the bucket)."""

    def __init__(self, *, start_ms: int, end_ms: int, buckets: int = 1200) -> None:
        if end_ms < start_ms or buckets < 2:
            raise ValueError(
                f"a trace needs end_ms >= start_ms and 2+ buckets, got "
                f"{start_ms}..{end_ms}, {buckets}"
            )
        self.start_ms, self.end_ms, self.buckets = start_ms, end_ms, buckets
        self.value_min = np.full(buckets, np.nan)
        self.value_max = np.full(buckets, np.nan)
        self.lower = np.full(buckets, np.nan)
        self.upper = np.full(buckets, np.nan)
        self.score = np.full(buckets, np.nan)

    def bucket_of(self, ts_ms: NDArray[np.int64]) -> NDArray[np.int64]:
        span = self.end_ms - self.start_ms + 1
        return ((ts_ms - self.start_ms) * self.buckets // span).astype(np.int64)

    def add(
        self,
        ts_ms: NDArray[np.int64],
        seen: NDArray[np.float64],
        score: NDArray[np.float64],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
    ) -> None:
        """Fold samples in; those outside [start_ms, end_ms] are ignored."""
        inside = (ts_ms >= self.start_ms) & (ts_ms <= self.end_ms)
        at = self.bucket_of(ts_ms[inside])
        np.fmin.at(self.value_min, at, seen[inside])
        np.fmax.at(self.value_max, at, seen[inside])
        np.fmin.at(self.lower, at, lower[inside])
        np.fmax.at(self.upper, at, upper[inside])
        np.fmax.at(self.score, at, score[inside])

    def x_ms(self) -> NDArray[np.float64]:
        """The middle of each bucket, in epoch ms."""
        width = (self.end_ms - self.start_ms + 1) / self.buckets
        return (self.start_ms + (np.arange(self.buckets) + 0.5) * width).astype(np.float64)


def nines(score: NDArray[np.float64]) -> NDArray[np.float64]:
    """``-log10(1 - score)``, clipped to [0, MAX_NINES]; NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.log10(np.clip(1.0 - score, 10.0**-MAX_NINES, 1.0))
    return np.where(np.isnan(score), np.nan, np.clip(out, 0.0, MAX_NINES))


def _num(x: float) -> str:
    return f"{x:.1f}"


def _fmt_value(x: float) -> str:
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4g}"
    return f"{x:.2e}"


def _runs(ok: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index runs where ``ok`` holds."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(frozen=True, slots=True)
class _Axes:
    start_ms: int
    end_ms: int
    y_lo: float
    y_hi: float

    def x(self, ts_ms: float) -> float:
        span = max(1, self.end_ms - self.start_ms)
        return LEFT + (ts_ms - self.start_ms) / span * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        frac = (v - self.y_lo) / (self.y_hi - self.y_lo)
        return VALUE_BOTTOM - min(1.05, max(-0.05, frac)) * (VALUE_BOTTOM - VALUE_TOP)


def _value_range(t: Trace) -> tuple[float, float]:
    """The value panel's range: the values', widened by the band up to half their span
    (a warming band can be far wider than anything the series does)."""
    finite = np.isfinite(t.value_min)
    if not finite.any():
        return 0.0, 1.0
    lo, hi = float(np.nanmin(t.value_min)), float(np.nanmax(t.value_max))
    span = hi - lo or abs(hi) or 1.0
    if np.isfinite(t.lower).any():
        lo = max(min(lo, float(np.nanmin(t.lower))), lo - 0.5 * span)
    if np.isfinite(t.upper).any():
        hi = min(max(hi, float(np.nanmax(t.upper))), hi + 0.5 * span)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _ticks(start_ms: int, end_ms: int) -> list[int]:
    span_s = (end_ms - start_ms) / 1000
    step = next((s for s in TICK_STEPS_S if span_s / s <= 8), TICK_STEPS_S[-1])
    first = -(-start_ms // (step * 1000)) * step * 1000
    return list(range(first, end_ms + 1, step * 1000))


def _tick_label(ts_ms: int, daily: bool) -> str:
    stamp = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return stamp.strftime("%m-%d" if daily else "%m-%d %H:%M")


def render_svg(
    trace: Trace,
    *,
    labels: Labels,
    pages: Sequence[Page],
    thresholds: Sequence[float],
    subtitle: str,
) -> str:
    """The chart of one series. ``subtitle`` is our own text (config, rule); it is
    escaped all the same."""
    ax = _Axes(trace.start_ms, trace.end_ms, *_value_range(trace))
    xs = [ax.x(float(v)) for v in trace.x_ms()]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">'
        f"{escaping.xml_escape(escaping.clip(escaping.series_text(labels), 130))}</text>",
        f'<text x="{LEFT}" y="34" fill="#555">'
        f"{escaping.xml_text(escaping.clip(subtitle, 150))}</text>",
    ]
    # alert stretches, across both panels
    for p in pages:
        x0 = ax.x(max(p.fired_ms, trace.start_ms))
        x1 = ax.x(trace.end_ms if p.ended_ms is None else min(p.ended_ms, trace.end_ms))
        out.append(
            f'<rect x="{_num(x0)}" y="{VALUE_TOP}" width="{_num(max(3.0, x1 - x0))}" '
            f'height="{SCORE_BOTTOM - VALUE_TOP}" fill="#e4572e" fill-opacity="0.18">'
            f"<title>{escaping.xml_text(p.rule)} {escaping.xml_text(p.severity)}: "
            f"fired {_tick_label(p.fired_ms, False)} UTC, peak score "
            f"{p.peak_score:.6f}</title></rect>"
        )
    # panel frames and gridlines
    for top, bottom in ((VALUE_TOP, VALUE_BOTTOM), (SCORE_TOP, SCORE_BOTTOM)):
        out.append(
            f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{bottom - top}" fill="none" stroke="#999"/>'
        )
    ticks = _ticks(trace.start_ms, trace.end_ms)
    daily = len(ticks) > 1 and ticks[1] - ticks[0] >= 86_400_000
    for t in ticks:
        x = _num(ax.x(t))
        out.append(f'<line x1="{x}" x2="{x}" y1="{VALUE_TOP}" y2="{SCORE_BOTTOM}" stroke="#ddd"/>')
        out.append(
            f'<text x="{x}" y="{SCORE_BOTTOM + 16}" text-anchor="middle">'
            f"{_tick_label(t, daily)}</text>"
        )
    for frac in (0.0, 0.5, 1.0):
        v = ax.y_lo + frac * (ax.y_hi - ax.y_lo)
        out.append(
            f'<text x="{LEFT - 6}" y="{_num(ax.y(v) + 4)}" text-anchor="end">'
            f"{escaping.xml_text(_fmt_value(v))}</text>"
        )
    # band, then value
    band_ok = np.isfinite(trace.lower) & np.isfinite(trace.upper)
    for a, b in _runs(band_ok):
        upper = [f"{_num(xs[i])},{_num(ax.y(float(trace.upper[i])))}" for i in range(a, b)]
        lower = [
            f"{_num(xs[i])},{_num(ax.y(float(trace.lower[i])))}" for i in range(b - 1, a - 1, -1)
        ]
        out.append(
            f'<polygon points="{" ".join(upper + lower)}" fill="#4a90d9" '
            f'fill-opacity="0.22" stroke="none"/>'
        )
    value_ok = np.isfinite(trace.value_min)
    for a, b in _runs(value_ok):
        highs = [f"{_num(xs[i])},{_num(ax.y(float(trace.value_max[i])))}" for i in range(a, b)]
        lows = [
            f"{_num(xs[i])},{_num(ax.y(float(trace.value_min[i])))}"
            for i in range(b - 1, a - 1, -1)
        ]
        out.append(
            f'<polygon points="{" ".join(highs + lows)}" fill="#1f3b57" '
            f'stroke="#1f3b57" stroke-width="1" stroke-linejoin="round"/>'
        )

    # score panel
    def y_score(n: float) -> float:
        return SCORE_BOTTOM - n / MAX_NINES * (SCORE_BOTTOM - SCORE_TOP)

    for th in thresholds:
        n = float(nines(np.array([th]))[0])
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y_score(n))}" '
            f'y2="{_num(y_score(n))}" stroke="#e4572e" stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{_num(y_score(n) + 4)}" text-anchor="end" '
            f'fill="#e4572e">{th:g}</text>'
        )
    score = nines(trace.score)
    for a, b in _runs(np.isfinite(score)):
        pts = " ".join(f"{_num(xs[i])},{_num(y_score(float(score[i])))}" for i in range(a, b))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#6b4c9a" stroke-width="1"/>')
    out.append(f'<text x="{LEFT}" y="{VALUE_TOP - 4}" fill="#1f3b57">value and band</text>')
    out.append(
        f'<text x="{LEFT}" y="{SCORE_TOP - 4}" fill="#6b4c9a">anomaly score '
        f"(-log10(1 - score); dashed: the rule's thresholds)</text>"
    )
    out.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" fill="#555">'
        f"UTC; shaded: alert firing</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def thresholds_of(scores: Sequence[float]) -> list[float]:
    """Severity thresholds inside the drawable range."""
    return [s for s in scores if 0 < s < 1 and math.isfinite(s)]
