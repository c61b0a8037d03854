"""Mutated and random bodies against the real handler: only 2xx/4xx, and it keeps serving."""

import random

from detector.remote_write import encode
from tests.conftest import SAMPLES
from tests.unit.detector.apphelpers import V1, V2, start

N_BODIES = 3000


def _mutations(rng: random.Random, seeds: list[bytes]):
    for _ in range(N_BODIES):
        raw = bytearray(rng.choice(seeds))
        kind = rng.randrange(5)
        if kind == 0:  # flip bytes in the protobuf, then compress properly
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            yield encode.compress(bytes(raw))
        elif kind == 1:  # truncate the protobuf
            yield encode.compress(bytes(raw[: rng.randrange(len(raw))]))
        elif kind == 2:  # corrupt the snappy stream itself
            body = bytearray(encode.compress(bytes(raw)))
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            yield bytes(body)
        elif kind == 3:  # random bytes
            yield rng.randbytes(rng.randrange(0, 300))
        else:  # splice two bodies
            other = rng.choice(seeds)
            cut = rng.randrange(len(raw))
            yield encode.compress(bytes(raw[:cut]) + other[rng.randrange(len(other)) :])


async def test_fuzzed_bodies_never_get_5xx(aiohttp_client):
    client, rt = await start(aiohttp_client)
    from detector.remote_write import decode

    sample = decode.decompress(
        (SAMPLES / "rw_data_1.snappy.bin").read_bytes(), max_decompressed_bytes=1 << 24
    ).tobytes()
    seeds = [
        sample[:4000],
        encode.encode_v1(
            [encode.Series(labels=[("__name__", "a"), ("j", "b")], samples=[(1, 1.0)])]
        ),
        encode.encode_v2(
            [
                encode.Series(
                    labels=[("__name__", "a"), ("j", "b")], samples=[(1, 1.0)], n_histograms=1
                )
            ]
        ),
    ]
    rng = random.Random(20261127)
    statuses: dict[int, int] = {}
    for i, data in enumerate(_mutations(rng, seeds)):
        headers = V2 if i % 3 == 2 else V1
        resp = await client.post("/api/v1/write", data=data, headers=headers)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        resp.release()
    assert all(code < 500 for code in statuses), statuses
    assert statuses.get(400, 0) > N_BODIES // 4
    assert (await client.get("/healthz")).status == 200
    await rt.wait_idle()
    assert rt.worker is not None and rt.worker.is_alive()
    assert rt.metrics.worker_errors._value.get() == 0
