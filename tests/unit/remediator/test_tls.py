"""TLS for the remediator: HTTPS and mTLS on the listener (the context __main__ hands to
web.run_app), and every outgoing call (Alertmanager, Prometheus, http.request, the
detector) checked against outgoing_tls.ca_file. Tokens from the environment.

Certificates come from a throwaway CA made in the test (tests/tlsfiles.py)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from remediator.app import STATE, build_app
from remediator.config import RemediatorConfig, Tokens, load_config, read_tokens
from remediator.errors import ActionError, ConfigError
from remediator.services import LiveServices
from servicekit import tls
from tests.tlsfiles import make_pki
from tests.unit.remediator.fakes import FakeServices

WAIT_S = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_ctx(pki, *, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


async def post_webhook(url, ctx, token):
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            ssl=ctx,
            json={
                "version": "4",
                "receiver": "vigil",
                "status": "firing",
                "alerts": [],
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "http://am",
                "groupKey": "{}:{}",
                "truncatedAlerts": 0,
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=WAIT_S),
        ) as resp,
    ):
        return resp.status


async def test_mtls_webhook_needs_a_certificate_from_the_ca_and_the_token(
    aiohttp_server, tmp_path, pki
):
    cfg_path = tmp_path / "remediator.yaml"
    cfg_path.write_text(
        f"tls:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_ca_file: {pki.ca}\n"
    )
    cfg = load_config(cfg_path)
    (tmp_path / "playbooks").mkdir()
    app = build_app(
        cfg,
        playbook_dirs=[tmp_path / "playbooks"],
        state_dir=tmp_path,
        services=FakeServices(),
        token="s3cret",
    )
    server = await aiohttp_server(app, ssl=tls.build_server_context(cfg.tls, error=ConfigError))
    async with asyncio.timeout(WAIT_S):
        await app[STATE].ready.wait()
    url = str(server.make_url("/webhook"))
    assert url.startswith("https://")
    with pytest.raises(aiohttp.ClientError):
        await post_webhook(url, client_ctx(pki), "s3cret")  # no client certificate
    with pytest.raises(aiohttp.ClientError):
        await post_webhook(
            url, client_ctx(pki, cert=pki.other_client_cert, key=pki.other_client_key), "s3cret"
        )
    signed = client_ctx(pki, cert=pki.client_cert, key=pki.client_key)
    assert await post_webhook(url, signed, "wrong") == 401  # mTLS does not replace the token
    assert await post_webhook(url, signed, "s3cret") == 200


def test_a_mismatched_key_is_a_config_error(pki):
    with pytest.raises(ConfigError, match="the key must match the certificate"):
        tls.build_server_context(
            tls.ServerTLS(cert_file=pki.server_cert, key_file=pki.client_key), error=ConfigError
        )


@pytest.fixture
async def https_peer(aiohttp_server, pki):
    """Alertmanager, Prometheus and a plain HTTP endpoint on HTTPS with our CA's cert."""

    async def silences(request):
        return web.json_response([])

    async def query(request):
        return web.json_response(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]},
            }
        )

    app = web.Application()
    app.router.add_get("/api/v2/silences", silences)
    app.router.add_get("/api/v1/query", query)
    ctx = tls.build_server_context(
        tls.ServerTLS(cert_file=pki.server_cert, key_file=pki.server_key), error=ConfigError
    )
    return await aiohttp_server(app, ssl=ctx)


async def services_for(url, outgoing):
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls.build_client_context(outgoing, error=ConfigError))
    )
    return session, LiveServices(
        session,
        alertmanager_url=url,
        prometheus_url=url,
        secrets_dir=None,
        allowed_urls=(url,),
        timeout_s=WAIT_S,
        outgoing_tls=outgoing,
    )


async def test_every_outgoing_call_succeeds_with_the_configured_ca(https_peer, pki):
    url = str(https_peer.make_url("")).rstrip("/")
    session, services = await services_for(url, tls.OutgoingTLS(ca_file=pki.ca))
    async with session:
        assert await services.alertmanager("GET", "/api/v2/silences") == (200, [])
        assert await services.prometheus_query("up") == [{"metric": {}, "value": [1, "1"]}]
        status, _ = await services.http(
            "GET", url + "/api/v2/silences", headers={}, body=None, timeout_s=WAIT_S
        )
        assert status == 200


async def test_without_the_ca_every_outgoing_call_fails_naming_the_setting(https_peer):
    url = str(https_peer.make_url("")).rstrip("/")
    session, services = await services_for(url, tls.OutgoingTLS())
    async with session:
        for call in (
            services.alertmanager("GET", "/api/v2/silences"),
            services.prometheus_query("up"),
            services.http("GET", url + "/", headers={}, body=None, timeout_s=WAIT_S),
        ):
            with pytest.raises(ActionError, match=r"set outgoing_tls\.ca_file"):
                await call


def test_tokens_from_the_environment_win_over_files_and_are_never_printed(tmp_path):
    (tmp_path / "webhook").write_text("from-file\n")
    cfg = RemediatorConfig.model_validate({"auth": {"bearer_token_file": tmp_path / "webhook"}})
    assert read_tokens(cfg, {}) == Tokens(webhook="from-file", admin=None)
    tokens = read_tokens(
        cfg,
        {
            "VIGIL_REMEDIATOR_WEBHOOK_TOKEN": "env-hook",
            "VIGIL_REMEDIATOR_ADMIN_TOKEN": " env-admin ",
        },
    )
    assert (tokens.webhook, tokens.admin) == ("env-hook", "env-admin")
    assert "env-" not in repr(tokens) and "env-" not in str(tokens)
    missing = RemediatorConfig.model_validate({"auth": {"admin_token_file": tmp_path / "no"}})
    with pytest.raises(ConfigError, match=r"auth\.admin_token_file: cannot read"):
        read_tokens(missing, {})
    assert read_tokens(missing, {"VIGIL_REMEDIATOR_ADMIN_TOKEN": "x"}).admin == "x"


def test_serve_hands_the_listener_context_to_run_app(tmp_path, pki, monkeypatch, capsys):
    from remediator import __main__ as cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(web, "run_app", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setenv("VIGIL_REMEDIATOR_ADMIN_TOKEN", "adm-from-env")
    (tmp_path / "playbooks").mkdir()
    cfg = tmp_path / "remediator.yaml"
    cfg.write_text(
        f"tls:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_ca_file: {pki.ca}\noutgoing_tls:\n  ca_file: {pki.ca}\n"
    )
    argv = [
        "serve",
        "--config",
        str(cfg),
        "--listen",
        "127.0.0.1:9",
        "--playbooks",
        str(tmp_path / "playbooks"),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    assert cli.main(argv) == 0
    ctx = seen["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode is ssl.CERT_REQUIRED
    st = seen["app"][STATE]
    assert st.admin_token == "adm-from-env" and st.external_url.startswith("https://")
    cfg.write_text(f"outgoing_tls:\n  ca_file: {pki.server_key}\n")  # not a CA bundle
    assert cli.main(argv) == 2
    assert "outgoing_tls.ca_file: cannot load the CA bundle" in capsys.readouterr().err
