"""WriteHandler.accept with shares for other workers: 204 only when every owner accepted,
503 (retry) before any other refusal, and the local share queued either way."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry

from detector.config import DetectorConfig
from detector.fleet.partition import Partition, hashmod
from detector.fleet.worker import splitter
from detector.metrics import build_metrics
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import SampleQueue
from detector.remote_write import encode
from detector.remote_write.handler import Outcome, WriteHandler
from detector.remote_write.split import Split
from detector.series.registry import SeriesRegistry


def _pods(owner: int, n: int) -> list[str]:
    return [p for p in (f"web-{k}" for k in range(200)) if hashmod(f"shop;{p}", 2) == owner][:n]


def _body(ts: int) -> bytes:
    series = [
        encode.Series(
            labels=sorted({"__name__": "m", "namespace": "shop", "pod": pod}.items()),
            samples=[(ts, 1.0)],
        )
        for owner in (0, 1)
        for pod in _pods(owner, 3)
    ]
    return encode.compress(encode.encode_v1(series))


@pytest.fixture
def handler():
    ingestor = Ingestor(SeriesRegistry(DetectorConfig()), max_decompressed_bytes=1 << 20)
    ingestor.registry.partition(Partition(0, 2).foreign_owner, 2)
    ingestor.split = splitter(2)
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield WriteHandler(
            ingestor=ingestor,
            queue=SampleQueue(1_000_000),
            metrics=build_metrics(CollectorRegistry()),
            executor=executor,
            token=None,
            max_body_bytes=1 << 20,
        )


def _forward(*answers: Outcome):
    sent: list[Split] = []

    async def forward(split: Split) -> list[Outcome]:
        sent.append(split)
        return list(answers)

    return forward, sent


async def test_204_only_when_every_owner_accepted_and_written_adds_up(handler):
    handler.forward, sent = _forward(Outcome(204, written=(3, 0, 0)))
    out = await handler.accept(_body(1), 1)
    assert out.status == 204 and out.written == (6, 0, 0)
    assert [p.owner for p in sent[0].parts] == [1]
    assert handler.queue.depth == 3  # the local share


async def test_an_owner_that_refuses_makes_a_503_and_the_local_share_stays_queued(handler):
    handler.forward, _ = _forward(Outcome(503, "down", {"Retry-After": "1"}))
    out = await handler.accept(_body(1), 1)
    assert out.status == 503 and out.headers == {"Retry-After": "1"}
    assert handler.queue.depth == 3


async def test_503_wins_over_a_4xx_from_another_owner(handler):
    handler.forward, _ = _forward(Outcome(400, "bad"), Outcome(503, "down"))
    assert (await handler.accept(_body(1), 1)).status == 503
    handler.forward, _ = _forward(Outcome(400, "bad"))
    out = await handler.accept(_body(2), 1)
    assert (out.status, out.reason) == (400, "bad")


async def test_a_malformed_body_is_a_400_and_nothing_is_forwarded(handler):
    handler.forward, sent = _forward(Outcome(204))
    out = await handler.accept(encode.compress(b"\x0a\x05\x0a\x03"), 1)
    assert out.status == 400 and sent == []


async def test_a_share_is_never_passed_on(handler):
    handler.forward, sent = _forward(Outcome(204))
    body = encode.compress(encode.encode_v1([]))
    assert (await handler.accept(body, 1, forwarded=True)).status == 204
    # a share that (wrongly) holds another worker's series is refused, not sent on
    out = await handler.accept(_body(3), 1, forwarded=True)
    assert out.status == 503 and sent == []
