"""The remediator's console: the page with a strict CSP, /api/v1/status (kill switch),
runs filtered by fingerprint (the detector console's link), and POST /api/v1/simulate."""

import json

from tests.conftest import ROOT, SAMPLES
from tests.unit.remediator.test_app import drained, notification, start

VALID = ROOT / "tests" / "fixtures" / "playbooks" / "valid"
JSON = {"Content-Type": "application/json"}


async def test_page_and_assets_are_served_with_a_strict_policy(aiohttp_client, tmp_path):
    client, *_ = await start(aiohttp_client, tmp_path)
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<script type="module" src="/console/remediation.js">' in html
    assert "<script>" not in html and "style=" not in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for name in ("remediation.js", "runs.js", "playbooks.js", "admin.js", "dom.js"):
        resp = await client.get(f"/console/{name}")
        assert resp.status == 200 and resp.content_type == "text/javascript", name
        assert "innerHTML" not in await resp.text(), name
    assert (await client.get("/console/secret.txt")).status == 404


async def test_status_follows_the_kill_switch(aiohttp_client, tmp_path):
    client, *_ = await start(aiohttp_client, tmp_path, admin="s3cret")
    status = await (await client.get("/api/v1/status")).json()
    assert status == {
        "paused": False,
        "paused_reason": None,
        "playbooks": 1,
        "problems": 0,
        "detector_url": None,
    }
    auth = {"Authorization": "Bearer s3cret"}
    assert (await client.post("/api/v1/pause", headers=auth)).status == 200
    status = await (await client.get("/api/v1/status")).json()
    assert status["paused"] is True and status["paused_reason"] == "paused via API"


async def test_runs_can_be_listed_for_one_alert_fingerprint(aiohttp_client, tmp_path):
    client, st, *_ = await start(aiohttp_client, tmp_path)
    for fp, instance in (("aaaa", "db-1:9100"), ("bbbb", "db-2:9100")):
        resp = await client.post("/webhook", json=notification(fingerprint=fp, instance=instance))
        assert resp.status == 200
    await drained(st)
    runs = (await (await client.get("/api/v1/runs?fingerprint=bbbb")).json())["data"]
    assert [r["fingerprint"] for r in runs] == ["bbbb"]
    assert len((await (await client.get("/api/v1/runs")).json())["data"]) == 2


async def test_simulate_shows_the_plan_for_an_alert_a_body_or_a_recorded_request(
    aiohttp_client, tmp_path
):
    client, *_ = await start(aiohttp_client, tmp_path, playbooks=sorted(VALID.glob("*.yaml")))
    recorded = (SAMPLES / "webhook_01.json").read_bytes()
    resp = await client.post("/api/v1/simulate", data=recorded, headers=JSON)
    assert resp.status == 200
    [report] = (await resp.json())["reports"]
    [match] = report["matches"]
    assert match["playbook"] == "silence-research-alert"
    assert [s["step"] for s in match["plan"]] == ["silence", "settle"]
    assert match["decision"] == {"act": True, "shadow": False, "reason": "all guards allow"}
    one = json.loads(recorded)["body"]["alerts"][0]
    resp = await client.post("/api/v1/simulate", json=one)
    assert (await resp.json())["reports"][0]["matches"][0]["plan_hash"] == match["plan_hash"]
    nothing = dict(one, labels={"alertname": "Unknown"})
    resp = await client.post("/api/v1/simulate", json=nothing)
    assert (await resp.json())["reports"][0]["matches"] == []
    resp = await client.post("/api/v1/simulate", data=b"{not json", headers=JSON)
    assert resp.status == 400 and "not JSON" in (await resp.json())["error"]
    resp = await client.post("/api/v1/simulate", json={"labels": "x"})
    assert resp.status == 400
    assert (await client.get("/api/v1/runs")).status == 200  # nothing was run
    assert (await (await client.get("/api/v1/runs")).json())["data"] == []
