"""Build remote-write bodies (1.0 and 2.0) from label sets and samples.

This module owns encoding, the inverse of ``decode``: the detector uses it to write its
own series back to Prometheus, and tests and benchmarks use it to build requests. It is
plain Python and not on the ingest hot path.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cramjam

Labels = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Series:
    """One series to encode: sorted labels and (timestamp ms, value) samples."""

    labels: Labels
    samples: Sequence[tuple[int, float]] = ()
    n_exemplars: int = 0
    n_histograms: int = 0
    extra: bytes = b""  # raw unknown fields appended to the TimeSeries


def varint(n: int) -> bytes:
    """A protobuf base-128 varint (negative int64 values as ten bytes)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _sample(ts_ms: int, value: float) -> bytes:
    return b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts_ms)


def label_fields(labels: Labels) -> bytes:
    """The ``Label`` fields (field 1) of a 1.0 ``TimeSeries``, in the given order."""
    return b"".join(
        delimited(1, delimited(1, name.encode()) + delimited(2, value.encode()))
        for name, value in labels
    )


def encode_v1(series: Iterable[Series], *, n_metadata: int = 0) -> bytes:
    """A ``prometheus.WriteRequest`` (uncompressed protobuf)."""
    out = bytearray()
    for s in series:
        ts = bytearray(label_fields(s.labels))
        for t, v in s.samples:
            ts += delimited(2, _sample(t, v))
        for _ in range(s.n_exemplars):
            ts += delimited(3, delimited(1, delimited(1, b"trace_id") + delimited(2, b"abc")))
        for _ in range(s.n_histograms):
            ts += delimited(4, b"\x08\x01")
        ts += s.extra
        out += delimited(1, bytes(ts))
    for k in range(n_metadata):
        out += delimited(3, b"\x08\x01" + delimited(2, f"metric_{k}".encode()))
    return bytes(out)


def encode_v2(series: Iterable[Series]) -> bytes:
    """An ``io.prometheus.write.v2.Request`` (uncompressed protobuf) with a symbols table."""
    symbols: dict[str, int] = {"": 0}

    def ref(text: str) -> int:
        return symbols.setdefault(text, len(symbols))

    body = bytearray()
    for s in series:
        refs = bytearray()
        for name, value in s.labels:
            refs += varint(ref(name)) + varint(ref(value))
        ts = delimited(1, bytes(refs))
        for t, v in s.samples:
            ts += delimited(2, _sample(t, v))
        for _ in range(s.n_histograms):
            ts += delimited(3, b"\x08\x01")
        for _ in range(s.n_exemplars):
            ts += delimited(4, b"\x08\x01")
        ts += s.extra
        body += delimited(5, bytes(ts))
    head = b"".join(delimited(4, sym.encode()) for sym in symbols)
    return head + bytes(body)


def compress(raw: bytes) -> bytes:
    """Snappy block format, as remote-write requires."""
    return bytes(cramjam.snappy.compress_raw(raw))
