"""detector.fleet.partition and the split of a request by owner: the cluster's hashmod,
one request per owner made of the raw series bytes, and the registry's foreign markers."""

import hashlib

import numpy as np
import pytest

from detector.config import DetectorConfig, SeriesRule
from detector.fleet.partition import Partition, hashmod, shard_key
from detector.fleet.worker import splitter
from detector.pipeline.ingest import Ingestor
from detector.remote_write import decode, encode
from detector.remote_write.split import split_request
from detector.series.registry import FOREIGN, UNTRACKED, SeriesRegistry
from tests.integration.test_shards import hashmod as shards_hashmod
from tests.integration.test_shards import shard_key as shards_key


def _series(pod: str, ts: int, value: float = 1.0, ns: str = "shop", **extra: str):
    labels = sorted({"__name__": "m", "namespace": ns, "pod": pod, **extra}.items())
    return encode.Series(labels=labels, samples=[(ts, value)])


def test_hashmod_is_md5_bytes_8_to_16_big_endian():
    for value in ("", ";", "shop;web-0", "cart;api-1", "10.0.0.1:9100", "ünï;cödé"):
        digest = hashlib.md5(value.encode()).digest()
        for modulus in (1, 2, 3, 7):
            expected = int.from_bytes(digest[8:16], "big") % modulus
            assert hashmod(value, modulus) == expected
            assert hashmod(value, modulus) == shards_hashmod(value, modulus)


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": "shop", "pod": "web-0", "instance": "a:1"},
        {"namespace": "shop"},
        {"pod": "web-0"},
        {"instance": "10.0.0.1:9100"},
        {},
        {"namespace": "", "pod": "", "instance": ""},
    ],
)
def test_shard_key_is_the_clusters(labels):
    assert shard_key(labels) == shards_key(labels)


def test_partition_owner_and_foreign_owner():
    labels = {"namespace": "shop", "pod": "web-0"}
    owner = hashmod("shop;web-0", 3)
    assert Partition(owner, 3).foreign_owner(labels) == -1
    assert Partition((owner + 1) % 3, 3).foreign_owner(labels) == owner
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        Partition(2, 2)


def _pods_by_owner(workers: int, want: int = 3) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {w: [] for w in range(workers)}
    k = 0
    while min(len(v) for v in out.values()) < want:
        pod = f"web-{k}"
        out[hashmod(f"shop;{pod}", workers)].append(pod)
        k += 1
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_split_request_gives_each_owner_its_series_bytes(version):
    pods = _pods_by_owner(3)
    series = [_series(pods[w][j], 100 + j, float(w)) for j in range(3) for w in range(3)]
    raw = (encode.encode_v1 if version == 1 else encode.encode_v2)(series)
    req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), version)
    owners = np.array([w if w else -1 for _ in range(3) for w in range(3)], dtype=np.int32)
    split = split_request(req, owners, 3)
    assert [p.owner for p in split.parts] == [1, 2]
    for part in split.parts:
        got = decode.decode_request(np.frombuffer(bytes(part.body), dtype=np.uint8), version)
        mine = [s for s in series if dict(s.labels)["pod"] in pods[part.owner]]
        assert [got.labels(i) for i in range(got.n_series)] == [tuple(s.labels) for s in mine]
        assert got.smp_ts.tolist() == [s.samples[0][0] for s in mine]
        assert got.smp_value.tolist() == [float(part.owner)] * len(mine)


def _top_fields(raw: bytes) -> list[tuple[int, bytes]]:
    """(field number, bytes) of each top-level field of a protobuf message."""
    out, pos = [], 0
    while pos < len(raw):
        start = pos
        tag = 0
        for shift in range(0, 64, 7):
            tag |= (raw[pos] & 0x7F) << shift
            pos += 1
            if raw[pos - 1] < 0x80:
                break
        assert tag & 7 == 2, "only length-delimited fields here"
        n = 0
        for shift in range(0, 64, 7):
            n |= (raw[pos] & 0x7F) << shift
            pos += 1
            if raw[pos - 1] < 0x80:
                break
        pos += n
        out.append((tag >> 3, raw[start:pos]))
    return out


