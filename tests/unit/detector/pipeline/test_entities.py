import numpy as np
from prometheus_client import CollectorRegistry

from detector.config import DetectorConfig, EntityModel, EntityRule, RobustParams, SeriesRule
from detector.metrics import build_metrics
from detector.pipeline.entities import EntityTracker, feature_name
from detector.pipeline.worker import Batch, Pipeline, SlotSpec
from tests.unit.detector.apphelpers import V1, body, series, start

LABELS = [
    (("__name__", "cpu"), ("namespace", "shop"), ("pod", "web-1")),
    (("__name__", "mem"), ("namespace", "shop"), ("pod", "web-1")),
    (("__name__", "cpu"), ("namespace", "shop"), ("pod", "web-2")),
    (("__name__", "disk"), ("node", "n1")),  # no pod label: in no entity
]
RULE = EntityRule(
    name="pods", by=("namespace", "pod"), warmup_evaluations=60, model=EntityModel(window_size=60)
)


def _pipeline():
    p = Pipeline(build_metrics(CollectorRegistry()), capacity=8)
    p.process(
        [
            Batch(
                slots=np.empty(0, np.int32),
                ts=np.empty(0, np.int64),
                bits=np.empty(0, np.uint64),
                new_slots=[SlotSpec(s, RobustParams(alpha=0.05)) for s in range(4)],
            )
        ]
    )
    return p


def _step(p, t, cpu, mem):
    values = np.array([cpu, mem, 1.0, 2.0])
    p.process(
        [
            Batch(
                slots=np.arange(4, dtype=np.int32),
                ts=np.full(4, t, np.int64),
                bits=values.view(np.uint64),
            )
        ]
    )


def test_membership_follows_the_by_labels():
    tracker = EntityTracker([RULE], LABELS.__getitem__)
    tracker.add_slots(range(4))
    p = _pipeline()
    _step(p, 1000, 1.0, 2.0)
    tracker.evaluate(p, 0)
    assert tracker.n_entities == 2
    assert feature_name(LABELS[2], RULE.by) == "cpu"


def test_an_unusual_combination_stands_out_where_each_series_looks_normal():
    rng = np.random.default_rng(3)
    tracker = EntityTracker([RULE], LABELS.__getitem__)
    tracker.add_slots(range(4))
    p = _pipeline()
    scores = []
    for step in range(1, 700):
        f = rng.normal(0, 1)
        _step(p, step * 15_000, 50 + 5 * f + rng.normal(0, 0.3), 100 + 10 * f + rng.normal(0, 0.6))
        tracker.evaluate(p, step)
        scores.append(next(v.score for v in tracker.snapshot if v.labels["pod"] == "web-1"))
    assert np.median(scores[100:]) < 0.9
    # cpu up, memory down: each about two sigmas, together never seen
    _step(p, 700 * 15_000, 50 + 5 * 2.2, 100 - 10 * 2.2)
    tracker.evaluate(p, 700)
    view = next(v for v in tracker.snapshot if v.labels["pod"] == "web-1")
    assert max(p.last_score[0], p.last_score[1]) < 0.999
    assert view.score >= 0.99
    assert view.members == ("cpu", "mem")


async def test_entities_api_lists_scored_entities(aiohttp_client):
    cfg = DetectorConfig(
        series=(SeriesRule(name="all", detector=RobustParams()),), entities=(RULE,)
    )
    client, rt = await start(aiohttp_client, cfg)
    data = body(
        [
            series("cpu", 1, 1.0, namespace="a", pod="p"),
            series("mem", 1, 2.0, namespace="a", pod="p"),
        ]
    )
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    assert rt.entities is not None
    rt.entities.evaluate(rt.pipeline, rt.now_ms())
    doc = await (await client.get("/api/v1/entities")).json()
    assert doc["total"] == 1
    assert doc["data"][0]["labels"] == {"namespace": "a", "pod": "p"}
    assert doc["data"][0]["members"] == ["cpu", "mem"]
    assert (await client.get("/api/v1/entities", params={"limit": "0"})).status == 400
