"""Recent history of the series that are, or lately were, anomalous: the console's charts.

This module owns a bounded set of ring buffers, one per series (slot) that entered an
anomaly: its last ``samples_per_series`` samples as the detector saw them (timestamp,
value or rate, expected value, band, score) and its anomalous stretches (from the alert
events). A series is recorded while its alert state is pending or firing and for
``record_after_s`` after; its buffer is kept ``keep_s`` after that, then dropped. At most
``max_series`` buffers exist: a new one evicts the one quiet the longest, never a series
still in an anomaly.

The pipeline's worker thread is the only writer (``record``, ``observe``); handlers read
copies (``tracks``, ``history``) under a lock. The hot path is one gather of the alert
state per batch when nothing is recorded. No I/O; time is the samples' own timestamps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detector.alerting.state import NORMAL, AlertEvent, EventKind
from detector.detectors.base import Scores

FIELDS = ("value", "expected", "lower", "upper", "score")
MAX_STRETCHES = 16  # anomalous stretches remembered per series
ENDS = (EventKind.RESOLVE, EventKind.STALE, EventKind.RECONFIGURED)  # a stretch ends


@dataclass(slots=True)
class Track:
    """The ring buffer of one series. ``stretches`` are [start_ms, end_ms] of its firing
    alerts, end None while firing."""

    slot: int
    ts: NDArray[np.int64]
    data: NDArray[np.float64]  # (len(FIELDS), capacity)
    written: int = 0
    last_active_ms: int = 0  # newest sample seen while pending or firing
    last_ms: int = 0  # newest sample recorded
    is_active: bool = False  # pending or firing at the last batch
    level: int = 0
    peak: float = 0.0
    stretches: list[list[int | None]] = field(default_factory=list)

    def append(self, ts: NDArray[np.int64], rows: NDArray[np.float64]) -> None:
        cap = self.ts.shape[0]
        k = ts.shape[0]
        if k > cap:
            ts, rows, skipped = ts[-cap:], rows[:, -cap:], k - cap
        else:
            skipped = 0
        at = (self.written + skipped + np.arange(ts.shape[0])) % cap
        self.ts[at] = ts
        self.data[:, at] = rows
        self.written += k
        self.last_ms = max(self.last_ms, int(ts[-1]))

    def ordered(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Copies of the samples held, oldest first."""
        cap = self.ts.shape[0]
        n = min(self.written, cap)
        at = (self.written - n + np.arange(n)) % cap
        return self.ts[at].copy(), self.data[:, at].copy()


@dataclass(frozen=True, slots=True)
class TrackView:
    """What a reader gets: a consistent copy of one track."""

    slot: int
    ts: NDArray[np.int64]
    data: NDArray[np.float64]
    stretches: tuple[tuple[int, int | None], ...]
    is_active: bool
    level: int
    peak: float
    last_active_ms: int
    last_ms: int


