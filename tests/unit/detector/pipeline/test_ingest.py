"""detector.pipeline.ingest and its kernels: one copy of the samples, scratch buffers reused
safely."""

import numpy as np
import pytest

from detector.config import DetectorConfig, Limits, SeriesRule
from detector.errors import DecodeError
from detector.pipeline import _route
from detector.pipeline.ingest import Ingestor
from detector.remote_write import decode, encode
from detector.series.registry import OVER_LIMIT, UNTRACKED, SeriesRegistry


def _body(*series: tuple[str, int, float]) -> bytes:
    return encode.compress(
        encode.encode_v1(
            [
                encode.Series(labels=[("__name__", name)], samples=[(ts, value)])
                for name, ts, value in series
            ]
        )
    )


def test_route_copies_tracked_samples_in_order_and_counts_the_rest():
    series_values = np.array([5, UNTRACKED, 7, OVER_LIMIT], dtype=np.int32)
    smp_series = np.array([0, 1, 2, 3, 2, 1, 0], dtype=np.int32)
    ts = np.arange(10, 17, dtype=np.int64)
    bits = np.arange(100, 107, dtype=np.uint64)
    out_slots = np.full(7, -9, np.int32)
    out_ts = np.zeros(7, np.int64)
    out_bits = np.zeros(7, np.uint64)
    by_marker = np.zeros(4, np.int64)
    k = _route.route(series_values, smp_series, ts, bits, out_slots, out_ts, out_bits, by_marker)
    assert k == 4
    assert out_slots[:k].tolist() == [5, 7, 7, 5]
    assert out_ts[:k].tolist() == [10, 12, 14, 16]
    assert out_bits[:k].tolist() == [100, 102, 104, 106]
    assert by_marker[-UNTRACKED] == 2 and by_marker[-OVER_LIMIT] == 1


def test_decompress_into_a_buffer_equals_fresh_memory():
    body = _body(("a", 1, 1.0), ("b", 2, 2.0))
    fresh = decode.decompress(body, max_decompressed_bytes=1 << 20)
    scratch = np.full(1 << 12, 0xAB, dtype=np.uint8)
    into = decode.decompress(body, max_decompressed_bytes=1 << 20, into=scratch)
    assert into.tobytes() == fresh.tobytes()
    assert np.shares_memory(into, scratch)
    # too small a buffer: fresh memory, same bytes
    small = decode.decompress(body, max_decompressed_bytes=1 << 20, into=scratch[:4])
    assert small.tobytes() == fresh.tobytes() and not np.shares_memory(small, scratch)


def test_corrupt_snappy_into_a_buffer_is_decode_error():
    body = encode.compress(bytes(range(256)) * 20)
    with pytest.raises(DecodeError):
        decode.decompress(
            body[: len(body) // 2], max_decompressed_bytes=1 << 20, into=np.empty(1 << 14, np.uint8)
        )


def test_a_batch_outlives_the_next_request_on_the_same_thread():
    ingestor = Ingestor(SeriesRegistry(DetectorConfig()), max_decompressed_bytes=1 << 20)
    ingestor.ingest(_body(("a", 1, 1.0), ("b", 1, 2.0)), 1)  # first sight: new series
    first = ingestor.ingest_known(_body(("a", 2, 10.0), ("b", 2, 20.0)), 1)
    assert first is not None
    second = ingestor.ingest_known(_body(("b", 3, 30.0), ("a", 3, 40.0)), 1)
    assert second is not None
    # the decoder's arrays and the decompression buffer were reused: the batch was not
    assert first.batch.slots.tolist() == [0, 1]
    assert first.batch.ts.tolist() == [2, 2]
    assert first.batch.bits.view(np.float64).tolist() == [10.0, 20.0]
    assert second.batch.slots.tolist() == [1, 0]
    assert second.batch.bits.view(np.float64).tolist() == [30.0, 40.0]


def test_untracked_and_over_limit_samples_are_counted_not_batched():
    cfg = DetectorConfig(
        limits=Limits(max_series=1), series=(SeriesRule(name="only-a", match='{__name__=~"a|c"}'),)
    )
    ingestor = Ingestor(SeriesRegistry(cfg), max_decompressed_bytes=1 << 20)
    got = ingestor.ingest(_body(("a", 1, 1.0), ("b", 1, 2.0), ("c", 1, 3.0)), 1)
    assert got.batch.slots.tolist() == [0]
    assert (got.n_samples, got.n_untracked, got.n_over_limit) == (3, 1, 1)
    again = ingestor.ingest_known(_body(("c", 2, 1.0), ("b", 2, 2.0), ("a", 2, 3.0)), 1)
    assert again is not None
    assert again.batch.slots.tolist() == [0] and again.batch.ts.tolist() == [2]
    assert (again.n_untracked, again.n_over_limit) == (1, 1)
