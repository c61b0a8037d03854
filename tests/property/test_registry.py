import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detector.config import DetectorConfig
from detector.remote_write import decode, encode
from detector.series.registry import SeriesRegistry
from tests.property.strategies import requests, series


def _decode_with(decoder, sent, version):
    raw = encode.encode_v1(sent) if version == 1 else encode.encode_v2(sent)
    return decoder.decode(np.frombuffer(raw, np.uint8), version)


@given(st.lists(requests, min_size=1, max_size=6))
def test_reused_decoder_matches_a_fresh_decode(batches):
    decoder = decode.Decoder(initial=1)
    for i, sent in enumerate(batches):
        version = 1 + i % 2
        got = _decode_with(decoder, sent, version)
        decode.parse_labels(got, np.arange(got.n_series, dtype=np.int64))
        fresh = decode.decode_request(
            np.frombuffer(
                encode.encode_v1(sent) if version == 1 else encode.encode_v2(sent), np.uint8
            ),
            version,
        )
        assert [got.labels(s) for s in range(got.n_series)] == [
            fresh.labels(s) for s in range(fresh.n_series)
        ]
        assert got.smp_ts.tolist() == fresh.smp_ts.tolist()
        assert got.smp_bits.tolist() == fresh.smp_bits.tolist()


@given(st.lists(series(), min_size=1, max_size=20), st.randoms(use_true_random=False))
def test_one_label_set_one_slot_across_protocols_and_repeats(sets, rnd):
    reg = SeriesRegistry(DetectorConfig())
    decoder = decode.Decoder(initial=1)
    sets = sets + [rnd.choice(sets) for _ in range(5)]
    slot_of: dict = {}
    for version in (1, 2, 1, 2):
        order = list(sets)
        rnd.shuffle(order)
        req = _decode_with(decoder, order, version)
        values = reg.resolve(req).values.tolist()
        for s, value in zip(order, values, strict=True):
            assert slot_of.setdefault(tuple(s.labels), value) == value
    assert reg.n_tracked == len({tuple(s.labels) for s in sets})
    for labels, slot in slot_of.items():
        assert reg.labels_of(slot) == labels
