"""Red-team regressions: hostile payloads the fixes of issue 21 did not try, each seen
refused or kept inside its context.

1. ``$selector`` assembled from two labels (``$sel`` + ``ector``) in a vigil.verify query:
   the detector replaces it by plain text substitution, inside the string literal.
2. A label in ``label_replace``'s regex argument (``.*`` broadens it) or its replacement
   (``$1`` expands a capture group): strings PromQL reads as a regex or a template.
3. Dot segments the allow-list did not see but a server does: ``..;`` (a path parameter),
   ``..%2F`` / ``..%5C`` (a server decoding separators), ``%252e%252e`` (decoded twice).
4. A redirect from an allowed endpoint: the client followed it off the allow-list, secret
   header included.
5. A dry run interrupted by a restart, its playbook live by then: recovery paged on-call.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from remediator.actions.basic import http_request
from remediator.actions.registry import Failed
from remediator.audit.store import AuditLog, RunState
from remediator.catalog import templating, urls
from remediator.catalog.templating import Context, render_as
from remediator.errors import TemplateError
from remediator.services import LiveServices
from tests.unit.remediator.test_app import notification, start
from tests.unit.remediator.test_injection import context


def scope(**labels: str) -> dict[str, dict[str, str]]:
    return {"labels": labels}


# --- 1. $selector from two labels --------------------------------------------------------
def test_a_selector_variable_assembled_from_two_labels_is_refused() -> None:
    template = 'rate(x{pod="{{ labels.a }}{{ labels.b }}", $selector}[5m])'
    with pytest.raises(TemplateError, match=r"\$selector"):
        render_as(template, scope(a="$sel", b="ector"), Context.VIGIL_QUERY)
    query = render_as(template, scope(a="$sel", b="ect"), Context.VIGIL_QUERY)
    assert query == 'rate(x{pod="$select", $selector}[5m])'


def test_a_selector_variable_completed_by_the_template_is_refused() -> None:
    with pytest.raises(TemplateError):
        render_as(
            'rate(x{pod="${{ labels.a }}", $selector}[5m])',
            scope(a="selector"),
            Context.VIGIL_QUERY,
        )


# --- 2. label_replace's regex and replacement ---------------------------------------------
def test_a_label_in_label_replace_regex_matches_only_itself() -> None:
    query = render_as(
        'label_replace(up, "dst", "$1", "pod", "{{ labels.pod }}")', scope(pod=".*"), Context.PROMQL
    )
    assert query == 'label_replace(up, "dst", "$1", "pod", "\\\\.\\\\*")'


def test_a_label_in_label_replace_replacement_expands_nothing() -> None:
    query = render_as(
        'label_replace(up, "dst", "{{ labels.pod }}", "pod", "(.*)")',
        scope(pod="$1${1}"),
        Context.PROMQL,
    )
    assert query == 'label_replace(up, "dst", "$$1$${1}", "pod", "(.*)")'


# --- 3. dot segments a server sees -------------------------------------------------------
@pytest.mark.parametrize(
    "tail",
    [
        "/hook/..;/admin",
        "/hook/..;x/admin",
        "/hook/..%2f..%2fadmin",
        "/hook/x%2F..%2F..%2Fadmin",
        "/hook/..%5cadmin",
        "/hook/%252e%252e/admin",
        "/hook/%2e%2e%2fadmin",
        "/hook/.%3B/../../admin",
    ],
)
def test_a_hidden_dot_segment_is_not_allowed(tail: str) -> None:
    assert not urls.allowed("https://h.example" + tail, ["https://h.example/hook/"])


@pytest.mark.parametrize(
    "tail", ["/hook/x", "/hook/a/../b", "/hook/...", "/hook/a;b", "/hook/a%2Fb"]
)
def test_plain_paths_stay_allowed(tail: str) -> None:
    assert urls.allowed("https://h.example" + tail, ["https://h.example/hook/"])


# --- 4. redirects -----------------------------------------------------------------------
@pytest.fixture
async def redirecting(aiohttp_server, tmp_path):
    """An allowed /hook/ that redirects to /admin, which records what reaches it."""
    seen: list[tuple[str, str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/admin/delete")

    async def admin(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("X-Api-Key")))
        return web.Response(text="deleted")

    app = web.Application()
    app.router.add_route("*", "/hook/{tail:.*}", hook)
    app.router.add_route("*", "/admin/{tail:.*}", admin)
    server = await aiohttp_server(app)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text("k3y-s3cret")
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        services = LiveServices(
            session,
            alertmanager_url=None,
            prometheus_url=None,
            secrets_dir=secrets,
            allowed_urls=(f"{base}/hook/",),
        )
        yield base, services, seen


async def test_a_redirect_off_the_allow_list_is_not_followed(redirecting) -> None:
    base, services, seen = redirecting
    from tests.unit.remediator.test_injection import REGISTRY

    spec = REGISTRY.get("http.request")
    assert spec is not None
    params = spec.params.model_validate(
        {
            "method": "POST",
            "url": base + "/hook/x",
            "headers": {"X-Api-Key": {"secret": "key"}},
            "json": {"a": 1},
        }
    )
    outcome = await http_request(context(services), params)
    assert isinstance(outcome, Failed) and "HTTP 307" in outcome.error
    assert seen == []


# --- 5. a dry run interrupted by a restart ------------------------------------------------
async def test_an_interrupted_dry_run_pages_nobody_after_its_playbook_went_live(
    aiohttp_client, tmp_path
) -> None:
    """The run was a dry run (its playbook in dryRun then); the playbook is ``auto`` by the
    restart. Recovery records what it would have escalated, and sends nothing."""
    with AuditLog.open(tmp_path / "audit.db") as db:
        alert = notification()["alerts"][0]
        run = db.create_run(
            playbook="silence-noisy-disk",
            fingerprint="f1",
            starts_at=alert["startsAt"],
            alertname="DiskFlapping",
            alert=alert,
            mode="dryRun",
            notification_id=None,
            target="x",
            now_ms=1,
        )
        assert run is not None
        db.set_state(run.id, RunState.RUNNING, now_ms=2)
    _client, st, fake, _clock = await start(aiohttp_client, tmp_path)
    [after] = await st.audit.run(lambda db: db.list_runs())
    assert after.state == RunState.INTERRUPTED
    assert fake.count("alertmanager", "POST", "/api/v2/alerts") == 0


@pytest.mark.parametrize(
    "context, template",
    [
        (templating.Context.PROMQL, 'up{pod="{{ labels.pod }}"} == 0'),
        (templating.Context.PROMQL_SELECTOR, 'pod="{{ labels.pod }}"'),
        (templating.Context.MATCHER, 'pod="{{ labels.pod }}"'),
    ],
)
def test_an_empty_label_value_is_refused_where_it_would_match_everything(context, template):
    """Prometheus never sends an empty label, but whoever posts to Alertmanager can:
    `pod=""` would select every series (or silence every alert) without a pod label."""
    scope = {"labels": {"pod": ""}}
    with pytest.raises(TemplateError, match="empty"):
        templating.render_as(template, scope, context)
    assert "web-1" in templating.render_as(template, {"labels": {"pod": "web-1"}}, context)


def test_a_short_secret_does_not_eat_into_another_secrets_mask():
    from remediator.redaction import Redactor

    r = Redactor()
    r.register("webhook-url", "https://hooks.example.com/services/T111/B111/SLACKSECRET")
    r.register("pin", "ret")  # a (too) short secret that occurs inside "<secret ...>"
    r.register("numbers", "20261207")
    out = r.text(
        "POST https://hooks.example.com/services/T111/B111/SLACKSECRET failed; ret; 20261207"
    )
    assert out == "POST <secret webhook-url> failed; <secret pin>; <secret numbers>"
