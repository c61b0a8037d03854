"""One remote-write request, from body bytes to a queued Batch. Pure except for the
registry and queue it is given; no HTTP here.

This module owns the order of the steps (size limits, snappy, decode, series resolution,
routing of samples) and their outcome as a value the handler maps to a status code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from detector.errors import DecodeError
from detector.pipeline import Batch
from detector.remote_write import decode
from detector.series import OVER_LIMIT, UNTRACKED, SeriesRegistry


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


class Ingestor:
    """Decodes requests and resolves their series under one lock (one registry writer)."""

    def __init__(self, registry: SeriesRegistry, *, max_decompressed_bytes: int) -> None:
        self.registry = registry
        self.max_decompressed_bytes = max_decompressed_bytes
        self._lock = threading.Lock()
        self._local = threading.local()  # one Decoder (and its arrays) per thread

    def _decoder(self) -> decode.Decoder:
        decoder: decode.Decoder | None = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = decode.Decoder()
        return decoder

    def ingest(self, body: bytes, version: int) -> Ingested:
        """Raise DecodeError (or TooLargeError) for a body that cannot be accepted."""
        if not body:
            raise DecodeError("empty body: expected a snappy-compressed protobuf message")
        raw = decode.decompress(body, max_decompressed_bytes=self.max_decompressed_bytes)
        req = self._decoder().decode(raw, version)
        with self._lock:
            res = self.registry.resolve(req)
            first_new = self.registry.n_tracked - res.new_tracked
            new_slots = [(slot, self.registry.rule_of(slot).detector)
                         for slot in range(first_new, self.registry.n_tracked)]
        per_sample = res.values[req.smp_series]
        tracked = per_sample >= 0
        batch = Batch(
            slots=np.ascontiguousarray(per_sample[tracked]),
            ts=np.ascontiguousarray(req.smp_ts[tracked]),
            bits=np.ascontiguousarray(req.smp_bits[tracked]),
            new_slots=new_slots,
        )
        return Ingested(
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
