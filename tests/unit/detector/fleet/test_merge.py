"""detector.fleet.merge: one answer from every worker's."""

import json

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.fleet import merge


def _exposition(value: float) -> str:
    registry = CollectorRegistry()
    c = Counter("vigil_samples_accepted", "Samples.", ["reason"], registry=registry)
    c.labels("x").inc(value)
    return generate_latest(registry).decode()


def test_metrics_of_every_worker_keep_a_worker_label():
    text = merge.merge_metrics({0: _exposition(3), 1: _exposition(4), 2: None})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("vigil_samples_accepted_total", (("reason", "x"), ("worker", "0")))] == 3
    assert samples[("vigil_samples_accepted_total", (("reason", "x"), ("worker", "1")))] == 4
    assert samples[("vigil_fleet_worker_up", (("worker", "2"),))] == 0
    assert text.count("# TYPE vigil_samples_accepted_total counter") == 1


def test_ready_only_when_every_worker_is():
    assert merge.merge_ready({0: (200, "ready\n"), 1: (200, "ready\n")}) == (200, "ready\n")
    status, text = merge.merge_ready({0: (200, "ready\n"), 1: (503, "warming up\n"), 2: None})
    assert status == 503
    assert text == "worker 1: warming up\nworker 2: not answering (starting or restarting)\n"


def test_series_lists_are_joined_cut_to_the_limit_and_say_their_worker():
    a = json.dumps(
        {"status": "success", "total": 2, "data": [{"labels": {"pod": p}} for p in "ab"]}
    ).encode()
    b = json.dumps({"status": "success", "total": 1, "data": [{"labels": {"pod": "c"}}]}).encode()
    status, doc = merge.merge_list("/api/v1/series", {0: (200, a), 1: (200, b)}, limit=2)
    assert status == 200 and doc["total"] == 3 and doc["truncated"] is True
    assert [(d["labels"]["pod"], d["worker"]) for d in doc["data"]] == [("a", 0), ("b", 0)]
    err = b'{"status": "error", "error": "bad selector"}'
    assert merge.merge_list("/api/v1/series", {0: (400, err), 1: (400, err)}, limit=5)[0] == 400
    status, doc = merge.merge_list("/api/v1/series", {0: (200, a), 1: None}, limit=5)
    assert status == 503 and "worker 1" in doc["error"]


def test_entities_sort_by_score_and_anomalies_by_start():
    e0 = b'{"status": "success", "total": 1, "data": [{"score": 0.5}]}'
    e1 = b'{"status": "success", "total": 1, "data": [{"score": 0.9}]}'
    _, doc = merge.merge_list("/api/v1/entities", {0: (200, e0), 1: (200, e1)}, limit=10)
    assert [e["score"] for e in doc["data"]] == [0.9, 0.5] and doc["total"] == 2
    a0 = b'{"status": "success", "data": [{"startsAt": "2026-01-02T00:00:00Z"}]}'
    a1 = b'{"status": "success", "data": [{"startsAt": "2026-01-01T00:00:00Z"}]}'
    _, doc = merge.merge_list("/api/v1/anomalies", {0: (200, a0), 1: (200, a1)}, limit=1)
    assert [a["startsAt"][:10] for a in doc["data"]] == ["2026-01-01", "2026-01-02"]


def test_recent_anomalies_get_ids_that_name_their_worker():
    a = json.dumps(
        {
            "status": "success",
            "now_ms": 5,
            "remediator_url": None,
            "data": [{"id": 7, "last_ms": 10}, {"id": None, "last_ms": None}],
        }
    ).encode()
    b = json.dumps(
        {
            "status": "success",
            "now_ms": 6,
            "remediator_url": None,
            "data": [{"id": 7, "last_ms": 20}],
        }
    ).encode()
    status, doc = merge.merge_recent({0: (200, a), 1: (200, b)}, workers=2, me=0)
    assert status == 200 and doc["now_ms"] == 5
    assert [d["id"] for d in doc["data"]] == [15, 14, None]  # newest chart first
    assert merge.history_target("15", 2) == (1, 7)
    assert merge.history_target("14", 2) == (0, 7)
    assert merge.history_target("x", 2) is None
    assert merge.merge_recent({0: (200, a), 1: None}, workers=2, me=0)[0] == 503
