"""One config's detector service path, replayed in sample time without HTTP.

This module owns feeding history to the same objects the service builds: the series
registry (which rule tracks a series, with which detector and alert rule, and whether it
is a counter) reached through ``Ingestor`` with a real encoded remote-write request for
each new series, then the ``Pipeline`` (sample rules, counter rates, the detector
families, the alert lifecycle) fed one batch per scrape round in time order, with the
staleness sweep at every grid point as the worker's idle sweep would run. No I/O and no
clock: time is the samples' own. Series are independent slots, so replaying a subset of
series gives those series exactly what the full replay gave them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from detector.alerting.state import AlertEvent, AlertState
from detector.config import DetectorConfig
from detector.errors import DecodeError
from detector.metrics import build_metrics
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import Batch, Pipeline
from detector.remote_write import encode
from detector.series.registry import Labels, SeriesRegistry

UNTRACKED = -2  # matched no series rule, or over a series limit
REFUSED = -4  # a label set the service would refuse (limits, invalid UTF-8)
REGISTER_BATCH = 5_000  # new series per registration request


@dataclass(frozen=True, slots=True)
class SeriesBlock:
    """One series' samples from one chunk: labels sorted by name, timestamps ascending."""

    labels: Labels
    ts_ms: NDArray[np.int64]
    values: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Readings:
    """What the detector made of one round's samples of the recorded series."""

    slots: NDArray[np.int32]
    ts_ms: NDArray[np.int64]
    seen: NDArray[np.float64]  # the value, or a counter's rate
    score: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]


@dataclass(slots=True)
class ReplayCounts:
    series_seen: int = 0
    series_tracked: int = 0
    series_untracked: int = 0
    series_refused: int = 0
    samples: int = 0


class Replay:
    """Feeds chunks of history through one config's registry and pipeline.

    ``on_events`` gets the alert lifecycle's events as they happen; ``on_readings``, when
    given, gets the detector's outputs for every sample of a tracked series (meant for a
    few series: the charts).
    """

    def __init__(
        self,
        cfg: DetectorConfig,
        *,
        on_events: Callable[[list[AlertEvent]], None],
        on_readings: Callable[[Readings], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.registry = SeriesRegistry(cfg)
        self.ingestor = Ingestor(
            self.registry, max_decompressed_bytes=cfg.limits.max_decompressed_bytes
        )
        self.pipeline = Pipeline(
            build_metrics(CollectorRegistry()),
            alerts=AlertState(
                cfg.alerts,
                stale_intervals=cfg.alerting.stale_intervals,
                stale_min_s=cfg.alerting.stale_min_s,
            ),
            on_events=on_events,
        )
        self.on_readings = on_readings
        self.counts = ReplayCounts()
        self._slot: dict[Labels, int] = {}

    def labels_of(self, slot: int) -> Labels:
        return self.registry.labels_of(slot)

    def rule_of(self, slot: int) -> int:
        """The index of the alert rule of ``slot`` in ``cfg.alerts``; -1: never alerts."""
        return self.registry.alert_rule_of(slot)

    def slot_of(self, labels: Labels) -> int | None:
        """The slot of a series seen so far (negative: not tracked), or None."""
        return self._slot.get(labels)

    # --- registration --------------------------------------------------------------
    def _ingest(self, labels: Sequence[Labels]) -> None:
        """Register new label sets in one remote-write request (no samples)."""
        body = encode.compress(
            encode.encode_v1([encode.Series(labels=list(one)) for one in labels])
        )
        ingested = self.ingestor.ingest(body, 1)
        self.pipeline.process([ingested.batch])  # creates the slots, applies no sample
        for spec in ingested.batch.new_slots:
            self._slot[self.registry.labels_of(spec.slot)] = spec.slot
            self.counts.series_tracked += 1
        for one in labels:
            if one not in self._slot:
                self._slot[one] = UNTRACKED
                self.counts.series_untracked += 1

    def _register(self, labels: Sequence[Labels]) -> None:
        for lo in range(0, len(labels), REGISTER_BATCH):
            part = labels[lo : lo + REGISTER_BATCH]
            try:
                self._ingest(part)
            except (DecodeError, UnicodeEncodeError):
                # one bad label set refuses the whole request: find it, keep the others
                for one in part:
                    try:
                        self._ingest([one])
                    except (DecodeError, UnicodeEncodeError):
                        self._slot[one] = REFUSED
                        self.counts.series_refused += 1

    # --- samples -------------------------------------------------------------------
    def feed(self, blocks: Sequence[SeriesBlock], *, grid_ms: NDArray[np.int64]) -> None:
        """Apply one chunk: register its new series, then every round in time order.

        ``grid_ms`` are the chunk's grid points: the sweep runs at each of them, before
        that round's samples (the worker sweeps while idle), so a series that falls
        silent resolves when the service would resolve it, samples or not.
        """
        new = list(dict.fromkeys(b.labels for b in blocks if b.labels not in self._slot))
        self.counts.series_seen += len(new)
        if new:
            self._register(new)
        parts = [(self._slot[b.labels], b) for b in blocks if b.ts_ms.shape[0]]
        parts = [(slot, b) for slot, b in parts if slot >= 0]
        if parts:
            slots = np.concatenate(
                [np.full(b.ts_ms.shape[0], slot, dtype=np.int32) for slot, b in parts]
            )
            ts = np.concatenate([b.ts_ms for _, b in parts])
            bits = np.concatenate(
                [np.ascontiguousarray(b.values, dtype=np.float64).view(np.uint64) for _, b in parts]
            )
            order = np.lexsort((slots, ts))
            slots, ts, bits = slots[order], ts[order], bits[order]
        else:
            slots = np.zeros(0, np.int32)
            ts = np.zeros(0, np.int64)
            bits = np.zeros(0, np.uint64)
        self.counts.samples += int(ts.shape[0])
        # rounds: one per distinct timestamp; grid points without samples only sweep
        stamps = np.union1d(grid_ms, ts)
        cut = [*np.searchsorted(ts, stamps, side="left").tolist(), int(ts.shape[0])]
        p = self.pipeline
        for k, stamp in enumerate(stamps.tolist()):
            p.sweep(int(stamp))
            lo, hi = cut[k], cut[k + 1]
            if hi > lo:
                batch_slots = np.ascontiguousarray(slots[lo:hi])
                p.process(
                    [
                        Batch(
                            slots=batch_slots,
                            ts=np.ascontiguousarray(ts[lo:hi]),
                            bits=np.ascontiguousarray(bits[lo:hi]),
                        )
                    ]
                )
                if self.on_readings is not None:
                    self.on_readings(
                        Readings(
                            slots=batch_slots,
                            ts_ms=ts[lo:hi].copy(),
                            seen=p.last_input[batch_slots].copy(),
                            score=p.last_score[batch_slots].copy(),
                            lower=p.last_lower[batch_slots].copy(),
                            upper=p.last_upper[batch_slots].copy(),
                        )
                    )

    def finish(self, now_ms: int) -> None:
        """The last sweep, one step after the grid's end."""
        self.pipeline.sweep(now_ms)
