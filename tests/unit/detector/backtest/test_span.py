"""The backtest's grid and chunks (detector.backtest.span)."""

from __future__ import annotations

import pytest

from detector.backtest import span
from detector.verify.verdict import MAX_POINTS_PER_QUERY

END_S = 1_764_547_200.0  # 2025-12-01T00:00:00Z


def test_range_ends_before_end_on_step_multiples():
    grid = span.build_span(end_s=END_S + 30, range_s=86400, step_s=60, lead_s=3600)
    assert grid.end_ms == int(END_S * 1000)  # 00:00:30 is not a step: up to 00:00:00
    assert grid.start_ms == grid.end_ms + 60_000 - 86_400_000
    assert grid.n_points - grid.lead_points == 1440  # one day at 1m
    assert grid.lead_points == 60
    assert grid.first_ms % 60_000 == 0
    exact = span.build_span(end_s=END_S, range_s=86400, step_s=60, lead_s=0)
    assert exact.end_ms == int(END_S * 1000) - 60_000  # --end itself is excluded
    assert exact.n_points == 1440 and exact.first_ms == exact.start_ms


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_s": 1}, "at least 5s"),
        ({"step_s": 7.5}, "whole seconds"),
        ({"range_s": 30}, "at least one step"),
        ({"lead_s": -1}, "--warmup"),
        ({"range_s": float("inf")}, "--range"),
        ({"end_s": 100.0}, "before 1970"),
    ],
)
def test_bad_grids_name_the_flag(kwargs, message):
    args = {"end_s": END_S, "range_s": 86400.0, "step_s": 60.0, "lead_s": 0.0, **kwargs}
    with pytest.raises(span.SpanError, match=message):
        span.build_span(**args)


@pytest.mark.parametrize("series_counts", [[0], [1], [3, 3, 3], [5000], [0, 200_000, 1]])
def test_chunks_cover_the_grid_once_within_the_limits(series_counts):
    grid = span.build_span(end_s=END_S, range_s=30 * 86400, step_s=15, lead_s=6 * 3600)
    seen: list[int] = []
    index, k = 0, 0
    while (
        chunk := span.next_chunk(
            grid, index=index, n_series=series_counts[min(k, len(series_counts) - 1)] if k else 0
        )
    ) is not None:
        n_series = series_counts[min(k, len(series_counts) - 1)] if k else 0
        assert chunk.index == index
        assert 1 <= chunk.n_points <= MAX_POINTS_PER_QUERY
        if n_series:
            assert chunk.n_points * n_series <= max(span.DEFAULT_SAMPLE_BUDGET, n_series)
        assert chunk.start_ms == grid.first_ms + index * grid.step_ms
        assert chunk.end_ms == chunk.start_ms + (chunk.n_points - 1) * grid.step_ms
        seen.extend(range(chunk.index, chunk.index + chunk.n_points))
        index += chunk.n_points
        k += 1
    assert seen == list(range(grid.n_points))


def test_chunk_size_follows_the_series_seen():
    assert span.chunk_points(0) == span.FIRST_CHUNK_POINTS
    assert span.chunk_points(1) == MAX_POINTS_PER_QUERY
    assert span.chunk_points(1000, sample_budget=400_000) == 400
    assert span.chunk_points(10**9) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, 123.0),
        ("1764547200", END_S),
        ("2025-12-01T00:00:00Z", END_S),
        ("2025-12-01T01:00:00+01:00", END_S),
        ("2025-12-01T00:00:00", END_S),  # no zone: UTC
    ],
)
def test_end_takes_unix_seconds_or_rfc3339(text, expected):
    assert span.parse_end(text, now_s=123.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "-5", "2025-13-01T00:00:00Z"])
def test_bad_end_is_refused(text):
    with pytest.raises(span.SpanError, match="--end"):
        span.parse_end(text, now_s=123.0)
