import asyncio
import math

import numpy as np

from detector.app import SHED_AFTER_LATE_TICKS
from detector.config import DetectorConfig, Limits, PresenceConfig, SeriesRule
from detector.remote_write import encode
from tests.conftest import SAMPLES
from tests.unit.detector.apphelpers import V1, V2, body, series, start


async def test_prometheus_sample_is_written_and_listed(aiohttp_client):
    client, rt = await start(aiohttp_client)
    resp = await client.post(
        "/api/v1/write", data=(SAMPLES / "rw_data_1.snappy.bin").read_bytes(), headers=V1
    )
    assert resp.status == 204
    await rt.wait_idle()
    resp = await client.get("/api/v1/series", params={"match[]": 'go_goroutines{job="node"}'})
    doc = await resp.json()
    assert doc["total"] == 1
    entry = doc["data"][0]
    assert entry["labels"]["instance"] == "127.0.0.1:19100"
    assert entry["last_timestamp_ms"] == 1795734175383
    assert entry["samples"] == 1
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_samples_received_total 1022.0" in metrics
    assert "vigil_active_series 1022.0" in metrics


async def test_v2_answers_with_written_headers(aiohttp_client):
    client, _rt = await start(aiohttp_client)
    s = [
        encode.Series(
            labels=[("__name__", "a")], samples=[(1, 1.0), (2, 2.0)], n_histograms=1, n_exemplars=3
        )
    ]
    resp = await client.post("/api/v1/write", data=body(s, 2), headers=V2)
    assert resp.status == 204
    assert resp.headers["X-Prometheus-Remote-Write-Samples-Written"] == "2"
    assert resp.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "1"
    assert resp.headers["X-Prometheus-Remote-Write-Exemplars-Written"] == "3"


async def test_malformed_body_is_400_with_reason(aiohttp_client):
    client, _ = await start(aiohttp_client)
    bad = encode.compress(encode.encode_v1([series("x", 1, 1.0)])[:-2])
    resp = await client.post("/api/v1/write", data=bad, headers=V1)
    assert resp.status == 400
    assert "malformed prometheus.WriteRequest" in await resp.text()
    resp = await client.post("/api/v1/write", data=b"\x05abc", headers=V1)
    assert resp.status == 400


async def test_wrong_encoding_and_type_are_415(aiohttp_client):
    client, _ = await start(aiohttp_client)
    data = body([series("x", 1, 1.0)])
    resp = await client.post("/api/v1/write", data=data, headers={**V1, "Content-Encoding": "gzip"})
    assert resp.status == 415
    resp = await client.post(
        "/api/v1/write",
        data=data,
        headers={**V1, "Content-Type": "application/x-protobuf;proto=x.Y"},
    )
    assert resp.status == 415


async def test_size_limits_are_413_before_decompressing(aiohttp_client):
    cfg = DetectorConfig(limits=Limits(max_body_bytes=2048, max_decompressed_bytes=4096))
    client, _ = await start(aiohttp_client, cfg)
    big = encode.compress(b"\x00" * 10_000)  # compresses small, announces 10 000 bytes
    resp = await client.post("/api/v1/write", data=big, headers=V1)
    assert resp.status == 413
    assert "announces 10000" in await resp.text()
    resp = await client.post("/api/v1/write", data=bytes(range(256)) * 20, headers=V1)
    assert resp.status == 413


