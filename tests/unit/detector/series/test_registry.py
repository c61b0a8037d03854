import numpy as np
import pytest

from detector.config import DetectorConfig, Limits, SeriesRule
from detector.errors import DecodeError
from detector.remote_write import decode, encode
from detector.series import _index
from detector.series.registry import OVER_LIMIT, UNKNOWN, UNTRACKED, ByteIndex, SeriesRegistry


def _req(*label_sets):
    raw = encode.encode_v1([encode.Series(labels=ls, samples=[(1, 1.0)]) for ls in label_sets])
    return decode.decode_request(np.frombuffer(raw, np.uint8), 1)


def _labels(name, **extra):
    return tuple(sorted([("__name__", name), *extra.items()]))


def test_known_series_keep_their_slot_and_untracked_are_remembered():
    cfg = DetectorConfig(series=(SeriesRule(name="api", match='{job="api"}'),))
    reg = SeriesRegistry(cfg)
    a, b, c = _labels("x", job="api"), _labels("y", job="api"), _labels("x", job="db")
    first = reg.resolve(_req(a, b, c))
    assert first.values.tolist() == [0, 1, UNTRACKED]
    assert (first.new_tracked, first.new_untracked) == (2, 1)
    again = reg.resolve(_req(c, b, a))
    assert again.values.tolist() == [UNTRACKED, 1, 0]
    assert again.new_tracked == again.new_untracked == 0
    assert [reg.labels_of(slot) for slot in range(reg.n_tracked)] == [a, b]


def test_same_series_twice_in_one_request_gets_one_slot():
    reg = SeriesRegistry(DetectorConfig())
    a = _labels("x", job="a")
    assert reg.resolve(_req(a, a)).values.tolist() == [0, 0]
    assert reg.n_tracked == 1


def test_rule_and_global_limits_drop_new_series():
    cfg = DetectorConfig(
        limits=Limits(max_series=3),
        series=(SeriesRule(name="api", match='{job="api"}', max_series=1), SeriesRule(name="rest")),
    )
    reg = SeriesRegistry(cfg)
    res = reg.resolve(_req(*[_labels(f"m{i}", job="api") for i in range(3)]))
    assert res.values.tolist() == [0, OVER_LIMIT, OVER_LIMIT]
    res = reg.resolve(_req(*[_labels(f"m{i}", job="db") for i in range(4)]))
    assert res.values.tolist() == [1, 2, OVER_LIMIT, OVER_LIMIT]
    assert reg.rule_series == [1, 2]


def test_hash_collision_never_merges_keys():
    index = ByteIndex(max_entries=10)
    keys = np.frombuffer(b"series-aseries-b", np.uint8)
    off = np.array([0, 8], np.int32)
    length = np.array([8, 8], np.int32)
    hashes, values = index.lookup(keys, off, length)
    assert values.tolist() == [UNKNOWN, UNKNOWN]
    index.insert(keys, off, length, hashes, np.array([0]), np.array([7], np.int32))
    # forge a collision: key a now claims key b's hash, placed where b probes first
    index._hash[0] = hashes[1]
    index._ht[:] = -1
    _index.rehash(index._hash, 1, index._ht)
    _, values = index.lookup(keys, off, length)
    assert values.tolist() == [UNKNOWN, UNKNOWN]


def test_one_series_one_slot_whatever_the_encoding():
    reg = SeriesRegistry(DetectorConfig())
    labels = _labels("x", job="a")
    assert reg.resolve(_req(labels)).values.tolist() == [0]
    raw2 = encode.encode_v2([encode.Series(labels=labels, samples=[(2, 1.0)])])
    assert reg.resolve(decode.decode_request(np.frombuffer(raw2, np.uint8), 2)).values.tolist() == [
        0
    ]
    # the same labels with an unknown field inside one Label message: other wire bytes
    odd = _v1_with_extra_label_field(labels)
    assert reg.resolve(decode.decode_request(np.frombuffer(odd, np.uint8), 1)).values.tolist() == [
        0
    ]
    assert reg.n_tracked == 1


def _v1_with_extra_label_field(labels):
    """Build a 1.0 body whose 'job' Label message carries an extra unknown varint field."""

    def delimited(n, payload):
        return encode.delimited(n, payload)

    ts = b""
    for name, value in labels:
        inner = delimited(1, name.encode()) + delimited(2, value.encode())
        if name == "job":
            inner += b"\x18\x01"
        ts += delimited(1, inner)
    ts += delimited(2, b"\x09" + b"\x00" * 8 + b"\x10\x03")
    return delimited(1, ts)


