"""The detector app end to end in-process: remote-write in, alerts out to an Alertmanager
double, /api/v1/anomalies, resolution, write-back and runbooks."""

import time
from datetime import datetime

from detector.config import (
    AlertingConfig,
    EnrichmentConfig,
    LokiEnrichment,
    WarmStartConfig,
    WritebackConfig,
)
from tests.unit.detector.apphelpers import (
    V1,
    FakeAlertmanager,
    body,
    config,
    level_shift,
    start,
    writeback_sink,
)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _firing(alert) -> bool:
    return (
        alert["labels"].get("metric_name") == "latency_seconds"
        and _ms(alert["endsAt"]) > time.time() * 1000 + 1000
    )


async def test_level_shift_fires_one_enriched_alert_then_resolves(aiohttp_client, aiohttp_server):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    cold = config(warm_start=WarmStartConfig(enabled=False))
    client, _rt = await start(
        aiohttp_client,
        cold,
        alertmanagers=[str(server.make_url(""))],
        prometheus_url="http://prom.example:9090",
        external_url="http://vigil.example:9420",
    )
    now = int(time.time() * 1000)
    start_ms = now - 400_000
    shifted = level_shift(
        "latency_seconds",
        start_ms=start_ms,
        n_normal=300,
        n_shift=8,
        namespace="shop",
        service="checkout",
    )
    resp = await client.post("/api/v1/write", data=body(shifted), headers=V1)
    assert resp.status == 204
    [alert] = await am.wait_for(_firing)
    labels, ann = alert["labels"], alert["annotations"]
    assert labels == {
        "alertname": "VigilAnomaly",
        "severity": labels["severity"],
        "metric_name": "latency_seconds",
        "namespace": "shop",
        "service": "checkout",
    }
    assert labels["severity"] in ("warning", "critical")
    assert ann["direction"] == "above"
    assert float(ann["score"]) >= 0.9999
    assert ann["value"].endswith(" s") and ann["lower"].endswith("ms")
    assert ann["summary"].startswith("latency_seconds (namespace=shop, service=checkout) is ")
    assert "expected" in ann["summary"] and "anomalous for" in ann["summary"]
    assert ann["detector"] == "ensemble" and '"alpha_fast"' in ann["detector_settings"]
    assert ann["runbook_url"] == "http://vigil.example:9420/runbooks/VigilAnomaly"
    assert ann["dashboard_url"].startswith("http://prom.example:9090/graph?")
    assert "vigil_anomaly_upper" in ann["dashboard_url"]
    assert alert["generatorURL"].startswith("http://prom.example:9090/graph?g0.expr=latency_")
    since = _ms(ann["anomalous_since"])
    assert start_ms + 300_000 <= since <= start_ms + 303_000
    assert _ms(alert["startsAt"]) == since

    listed = (await (await client.get("/api/v1/anomalies")).json())["data"]
    assert [a["labels"] for a in listed] == [labels]
    assert (
        listed[0]["members"][0]["series"] == 'latency_seconds{namespace="shop",service="checkout"}'
    )

    runbook = await client.get("/runbooks/VigilAnomaly")
    assert runbook.status == 200 and "expected band" in await runbook.text()
    assert (await client.get("/runbooks/..%2Fapp")).status == 404

    recovered = level_shift(
        "latency_seconds",
        start_ms=start_ms + 308_000,
        n_normal=60,
        n_shift=0,
        seed=8,
        namespace="shop",
        service="checkout",
    )
    resp = await client.post("/api/v1/write", data=body(recovered), headers=V1)
    assert resp.status == 204
    resolved = await am.wait_for(
        lambda a: a["labels"] == labels and _ms(a["endsAt"]) <= time.time() * 1000
    )
    assert resolved[-1]["annotations"]["summary"].startswith(
        "latency_seconds (namespace=shop, service=checkout) was "
    )
    assert (await (await client.get("/api/v1/anomalies")).json())["data"] == []
    fired = [a for post in am.posts for a in post if _firing(a)]
    assert {tuple(sorted(a["labels"].items())) for a in fired} == {
        tuple(sorted(labels.items()))
    }  # one alert, however often it was sent
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_alert_events_total{kind="fire"} 1.0' in metrics
    assert 'vigil_alert_events_total{kind="resolve"} 1.0' in metrics


async def test_stale_series_resolves_its_alert(aiohttp_client, aiohttp_server):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    clock = [time.time()]
    client, _rt = await start(
        aiohttp_client, alertmanagers=[str(server.make_url(""))], clock=lambda: clock[0]
    )
    start_ms = int(clock[0] * 1000) - 400_000
    shifted = level_shift("latency_seconds", start_ms=start_ms, n_normal=300, n_shift=8)
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    [alert] = await am.wait_for(_firing)
    clock[0] += 3600  # an hour of silence, no staleness marker
    resolved = await am.wait_for(
        lambda a: a["labels"] == alert["labels"] and _ms(a["endsAt"]) == int(clock[0] * 1000)
    )
    assert resolved
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_alert_events_total{kind="stale"} 1.0' in metrics


