"""The detector's console: the page and its assets with a strict CSP, the recent anomalies
with their alert, fingerprint and links, and a series' history for its chart."""

import time

from detector.config import ConsoleConfig, WarmStartConfig
from detector.web.console import fingerprint
from tests.unit.detector.apphelpers import V1, FakeAlertmanager, body, config, level_shift, start

COLD = config(warm_start=WarmStartConfig(enabled=False))


def test_fingerprint_is_alertmanagers():
    # the fingerprint Alertmanager 0.25 gave this alert (tests/fixtures/samples/webhook_01.json)
    labels = {
        "alertname": "ResearchAlwaysFiring",
        "research": "stack",
        "service": "research",
        "severity": "info",
    }
    assert fingerprint(labels) == "89d523e42551dcff"


async def test_page_and_assets_are_served_with_a_strict_policy(aiohttp_client):
    client, _ = await start(aiohttp_client, COLD)
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<script type="module" src="/console/anomalies.js">' in html
    assert "<script>" not in html and "http" not in html.replace("http-equiv", "")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    js = await client.get("/console/anomalies.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert "innerHTML" not in await js.text()
    assert (await client.get("/console/console.css")).content_type == "text/css"
    assert (await client.get("/console/nothing.js")).status == 404
    assert (await client.get("/console/..%2Fapp.py")).status == 404


async def test_level_shift_shows_with_its_history_alert_and_links(aiohttp_client, aiohttp_server):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    am_url = str(server.make_url("")).rstrip("/")
    client, _rt = await start(
        aiohttp_client,
        COLD,
        alertmanagers=[am_url],
        remediator_url="http://remediator.example:9421",
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
    assert (await client.post("/api/v1/write", data=body(shifted), headers=V1)).status == 204
    await am.wait_for(lambda a: a["labels"].get("metric_name") == "latency_seconds")
    doc = await (await client.get("/api/v1/anomalies/recent")).json()
    assert doc["remediator_url"] == "http://remediator.example:9421"
    [entry] = doc["data"]
    assert entry["series"] == 'latency_seconds{namespace="shop",service="checkout"}'
    assert entry["state"] == "firing" and entry["ended_ms"] is None
    assert entry["resolution"] is None  # said once its alert resolves
    assert start_ms + 300_000 <= entry["since_ms"] <= start_ms + 303_000
    alert = entry["alert"]
    assert alert["labels"]["alertname"] == "VigilAnomaly"
    assert alert["fingerprint"] == fingerprint(alert["labels"])
    assert alert["annotations"]["summary"].startswith("latency_seconds (namespace=shop")
    links = entry["links"]
    # one fingerprint per severity the alert went through, the current one last
    assert alert["fingerprints"][-1] == alert["fingerprint"]
    severities = {"warning", "critical"}
    assert {fingerprint({**alert["labels"], "severity": s}) for s in severities} >= set(
        alert["fingerprints"]
    )
    assert links["runs"] == (
        "http://remediator.example:9421/#runs?fingerprint=" + ",".join(alert["fingerprints"])
    )
    assert links["alertmanager"].startswith(f"{am_url}/#/alerts?filter=%7B")
    assert links["runbook"].endswith("/runbooks/VigilAnomaly")

    resp = await client.get(f"/api/v1/anomalies/{entry['id']}/history")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    h = (await resp.json())["data"]
    assert len(h["ts_ms"]) == len(h["value"]) == len(h["upper"]) == len(h["score"]) >= 6
    assert h["ts_ms"] == sorted(h["ts_ms"]) and h["ts_ms"][-1] == start_ms + 307_000
    [(since, end)] = h["stretches"]
    assert since == entry["since_ms"] and end is None
    inside = [v for t, v in zip(h["ts_ms"], h["value"], strict=True) if t >= since]
    before = [v for t, v in zip(h["ts_ms"], h["value"], strict=True) if t < since]
    assert len(inside) == 8 and min(inside) > h["baseline"]["upper"]  # above the old band
    assert before and max(before) < h["baseline"]["upper"]  # the batch's earlier samples
    assert h["threshold"] == 0.9999
    assert (await client.get("/api/v1/anomalies/99999/history")).status == 404
    assert (await client.get("/api/v1/anomalies/x/history")).status == 404


async def test_without_history_firing_alerts_are_still_listed(aiohttp_client, aiohttp_server):
    am = FakeAlertmanager()
    server = await aiohttp_server(am.app())
    cfg = COLD.model_copy(update={"console": ConsoleConfig(history_series=0)})
    client, _rt = await start(aiohttp_client, cfg, alertmanagers=[str(server.make_url(""))])
    start_ms = int(time.time() * 1000) - 400_000
    shifted = level_shift("queue_depth", start_ms=start_ms, n_normal=300, n_shift=8)
    assert (await client.post("/api/v1/write", data=body(shifted), headers=V1)).status == 204
    await am.wait_for(lambda a: a["labels"].get("metric_name") == "queue_depth")
    [entry] = (await (await client.get("/api/v1/anomalies/recent")).json())["data"]
    assert entry["id"] is None and entry["state"] == "firing"
    assert "runs" not in entry["links"]  # no remediator configured