class History:
    """Ring buffers of the recently anomalous series. Writer: the detector worker."""

    def __init__(
        self,
        *,
        max_series: int = 200,
        samples_per_series: int = 720,
        record_after_s: float = 600.0,
        keep_s: float = 6 * 3600.0,
    ) -> None:
        self.max_series = max_series
        self.samples_per_series = samples_per_series
        self.record_after_ms = int(record_after_s * 1000)
        self.keep_ms = int(keep_s * 1000)
        self._on = np.zeros(0, dtype=np.uint8)  # per slot: 1 while it has a track
        self._tracks: dict[int, Track] = {}
        self._lock = threading.Lock()

    @property
    def n_series(self) -> int:
        return len(self._tracks)

    # --- the worker thread ------------------------------------------------------------
    def record(
        self,
        slots: NDArray[np.int32],
        ts: NDArray[np.int64],
        values: NDArray[np.float64],
        out: Scores,
        state: NDArray[np.uint8],
    ) -> None:
        """Keep the samples of series in an anomaly (``state``: the alert state per slot
        after the batch) or with a track. Called once per processed batch."""
        n = int(slots.shape[0])
        if n == 0 or self.max_series <= 0:
            return
        active = state[slots] != NORMAL
        if self._tracks:
            if self._on.shape[0] < state.shape[0]:
                grown = np.zeros(state.shape[0], dtype=np.uint8)
                grown[: self._on.shape[0]] = self._on
                self._on = grown
            keep = active | (self._on[slots] != 0)
        else:
            keep = active
        if not keep.any():
            return
        idx = np.flatnonzero(keep)
        sel = slots[idx]
        order = np.argsort(sel, kind="stable")
        idx, sel = idx[order], sel[order]
        uniq, starts = np.unique(sel, return_index=True)
        ends = np.append(starts[1:], sel.shape[0])
        rows = np.stack(
            [values[idx], out.expected[idx], out.lower[idx], out.upper[idx], out.score[idx]]
        )
        sel_ts = ts[idx]
        with self._lock:
            for slot, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist(), strict=True):
                self._record_one(
                    int(slot), sel_ts[a:b], rows[:, a:b], is_active=bool(state[slot] != NORMAL)
                )

    def _record_one(
        self, slot: int, ts: NDArray[np.int64], rows: NDArray[np.float64], *, is_active: bool
    ) -> None:
        track = self._tracks.get(slot)
        if track is None:
            if not is_active:
                return
            track = self._open(slot, int(ts[0]))
            if track is None:
                return
        track.append(ts, rows)
        track.is_active = is_active
        if is_active:
            self._on[slot] = 1  # again, if it had stopped
            track.last_active_ms = track.last_ms
            track.peak = max(track.peak, float(np.nanmax(rows[4], initial=0.0)))
        elif track.last_ms - track.last_active_ms > self.record_after_ms:
            self._on[slot] = 0  # the window after the anomaly is over: stop recording

    def _open(self, slot: int, ts_ms: int) -> Track | None:
        """A fresh track for ``slot``; None when every track belongs to an active series."""
        if len(self._tracks) >= self.max_series:
            quiet = [t for t in self._tracks.values() if not t.is_active]
            if not quiet:
                return None
            self._drop(min(quiet, key=lambda t: t.last_ms).slot)
        cap = self.samples_per_series
        track = Track(
            slot=slot,
            ts=np.zeros(cap, dtype=np.int64),
            data=np.full((len(FIELDS), cap), np.nan),
            last_active_ms=ts_ms,
            last_ms=ts_ms,
        )
        self._tracks[slot] = track
        if self._on.shape[0] <= slot:
            grown = np.zeros(max(slot + 1, 2 * self._on.shape[0], 1024), dtype=np.uint8)
            grown[: self._on.shape[0]] = self._on
            self._on = grown
        self._on[slot] = 1
        return track

    def _drop(self, slot: int) -> None:
        self._tracks.pop(slot, None)
        if slot < self._on.shape[0]:
            self._on[slot] = 0

    def observe(self, events: Iterable[AlertEvent]) -> None:
        """Mark the anomalous stretches from the alert lifecycle's events."""
        if self.max_series <= 0:
            return
        with self._lock:
            for ev in events:
                track = self._tracks.get(ev.slot)
                if ev.kind in (EventKind.FIRE, EventKind.RESTORED):
                    if track is None:
                        track = self._open(ev.slot, ev.ts_ms)
                        if track is None:
                            continue
                    track.is_active = True
                    track.last_active_ms = max(track.last_active_ms, ev.ts_ms)
                    if not track.stretches or track.stretches[-1][1] is not None:
                        track.stretches.append([ev.since_ms, None])
                        del track.stretches[:-MAX_STRETCHES]
                if track is None:
                    continue
                track.level = max(track.level, ev.level)
                track.peak = max(track.peak, ev.peak)
                if ev.kind in ENDS and track.stretches and track.stretches[-1][1] is None:
                    track.stretches[-1][1] = ev.ts_ms
                    track.is_active = False

    # --- readers ----------------------------------------------------------------------
    def tracks(self, *, now_ms: int) -> list[TrackView]:
        """Every track, newest anomaly first, after dropping those quiet past ``keep_s``
        (samples only; ``history`` has them)."""
        with self._lock:
            for t in [
                t
                for t in self._tracks.values()
                if not t.is_active and now_ms - t.last_active_ms > self.keep_ms
            ]:
                self._drop(t.slot)
            views = [self._view(t, samples=False) for t in self._tracks.values()]
        views.sort(key=lambda v: -v.last_active_ms)
        return views

    def history(self, slot: int) -> TrackView | None:
        """One series' samples, oldest first; None when it has no track."""
        with self._lock:
            track = self._tracks.get(slot)
            return None if track is None else self._view(track, samples=True)

    @staticmethod
    def _view(t: Track, *, samples: bool) -> TrackView:
        if samples:
            ts, data = t.ordered()
        else:
            ts, data = np.zeros(0, np.int64), np.zeros((len(FIELDS), 0))
        return TrackView(
            slot=t.slot,
            ts=ts,
            data=data,
            stretches=tuple((int(s[0] or 0), s[1]) for s in t.stretches),
            is_active=t.is_active,
            level=t.level,
            peak=t.peak,
            last_active_ms=t.last_active_ms,
            last_ms=t.last_ms,
        )
