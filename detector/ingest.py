"""One remote-write request, from body bytes to a Batch for the detectors. No HTTP and no
queue here; the only state it changes is the series registry it is given.

This module owns the order of the steps (size limits, snappy, decode, series resolution,
routing of samples) and their outcome as a value the handler maps to a status code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from detector import stages
from detector.errors import DecodeError
from detector.pipeline import Batch, SlotSpec
from detector.remote_write import decode
from detector.series import OVER_LIMIT, UNTRACKED, Resolution, SeriesRegistry


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one request held and where its samples went."""

    batch: Batch
    n_samples: int
    n_untracked: int
    n_over_limit: int
    n_histograms: int
    n_exemplars: int
    n_metadata: int
    new_tracked: int
    new_untracked: int
    new_over_limit: int


def slot_specs(registry: SeriesRegistry, first: int, *, warm: bool = False) -> list[SlotSpec]:
    """How the slots from ``first`` on (just created) are to be watched."""
    return [SlotSpec(slot, registry.rule_of(slot).detector, registry.is_counter(slot), warm,
                     registry.alert_rule_of(slot))
            for slot in range(first, registry.n_tracked)]


class Ingestor:
    """Decodes requests and resolves their series under one lock (one registry writer)."""

    def __init__(self, registry: SeriesRegistry, *, max_decompressed_bytes: int,
                 warm_start: bool = False, clock: stages.StageClock = stages.OFF) -> None:
        self.registry = registry
        self.stages = clock
        self.warm_start = warm_start
        self.max_decompressed_bytes = max_decompressed_bytes
        self._lock = threading.Lock()
        self._local = threading.local()  # one Decoder (and its arrays) per thread

    def _decoder(self) -> decode.Decoder:
        decoder: decode.Decoder | None = getattr(self._local, "decoder", None)
        if decoder is None:
            limits = self.registry.limits
            decoder = self._local.decoder = decode.Decoder(
                max_series=limits.max_series_per_request,
                max_labels=limits.max_series_per_request * limits.max_labels_per_series,
                max_samples=limits.max_samples_per_request)
        return decoder

    def _decode(self, body: bytes, version: int) -> decode.DecodedRequest:
        if not body:
            raise DecodeError("empty body: expected a snappy-compressed protobuf message")
        raw = decode.decompress(body, max_decompressed_bytes=self.max_decompressed_bytes)
        self.stages.lap(stages.DECOMPRESS)
        req = self._decoder().decode(raw, version)
        self.stages.lap(stages.SCAN)
        return req

    def ingest_known(self, body: bytes, version: int) -> Ingested | None:
        """The event loop's fast path: like ``ingest``, but None instead of slow work.

        None when the request has series not seen before (their labels are decoded and
        matched in Python) or when another thread holds the registry; the caller then
        runs ``ingest`` in a worker thread. Changes nothing when it returns None.
        """
        req = self._decode(body, version)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            known = self.registry.resolve_known(req)
        finally:
            self._lock.release()
        self.stages.lap(stages.RESOLVE)
        return None if known is None else self._route(req, known, [])

    def ingest(self, body: bytes, version: int) -> Ingested:
        """Decode a request and resolve its series; DecodeError if it cannot be accepted."""
        self.stages.lap(stages.ROUTE)  # the hand-off to this thread
        req = self._decode(body, version)
        with self._lock:
            res = self.registry.resolve(req)
            first_new = self.registry.n_tracked - res.new_tracked
            new_slots = slot_specs(self.registry, first_new, warm=self.warm_start)
        self.stages.lap(stages.RESOLVE)
        return self._route(req, res, new_slots)

    def _route(self, req: decode.DecodedRequest, res: Resolution,
               new_slots: list[SlotSpec]) -> Ingested:
        per_sample = res.values[req.smp_series]
        tracked = per_sample >= 0
        batch = Batch(
            slots=np.ascontiguousarray(per_sample[tracked]),
            ts=np.ascontiguousarray(req.smp_ts[tracked]),
            bits=np.ascontiguousarray(req.smp_bits[tracked]),
            new_slots=new_slots,
        )
        ingested = Ingested(
            batch=batch,
            n_samples=req.n_samples,
            n_untracked=int(np.count_nonzero(per_sample == UNTRACKED)),
            n_over_limit=int(np.count_nonzero(per_sample == OVER_LIMIT)),
            n_histograms=req.n_histograms,
            n_exemplars=req.n_exemplars,
            n_metadata=req.n_metadata,
            new_tracked=res.new_tracked,
            new_untracked=res.new_untracked,
            new_over_limit=res.new_over_limit,
        )
        self.stages.lap(stages.ROUTE)
        return ingested
