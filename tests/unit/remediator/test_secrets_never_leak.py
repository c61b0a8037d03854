"""A canary: secrets (a notify URL and an http.request header in secret files, the
detector, webhook and admin tokens) never appear in a log record, the audit database (every
table, every column, and its files' bytes) or any API answer, whatever fails.

The real app with its real clients (``LiveServices``) runs against a local peer that plays
every endpoint and echoes what it receives, secrets included: connection refused, a
timeout, HTTP 500 and 401 echoing the request, a TLS handshake with a plain-HTTP port, a
missing secret file, a detector echoing its bearer token, a verification that fails and an
escalation that fails (Alertmanager answering 500 with the alert it was sent, or down).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web

from remediator.app import STATE, build_app
from remediator.audit.store import TERMINAL
from remediator.config import RemediatorConfig
from tests.unit.remediator.test_app import Clock, notification, settle

CANARY = "CANARY"  # every secret below holds it; no name, path or label does
WEBHOOK_TOKEN = "CANARYwebhook0123456789"
ADMIN_TOKEN = "CANARYadmin0123456789"
DETECTOR_TOKEN = "CANARYdetector0123456789"
HEADER = "Bearer CANARYheader0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _echo_text(request: web.Request, body: bytes) -> str:
    """What an unhelpful server answers: the request back, as text and escaped."""
    return f"{request.method} {request.path_qs} {dict(request.headers)!r} {body!r} {request.url}"


async def _peer(aiohttp_server, release: asyncio.Event):
    """Alertmanager, Prometheus, the detector and the HTTP endpoints, on one port."""

    async def echo(status: int):
        async def handle(request: web.Request) -> web.Response:
            return web.Response(status=status, text=_echo_text(request, await request.read()))

        return handle

    async def slow(request: web.Request) -> web.Response:
        await release.wait()  # answers only after the test: the client times out first
        return web.Response(text="late")

    async def query(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    async def silences(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_post("/services/{tail:.*}", await echo(500))
    app.router.add_post("/tickets/500", await echo(500))
    app.router.add_post("/tickets/401", await echo(401))
    app.router.add_post("/tickets/ok", await echo(200))
    app.router.add_post("/tickets/slow", slow)
    app.router.add_post("/api/v1/verify", await echo(500))
    app.router.add_post("/api/v2/alerts", await echo(500))
    app.router.add_get("/api/v2/silences", silences)
    app.router.add_route("*", "/api/v1/query", query)
    return await aiohttp_server(app, access_log=None)  # its own log is not the remediator's


def _playbook(name: str, steps: str, *, verify: str = "", silences: bool = True) -> str:
    return f"""apiVersion: vigil/v1
