"""TLS for the detector: HTTPS and mTLS on the listener (the context __main__ hands to
web.run_app), and every outgoing connection checked against outgoing_tls.ca_file.

Certificates come from a throwaway CA made in the test (tests/tlsfiles.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from detector.alerting.delivery import AlertmanagerClient
from detector.app import RUNTIME, build_app
from detector.config import AlertingConfig, DetectorConfig, load_config
from detector.errors import ConfigError
from detector.metrics import build_alert_metrics
from detector.verify import prometheus, verdict
from servicekit import tls
from tests.tlsfiles import make_pki

WAIT_S = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_ctx(pki, *, cert=None, key=None, ca=None):
    ctx = ssl.create_default_context(cafile=str(ca or pki.ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


async def get(url, ctx):
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as resp,
    ):
        return resp.status, await resp.text()


async def serve_detector(aiohttp_server, cfg):
    """The detector app behind the listener context built from cfg.tls, as __main__ does."""
    app = build_app(cfg)
    server = await aiohttp_server(app, ssl=tls.build_server_context(cfg.tls, error=ConfigError))
    async with asyncio.timeout(WAIT_S):
        await app[RUNTIME].ready.wait()
    return server


def write_config(tmp_path, text):
    path = tmp_path / "detector.yaml"
    path.write_text(text)
    return load_config(path)


async def test_https_from_the_config_file_serves_and_plain_trust_is_not_enough(
    aiohttp_server, tmp_path, pki
):
    cfg = write_config(
        tmp_path, f"tls:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    server = await serve_detector(aiohttp_server, cfg)
    url = str(server.make_url("/healthz"))
    assert url.startswith("https://127.0.0.1:")
    assert await get(url, client_ctx(pki)) == (200, "ok\n")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(url, ssl.create_default_context())  # system CAs do not know ours


async def test_with_client_ca_a_client_needs_a_certificate_that_ca_signed(
    aiohttp_server, tmp_path, pki
):
    cfg = write_config(
        tmp_path,
        f"tls:\n  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        f"  client_ca_file: {pki.ca}\n",
    )
    server = await serve_detector(aiohttp_server, cfg)
    url = str(server.make_url("/api/v1/series"))
    with pytest.raises(aiohttp.ClientError):
        await get(url, client_ctx(pki))  # no certificate
    with pytest.raises(aiohttp.ClientError):  # a certificate from another CA
        await get(url, client_ctx(pki, cert=pki.other_client_cert, key=pki.other_client_key))
    status, text = await get(url, client_ctx(pki, cert=pki.client_cert, key=pki.client_key))
    assert status == 200 and "data" in json.loads(text)


def test_plain_http_when_no_certificate_is_configured():
    assert tls.build_server_context(DetectorConfig().tls, error=ConfigError) is None


def test_unreadable_and_mismatched_files_are_config_errors_naming_the_setting(tmp_path, pki):
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"tls.cert_file/tls.key_file: cannot load .*nope"):
        tls.build_server_context(
            tls.ServerTLS(cert_file=missing, key_file=pki.server_key), error=ConfigError
        )
    with pytest.raises(ConfigError, match="the key must match the certificate"):
        tls.build_server_context(
            tls.ServerTLS(cert_file=pki.server_cert, key_file=pki.client_key), error=ConfigError
        )
    with pytest.raises(ConfigError, match=r"tls.client_ca_file: cannot load the CA bundle"):
        tls.build_server_context(
            tls.ServerTLS(
                cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=missing
            ),
            error=ConfigError,
        )
    with pytest.raises(ConfigError, match=r"outgoing_tls.ca_file: cannot load"):
        tls.build_client_context(
            tls.OutgoingTLS(ca_file=pki.server_key),  # not a CA file
            error=ConfigError,
        )
    with pytest.raises(ConfigError, match=r"outgoing_tls.ca_file: cannot load"):
        tls.build_requests_session(tls.OutgoingTLS(ca_file=missing), error=ConfigError)


def test_half_a_pair_is_refused_at_load(tmp_path, pki):
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        write_config(tmp_path, f"tls:\n  cert_file: {pki.server_cert}\n")
    with pytest.raises(ConfigError, match="client_ca_file needs cert_file"):
        write_config(tmp_path, f"tls:\n  client_ca_file: {pki.ca}\n")
    with pytest.raises(ConfigError, match="client_cert_file and client_key_file go together"):
        write_config(tmp_path, f"outgoing_tls:\n  client_cert_file: {pki.client_cert}\n")


# --- outgoing ---------------------------------------------------------------------------


@pytest.fixture
async def https_peer(aiohttp_server, pki):
    """An HTTPS Alertmanager and Prometheus (one app) with a certificate of our CA."""
    posts = []

    async def alerts(request):
        posts.append(await request.json())
        return web.json_response({"status": "success"})

    async def query_range(request):
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {"metric": {}, "values": [[1_717_243_200 + 15 * i, "1"] for i in range(40)]}
                    ],
                },
            }
        )

    app = web.Application()
    app.router.add_post("/api/v2/alerts", alerts)
    app.router.add_get("/api/v1/query_range", query_range)
    ctx = tls.build_server_context(
        tls.ServerTLS(cert_file=pki.server_cert, key_file=pki.server_key), error=ConfigError
    )
    server = await aiohttp_server(app, ssl=ctx)
    server.posts = posts
    return server


async def deliver(url, outgoing, caplog):
    """Offer one alert to an AlertmanagerClient on a session built like the app's; True
    when it was delivered before the first retry."""
    registry = CollectorRegistry()
    retried = asyncio.Event()

    async def sleep(_):
        retried.set()
        await asyncio.Event().wait()  # hold: one attempt is what this test looks at

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls.build_client_context(outgoing, error=ConfigError))
    ) as session:
        client = AlertmanagerClient(
            session,
            url=url,
            cfg=AlertingConfig(),
            metrics=build_alert_metrics(registry),
            sleep=sleep,
        )
        client.offer(
            [
                {
                    "labels": {"alertname": "VigilAnomaly"},
                    "annotations": {},
                    "startsAt": "2024-06-01T12:00:00.000Z",
                }
            ],
            created=0.0,
        )
        task = asyncio.create_task(client.run())
        try:
            async with asyncio.timeout(WAIT_S):
                while client.n_pending and not retried.is_set():
                    client.delivered.clear()
                    _, waiting = await asyncio.wait(
                        [
                            asyncio.ensure_future(client.delivered.wait()),
                            asyncio.ensure_future(retried.wait()),
                        ],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for f in waiting:
                        f.cancel()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return client.n_pending == 0


async def test_alerts_go_to_an_https_alertmanager_signed_by_the_configured_ca(
    https_peer, pki, caplog
):
    url = str(https_peer.make_url("/"))
    assert await deliver(url, tls.OutgoingTLS(ca_file=pki.ca), caplog)
    assert len(https_peer.posts) == 1


async def test_without_the_ca_delivery_fails_and_the_log_says_which_setting(https_peer, caplog):
    url = str(https_peer.make_url("/"))
    with caplog.at_level(logging.WARNING, logger="detector.alerting.delivery"):
        assert not await deliver(url, tls.OutgoingTLS(), caplog)
    assert https_peer.posts == []
    assert "set outgoing_tls.ca_file" in caplog.text


async def test_insecure_skip_verify_trusts_any_certificate(https_peer, caplog):
    url = str(https_peer.make_url("/"))
    assert await deliver(url, tls.OutgoingTLS(insecure_skip_verify=True), caplog)


VERIFY = verdict.VerifyRequest.model_validate(
    {
        "queries": [{"name": "errors", "query": "sum(rate(errors_total[1m]))"}],
        "change_time": "2024-06-01T12:05:00Z",
        "baseline_s": 300,
        "observe_s": 300,
    }
)


async def test_prometheus_reads_check_the_configured_ca(https_peer, pki):
    url = str(https_peer.make_url("")).rstrip("/")
    good = await prometheus.run(
        VERIFY,
        prometheus_url=url,
        now_s=1_717_244_000.0,
        outgoing_tls=tls.OutgoingTLS(ca_file=pki.ca),
    )
    assert "outgoing_tls" not in json.dumps(good)
    bad = await prometheus.run(VERIFY, prometheus_url=url, now_s=1_717_244_000.0)
    text = json.dumps(bad)
    assert "CERTIFICATE_VERIFY_FAILED" in text and "set outgoing_tls.ca_file" in text
    assert bad["verdict"] != good["verdict"]


def test_the_app_verifies_peers_by_default():
    app = build_app(DetectorConfig())
    ctx = app[RUNTIME].client_ssl
    assert ctx is not None and ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    session = tls.build_requests_session(DetectorConfig().outgoing_tls, error=ConfigError)
    assert session.verify is True


def test_serve_hands_the_listener_context_to_run_app(tmp_path, pki, monkeypatch):
    """``vigil-detector serve`` with tls and client_ca_file: run_app gets an mTLS context,
    and the token from VIGIL_DETECTOR_TOKEN guards remote-write."""
    from detector import __main__ as cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(web, "run_app", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setenv("VIGIL_DETECTOR_TOKEN", "from-env")
    cfg = tmp_path / "detector.yaml"
    cfg.write_text(
        f"tls:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_ca_file: {pki.ca}\n"
    )
    assert cli.main(["serve", "--config", str(cfg), "--listen", "127.0.0.1:9"]) == 0
    ctx = seen["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode is ssl.CERT_REQUIRED
    from detector.app import RUNTIME

    assert seen["app"][RUNTIME].book.links.external_url.startswith("https://")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"tls:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n")
    assert cli.main(["serve", "--config", str(bad), "--listen", "127.0.0.1:9"]) == 2
