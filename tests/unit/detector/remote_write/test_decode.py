import json
import struct

import numpy as np
import pytest

from detector.errors import DecodeError, TooLargeError, UnsupportedError
from detector.remote_write import decode, encode
from tests.conftest import SAMPLES

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _load(name: str) -> decode.DecodedRequest:
    body = (SAMPLES / f"{name}.snappy.bin").read_bytes()
    return decode.decode_request(decode.decompress(body, max_decompressed_bytes=1 << 26), 1)


@pytest.mark.parametrize("name", ["rw_data_1", "rw_stale_markers_example"])
def test_real_prometheus_bodies_decode_exactly(name):
    req = _load(name)
    ref = json.loads((SAMPLES / f"{name}.decoded.json").read_text())
    assert req.n_series == ref["n_series"]
    assert req.n_samples == ref["n_samples"]
    stale = int(np.count_nonzero(req.smp_bits == decode.STALE_NAN_BITS))
    assert stale == ref["n_stale_markers"]
    other_nan = int(np.count_nonzero(np.isnan(req.smp_value))) - stale
    assert other_nan == ref["n_other_nan"]
    for i, series in enumerate(ref["series"]):
        assert dict(req.labels(i)) == series["labels"]
        ((ts, value),) = series["samples"]
        j = int(np.flatnonzero(req.smp_series == i)[0])
        assert int(req.smp_ts[j]) == ts
        if value == "StaleNaN":
            assert req.smp_bits[j] == decode.STALE_NAN_BITS
        elif value != value:  # NaN
            assert np.isnan(req.smp_value[j])
            assert req.smp_bits[j] != decode.STALE_NAN_BITS
        else:
            assert req.smp_value[j] == value


def test_metadata_only_request_counts_metadata():
    req = _load("rw_metadata_1")
    assert (req.n_series, req.n_samples, req.n_metadata) == (0, 0, 461)


def test_v2_request_resolves_symbols():
    raw = encode.encode_v2(
        [
            encode.Series(
                labels=[("__name__", "up"), ("job", "a")],
                samples=[(5, 1.0), (6, STALE)],
                n_histograms=2,
                n_exemplars=1,
            ),
            encode.Series(labels=[("__name__", "up"), ("job", "b")], samples=[(7, -np.inf)]),
        ]
    )
    req = decode.decode_request(np.frombuffer(raw, np.uint8), 2)
    assert req.labels(0) == (("__name__", "up"), ("job", "a"))
    assert req.labels(1) == (("__name__", "up"), ("job", "b"))
    assert req.smp_series.tolist() == [0, 0, 1]
    assert req.smp_ts.tolist() == [5, 6, 7]
    assert req.smp_bits[1] == decode.STALE_NAN_BITS
    assert (req.n_histograms, req.n_exemplars) == (2, 1)


def _v1(labels, samples=((1, 1.0),)):
    return np.frombuffer(
        encode.encode_v1([encode.Series(labels=labels, samples=samples)]), np.uint8
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([("job", "a"), ("__name__", "x")], "not sorted"),
        ([("a", "1"), ("a", "2")], "not sorted"),
        ([("", "x")], "empty name"),
        ([], "without labels"),
    ],
)
def test_invalid_label_sets_are_decode_errors(labels, message):
    with pytest.raises(DecodeError, match=message):
        decode.decode_request(_v1(labels), 1)


def test_truncated_body_is_decode_error():
    raw = _v1([("__name__", "x")])
    with pytest.raises(DecodeError, match=r"malformed prometheus\.WriteRequest at byte"):
        decode.decode_request(raw[:-3].copy(), 1)


def test_v2_ref_out_of_range_and_odd_refs():
    good = encode.encode_v2([encode.Series(labels=[("__name__", "x")], samples=[(1, 1.0)])])
    # symbols: "", "__name__", "x" -> refs 1, 2; rewrite the packed refs
    bad_ref = good.replace(b"\x0a\x02\x01\x02", b"\x0a\x02\x01\x09")
    with pytest.raises(DecodeError, match="past the end of the symbols table"):
        decode.decode_request(np.frombuffer(bad_ref, np.uint8), 2)
    odd = good.replace(b"\x0a\x02\x01\x02", b"\x0a\x01\x01\x12")  # one ref, then junk field 2
    with pytest.raises(DecodeError):
        decode.decode_request(np.frombuffer(odd, np.uint8), 2)


def test_v1_body_sent_as_v2_is_refused():
    with pytest.raises(DecodeError, match=r"1\.0 WriteRequest sent with the 2\.0"):
        decode.decode_request(_v1([("__name__", "x")]), 2)


def test_invalid_utf8_label_is_decode_error():
    raw = bytearray(_v1([("__name__", "ab")]).tobytes())
    raw[raw.index(b"ab")] = 0xFF
    req = decode.decode_request(np.frombuffer(bytes(raw), np.uint8), 1)
    with pytest.raises(DecodeError, match="not valid UTF-8"):
        req.labels(0)


def test_snappy_header_over_limit_is_refused_before_decompressing():
    body = encode.compress(b"\x00" * 5000)
    with pytest.raises(TooLargeError, match="announces 5000"):
        decode.decompress(body, max_decompressed_bytes=4999)


def test_corrupt_snappy_is_decode_error():
    body = encode.compress(bytes(range(256)) * 20)
    with pytest.raises(DecodeError):
        decode.decompress(body[: len(body) // 2], max_decompressed_bytes=1 << 20)


@pytest.mark.parametrize(
    ("ctype", "encoding", "version"),
    [
        ("application/x-protobuf", "snappy", 1),
        (None, "snappy", 1),
        ("application/x-protobuf;proto=prometheus.WriteRequest", "snappy", 1),
        ("application/x-protobuf; proto=io.prometheus.write.v2.Request", "snappy", 2),
        ("application/x-protobuf;proto=io.prometheus.write.v2.Request", "SNAPPY", 2),
    ],
)
def test_content_type_selects_version(ctype, encoding, version):
    assert decode.parse_content_type(ctype, encoding) == version


@pytest.mark.parametrize(
    ("ctype", "encoding"),
    [
        ("application/x-protobuf", "gzip"),
        ("application/x-protobuf", None),
        ("application/json", "snappy"),
        ("application/x-protobuf;proto=foo.Bar", "snappy"),
    ],
)
def test_unsupported_content_is_415_material(ctype, encoding):
    with pytest.raises(UnsupportedError):
        decode.parse_content_type(ctype, encoding)