kind: Playbook
metadata: {{name: {name}}}
spec:
  match: {{labels: {{alertname: {name}}}}}
  mode: auto
  guards: {{respect_silences: {str(silences).lower()}, cooldown_s: 0}}
  steps:
{steps}
{verify}"""


def _playbooks(peer: str) -> dict[str, str]:
    tickets = f"{peer}/tickets"
    header = "{Authorization: {secret: api-header}}"
    return {
        "refused": "    - {name: n, action: notify, retries: 1, "
        "params: {url: {secret: notify-refused}, text: hi}}",
        "echo500": "    - {name: n, action: notify, retries: 0, "
        "params: {url: {secret: notify-echo}, text: hi}}",
        "tls": "    - {name: n, action: notify, retries: 0, "
        "params: {url: {secret: notify-tls}, text: hi}}",
        "missing": "    - {name: n, action: notify, params: {url: {secret: no-such}, text: hi}}",
        "header500": f"    - {{name: h, action: http.request, retries: 0, "
        f"params: {{url: '{tickets}/500', headers: {header}}}}}",
        "header401": f"    - {{name: h, action: http.request, "
        f"params: {{url: '{tickets}/401', headers: {header}}}}}",
        "timeout": f"    - {{name: h, action: http.request, retries: 0, "
        f"params: {{url: '{tickets}/slow', headers: {header}, timeout_s: 0.3}}}}",
        "detector": "    - {name: v, action: vigil.verify, retries: 0, "
        "params: {selector: 'job=\"web\"'}}",
        "verifyfail": f"    - {{name: h, action: http.request, "
        f"params: {{url: '{tickets}/ok', headers: {header}}}}}",
    }


def _write_setup(
    tmp_path: Path, peer: str, peer_port: int, *, silences: bool
) -> tuple[Path, RemediatorConfig]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    closed = _closed_port()
    (secrets / "notify-refused").write_text(
        f"http://127.0.0.1:{closed}/services/T111/B111/CANARYrefused0123456789\n"
    )
    (secrets / "notify-echo").write_text(f"{peer}/services/T222/B222/CANARYecho0123456789")
    (secrets / "notify-tls").write_text(
        f"https://127.0.0.1:{peer_port}/services/T333/B333/CANARYtls0123456789"
    )
    (secrets / "api-header").write_text(HEADER)
    (tmp_path / "detector-token").write_text(DETECTOR_TOKEN)
    book = tmp_path / "playbooks"
    book.mkdir()
    for name, steps in _playbooks(peer).items():
        verify = (
            "  verify:\n    - {query: 'never_there == 1', within_s: 30, interval_s: 10}"
            if name == "verifyfail"
            else ""
        )
        (book / f"{name}.yaml").write_text(_playbook(name, steps, verify=verify, silences=silences))
    cfg = RemediatorConfig.model_validate(
        {
            "secrets_dir": str(secrets),
            "http": {"allowed_urls": [f"{peer}/tickets/"]},
            "detector": {"url": peer, "bearer_token_file": str(tmp_path / "detector-token")},
            "guards": {"max_concurrent": 100, "rate": {"max_runs": 100, "window_s": 3600}},
            "request_timeout_s": 5,
        }
    )
    return book, cfg


def _everything_in_the_audit_db(path: Path) -> str:
    texts: list[str] = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "runs" in tables and "events" in tables
        for table in tables:
            texts.extend(repr(row) for row in db.execute(f'SELECT * FROM "{table}"'))
    for file in path.parent.glob(path.name + "*"):  # the database, its WAL and shm
        texts.append(file.read_bytes().decode("latin-1"))
    return "\n".join(texts)


def _everything_logged(caplog) -> str:
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(f"{fmt.format(r)} {vars(r)!r}" for r in caplog.records)


@pytest.mark.parametrize("alertmanager", ["answers-500", "down"])
async def test_no_secret_appears_anywhere_whatever_fails(
    aiohttp_client, aiohttp_server, tmp_path, caplog, alertmanager
):
    caplog.set_level(logging.DEBUG)
    release = asyncio.Event()
    server = await _peer(aiohttp_server, release)
    peer = str(server.make_url("")).rstrip("/")
    # with Alertmanager down, the silences guard would refuse every run before it acts
    book, cfg = _write_setup(tmp_path, peer, server.port, silences=alertmanager == "answers-500")
    am = peer if alertmanager == "answers-500" else f"http://127.0.0.1:{_closed_port()}"
    clock = Clock()
    app = build_app(
        cfg,
        playbook_dirs=[book],
        state_dir=tmp_path / "state",
        alertmanager_url=am,
        prometheus_url=peer,
        token=WEBHOOK_TOKEN,
        admin_token=ADMIN_TOKEN,
        clock=clock,
        sleep=clock.sleep,
        external_url="http://vigil:9421",
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    names = list(_playbooks(peer))
    alerts = [notification(name, fingerprint=f"f{i}")["alerts"][0] for i, name in enumerate(names)]
    hook = notification() | {"alerts": alerts}
    resp = await client.post(
        "/webhook", json=hook, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    )
    assert resp.status == 200, await resp.text()
    runs = await settle(
        st,
        lambda runs: len(runs) == len(names) and all(r.state in TERMINAL for r in runs),
        timeout_s=30,
    )
    release.set()
    by_name = {r.playbook: r for r in runs}
    assert by_name["verifyfail"].state.value == "escalated", by_name["verifyfail"]
    assert all(by_name[n].state.value == "failed" for n in names if n != "verifyfail"), {
        n: (r.state.value, r.outcome) for n, r in by_name.items()
    }
    # the failures name their secrets, never show them
    assert "<secret notify-refused>" in by_name["refused"].outcome
    assert "HTTP 500" in by_name["echo500"].outcome

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answers = []
    for path in [
        "/api/v1/runs",
        "/metrics",
        "/api/v1/status",
        "/api/v1/playbooks",
        "/api/v1/report",
        "/",
        *(f"/api/v1/runs/{r.id}" for r in runs),
    ]:
        got = await client.get(path, headers=admin)
        assert got.status == 200, path
        answers.append(f"{path}: {await got.text()}")
    api = "\n".join(answers)
    assert "would_send" not in api and "HTTP 401" in api  # the paths ran
    for where, text in (
        ("an API answer", api),
        ("a log record", _everything_logged(caplog)),
        ("the audit database", _everything_in_the_audit_db(st.audit_path)),
    ):
        at = text.find(CANARY)
        assert at < 0, f"a secret in {where}: ...{text[max(0, at - 200) : at + 100]}..."