async def test_no_alert_rules_means_no_alerts(aiohttp_client, aiohttp_server):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    client, rt = await start(
        aiohttp_client, config(alerts=()), alertmanagers=[str(server.make_url(""))]
    )
    now = int(time.time() * 1000)
    shifted = level_shift("latency_seconds", start_ms=now - 400_000, n_normal=300, n_shift=8)
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    await rt.wait_idle()
    assert rt.book is not None and rt.book.firing() == []
    assert am.posts == []


async def test_writeback_sends_score_and_band_series(aiohttp_client, aiohttp_server):
    url, received = await writeback_sink(aiohttp_server)
    cfg = config(alerting=AlertingConfig(), writeback=WritebackConfig(url=url, interval_s=3600))
    client, rt = await start(aiohttp_client, cfg)
    now = int(time.time() * 1000)
    series = level_shift(
        "latency_seconds", start_ms=now - 100_000, n_normal=60, n_shift=0, job="api"
    )
    await client.post("/api/v1/write", data=body(series), headers=V1)
    await rt.wait_idle()
    assert rt.writeback is not None
    assert await rt.writeback.flush()
    [req] = received
    names = sorted(dict(req.labels(i))["__name__"] for i in range(req.n_series))
    assert names == [
        "vigil_anomaly_expected",
        "vigil_anomaly_lower",
        "vigil_anomaly_score",
        "vigil_anomaly_upper",
    ]
    labels = dict(req.labels(0))
    assert labels["job"] == "api" and labels["metric_name"] == "latency_seconds"
    assert labels["detector"] == "ensemble"
    assert int(req.smp_ts[0]) == now - 100_000 + 59_000
    assert await rt.writeback.flush()  # nothing new: no request
    assert len(received) == 1


async def test_firing_alerts_come_back_after_a_restart_without_a_new_page(
    aiohttp_client, aiohttp_server, tmp_path
):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    url = str(server.make_url(""))
    client, _rt = await start(aiohttp_client, alertmanagers=[url], state_dir=tmp_path)
    now = int(time.time() * 1000)
    shifted = level_shift("latency_seconds", start_ms=now - 400_000, n_normal=300, n_shift=8)
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    [first] = await am.wait_for(_firing)
    await client.close()
    am.posts.clear()
    client2, _rt2 = await start(aiohttp_client, alertmanagers=[url], state_dir=tmp_path)
    [again] = await am.wait_for(_firing)
    assert again["labels"] == first["labels"]
    assert again["startsAt"] == first["startsAt"]  # the same alert, still firing
    metrics = await (await client2.get("/metrics")).text()
    assert 'vigil_alert_events_total{kind="restored"} 1.0' in metrics
    assert 'vigil_alert_events_total{kind="fire"}' not in metrics


async def test_log_lines_from_loki_join_the_alert_when_they_arrive(aiohttp_client, aiohttp_server):
    async def query_range(request):
        assert 'pod="checkout-1"' in request.query["query"]
        ns = str(int(time.time() * 1e9))
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "streams",
                    "result": [
                        {
                            "stream": {"pod": "checkout-1"},
                            "values": [[ns, "ERROR payment gateway timeout"]],
                        }
                    ],
                },
            }
        )

    from aiohttp import web

    am = FakeAlertmanager()
    loki = web.Application()
    loki.router.add_get("/loki/api/v1/query_range", query_range)
    am_server, loki_server = await aiohttp_server(am.app()), await aiohttp_server(loki)
    cfg = config(
        enrichment=EnrichmentConfig(loki=LokiEnrichment(url=str(loki_server.make_url(""))))
    )
    client, _rt = await start(aiohttp_client, cfg, alertmanagers=[str(am_server.make_url(""))])
    now = int(time.time() * 1000)
    shifted = level_shift(
        "latency_seconds",
        start_ms=now - 400_000,
        n_normal=300,
        n_shift=8,
        namespace="shop",
        pod="checkout-1",
    )
    await client.post("/api/v1/write", data=body(shifted), headers=V1)
    [enriched] = await am.wait_for(lambda a: "logs" in a["annotations"])
    assert enriched["annotations"]["logs"].endswith("ERROR payment gateway timeout")
    first = next(a for post in am.posts for a in post if _firing(a))
    assert "logs" not in first["annotations"]  # sent at once, context after
