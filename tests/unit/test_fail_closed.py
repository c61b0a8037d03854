"""Both services fail closed: what a probe found open, each reproduced and now refused.

- a remediator without a webhook token took alerts from anyone, on 0.0.0.0 too, and took
  them as ``text/plain`` (a cross-site "simple request" from any page in a browser);
- the detector's /api/v1/verify forwarded any PromQL at any step without a token, and
  answered 500 when Prometheus answered with an unexpected body;
- an Authorization header with non-ASCII bytes gave 500 instead of 401;
- the detector took ``bearer`` in any case while the remediator wanted ``Bearer``.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiohttp import web

import detector.__main__ as detector_main
import remediator.__main__ as remediator_main
from detector.config import DetectorConfig
from tests.unit.detector.apphelpers import V1, body, series
from tests.unit.detector.apphelpers import start as start_detector
from tests.unit.remediator.test_app import notification
from tests.unit.remediator.test_app import start as start_remediator

TOKEN = "tok-4f8a"
JSON = {"Content-Type": "application/json"}
VERIFY = b'{"queries": [{"name": "all", "query": "count({__name__=~\\".+\\"})"}]}'


# --- start-up: no token on a public address is refused -------------------------------


@pytest.fixture
def no_serving(monkeypatch):
    """Record what would be served instead of serving it (the check runs before)."""
    served: list[dict] = []
    monkeypatch.setattr(web, "run_app", lambda app, **kw: served.append(kw))
    for name in (
        "VIGIL_DETECTOR_TOKEN",
        "VIGIL_REMEDIATOR_WEBHOOK_TOKEN",
        "VIGIL_REMEDIATOR_ADMIN_TOKEN",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield served
    root.handlers[:] = handlers  # serve configures logging for the process
    root.setLevel(level)


@pytest.mark.parametrize("listen", ["0.0.0.0:9420", ":9420", "[::]:9420", "10.0.0.7:9420"])
def test_the_detector_refuses_to_start_open_on_a_public_address(no_serving, capsys, listen):
    assert detector_main.main(["serve", "--listen", listen]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen" in err and "POST /api/v1/write" in err
    assert "VIGIL_DETECTOR_TOKEN" in err and "--insecure-no-auth" in err
    assert no_serving == []


@pytest.mark.parametrize("listen", ["0.0.0.0:9421", ":9421", "192.168.1.5:9421"])
def test_the_remediator_refuses_to_start_open_on_a_public_address(
    no_serving, capsys, tmp_path, listen
):
    argv = ["serve", "--listen", listen, "--state-dir", str(tmp_path)]
    assert remediator_main.main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to listen" in err and "POST /webhook" in err
    assert "VIGIL_REMEDIATOR_WEBHOOK_TOKEN" in err and "--insecure-no-auth" in err
    assert no_serving == []


def test_with_tokens_or_on_loopback_both_start(no_serving, monkeypatch, tmp_path, capsys):
    assert detector_main.main(["serve", "--listen", "127.0.0.1:9420"]) == 0
    assert (
        remediator_main.main(["serve", "--listen", "localhost:9421", "--state-dir", str(tmp_path)])
        == 0
    )
    monkeypatch.setenv("VIGIL_DETECTOR_TOKEN", TOKEN)
    monkeypatch.setenv("VIGIL_REMEDIATOR_WEBHOOK_TOKEN", TOKEN)
    assert detector_main.main(["serve", "--listen", "0.0.0.0:9420"]) == 0
    assert (
        remediator_main.main(["serve", "--listen", "0.0.0.0:9421", "--state-dir", str(tmp_path)])
        == 0
    )
    assert [kw["host"] for kw in no_serving] == ["127.0.0.1", "localhost", "0.0.0.0", "0.0.0.0"]
    assert "INSECURE" not in capsys.readouterr().err


def test_insecure_no_auth_starts_both_with_a_loud_warning(no_serving, tmp_path, capsys):
    assert detector_main.main(["serve", "--listen", "0.0.0.0:9420", "--insecure-no-auth"]) == 0
    assert (
        remediator_main.main(
            [
                "serve",
                "--listen",
                "0.0.0.0:9421",
                "--insecure-no-auth",
                "--state-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    warnings = [(d["logger"], d["msg"]) for d in lines if d["level"] == "WARNING"]
    assert [(who, msg.startswith("INSECURE")) for who, msg in warnings] == [
        ("detector", True),
        ("remediator", True),
    ]
    assert "POST /api/v1/write" in warnings[0][1] and "POST /webhook" in warnings[1][1]
    assert len(no_serving) == 2


def test_a_token_that_can_never_be_presented_stops_the_start(
    no_serving, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("VIGIL_DETECTOR_TOKEN", "two words")
    assert detector_main.main(["serve", "--listen", "0.0.0.0:9420"]) == 2
    monkeypatch.setenv("VIGIL_REMEDIATOR_WEBHOOK_TOKEN", "caf\u00e9")
    assert (
        remediator_main.main(["serve", "--listen", "0.0.0.0:9421", "--state-dir", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert "spaces" in err and "not ASCII" in err
    assert "two words" not in err and "caf\u00e9" not in err
    assert no_serving == []


# --- the remediator webhook ----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_webhook_that_is_not_declared_json_is_refused_even_without_a_token(
    aiohttp_client, tmp_path, content_type
):
    client, st, _fake, _clock = await start_remediator(aiohttp_client, tmp_path)
    assert st.token is None  # the probe's setup: loopback, no token
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await client.post(
        "/webhook",
        data=json.dumps(notification()).encode(),
        headers=headers,
        skip_auto_headers=["Content-Type"],
    )
    assert resp.status == 415
    assert "application/json" in (await resp.json())["error"]
    assert await st.audit.run(lambda db: db.list_runs()) == []


async def test_a_webhook_declared_json_with_a_charset_is_taken(aiohttp_client, tmp_path):
    client, _st, _fake, _clock = await start_remediator(aiohttp_client, tmp_path)
    resp = await client.post(
        "/webhook",
        data=json.dumps(notification()).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status == 200


async def test_admin_posts_take_no_body_or_json_only(aiohttp_client, tmp_path):
    client, st, _fake, _clock = await start_remediator(aiohttp_client, tmp_path, admin=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    plain = await client.post(
        "/api/v1/pause", data=b"pause", headers={**auth, "Content-Type": "text/plain"}
    )
    assert plain.status == 415
    assert await st.audit.run(lambda db: db.get_flag("paused")) is None
    assert (await client.post("/api/v1/pause", headers=auth)).status == 200
    assert (await client.post("/api/v1/resume", json={}, headers=auth)).status == 200
    run = await client.post(
        "/api/v1/runs/nope/approve",
        data=b'{"plan_hash": "x"}',
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert run.status == 415
    sim = await client.post("/api/v1/simulate", data=b"{}", headers={"Content-Type": "text/plain"})
    assert sim.status == 415


# --- one Authorization rule, no 500 ------------------------------------------------------

HEADERS = [
    (f"Bearer {TOKEN}", True),
    (f"bearer {TOKEN}", True),
    (f"BEARER  {TOKEN}", True),
    (f"Bearer {TOKEN}x", False),
    (f"Basic {TOKEN}", False),
    (TOKEN, False),
    ("Bearer t\u00f6k", False),
    ("", False),
]


@pytest.mark.parametrize(("header", "accepted"), HEADERS)
async def test_both_services_apply_the_same_authorization_rule(
    aiohttp_client, tmp_path, header, accepted
):
    det, _ = await start_detector(aiohttp_client, DetectorConfig(), token=TOKEN)
    rem, st, _fake, _clock = await start_remediator(aiohttp_client, tmp_path, admin=TOKEN)
    st.token = TOKEN
    auth = {"Authorization": header} if header else {}
    write = await det.post(
        "/api/v1/write", data=body([series("up", 1_717_243_200_000, 1.0)]), headers={**V1, **auth}
    )
    hook = await rem.post("/webhook", json=notification(alertname="Other"), headers=auth)
    pause = await rem.post("/api/v1/pause", headers=auth)
    assert (write.status, hook.status, pause.status) == (
        (204, 200, 200) if accepted else (401, 401, 401)
    )
    if not accepted:
        assert write.headers["WWW-Authenticate"] == hook.headers["WWW-Authenticate"]


async def _raw_post(client, path: str, authorization: bytes, content_type: bytes) -> int:
    """POST with header bytes no well-behaved client would send; the status code."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: " + authorization + b"\r\n"
            b"Content-Type: " + content_type + b"\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    "authorization", [b"Bearer \xff\xfe", b"Bearer caf\xc3\xa9", b"B\xe9arer x", b"\xc3\xa9"]
)
async def test_non_ascii_authorization_is_401_never_500(aiohttp_client, tmp_path, authorization):
    det, _ = await start_detector(
        aiohttp_client, DetectorConfig(), token=TOKEN, prometheus_url="http://127.0.0.1:9"
    )
    rem, st, _fake, _clock = await start_remediator(aiohttp_client, tmp_path, admin=TOKEN)
    st.token = TOKEN
    statuses = [
        await _raw_post(det, "/api/v1/write", authorization, b"application/x-protobuf"),
        await _raw_post(det, "/api/v1/verify", authorization, b"application/json"),
        await _raw_post(rem, "/webhook", authorization, b"application/json"),
        await _raw_post(rem, "/api/v1/pause", authorization, b"application/json"),
    ]
    assert statuses == [401, 401, 401, 401]


