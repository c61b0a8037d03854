"""The backtest's time grid and the chunks it is read in. Pure: numbers in, numbers out.

The grid is every ``step_ms`` from ``first_ms`` (the report's start minus the warm-up
lead-in) to ``end_ms``, the last step before ``--end`` (which is exclusive, so ``--range
7d --end 2025-12-01T00:00:00Z`` is the seven UTC days before it), aligned on multiples
of the step so that every series' range query answers on the same timestamps (one scrape
round per grid point). Chunks split the
grid into consecutive, non-overlapping runs of points: at most ``MAX_POINTS_PER_QUERY``
per query (Prometheus refuses more than 11,000 points per series) and at most about
``sample_budget`` samples over all the series seen in the previous chunk, so the answer
held in memory is bounded whatever the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from detector.verify.verdict import MAX_POINTS_PER_QUERY, MIN_STEP_S

DEFAULT_SAMPLE_BUDGET = 400_000  # samples per query: ~60 MB of parsed JSON at most
FIRST_CHUNK_POINTS = 60  # before any series was seen, read a small chunk first


class SpanError(ValueError):
    """A range, end or step that cannot make a grid; the message names the flag."""


@dataclass(frozen=True, slots=True)
class Span:
    """The grid: points ``first_ms, first_ms + step_ms, ..., end_ms``; pages count from
    ``start_ms`` on (the points before it are the warm-up lead-in)."""

    first_ms: int
    start_ms: int
    end_ms: int
    step_ms: int

    @property
    def n_points(self) -> int:
        return (self.end_ms - self.first_ms) // self.step_ms + 1

    @property
    def lead_points(self) -> int:
        return (self.start_ms - self.first_ms) // self.step_ms


@dataclass(frozen=True, slots=True)
class Chunk:
    """Grid points ``[index, index + n_points)``: one range query from ``start_ms`` to
    ``end_ms`` inclusive at the span's step."""

    index: int
    n_points: int
    start_ms: int
    end_ms: int


def parse_end(text: str | None, *, now_s: float) -> float:
    """``--end``: unix seconds or RFC 3339 (``2026-12-07T12:00:00Z``); None: ``now_s``."""
    if text is None:
        return now_s
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise SpanError(
                f"--end {text!r}: expected unix seconds or RFC 3339, e.g. 2026-12-07T12:00:00Z"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        value = stamp.timestamp()
    if not math.isfinite(value) or value <= 0:
        raise SpanError(f"--end {text!r}: not a time after 1970")
    return value


def build_span(*, end_s: float, range_s: float, step_s: float, lead_s: float) -> Span:
    """The grid of ``range_s`` before ``end_s`` (exclusive), on step multiples;
    SpanError when a value is out of bounds."""
    if not (math.isfinite(step_s) and step_s >= MIN_STEP_S):
        raise SpanError(
            f"--step {step_s:g}s: must be at least {MIN_STEP_S:g}s (finer than "
            "any sane scrape interval)"
        )
    if step_s != int(step_s):
        raise SpanError(f"--step {step_s:g}s: must be whole seconds (range queries are)")
    if not (math.isfinite(range_s) and range_s >= step_s):
        raise SpanError(f"--range {range_s:g}s: must be at least one step ({step_s:g}s)")
    if not (math.isfinite(lead_s) and lead_s >= 0):
        raise SpanError(f"--warmup {lead_s:g}s: must be 0 or more")
    step_ms = int(step_s) * 1000
    stop_ms = -(-int(end_s * 1000) // step_ms) * step_ms  # first step multiple >= end
    end_ms = stop_ms - step_ms
    start_ms = stop_ms - math.ceil(range_s * 1000 / step_ms) * step_ms
    first_ms = start_ms - math.ceil(lead_s * 1000 / step_ms) * step_ms
    if first_ms <= 0:
        raise SpanError("--range (plus the warm-up) reaches back before 1970")
    return Span(first_ms=first_ms, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)


def chunk_points(
    n_series: int,
    *,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    max_points: int = MAX_POINTS_PER_QUERY,
) -> int:
    """Grid points for the next query when the last one held ``n_series`` series (0:
    nothing seen yet, read a short first chunk)."""
    if n_series <= 0:
        return min(FIRST_CHUNK_POINTS, max_points)
    return max(1, min(max_points, sample_budget // n_series))


def next_chunk(
    span: Span,
    *,
    index: int,
    n_series: int,
    sample_budget: int = DEFAULT_SAMPLE_BUDGET,
    max_points: int = MAX_POINTS_PER_QUERY,
) -> Chunk | None:
    """The chunk starting at grid point ``index``, or None past the end."""
    if index >= span.n_points:
        return None
    n = min(
        chunk_points(n_series, sample_budget=sample_budget, max_points=max_points),
        span.n_points - index,
    )
    start = span.first_ms + index * span.step_ms
    return Chunk(index=index, n_points=n, start_ms=start, end_ms=start + (n - 1) * span.step_ms)
