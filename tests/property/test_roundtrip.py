import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detector.errors import DecodeError
from detector.remote_write import decode, encode
from tests.property.strategies import requests


def _bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def _check(sent, got: decode.DecodedRequest) -> None:
    assert got.n_series == len(sent)
    k = 0
    for i, s in enumerate(sent):
        assert got.labels(i) == tuple(s.labels)
        for ts, value in s.samples:
            assert int(got.smp_series[k]) == i
            assert int(got.smp_ts[k]) == ts
            assert int(got.smp_bits[k]) == _bits(value)  # bitwise: NaN payloads included
            k += 1
    assert got.n_samples == k


@given(requests)
def test_v1_encode_snappy_decode_round_trips(sent):
    body = encode.compress(encode.encode_v1(sent))
    raw = decode.decompress(body, max_decompressed_bytes=1 << 24)
    _check(sent, decode.decode_request(raw, 1))


@given(requests)
def test_v2_encode_snappy_decode_round_trips(sent):
    body = encode.compress(encode.encode_v2(sent))
    raw = decode.decompress(body, max_decompressed_bytes=1 << 24)
    _check(sent, decode.decode_request(raw, 2))


@given(st.binary(max_size=400), st.sampled_from([1, 2]))
def test_arbitrary_bytes_raise_only_decode_error(data, version):
    try:
        req = decode.decode_request(np.frombuffer(data, np.uint8), version)
        for i in range(req.n_series):
            req.labels(i)
    except DecodeError:
        pass


@given(requests, st.data())
def test_mutated_valid_bodies_raise_only_decode_error(sent, data):
    raw = bytearray(encode.encode_v1(sent))
    if raw:
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
    try:
        req = decode.decode_request(np.frombuffer(bytes(raw), np.uint8), 1)
        for i in range(req.n_series):
            req.labels(i)
    except DecodeError:
        pass