def test_series_with_interleaved_label_fields_still_resolve():
    reg = SeriesRegistry(DetectorConfig())
    labels = _labels("x", job="a")
    sample = encode.delimited(2, b"\x09" + b"\x00" * 8 + b"\x10\x05")
    body = encode.delimited(
        1, encode.label_fields(labels[:1]) + sample + encode.label_fields(labels[1:])
    )
    req = decode.decode_request(np.frombuffer(body, np.uint8), 1)
    assert int(req.ser_key_len[0]) == -1
    assert reg.resolve(req).values.tolist() == [0]
    assert reg.resolve(_req(labels)).values.tolist() == [0]


def test_registry_grows_past_initial_capacity():
    reg = SeriesRegistry(DetectorConfig())
    sets = [_labels("m", i=str(i), pad="p" * 200) for i in range(5000)]
    for start in range(0, 5000, 1000):
        reg.resolve(_req(*sets[start : start + 1000]))
    assert reg.resolve(_req(*sets[::7])).values.tolist() == list(range(0, 5000, 7))


def test_invalid_new_series_refuses_whole_request_and_adds_nothing():
    cfg = DetectorConfig(limits=Limits(max_label_value_bytes=4))
    reg = SeriesRegistry(cfg)
    with pytest.raises(DecodeError, match="max_label_value_bytes"):
        reg.resolve(_req(_labels("ok"), _labels("x", job="too-long")))
    assert reg.n_tracked == 0
    assert reg.resolve(_req(_labels("ok"))).values.tolist() == [0]


def test_too_many_labels_is_refused():
    reg = SeriesRegistry(DetectorConfig(limits=Limits(max_labels_per_series=2)))
    with pytest.raises(DecodeError, match="max_labels_per_series"):
        reg.resolve(_req(_labels("x", a="1", b="2")))


def test_counter_names_and_rule_transform_decide_rates():
    cfg = DetectorConfig(
        series=(
            SeriesRule(name="raw", match='{job="raw"}', transform="none"),
            SeriesRule(name="gauge_as_rate", match='{job="g"}', transform="rate"),
            SeriesRule(name="rest"),
        )
    )
    reg = SeriesRegistry(cfg)
    res = reg.resolve(
        _req(
            _labels("http_requests_total", job="api"),
            _labels("http_requests_total", job="raw"),
            _labels("temperature", job="g"),
            _labels("temperature", job="api"),
            _labels("rpc_duration_seconds_bucket", le="0.1"),
        )
    )
    assert [reg.is_counter(int(s)) for s in res.values] == [True, False, True, False, True]


def test_index_finds_every_key_through_long_probe_chains():
    rng = np.random.default_rng(7)
    index = ByteIndex(max_entries=4000)
    lengths = rng.integers(0, 90, size=3000).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    keys = rng.integers(0, 256, size=int(lengths.sum()) + 8, dtype=np.uint8)
    # the first half goes in, in three inserts (so the table grows and rehashes)
    for part in np.array_split(np.arange(1500), 3):
        sub_off, sub_len = offsets[part], lengths[part]
        hashes, values = index.lookup(keys, sub_off, sub_len)
        fresh = np.flatnonzero(values == UNKNOWN)
        # random bytes: a short key may repeat an earlier one; only new ones are added
        _, first = np.unique(
            [
                keys[o : o + n].tobytes()
                for o, n in zip(sub_off[fresh], sub_len[fresh], strict=True)
            ],
            return_index=True,
        )
        which = fresh[np.sort(first)]
        index.insert(
            keys,
            sub_off,
            sub_len,
            hashes,
            which.astype(np.int64),
            (part[which] + 1).astype(np.int32),
        )
    stored_first: dict[bytes, int] = {}
    for o, n, v in zip(offsets[:1500], lengths[:1500], range(1, 1501), strict=True):
        stored_first.setdefault(keys[o : o + n].tobytes(), v)
    _, values = index.lookup(keys, offsets, lengths)
    for j, (o, n) in enumerate(zip(offsets, lengths, strict=True)):
        key = keys[o : o + n].tobytes()
        assert values[j] == stored_first.get(key, UNKNOWN), j
