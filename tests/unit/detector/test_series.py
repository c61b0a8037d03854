import numpy as np
import pytest

from detector.config import DetectorConfig, Limits, SeriesRule
from detector.errors import DecodeError
from detector.remote_write import decode, encode
from detector.series import OVER_LIMIT, UNKNOWN, UNTRACKED, SeriesRegistry


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
    assert reg.labels == [a, b]


def test_same_series_twice_in_one_request_gets_one_slot():
    reg = SeriesRegistry(DetectorConfig())
    a = _labels("x", job="a")
    assert reg.resolve(_req(a, a)).values.tolist() == [0, 0]
    assert reg.n_tracked == 1


def test_rule_and_global_limits_drop_new_series():
    cfg = DetectorConfig(
        limits=Limits(max_series=3),
        series=(SeriesRule(name="api", match='{job="api"}', max_series=1),
                SeriesRule(name="rest")),
    )
    reg = SeriesRegistry(cfg)
    res = reg.resolve(_req(*[_labels(f"m{i}", job="api") for i in range(3)]))
    assert res.values.tolist() == [0, OVER_LIMIT, OVER_LIMIT]
    res = reg.resolve(_req(*[_labels(f"m{i}", job="db") for i in range(4)]))
    assert res.values.tolist() == [1, 2, OVER_LIMIT, OVER_LIMIT]
    assert reg.rule_series == [1, 2]


def test_hash_collision_never_merges_series():
    reg = SeriesRegistry(DetectorConfig())
    a, b = _labels("a"), _labels("b")
    reg.resolve(_req(a))
    req_b = _req(b)
    hashes = np.empty(1, np.int64)
    values = np.empty(1, np.int32)
    from detector import _index

    _index.lookup(req_b.buf, req_b.lab_noff, req_b.lab_nlen, req_b.lab_voff, req_b.lab_vlen,
                  req_b.ser_first, req_b.ser_count, reg._ht, reg._entry_off, reg._entry_len,
                  reg._entry_hash, reg._entry_value, reg._arena, hashes, values)
    # forge a collision: make a's stored hash equal b's and put a where b would probe first
    reg._entry_hash[0] = hashes[0]
    reg._ht[:] = -1
    _index.rehash(reg._entry_hash, 1, reg._ht)
    _index.lookup(req_b.buf, req_b.lab_noff, req_b.lab_nlen, req_b.lab_voff, req_b.lab_vlen,
                  req_b.ser_first, req_b.ser_count, reg._ht, reg._entry_off, reg._entry_len,
                  reg._entry_hash, reg._entry_value, reg._arena, hashes, values)
    assert values[0] == UNKNOWN
    assert reg.resolve(_req(b)).values.tolist() == [1]
    assert reg.labels == [a, b]


def test_registry_grows_past_initial_capacity():
    reg = SeriesRegistry(DetectorConfig())
    sets = [_labels("m", i=str(i), pad="p" * 200) for i in range(5000)]
    for start in range(0, 5000, 1000):
        reg.resolve(_req(*sets[start:start + 1000]))
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