def test_split_request_v2_symbols_between_series_go_to_every_owner():
    """Protobuf lets a repeated field stand anywhere: symbols after some of the series
    still reach each owner, and each part decodes to exactly its series."""
    pods = _pods_by_owner(2)
    series = [_series(pods[w][j], 100 + j, float(w)) for j in range(3) for w in range(2)]
    fields = _top_fields(encode.encode_v2(series))
    symbols = [b for f, b in fields if f == 4]
    rows = [b for f, b in fields if f == 5]
    raw = b"".join(symbols[:2] + rows[:3] + symbols[2:] + rows[3:])
    req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 2)
    owners = np.array([-1, 1] * 3, dtype=np.int32)  # series alternate owners 0 and 1
    split = split_request(req, owners, 2)
    assert [p.owner for p in split.parts] == [1]
    got = decode.decode_request(np.frombuffer(bytes(split.parts[0].body), dtype=np.uint8), 2)
    mine = [s for s in series if dict(s.labels)["pod"] in pods[1]]
    assert [got.labels(i) for i in range(got.n_series)] == [tuple(s.labels) for s in mine]
    assert got.smp_value.tolist() == [1.0] * 3


def test_split_request_gives_no_part_to_owners_without_series():
    raw = encode.encode_v1([_series("a", 1), _series("b", 1)])
    req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
    assert split_request(req, np.array([-1, -1], np.int32), 4).parts == ()
    split = split_request(req, np.array([3, 3], np.int32), 4)
    assert [p.owner for p in split.parts] == [3] and bytes(split.parts[0].body) == raw


def test_split_request_refuses_an_owner_array_of_the_wrong_length():
    raw = encode.encode_v1([_series("a", 1)])
    req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
    with pytest.raises(ValueError, match="2 owners for a request of 1 series"):
        split_request(req, np.array([0, 1], np.int32), 2)


def test_v1_metadata_stays_with_the_receiver():
    raw = encode.encode_v1([_series("a", 1)], n_metadata=2)
    req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
    split = split_request(req, np.array([1], np.int32), 2)
    got = decode.decode_request(np.frombuffer(bytes(split.parts[0].body), np.uint8), 1)
    assert got.n_metadata == 0 and got.n_series == 1


def _ingestor(index: int, workers: int, cfg: DetectorConfig | None = None) -> Ingestor:
    registry = SeriesRegistry(cfg or DetectorConfig())
    registry.partition(Partition(index, workers).foreign_owner, workers)
    ingestor = Ingestor(registry, max_decompressed_bytes=1 << 20)
    ingestor.split = splitter(workers)
    return ingestor


def test_a_worker_keeps_its_series_and_cuts_out_the_others():
    pods = _pods_by_owner(2)
    body = encode.compress(encode.encode_v1([_series(p, 10) for w in (0, 1) for p in pods[w]]))
    ingestor = _ingestor(0, 2)
    first = ingestor.ingest(body, 1)
    assert first.n_samples == 3 and first.n_foreign == 3 and first.new_tracked == 3
    assert first.batch.slots.tolist() == [0, 1, 2]
    assert ingestor.registry.n_tracked == 3
    assert first.forward is not None and [p.owner for p in first.forward.parts] == [1]
    # the owner of each series is remembered: the next request is resolved inline
    again = encode.compress(encode.encode_v1([_series(p, 11) for w in (1, 0) for p in pods[w]]))
    known = ingestor.ingest_known(again, 1)
    assert known is not None and known.n_foreign == 3 and known.batch.slots.tolist() == [0, 1, 2]
    # the share, raw, is all the owner's: it forwards nothing
    owner = _ingestor(1, 2)
    assert first.forward is not None
    share = owner.ingest(bytes(first.forward.parts[0].body), 1, compressed=False)
    assert share.forward is None and share.n_samples == 3 and share.new_tracked == 3
    labels = [dict(owner.registry.labels_of(s))["pod"] for s in range(3)]
    assert labels == pods[1][:3]


def test_another_workers_untracked_series_is_untracked_here_not_forwarded():
    pods = _pods_by_owner(2)
    cfg = DetectorConfig(series=(SeriesRule(name="web", match='{pod=~"nothing"}'),))
    ingestor = _ingestor(0, 2, cfg)
    result = ingestor.ingest(encode.compress(encode.encode_v1([_series(pods[1][0], 1)])), 1)
    assert result.forward is None and result.n_untracked == 1
    assert ingestor.registry.n_markers == 1 - (FOREIGN - 1)
    _, values = ingestor.registry.canonical.lookup(
        *ingestor.registry._canonical_keys(
            decode.decode_request(
                np.frombuffer(encode.encode_v1([_series(pods[1][0], 1)]), np.uint8), 1
            ),
            np.arange(1, dtype=np.int64),
        )
    )
    assert values.tolist() == [UNTRACKED]


def test_partition_after_series_were_resolved_is_refused():
    ingestor = Ingestor(SeriesRegistry(DetectorConfig()), max_decompressed_bytes=1 << 20)
    ingestor.ingest(encode.compress(encode.encode_v1([_series("a", 1)])), 1)
    with pytest.raises(RuntimeError):
        ingestor.registry.partition(Partition(0, 2).foreign_owner, 2)
