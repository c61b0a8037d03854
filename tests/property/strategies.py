"""Hypothesis strategies for remote-write payloads."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from detector.remote_write import encode

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

label_names = st.text(min_size=1, max_size=20)
label_values = st.text(max_size=30)
float_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.just(STALE),
    st.integers(0, (1 << 64) - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]),
)
timestamps = st.integers(-(1 << 63), (1 << 63) - 1)


@st.composite
def series(draw: st.DrawFn) -> encode.Series:
    names = draw(st.lists(label_names, min_size=1, max_size=8, unique=True))
    labels = sorted((n, draw(label_values)) for n in names)
    labels.sort(key=lambda kv: kv[0].encode())
    samples = draw(st.lists(st.tuples(timestamps, float_values), max_size=5))
    return encode.Series(labels=labels, samples=samples)


requests = st.lists(series(), max_size=12)
