"""One remote-write request, from body bytes to a Batch for the detectors. No HTTP and no
queue here; the only state it changes is the series registry it is given.

This module owns the order of the steps (size limits, snappy, decode, series resolution,
routing of samples) and their outcome as a value the handler maps to a status code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detector import stages
from detector.errors import DecodeError
from detector.pipeline import _route
from detector.pipeline.worker import Batch, SlotSpec
from detector.remote_write import decode
from detector.remote_write.split import Split
from detector.series.registry import FOREIGN, OVER_LIMIT, UNTRACKED, Resolution, SeriesRegistry

# decompressed bodies up to this size reuse a buffer of their thread instead of fresh
# memory each (Prometheus's requests decompress to a few hundred KB)
SCRATCH_MAX_BYTES = 8 << 20


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
    # serve --workers: the samples of other workers' series, to forward (n_samples leaves
    # them out: their owner counts them)
    forward: Split | None = None
    n_foreign: int = 0


def slot_specs(registry: SeriesRegistry, first: int, *, warm: bool = False) -> list[SlotSpec]:
    """How the slots from ``first`` on (just created) are to be watched."""
    return [
        SlotSpec(
            slot,
            registry.rule_of(slot).detector,
            registry.is_counter(slot),
            warm,
            registry.alert_rule_of(slot),
            registry.generation,
        )
        for slot in range(first, registry.n_tracked)
    ]


class Ingestor:
    """Decodes requests and resolves their series under one lock (one registry writer)."""

    def __init__(
        self,
        registry: SeriesRegistry,
        *,
        max_decompressed_bytes: int,
        warm_start: bool = False,
        clock: stages.StageClock = stages.OFF,
    ) -> None:
        self.registry = registry
        self.stages = clock
        self.warm_start = warm_start
        self.max_decompressed_bytes = max_decompressed_bytes
        self._lock = threading.Lock()
        self._local = threading.local()  # one Decoder (and its arrays) per thread
        # serve --workers: cuts a request with other workers' series (registry values
        # FOREIGN - owner) into their shares; set before the first request
        self.split: Callable[[decode.DecodedRequest, NDArray[np.int32]], Split] | None = None

    @property
    def lock(self) -> threading.Lock:
        """Held while the registry changes; a config reload takes it too."""
        return self._lock

    def _decoder(self) -> decode.Decoder:
        decoder: decode.Decoder | None = getattr(self._local, "decoder", None)
        if decoder is None:
            limits = self.registry.limits
            decoder = self._local.decoder = decode.Decoder(
                max_series=limits.max_series_per_request,
                max_labels=limits.max_series_per_request * limits.max_labels_per_series,
                max_samples=limits.max_samples_per_request,
            )
        return decoder

    def _scratch(self, need: int) -> NDArray[np.uint8] | None:
        """This thread's decompression buffer, grown to ``need`` bytes; None past the cap
        (the request, refused or not, must not leave a big buffer behind)."""
        if need > SCRATCH_MAX_BYTES:
            return None
        buf: NDArray[np.uint8] | None = getattr(self._local, "scratch", None)
        if buf is None or buf.shape[0] < need:
            buf = self._local.scratch = np.empty(max(need, 1 << 20), dtype=np.uint8)
        return buf

    def _decode(
        self, body: bytes | bytearray, version: int, compressed: bool
    ) -> decode.DecodedRequest:
        if not body:
            raise DecodeError("empty body: expected a snappy-compressed protobuf message")
        if compressed:
            raw = decode.decompress(
                body,
                max_decompressed_bytes=self.max_decompressed_bytes,
                into=self._scratch(decode.snappy_length(body)),
            )
        else:  # a share forwarded by another worker (serve --workers): already raw
            raw = np.frombuffer(body, dtype=np.uint8)
        self.stages.lap(stages.DECOMPRESS)
        req = self._decoder().decode(raw, version)
        self.stages.lap(stages.SCAN)
        return req

    def ingest_known(
        self, body: bytes | bytearray, version: int, *, compressed: bool = True
    ) -> Ingested | None:
        """The event loop's fast path: like ``ingest``, but None instead of slow work.

        None when the request has series not seen before (their labels are decoded and
        matched in Python) or when another thread holds the registry; the caller then
        runs ``ingest`` in a worker thread. Changes nothing when it returns None.
        """
        req = self._decode(body, version, compressed)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            known = self.registry.resolve_known(req)
        finally:
            self._lock.release()
        self.stages.lap(stages.RESOLVE)
        return None if known is None else self._route(req, known, [])

    def ingest(self, body: bytes | bytearray, version: int, *, compressed: bool = True) -> Ingested:
        """Decode a request and resolve its series; DecodeError if it cannot be accepted.
        ``compressed`` False: ``body`` is raw protobuf (a share forwarded by a worker)."""
        self.stages.lap(stages.ROUTE)  # the hand-off to this thread
        req = self._decode(body, version, compressed)
        with self._lock:
            res = self.registry.resolve(req)
            first_new = self.registry.n_tracked - res.new_tracked
            new_slots = slot_specs(self.registry, first_new, warm=self.warm_start)
        self.stages.lap(stages.RESOLVE)
        return self._route(req, res, new_slots)

    def _route(
        self, req: decode.DecodedRequest, res: Resolution, new_slots: list[SlotSpec]
    ) -> Ingested:
        # the one copy of the samples: out of the decoder's reused arrays, into the batch
        n = req.n_samples
        slots = np.empty(n, dtype=np.int32)
        ts = np.empty(n, dtype=np.int64)
        bits = np.empty(n, dtype=np.uint64)
        by_marker = np.zeros(self.registry.n_markers, dtype=np.int64)
        k = int(
            _route.route(
                res.values, req.smp_series, req.smp_ts, req.smp_bits, slots, ts, bits, by_marker
            )
        )
        batch = Batch(slots=slots[:k], ts=ts[:k], bits=bits[:k], new_slots=new_slots)
        n_foreign = int(by_marker[-FOREIGN:].sum())
        forward = None
        if n_foreign:
            assert self.split is not None, "FOREIGN values come only with a split"
            forward = self.split(req, res.values)
        ingested = Ingested(
            batch=batch,
            n_samples=n - n_foreign,
            n_untracked=int(by_marker[-UNTRACKED]),
            n_over_limit=int(by_marker[-OVER_LIMIT]),
            n_histograms=req.n_histograms,
            n_exemplars=req.n_exemplars,
            n_metadata=req.n_metadata,
            new_tracked=res.new_tracked,
            new_untracked=res.new_untracked,
            new_over_limit=res.new_over_limit,
            forward=forward,
            n_foreign=n_foreign,
        )
        self.stages.lap(stages.ROUTE)
        return ingested