# --- the detector's verify endpoint --------------------------------------------------------


class FakePrometheus:
    """Answers every query_range with one fixed body; counts the queries."""

    def __init__(self, body: bytes, content_type: str = "application/json") -> None:
        self.body, self.content_type, self.queries = body, content_type, 0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.queries += 1
            return web.Response(body=self.body, content_type=self.content_type)

        app = web.Application()
        app.router.add_route("*", "/api/v1/query_range", handle)
        return app


async def test_verify_refuses_a_body_not_declared_json(aiohttp_client):
    client, _ = await start_detector(
        aiohttp_client, DetectorConfig(), prometheus_url="http://127.0.0.1:9"
    )
    resp = await client.post("/api/v1/verify", data=VERIFY, headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    assert "application/json" in (await resp.json())["error"]


async def test_verify_needs_the_token_when_one_is_configured(aiohttp_client):
    client, _ = await start_detector(
        aiohttp_client, DetectorConfig(), token=TOKEN, prometheus_url="http://127.0.0.1:9"
    )
    resp = await client.post("/api/v1/verify", data=VERIFY, headers=JSON)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (', "step_s": 1', "greater than or equal to 5"),
        (', "baseline_s": 604800, "step_s": 5', "more than 11000"),
        (', "observe_s": 86400, "step_s": 5', "more than 11000"),
    ],
)
async def test_verify_bounds_the_work_it_forwards(aiohttp_client, aiohttp_server, extra, reason):
    prom = FakePrometheus(b'{"status": "success", "data": {"resultType": "matrix", "result": []}}')
    server = await aiohttp_server(prom.app())
    client, _ = await start_detector(
        aiohttp_client, DetectorConfig(), prometheus_url=str(server.make_url("")).rstrip("/")
    )
    resp = await client.post(
        "/api/v1/verify", data=VERIFY[:-1] + extra.encode() + b"}", headers=JSON
    )
    assert resp.status == 400
    assert reason in " ".join((await resp.json())["problems"])
    assert prom.queries == 0


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"<html>proxy login</html>", "not JSON"),
        (b'{"status": "success"}', "no data.result"),
        (b'{"status": "success", "data": {}}', "no data.result"),
        (b"[]", "no data.result"),
        (b'{"data": {"result": "nope"}}', "not a range-query matrix"),
        (b'{"data": {"result": [{"values": [["x", "1"]]}]}}', "not a range-query matrix"),
        (b'{"data": {"result": [{"values": [[1, "abc"]]}]}}', "not a range-query matrix"),
        (b'{"data": {"result": [{"values": 5}]}}', "not a range-query matrix"),
    ],
)
async def test_a_bad_prometheus_body_is_502_with_the_reason(
    aiohttp_client, aiohttp_server, answer, reason
):
    prom = FakePrometheus(answer)
    server = await aiohttp_server(prom.app())
    client, _ = await start_detector(
        aiohttp_client, DetectorConfig(), prometheus_url=str(server.make_url("")).rstrip("/")
    )
    resp = await client.post("/api/v1/verify", data=VERIFY, headers=JSON)
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert reason in error and "count(" in error
    assert prom.queries >= 1


async def test_a_good_prometheus_body_still_gives_a_report(aiohttp_client, aiohttp_server):
    prom = FakePrometheus(
        b'{"status": "success", "data": {"resultType": "matrix", "result": '
        b'[{"metric": {}, "values": [[1700000000, "1"], [1700000015, '
        b'"NaN"]]}]}}'
    )
    server = await aiohttp_server(prom.app())
    client, _ = await start_detector(
        aiohttp_client, DetectorConfig(), prometheus_url=str(server.make_url("")).rstrip("/")
    )
    resp = await client.post("/api/v1/verify", data=VERIFY, headers=JSON)
    assert resp.status == 200
    assert (await resp.json())["verdict"] == "inconclusive"  # two samples are too few