async def test_bearer_token_is_required_when_configured(aiohttp_client):
    client, _ = await start(aiohttp_client, token="s3cret")
    data = body([series("x", 1, 1.0)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 401
    wrong = {**V1, "Authorization": "Bearer nope"}
    assert (await client.post("/api/v1/write", data=data, headers=wrong)).status == 401
    right = {**V1, "Authorization": "Bearer s3cret"}
    assert (await client.post("/api/v1/write", data=data, headers=right)).status == 204


async def test_full_queue_answers_503_so_prometheus_retries(aiohttp_client):
    client, rt = await start(aiohttp_client)
    data = body([series("x", 1, 1.0)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    rt.queue.max_samples = 0
    resp = await client.post("/api/v1/write", data=body([series("x", 2, 1.0)]), headers=V1)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    rt.queue.max_samples = 1000
    resp = await client.post("/api/v1/write", data=body([series("x", 2, 1.0)]), headers=V1)
    assert resp.status == 204
    await rt.wait_idle()
    assert int(rt.pipeline.last_ts[0]) == 2


async def test_a_late_event_loop_sheds_writes_with_503_and_recovers(aiohttp_client):
    # a limit no loop can meet: the lag monitor's first tick turns shedding on
    client, rt = await start(aiohttp_client, DetectorConfig(limits=Limits(max_loop_lag_s=1e-9)))
    assert rt.writer is not None
    for _ in range(SHED_AFTER_LATE_TICKS):  # late ticks in a row (one every 100 ms)
        assert not rt.writer.overloaded
        rt.lag_measured.clear()
        await asyncio.wait_for(rt.lag_measured.wait(), 5)
    assert rt.writer.overloaded
    resp = await client.post("/api/v1/write", data=body([series("x", 1, 1.0)]), headers=V1)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "max_loop_lag_s" in await resp.text()
    assert (await client.get("/healthz")).status == 200  # the loop still answers
    rt.cfg = rt.cfg.model_copy(update={"limits": Limits(max_loop_lag_s=60.0)})
    rt.lag_measured.clear()
    await asyncio.wait_for(rt.lag_measured.wait(), 5)
    assert not rt.writer.overloaded
    resp = await client.post("/api/v1/write", data=body([series("x", 1, 1.0)]), headers=V1)
    assert resp.status == 204
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remote_write_requests_total{code="503",version="1"} 1.0' in metrics


async def test_untracked_series_cost_no_slot(aiohttp_client):
    cfg = DetectorConfig(series=(SeriesRule(name="api", match='{job="api"}'),))
    client, rt = await start(aiohttp_client, cfg)
    data = body([series("x", 1, 1.0, job="api"), series("y", 1, 1.0, job="db")])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    assert rt.registry.n_tracked == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_samples_dropped_total{reason="untracked"} 1.0' in metrics


async def test_series_api_refuses_bad_selector_and_limit(aiohttp_client):
    client, _ = await start(aiohttp_client)
    assert (await client.get("/api/v1/series", params={"match[]": "{"})).status == 400
    assert (await client.get("/api/v1/series", params={"limit": "x"})).status == 400
    assert (await client.get("/api/v1/series", params={"limit": "0"})).status == 400


async def test_values_are_formatted_like_prometheus(aiohttp_client):
    client, rt = await start(aiohttp_client)
    data = body([series("a", 1, math.inf), series("b", 1, math.nan), series("c", 1, 0.1)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    doc = await (await client.get("/api/v1/series")).json()
    values = {d["labels"]["__name__"]: d["last_value"] for d in doc["data"]}
    assert values == {"a": "+Inf", "b": "NaN", "c": "0.1"}


async def test_health_and_readiness(aiohttp_client):
    client, _ = await start(aiohttp_client)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_state_dir_checkpoint_survives_restart(aiohttp_client, tmp_path):
    client, rt = await start(aiohttp_client, state_dir=tmp_path)
    for t in range(1, 41):
        data = body([series("x", t * 1000, 10.0 + t % 3), series("y", t * 1000, 5.0)])
        assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    before = {k: v[:2].copy() for k, v in rt.pipeline.detectors.families[0].arrays().items()}
    await client.close()
    assert (tmp_path / "CURRENT").exists()
    client2, rt2 = await start(aiohttp_client, state_dir=tmp_path)
    assert rt2.registry.n_tracked == 2
    assert int(rt2.pipeline.last_ts[0]) == 40_000
    after = rt2.pipeline.detectors.families[0].arrays()
    for name, rows in before.items():
        assert np.array_equal(after[name][:2], rows), name
    data = body([series("x", 40_000, 99.0)])  # a retried old batch stays a no-op
    assert (await client2.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt2.wait_idle()
    assert rt2.pipeline.last_value[0] != 99.0


async def test_damaged_checkpoint_is_skipped_and_counted_not_fatal(aiohttp_client, tmp_path):
    client, rt = await start(aiohttp_client, state_dir=tmp_path)
    data = body([series("x", 1, 1.0)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    await client.close()
    where = tmp_path / "checkpoints" / (tmp_path / "CURRENT").read_text()
    with (where / "tables.npz").open("ab") as fh:
        fh.write(b"x")
    client2, rt2 = await start(aiohttp_client, state_dir=tmp_path)
    assert rt2.registry.n_tracked == 0  # no older checkpoint: empty, but serving
    assert (await client2.get("/readyz")).status == 200
    metrics = await (await client2.get("/metrics")).text()
    assert 'vigil_checkpoints_skipped_total{reason="checksum"} 1.0' in metrics


async def test_known_series_are_decoded_inline_and_new_ones_in_the_thread(aiohttp_client):
    client, rt = await start(aiohttp_client)
    for t in (1, 2, 3):
        data = body([series("x", t, 1.0), series("y", t, 2.0)])
        assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    data = body([series("x", 4, 1.0), series("z", 4, 2.0)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remote_write_ingest_path_total{path="thread"} 2.0' in metrics
    assert 'vigil_remote_write_ingest_path_total{path="inline"} 2.0' in metrics
    await rt.wait_idle()
    assert int(rt.pipeline.last_ts[0]) == 4


async def test_v2_over_limit_is_400_with_counts_and_v1_stays_204(aiohttp_client):
    cfg = DetectorConfig(limits=Limits(max_series=1))
    client, rt = await start(aiohttp_client, cfg)
    s = [
        encode.Series(labels=[("__name__", "a")], samples=[(1, 1.0)]),
        encode.Series(labels=[("__name__", "b")], samples=[(1, 1.0), (2, 2.0)]),
    ]
    resp = await client.post("/api/v1/write", data=body(s, 2), headers=V2)
    assert resp.status == 400
    assert "not written" in await resp.text()
    assert resp.headers["X-Prometheus-Remote-Write-Samples-Written"] == "1"
    resp = await client.post("/api/v1/write", data=body(s, 1), headers=V1)
    assert resp.status == 204
    await rt.wait_idle()
    assert rt.registry.n_tracked == 1


async def test_v2_errors_carry_zero_written_headers(aiohttp_client):
    client, _ = await start(aiohttp_client)
    resp = await client.post("/api/v1/write", data=b"\x05abc", headers=V2)
    assert resp.status == 400
    assert resp.headers["X-Prometheus-Remote-Write-Samples-Written"] == "0"


async def test_decode_thread_backlog_answers_503(aiohttp_client, monkeypatch):
    from detector.remote_write import handler

    client, rt = await start(aiohttp_client)
    monkeypatch.setattr(handler, "MAX_THREAD_BACKLOG", 0)
    resp = await client.post("/api/v1/write", data=body([series("new", 1, 1.0)]), headers=V1)
    assert resp.status == 503
    assert rt.registry.n_tracked == 0
    monkeypatch.setattr(handler, "MAX_THREAD_BACKLOG", 16)
    resp = await client.post("/api/v1/write", data=body([series("new", 1, 1.0)]), headers=V1)
    assert resp.status == 204


async def test_series_api_filters_stuck_and_absent_by_the_injected_clock(aiohttp_client):
    now = [1_700_000_000.0]
    cfg = DetectorConfig(presence=PresenceConfig(warmup_samples=5))
    client, rt = await start(aiohttp_client, cfg, clock=lambda: now[0])
    t0 = int(now[0] * 1000)
    for i in range(40):
        ts = t0 + i * 15_000
        data = body(
            [
                series("flat", ts, 1.0 if i < 5 else 7.0),
                series("lively", ts, float(i % 7)),
                series("gone", ts, float(i % 5)),
            ]
            if i < 20
            else [series("flat", ts, 7.0), series("lively", ts, float(i % 7))]
        )
        assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    now[0] = (t0 + 40 * 15_000) / 1000
    names = {}
    for state in ("stuck", "absent", "all"):
        doc = await (await client.get("/api/v1/series", params={"state": state})).json()
        names[state] = sorted(d["labels"]["__name__"] for d in doc["data"])
    assert names == {"stuck": ["flat"], "absent": ["gone"], "all": ["flat", "gone", "lively"]}
    assert (await client.get("/api/v1/series", params={"state": "x"})).status == 400
    rt.refresh_presence()
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_stuck_series 1.0" in metrics and "vigil_absent_series 1.0" in metrics


async def test_samples_and_time_are_counted_per_detector_family(aiohttp_client):
    client, rt = await start(aiohttp_client)
    data = body([series("x", t, float(t)) for t in range(1, 6)])
    assert (await client.post("/api/v1/write", data=data, headers=V1)).status == 204
    await rt.wait_idle()
    text = await (await client.get("/metrics")).text()
    assert 'vigil_detector_samples_total{detector="ensemble"} 5.0' in text
    assert 'vigil_detector_seconds_total{detector="ensemble"}' in text
