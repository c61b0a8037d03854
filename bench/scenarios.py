"""Scenario suite: synthetic SRE metric shapes through the detector service, measured as
on-call would feel them.

Every family of ``bench/scenario_data.py`` gives ``--series-per-family`` clean series and
as many anomalous ones (same base draws, plus a labelled anomaly), ``--days`` long at a
15 s scrape (a family that needs more, such as the weekly one, gets its ``min_days``).
They go through the path the service runs (``ServicePath``): the default configuration's
series registry (which picks the detector and alert rule and whether a series is a
counter, from its labels, via ``Ingestor`` on a real encoded remote-write request), then
the ``Pipeline`` (sample rules, counter rates, the detector family, the alert lifecycle
of the default alert rule) fed one batch per scrape round in time order, with the
staleness sweep after each batch as the worker does when idle. No HTTP, no clock: time
is the samples' own.

Per family, on clean series: false pages per 1,000 series-days (FIRE events; how many
came in a series' first 6 hours, its baseline's youth, is shown apart), the share of
samples spent firing, and the band coverage (share of scored samples, after each series'
first ``warmup_samples``, inside the band the family publishes, [lower, upper]; for
counters the band is on the rate). On anomalous series: the share detected (firing at
some sample of the labelled interval), the detection delay in samples (index of the
first firing sample in the interval, 0 = the anomaly's first sample; the default rule's
``for_s: 60``, which counts the first sample's own 15 s, makes 3 the least), the share
of the interval's samples spent firing, the pages per anomaly (more than one: the alert
resolved and paged again), for lasting anomalies the share still firing at the series'
last sample, and for short ones the median samples from the anomaly's end until the alert resolves.

The fast default (8 + 8 series a family, 7 days) takes ~11 s here and 0.5 GB; ``--full``
(12 + 12, 28 days) ~75 s (~47 s with ``--no-recheck``) and 1.6 GB (the series are
generated up front).

Prints a table and, as its last line, one JSON object with every figure.
With ``--warm-start-days D`` every series is first warmed up as the service warms a new
series from Prometheus: D days of the family's clean history, read as the warm start
reads it (a raw sample every 5 minutes over ``period_history_s``, every sample of the
last ``history_s``), its period detected from it, learned without alerting. Without it,
each series starts as a new deployment does with ``--prometheus``: its warm start finds
no history.

The seasonal re-check (``detector.warmstart.recheck``) runs as the service runs it by
default: the service's own schedule (``Schedule``: due when the history spans two weeks
and an hour, then every ``recheck_interval_s``), the series' history so far in
Prometheus (its warm-start history, then its own samples before that moment) read as
the two queries read it, its period and the move judged as the service judges them, and
a move applied by the worker as ``Batch.move``. Every due series is checked at its scrape
round (the service paces them at ``recheck_per_s``, 2 a second: these 400 series within
a few minutes). ``--no-recheck`` turns it off.

Usage: python -m bench.scenarios [--series-per-family 8] [--days 7] [--seed 1]
       [--families a,b] [--full] [--warm-start-days 15] [--no-recheck]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from bench import scenario_data
from bench.scenario_data import FAMILIES, STEP_MS, Series
from detector.alerting.state import FIRING, AlertEvent, AlertState, EventKind
from detector.config import DetectorConfig, WarmStartConfig
from detector.metrics import build_metrics
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import Batch, Pipeline
from detector.remote_write import encode
from detector.series.registry import SeriesRegistry
from detector.warmstart import recheck
from detector.warmstart.prometheus import SeriesHistory, prepare_history

STALE_BITS = np.uint64(0x7FF0000000000002)  # Prometheus's staleness marker
FAST = {"series_per_family": 8, "days": 7.0}
YOUNG_MS = 6 * 3_600_000  # pages this early in a series are its baseline's, not its data's
# issue 20's check of a lasting anomaly: still firing at its last sample 30-50 min in
LASTING_CHECK_MS = 50 * 60_000
FULL = {"series_per_family": 12, "days": 28.0}


@dataclass(frozen=True, slots=True)
class Outputs:
    """The detector's outputs for one series' samples (NaN where not scored)."""

    score: NDArray[np.float64]
    seen: NDArray[np.float64]  # what the detector saw: the value, or a counter's rate
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Trace:
    """What the service did with one series, sample by sample (the generator's samples,
    staleness markers included). Two bytes a sample, so a month of 800 series fits; the
    outputs themselves only when asked for (``ServicePath.run(..., outputs=True)``)."""

    scored: NDArray[np.bool_]  # the detector scored it (not a marker, nor a counter's
    # first sample or first after a marker, which have no rate)
    firing: NDArray[np.bool_]  # the series' alert was firing after this sample
    banded: NDArray[np.bool_]  # scored, with a finite band
    inband: NDArray[np.bool_]  # scored, and what the detector saw lies in [lower, upper]
    fires_ms: tuple[int, ...]  # timestamps of its FIRE events
    outputs: Outputs | None = None


def scored_mask(s: Series) -> NDArray[np.bool_]:
    """Samples the detector scores: not staleness markers; for a counter, not its first
    sample nor its first after a marker (no rate yet; see detector.pipeline._sample_rules)."""
    scored = ~s.stale
    if s.is_counter:
        previous_ok = np.concatenate(([False], ~s.stale[:-1]))
        scored &= previous_ok
    return scored


CHUNK_MS = 86_400_000  # samples are merged into scrape rounds a day at a time
WEEK_MS = 7 * 86_400_000


def history_for(s: Series, *, seed: int, index: int, days: float) -> Series:
    """The clean history of ``s`` for its warm start: the family's clean series over
    ``days`` (whole weeks are generated, so weekdays keep their phase, and the last
    ``days`` kept), ending one scrape before ``s`` starts. A counter's running total
    starts over at the live series, as after a restart."""
    weeks = int(np.ceil(days * 86_400_000 / WEEK_MS))
    h = scenario_data.generate(
        s.family, seed=seed + 10_007, index=index, days=weeks * 7.0, anomalous=False
    )
    shift = int(s.ts_ms[0]) - int(h.ts_ms[0]) - weeks * WEEK_MS  # same weekday phase
    ts = h.ts_ms + shift
    keep = ts >= int(s.ts_ms[0]) - round(days * 86_400_000)
    return Series(
        family=h.family,
        metric=h.metric,
        anomalous=False,
        ts_ms=ts[keep],
        values=h.values[keep],
        stale=h.stale[keep],
        anomaly=None,
        lasting=False,
    )


def warm_history(
    h: Series, live_start_ms: int, ws: WarmStartConfig
) -> tuple[NDArray[np.int64], NDArray[np.float64], int]:
    """What the warm start would read of ``h`` (``detector.warmstart.prometheus``): its
    raw value every ``period_step_s`` (the latest sample within Prometheus' 5-minute
    lookback) over ``period_history_s``, then every sample of the last ``history_s``;
    and how many samples the sparse part holds. Staleness markers are not returned by
    range queries."""
    ok = ~h.stale & (h.ts_ms < live_start_ms)
    ts, x = h.ts_ms[ok], h.values[ok]
    recent_from = live_start_ms - round(ws.history_s * 1000)
    step = round(ws.period_step_s * 1000)
    steps = np.arange(live_start_ms - round(ws.period_history_s * 1000), recent_from, step)
    at = np.searchsorted(ts, steps, side="right") - 1
    found = at >= 0
    found[found] = ts[at[found]] > steps[found] - 300_000
    older = np.unique(at[found])
    recent = np.flatnonzero(ts >= recent_from)
    if ws.period_history_s <= ws.history_s or not ws.detect_period:
        older = older[:0]
    older = older[ts[older] < recent_from]
    pick = np.concatenate((older, recent))
    return ts[pick], x[pick], int(older.shape[0])


class ServicePath:
    """The detector service from the remote-write request on, without HTTP.

    The first sample of every series goes in as one encoded remote-write request through
    ``Ingestor`` (series registry, rules, counter detection); the rest as ``Batch`` values
    of the slots it assigned, one per scrape round, each followed by the staleness sweep
    at that round's time. ``run`` returns one ``Trace`` per series.
    """

    def __init__(
        self, cfg: DetectorConfig, *, warm_start: bool = False, recheck: bool = True
    ) -> None:
        """``recheck``: the seasonal re-check of series on a daily profile, as the service
        runs it with ``--prometheus`` (when ``cfg.warm_start`` enables it)."""
        self.cfg = cfg
        self.warm_start = warm_start
        self.recheck = recheck and _recheck_on(cfg)
        self.rechecks: dict[str, int] = {"moved": 0, "kept": 0, "short": 0}
        self._schedule: _ReCheck | None = None
        self.events: list[AlertEvent] = []
        self.pipeline = Pipeline(
            build_metrics(CollectorRegistry()),
            alerts=AlertState(
                cfg.alerts,
                stale_intervals=cfg.alerting.stale_intervals,
                stale_min_s=cfg.alerting.stale_min_s,
            ),
            on_events=self.events.extend,
        )
        self.ingestor = Ingestor(
            SeriesRegistry(cfg),
            max_decompressed_bytes=cfg.limits.max_decompressed_bytes,
            warm_start=warm_start,
        )

    def _register(self, series: Sequence[Series]) -> NDArray[np.int32]:
        """Send every series' first sample as one remote-write request; their slots."""
        body = encode.compress(
            encode.encode_v1(
                [
                    encode.Series(
                        labels=[
                            ("__name__", s.metric),
                            ("family", s.family),
                            ("series", str(k)),
                            ("variant", "anomalous" if s.anomalous else "clean"),
                        ],
                        samples=[(int(s.ts_ms[0]), float(s.values[0]))],
                    )
                    for k, s in enumerate(series)
                ]
            )
        )
        ingested = self.ingestor.ingest(body, 1)
        if ingested.batch.slots.shape[0] != len(series):
            raise RuntimeError(
                f"the registry tracked {ingested.batch.slots.shape[0]} of "
                f"{len(series)} series; raise limits.max_series"
            )
        self.pipeline.process([ingested.batch])
        return ingested.batch.slots.copy()

    def run(
        self,
        series: Sequence[Series],
        *,
        outputs: bool = False,
        histories: Sequence[Series] | None = None,
    ) -> list[Trace]:
        """Feed ``series`` (timestamps on one scrape grid) and trace what happened;
        ``outputs`` keeps the detector's scores, inputs and bands too. With
        ``histories`` (one per series, built with ``warm_start=True``), each series is
        warmed up first as the service warms it from Prometheus (``warm_history``)."""
        slot_of = self._register(series)
        if histories is not None:
            self._warm(series, histories, slot_of)
        if self.recheck:
            self._schedule = _ReCheck(self, series, histories, slot_of)
        sizes = [s.ts_ms.shape[0] for s in series]
        offset = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        total = int(offset[-1])
        firing = np.zeros(total, dtype=np.bool_)
        banded = np.zeros(total, dtype=np.bool_)
        inband = np.zeros(total, dtype=np.bool_)
        out = (
            {name: np.full(total, np.nan) for name in ("score", "seen", "lower", "upper")}
            if outputs
            else None
        )
        self._read(slot_of, offset[:-1], firing, banded, inband, out)
        start = int(min(s.ts_ms[0] for s in series))
        end = int(max(s.ts_ms[-1] for s in series)) + 1
        for c0 in range(start, end, CHUNK_MS):
            self._chunk(
                series,
                slot_of,
                offset,
                c0,
                min(c0 + CHUNK_MS, end),
                start,
                firing,
                banded,
                inband,
                out,
            )
        fires: dict[int, list[int]] = {}
        series_of = {int(slot): k for k, slot in enumerate(slot_of)}
        for e in self.events:
            if e.kind is EventKind.FIRE:
                fires.setdefault(series_of[e.slot], []).append(e.ts_ms)
        traces = []
        for k, s in enumerate(series):
            sl = slice(int(offset[k]), int(offset[k + 1]))
            scored = scored_mask(s)
            kept = (
                None
                if out is None
                else Outputs(
                    score=np.where(scored, out["score"][sl], np.nan),
                    seen=out["seen"][sl],
                    lower=out["lower"][sl],
                    upper=out["upper"][sl],
                )
            )
            traces.append(
                Trace(
                    scored=scored,
                    firing=firing[sl].copy(),
                    banded=banded[sl] & scored,
                    inband=inband[sl] & scored,
                    fires_ms=tuple(fires.get(k, ())),
                    outputs=kept,
                )
            )
        return traces

    def _warm(
        self, series: Sequence[Series], histories: Sequence[Series], slot_of: NDArray[np.int32]
    ) -> None:
        """One warm-start batch per series: what the service would read from Prometheus,
        the period it would find in it, then the series' held first sample."""
        if not self.warm_start:
            raise ValueError("histories need a ServicePath built with warm_start=True")
        ws = self.cfg.warm_start
        for s, h, slot in zip(series, histories, slot_of.tolist(), strict=True):
            ts, values, sparse = warm_history(h, int(s.ts_ms[0]), ws)
            # what the warm start learns of it and the period it finds: the service's own
            learn_ts, bits, period_ms = prepare_history(
                ts, values.view(np.uint64), sparse, counter=s.is_counter, cfg=ws
            )
            self.pipeline.process(
                [
                    Batch(
                        slots=np.full(learn_ts.shape[0], slot, dtype=np.int32),
                        ts=learn_ts,
                        bits=bits,
                        warmed=(slot,),
                        periods=[] if period_ms is None else [(slot, period_ms)],
                    )
                ]
            )

    def _chunk(
        self,
        series: Sequence[Series],
        slot_of: NDArray[np.int32],
        offset: NDArray[np.int64],
        c0: int,
        c1: int,
        start: int,
        firing: NDArray[np.bool_],
        banded: NDArray[np.bool_],
        inband: NDArray[np.bool_],
        out: dict[str, NDArray[np.float64]] | None,
    ) -> None:
        """Feed the samples with timestamps in [c0, c1) (not first ones), round by round."""
        parts = []
        for k, s in enumerate(series):
            i0, i1 = np.searchsorted(s.ts_ms, [c0, c1])
            i0 = max(int(i0), 1)
            if i1 > i0:
                parts.append((k, s, np.arange(i0, int(i1))))
        if not parts:
            return
        owner = np.concatenate([np.full(at.shape[0], k, dtype=np.int32) for k, _, at in parts])
        where = np.concatenate([offset[k] + at for k, _, at in parts])
        ts = np.concatenate([s.ts_ms[at] for _, s, at in parts])
        bits = np.concatenate(
            [np.where(s.stale[at], STALE_BITS, s.values[at].view(np.uint64)) for _, s, at in parts]
        )
        rounds = (ts - start + STEP_MS // 2) // STEP_MS
        order = np.lexsort((owner, rounds))
        where, ts, bits, rounds = where[order], ts[order], bits[order], rounds[order]
        slots = np.ascontiguousarray(slot_of[owner[order]])
        bounds = np.flatnonzero(np.diff(rounds)) + 1
        p = self.pipeline
        due = None if self._schedule is None else self._schedule.next_due_ms()
        for lo, hi in zip(
            np.concatenate(([0], bounds)).tolist(),
            np.concatenate((bounds, [ts.shape[0]])).tolist(),
            strict=True,
        ):
            if due is not None and int(ts[lo]) >= due:
                assert self._schedule is not None
                self._schedule.run_due(int(ts[lo]))
                due = self._schedule.next_due_ms()
            p.process([Batch(slots=slots[lo:hi], ts=ts[lo:hi], bits=bits[lo:hi])])
            p.sweep(int(ts[hi - 1]) + 1000)  # the worker sweeps right after a batch
            self._read(slots[lo:hi], where[lo:hi], firing, banded, inband, out)

    def _read(
        self,
        slots: NDArray[np.int32],
        where: NDArray[np.int64],
        firing: NDArray[np.bool_],
        banded: NDArray[np.bool_],
        inband: NDArray[np.bool_],
        out: dict[str, NDArray[np.float64]] | None,
    ) -> None:
        """Copy the latest state of ``slots`` (one sample each in this batch); where a
        sample was not scored, ``Trace`` masks what this reads with ``scored``."""
        p = self.pipeline
        firing[where] = p.al_state[slots] == FIRING
        lo, hi, seen = p.last_lower[slots], p.last_upper[slots], p.last_input[slots]
        finite = np.isfinite(lo) & np.isfinite(hi)
        banded[where] = finite
        inband[where] = finite & (seen >= lo) & (seen <= hi)
        if out is not None:
            out["score"][where] = p.last_score[slots]
            out["seen"][where] = seen
            out["lower"][where] = lo
            out["upper"][where] = hi


def _recheck_on(cfg: DetectorConfig) -> bool:
    return recheck.is_enabled(cfg.warm_start)


class _ReCheck:
    """The service's seasonal re-check over the suite's series (see the module doc): its
    schedule, fed as its warm starts would feed it, and its verdicts and moves."""

    def __init__(
        self,
        path: ServicePath,
        series: Sequence[Series],
        histories: Sequence[Series] | None,
        slot_of: NDArray[np.int32],
    ) -> None:
        ws = path.cfg.warm_start
        self.path = path
        self.ws = ws
        self.span_needed = recheck.span_needed_ms(ws)
        self.schedule = recheck.Schedule(
            interval_ms=round(ws.recheck_interval_s * 1000),
            span_ms=self.span_needed + recheck.SPAN_MARGIN_MS,
        )
        self.live = recheck.LiveSeries(path.ingestor.registry, path.pipeline)
        self.by_slot: dict[int, tuple[Series, Series | None]] = {}
        for k, (s, slot) in enumerate(zip(series, slot_of.tolist(), strict=True)):
            h = None if histories is None else histories[k]
            self.by_slot[slot] = (s, h)
            start = int(s.ts_ms[0])
            read = self.read(slot, start) if h is not None else None
            empty = SeriesHistory(np.empty(0, np.int64), np.empty(0, np.uint64), None, None, None)
            # a new deployment's warm start finds no history: its history starts now
            self.schedule.after_read(slot, start, read if read is not None else empty)

    def next_due_ms(self) -> int | None:
        return self.schedule.next_due_ms()

    def read(self, slot: int, now_ms: int) -> SeriesHistory:
        """What ``read_history`` would return at ``now_ms``: the series' history so far
        in Prometheus, read as the two queries read it, and its period."""
        s, h = self.by_slot[slot]
        # only what the queries can reach: period_history_s back, and Prometheus' 5-minute
        # lookback before its first step (the rest would be masked out at a higher cost)
        lo = now_ms - round(self.ws.period_history_s * 1000) - 300_000
        stored = _window(s, lo, now_ms)
        if h is not None:
            stored = _joined(_window(h, lo, now_ms), stored)
        ts, values, sparse = warm_history(stored, now_ms, self.ws)
        first, last = (int(ts[0]), int(ts[-1])) if ts.shape[0] else (None, None)
        learn_ts, bits, period_ms = prepare_history(
            ts, values.view(np.uint64), sparse, counter=s.is_counter, cfg=self.ws
        )
        return SeriesHistory(learn_ts, bits, period_ms, first, last)

    def run_due(self, now_ms: int) -> None:
        """Re-check every series due at ``now_ms`` as ``ReChecker.step`` and ``check`` do."""
        longest = recheck.longest_ms(self.ws)
        for slot in self.schedule.pick(now_ms, len(self.by_slot)):
            if not self.live.is_candidate(slot, longest):
                self.schedule.later(slot, now_ms)
                continue
            history = self.read(slot, now_ms)
            moves = history.period_ms is not None and self.live.is_candidate(
                slot, history.period_ms
            )
            verdict = recheck.judge(history, moves=moves, span_needed=self.span_needed)
            self.path.rechecks[verdict] += 1
            if verdict == "moved":
                self.path.pipeline.process([recheck.move_batch(slot, history)])
                self.schedule.later(slot, now_ms)
            else:
                self.schedule.after_read(slot, now_ms, history)


def _window(s: Series, lo_ms: int, hi_ms: int) -> Series:
    """The samples of ``s`` in [lo_ms, hi_ms)."""
    i0, i1 = (int(i) for i in np.searchsorted(s.ts_ms, [lo_ms, hi_ms]))
    return dataclasses.replace(
        s, ts_ms=s.ts_ms[i0:i1], values=s.values[i0:i1], stale=s.stale[i0:i1]
    )


def _joined(h: Series, s: Series) -> Series:
    """A series' history followed by its live samples: what Prometheus holds of it."""
    return dataclasses.replace(
        s,
        ts_ms=np.concatenate((h.ts_ms, s.ts_ms)),
        values=np.concatenate((h.values, s.values)),
        stale=np.concatenate((h.stale, s.stale)),
    )


# ------------------------------------------------------------------------- measuring


@dataclass(frozen=True, slots=True)
class SeriesFigures:
    """One series' figures (NaN where they do not apply)."""

    pages: int  # FIRE events, whole series
    young_pages: int  # FIRE events in the series' first YOUNG_MS (a new series' baseline)
    firing_share: float  # share of scored samples after which the alert was firing
    band_in: int  # scored samples after warm-up inside [lower, upper]
    band_n: int  # scored samples after warm-up with a finite band
    detected: bool  # firing at some sample of the labelled interval
    delay: float  # index of the first firing sample of the interval (NaN: not detected)
    anomaly_firing_share: float  # share of the interval's scored samples firing
    anomaly_pages: int  # FIRE events inside the interval
    firing_at_end: bool  # firing after the series' last sample
    firing_at_50m: bool  # firing at the last scored sample 50 min into the anomaly (lasting)
    resolve_after: float  # samples after the interval until not firing (short anomalies)


def measure(s: Series, t: Trace, *, warmup_samples: int) -> SeriesFigures:
    """The figures of one series from what the service did with it."""
    scored_at = np.flatnonzero(t.scored)
    after_warmup = scored_at[warmup_samples:]
    band_in = int(np.count_nonzero(t.inband[after_warmup]))
    inside = s.in_anomaly() & t.scored
    detected, delay, share, pages, resolve = False, np.nan, np.nan, 0, np.nan
    at_50m = False
    if s.anomaly is not None:
        fired = t.firing[inside]
        detected = bool(fired.any())
        delay = float(np.argmax(fired)) if detected else np.nan
        share = float(fired.mean()) if fired.shape[0] else np.nan
        pages = sum(1 for f in t.fires_ms if s.anomaly[0] <= f < s.anomaly[1])
        if not s.lasting:
            after = t.firing[(s.ts_ms >= s.anomaly[1]) & t.scored]
            resolve = float(np.argmin(after)) if not after.all() else np.nan
        else:  # the issue's check: still firing 30-50 min into a lasting anomaly
            upto = np.flatnonzero(inside & (s.ts_ms <= s.anomaly[0] + LASTING_CHECK_MS))
            at_50m = bool(upto.shape[0] and t.firing[upto[-1]])
    return SeriesFigures(
        pages=len(t.fires_ms),
        young_pages=sum(1 for f in t.fires_ms if f < s.ts_ms[0] + YOUNG_MS),
        firing_share=float(t.firing[t.scored].mean()) if scored_at.shape[0] else np.nan,
        band_in=band_in,
        band_n=int(np.count_nonzero(t.banded[after_warmup])),
        detected=detected,
        delay=delay,
        anomaly_firing_share=share,
        anomaly_pages=pages,
        firing_at_end=bool(t.firing[-1]),
        firing_at_50m=at_50m,
        resolve_after=resolve,
    )


def _nanmedian(x: list[float]) -> float | None:
    a = np.array([v for v in x if v == v])
    return float(np.median(a)) if a.shape[0] else None


def summarise(
    clean: Sequence[tuple[Series, SeriesFigures]], anomalous: Sequence[tuple[Series, SeriesFigures]]
) -> dict[str, object]:
    """A family's figures from its series' figures."""
    days = sum((s.ts_ms[-1] - s.ts_ms[0] + STEP_MS) / 86_400_000 for s, _ in clean)
    band_n = sum(f.band_n for _, f in clean)
    delays = [f.delay for _, f in anomalous if f.detected]
    lasting = [f.firing_at_end for s, f in anomalous if s.lasting]
    at_50m = [f.firing_at_50m for s, f in anomalous if s.lasting]
    return {
        "clean_series": len(clean),
        "series_days": round(days, 3),
        "clean_pages": sum(f.pages for _, f in clean),
        "false_pages_per_1k_series_days": round(1000.0 * sum(f.pages for _, f in clean) / days, 2)
        if days
        else None,
        "clean_series_paged": sum(f.pages > 0 for _, f in clean),
        "clean_pages_young": sum(f.young_pages for _, f in clean),
        "clean_firing_share": float(np.mean([f.firing_share for _, f in clean])),
        "band_coverage": sum(f.band_in for _, f in clean) / band_n if band_n else None,
        "anomalous_series": len(anomalous),
        "detected": float(np.mean([f.detected for _, f in anomalous])) if anomalous else None,
        "delay_median": _nanmedian(delays),
        "delay_max": float(max(delays)) if delays else None,
        "anomaly_firing_share": float(np.nanmean([f.anomaly_firing_share for _, f in anomalous]))
        if anomalous
        else None,
        "pages_per_anomaly": float(np.mean([f.anomaly_pages for _, f in anomalous]))
        if anomalous
        else None,
        "lasting": bool(lasting),
        "firing_at_end": float(np.mean(lasting)) if lasting else None,
        "firing_at_50m": float(np.mean(at_50m)) if at_50m else None,
        "resolve_after_median": _nanmedian(
            [f.resolve_after for s, f in anomalous if not s.lasting]
        ),
    }


def thinned(s: Series, every: int) -> Series:
    """``s`` as a slower scrape sees it: every ``every``-th sample (4: a 60 s scrape)."""
    if every == 1:
        return s
    keep = np.arange(0, s.ts_ms.shape[0], every)
    return dataclasses.replace(s, ts_ms=s.ts_ms[keep], values=s.values[keep], stale=s.stale[keep])


def build_series(
    families: Sequence[str], *, n: int, days: float, seed: int, thin: int = 1
) -> list[Series]:
    return [
        thinned(
            scenario_data.generate(
                f, seed=seed, index=i, days=max(days, FAMILIES[f].min_days), anomalous=a
            ),
            thin,
        )
        for f in families
        for a in (False, True)
        for i in range(n)
    ]


def run_suite(
    families: Sequence[str],
    *,
    n: int,
    days: float,
    seed: int,
    cfg: DetectorConfig | None = None,
    warm_days: float = 0.0,
    thin: int = 1,
    recheck: bool = True,
    rechecks: dict[str, int] | None = None,
) -> dict[str, dict[str, object]]:
    """Generate, run through one ``ServicePath`` and summarise, per family; with
    ``warm_days``, every series is first warmed up from that much clean history; with
    ``thin``, every series is scraped that many times less often; ``recheck`` runs the
    service's seasonal re-check (its verdicts are counted into ``rechecks``)."""
    cfg = cfg or DetectorConfig()
    series = build_series(families, n=n, days=days, seed=seed, thin=thin)
    if warm_days > 0:
        index = {fam: 0 for fam in families}
        histories = []
        for s in series:
            histories.append(history_for(s, seed=seed, index=index[s.family], days=warm_days))
            index[s.family] += 1
        path = ServicePath(cfg, warm_start=True, recheck=recheck)
        traces = path.run(series, histories=histories)
    else:
        path = ServicePath(cfg, recheck=recheck)
        traces = path.run(series)
    if rechecks is not None:
        rechecks.update(path.rechecks)
    warmup = cfg.series[0].detector.warmup_samples
    figures = [measure(s, t, warmup_samples=warmup) for s, t in zip(series, traces, strict=True)]
    out = {}
    for fam in families:
        rows = [(s, f) for s, f in zip(series, figures, strict=True) if s.family == fam]
        out[fam] = summarise(
            [r for r in rows if not r[0].anomalous], [r for r in rows if r[0].anomalous]
        )
    return out


def _cell(v: object, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_table(results: dict[str, dict[str, object]]) -> None:
    print(
        f"{'family':<33}|{'clean: pages/1k sd':>19}{'(<6h)':>6}{'firing':>8}{'band cov':>9} |"
        f"{'anomalous: found':>17}{'delay med':>10}{'max':>6}{'firing':>8}"
        f"{'pages':>6}{'@50m':>6}{'at end':>7}{'resolve':>8}"
    )
    for fam, r in results.items():
        print(
            f"{fam:<33}|{_cell(r['false_pages_per_1k_series_days'], '.1f'):>19}"
            f"{_cell(r['clean_pages_young'], 'd'):>6}"
            f"{_cell(r['clean_firing_share'], '.2%'):>8}"
            f"{_cell(r['band_coverage'], '.4f'):>9} |"
            f"{_cell(r['detected'], '.0%'):>17}{_cell(r['delay_median'], '.0f'):>10}"
            f"{_cell(r['delay_max'], '.0f'):>6}{_cell(r['anomaly_firing_share'], '.0%'):>8}"
            f"{_cell(r['pages_per_anomaly'], '.2f'):>6}"
            f"{_cell(r['firing_at_50m'], '.0%'):>6}"
            f"{_cell(r['firing_at_end'], '.0%'):>7}"
            f"{_cell(r['resolve_after_median'], '.0f'):>8}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.scenarios", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--series-per-family", type=int)
    ap.add_argument("--days", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--families", help="comma-separated subset (default: all)")
    ap.add_argument(
        "--thin",
        type=int,
        default=1,
        help="keep every N-th sample: a scrape N times slower than 15 s (4: 60 s)",
    )
    ap.add_argument(
        "--for-s",
        type=float,
        help="the default alert rule's for_s instead of its default (60)",
    )
    ap.add_argument(
        "--warm-start-days",
        type=float,
        default=0.0,
        help="warm every series up from this many days of clean history first, as the "
        "service does with --prometheus (15 lets a week be seen twice); default: cold",
    )
    ap.add_argument(
        "--no-recheck",
        action="store_true",
        help="without the seasonal re-check of series on a daily profile (the service "
        "runs it by default with --prometheus)",
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help=f"{FULL['series_per_family']} series a family, {FULL['days']:g} days",
    )
    args = ap.parse_args(argv)
    preset = FULL if args.full else FAST
    n = int(args.series_per_family or preset["series_per_family"])
    days = float(args.days or preset["days"])
    families = args.families.split(",") if args.families else list(FAMILIES)
    if args.thin < 1:
        ap.error(f"--thin {args.thin}: keep every N-th sample, N >= 1")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    t0 = time.perf_counter()
    cfg = DetectorConfig()
    if args.for_s is not None:
        rule = cfg.alerts[0].model_copy(update={"for_s": args.for_s})
        cfg = cfg.model_copy(update={"alerts": (rule, *cfg.alerts[1:])})
    rechecks: dict[str, int] = {}
    results = run_suite(
        families,
        n=n,
        days=days,
        seed=args.seed,
        cfg=cfg,
        warm_days=args.warm_start_days,
        thin=args.thin,
        recheck=not args.no_recheck,
        rechecks=rechecks,
    )
    seconds = time.perf_counter() - t0
    print(
        f"default detector and alert rule; {n} clean + {n} anomalous series a family, "
        f"{days:g} days (a family needing more gets its min_days) at {15 * args.thin} s, seed "
        f"{args.seed}; {seconds:.0f} s"
    )
    if args.no_recheck:
        print("  seasonal re-check: off")
    else:
        print(f"  seasonal re-checks: {rechecks}")
    for fam in families:
        print(f"  {fam}: {FAMILIES[fam].what}")
    print_table(results)
    figures = {
        "seed": args.seed,
        "series_per_family": n,
        "days": days,
        "seconds": round(seconds, 1),
        "numpy": np.__version__,
        "numba": metadata.version("numba"),
        "cpu": platform.processor() or platform.machine(),
        "warm_start_days": args.warm_start_days,
        "recheck": not args.no_recheck,
        "rechecks": rechecks,
        "scrape_s": STEP_MS * args.thin / 1000,
        "families": results,
        "rule": asdict(_rule_figures(cfg)),
    }
    print(json.dumps(figures))
    return 0


@dataclass(frozen=True, slots=True)
class _Rule:
    detector: str
    for_s: float
    for_samples: int
    resolve_below: float | None
    resolve_s: float
    resolve_samples: int
    lowest_threshold: float


def _rule_figures(cfg: DetectorConfig) -> _Rule:
    rule = cfg.alerts[0]
    return _Rule(
        detector=cfg.series[0].detector.kind,
        for_s=rule.for_s,
        for_samples=rule.for_samples,
        resolve_below=rule.resolve_below,
        resolve_s=rule.resolve_s,
        resolve_samples=rule.resolve_samples,
        lowest_threshold=rule.severities[0].score,
    )


if __name__ == "__main__":
    sys.exit(main())
