"""Regressions of issue 21: hostile alert labels reproduced against the remediator, each
seen refused or kept inside its context.

1. URL traversal: a service label of ``../../../admin/users/delete?all=true&x=`` (or
   ``%2e%2e/``) made the hook endpoint receive ``GET /admin/users/delete`` with the secret
   Authorization header; a prefix without a trailing slash let the host change.
2. PromQL injection: ``instance='x"} == 1 or vector(1) or up{a="'`` turned a
   pre-condition and the verification into always-true queries; the run "succeeded".
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import promql_parser
import pytest
from aiohttp import web

from remediator.actions.basic import http_request, notify
from remediator.actions.registry import ActionContext, Executed, Failed
from remediator.app import build_registry
from remediator.audit.store import RunState
from remediator.catalog.loader import load_catalog
from remediator.catalog.playbook import Step
from remediator.config import RemediatorConfig
from remediator.errors import TemplateError
from remediator.runs.plan import build_plan
from remediator.services import LiveServices
from remediator.simulate import simulate
from remediator.webhook import alert_from_json
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import notification, settle, start

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = build_registry()
INJECT = 'x"} == 1 or vector(1) or up{a="'


def alert(**labels: str) -> Any:
    return alert_from_json(
        {
            "status": "firing",
            "labels": labels,
            "annotations": {},
            "startsAt": "2026-11-27T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph",
            "fingerprint": "f1",
        }
    )


def injected(query: str) -> bool:
    """Whether a query is one an injection changed: it calls vector() somewhere."""
    calls: list[str] = []

    def visit(e: object) -> None:
        if isinstance(e, promql_parser.Call):
            calls.append(e.func.name)

    promql_parser.walk(promql_parser.parse(query), visit)
    return "vector" in calls


class InjectablePrometheus(FakeServices):
    """Answers a sample only to a query whose structure an injection changed (as the
    real Prometheus answers ``... or vector(1)``); a selector for an instance that does
    not exist selects nothing."""

    async def prometheus_query(self, query: str) -> list[dict[str, Any]]:
        self.calls.append(("prometheus", query))
        return [{"value": [0, "1"]}] if injected(query) else []


PLAYBOOK = """\
apiVersion: vigil/v1
kind: Playbook
metadata: {name: guarded-silence}
spec:
  match: {labels: {alertname: DiskFlapping}}
  mode: auto
  guards:
    preconditions: %(pre)s
  steps:
    - name: silence
      action: alertmanager.silence
      params: {matchers: ['instance="{{ labels.instance }}"']}
  verify:
    - query: '%(verify)s'
      within_s: 30
      description: the instance reports again
"""
PRE = 'up{instance="{{ labels.instance }}"} == 1'


def playbook_dir(
    tmp_path: Path,
    *,
    pre: str | None = PRE,
    verify: str = 'up{instance="{{ labels.instance }}"} == 1',
) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    pres = "[]" if pre is None else f"[{{query: '{pre}', description: the instance is up}}]"
    path = folder / "guarded-silence.yaml"
    path.write_text(PLAYBOOK % {"pre": pres, "verify": verify})
    return path


# --- 2. PromQL injection --------------------------------------------------------------
async def test_an_injected_precondition_stays_a_label_value_and_the_run_is_refused(
    aiohttp_client, tmp_path
):
    book = playbook_dir(tmp_path)
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, services=InjectablePrometheus(), playbooks=[book]
    )
    await client.post("/webhook", json=notification(instance=INJECT))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    queries = [c[1] for c in fake.calls if c[0] == "prometheus"]
    assert queries == ['up{instance="x\\"} == 1 or vector(1) or up{a=\\""} == 1']
    assert not any(injected(q) for q in queries)
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    assert run.outcome == "precondition: the instance is up: 0 series"


async def test_an_injected_verification_no_longer_succeeds(aiohttp_client, tmp_path):
    """Issue 21 ended "succeeded (verified)": now the verification asks exactly about the
    hostile instance, which does not report, and the run is undone and escalated."""
    book = playbook_dir(tmp_path, pre=None)
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, services=InjectablePrometheus(), playbooks=[book]
    )
    await client.post("/webhook", json=notification(instance=INJECT))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    assert run.outcome.startswith("verification failed: the instance reports again did not")
    queries = {c[1] for c in fake.calls if c[0] == "prometheus"}
    assert queries == {'up{instance="x\\"} == 1 or vector(1) or up{a=\\""} == 1'}


async def test_a_precondition_that_cannot_be_rendered_refuses_its_guard(aiohttp_client, tmp_path):
    book = playbook_dir(tmp_path, pre="up{instance=`{{ labels.instance }}`} == 1")
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, services=InjectablePrometheus(), playbooks=[book]
    )
    await client.post("/webhook", json=notification(instance="x`} or vector(1) or up{a=`"))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert run.outcome.startswith("precondition: the instance is up: refused: ")
    assert "backtick" in run.outcome
    assert fake.count("prometheus") == 0
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]  # a hostile alert pages
    assert "cannot be written safely" in escalation[0]["annotations"]["summary"]


async def test_a_verification_that_cannot_be_rendered_stops_the_run_before_it_acts(
    aiohttp_client, tmp_path
):
    book = playbook_dir(tmp_path, pre=None, verify="up{instance=`{{ labels.instance }}`} == 1")
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, services=InjectablePrometheus(), playbooks=[book]
    )
    await client.post("/webhook", json=notification(instance="a`b"))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.REFUSED)
    assert "verification cannot be rendered" in run.outcome
    assert fake.count("alertmanager", "POST", "/api/v2/silences") == 0
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert "backtick" in escalation[0]["annotations"]["summary"]


def test_the_rollback_playbook_keeps_metric_name_inside_its_literals() -> None:
    catalog = load_catalog([ROOT / "playbooks" / "rollback-bad-rollout.yaml"], REGISTRY)
    [entry] = catalog.entries
    hostile = alert(
        alertname="VigilAnomaly",
        namespace="shop",
        metric_name='http_errors"} or vector(1) or x{a="',
    )
    [confirm] = build_plan(
        entry.playbook.spec.steps[:1], hostile, REGISTRY, run_id="r", run_url="http://v/r"
    )
    [query] = confirm.request["verify"]["queries"]
    expr = promql_parser.parse(query["query"])
    assert isinstance(expr, promql_parser.AggregateExpr)
    assert isinstance(expr.expr, promql_parser.VectorSelector)
    assert [(m.name, m.value) for m in expr.expr.matchers.matchers] == [
        ("__name__", 'http_errors"} or vector(1) or x{a="'),
        ("namespace", "shop"),
    ]


def test_simulate_renders_preconditions_as_a_run_does() -> None:
    """A pre-condition a label cannot be written into (here: a backtick string) shows as
    a refused guard in the simulation, as it would refuse the run."""
    catalog = load_catalog([ROOT / "playbooks"], REGISTRY)
    entry = catalog.by_name("crashloop-delete-pod")
    assert entry is not None
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": 'shop"} or vector(1) or x{a="',
        "pod": "web-1",
    }
    report = simulate(alert(**labels), catalog, REGISTRY, RemediatorConfig(), now_ms=0)
    [match] = [m for m in report["matches"] if m["playbook"] == "crashloop-delete-pod"]
    [pre] = match["rendered_preconditions"]
    assert not injected(pre)
    assert match["decision"]["act"] is False
    pb = entry.playbook
    query = pb.spec.guards.preconditions[0].query.replace(
        '"{{ labels.namespace }}"', "`{{ labels.namespace }}`"
    )
    risky = pb.model_copy(
        update={
            "spec": pb.spec.model_copy(
                update={
                    "guards": pb.spec.guards.model_copy(
                        update={
                            "preconditions": (
                                pb.spec.guards.preconditions[0].model_copy(update={"query": query}),
                            )
                        }
                    )
                }
            )
        }
    )
    patched = type(catalog)((type(entry)(risky, entry.path, entry.matchers),))
    labels["namespace"] = "shop`} or vector(1) or x{a=`"
    [match] = simulate(alert(**labels), patched, REGISTRY, RemediatorConfig(), now_ms=0)["matches"]
    [verdict] = [g for g in match["guards"] if g["guard"] == "precondition"]
    assert verdict["allow"] is False and "backtick" in verdict["reason"]


def test_simulate_refuses_a_namespace_that_is_not_a_kubernetes_name() -> None:
    """The probe: simulate called the crash-loop playbook's namespace guard "allowed" for
    an injected namespace. It is refused before any guard, as a run refuses it at intake."""
    catalog = load_catalog([ROOT / "playbooks"], REGISTRY)
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": 'shop"} or vector(1) or x{a="',
        "pod": "web-1",
    }
    report = simulate(alert(**labels), catalog, REGISTRY, RemediatorConfig(), now_ms=0)
    [match] = [m for m in report["matches"] if m["playbook"] == "crashloop-delete-pod"]
    first = match["guards"][0]
    assert first["guard"] == "target_labels" and first["allow"] is False
    assert "namespace" in first["reason"] and "Kubernetes name" in first["reason"]
    assert match["decision"]["act"] is False
    assert match["decision"]["reason"].startswith("target_labels: ")


# --- 1. URL traversal -------------------------------------------------------------------
@pytest.fixture
async def hook(aiohttp_server, tmp_path):
    """An HTTP endpoint that records what reaches it, and live services allowed to call
    only its /hook/ prefix with a secret Authorization header."""
    seen: list[tuple[str, str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path, request.headers.get("Authorization")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hook-token").write_text("Bearer s3cret")
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


def step(base: str) -> Step:
    return Step(
        name="status",
        action="http.request",
        params={
            "method": "GET",
            "url": base + "/hook/services/{{ labels.service }}/status",
            "headers": {"Authorization": {"secret": "hook-token"}},
        },
    )


def context(services: LiveServices) -> ActionContext:
    return ActionContext(
        run_id="r",
        run_url="http://v/r",
        dry_run=False,
        services=services,
        alert=None,
        log=logging.LoggerAdapter(logging.getLogger("test")),
    )


@pytest.mark.parametrize(
    "service",
    [
        "../../../admin/users/delete?all=true&x=",
        "%2e%2e/%2e%2e/%2e%2e/admin/users/delete?all=true&x=",
        "..",
        "%2E%2E",
        "..%2F..%2Fadmin",
        "x#frag",
    ],
)
async def test_a_traversing_service_label_is_refused_and_nothing_is_sent(hook, service):
    base, _services, seen = hook
    with pytest.raises(TemplateError, match=r"params\.url: "):
        build_plan(
            (step(base),), alert(service=service), REGISTRY, run_id="r", run_url="http://v/r"
        )
    assert seen == []


async def test_a_benign_service_label_reaches_its_own_path_with_the_header(hook):
    base, services, seen = hook
    [planned] = build_plan(
        (step(base),), alert(service="web api/v2"), REGISTRY, run_id="r", run_url="http://v/r"
    )
    outcome = await http_request(context(services), planned.params)
    assert isinstance(outcome, Executed)
    assert seen == [("GET", "/hook/services/web%20api%2Fv2/status", "Bearer s3cret")]


async def test_the_answer_of_a_request_is_kept_as_length_and_hash_only(hook):
    """Finding 1's second half: the first 1,000 characters of the answer were stored on the
    run, readable by anyone at GET /api/v1/runs/{id}. Now only its size and SHA-256 are."""
    base, services, _seen = hook
    [planned] = build_plan(
        (step(base),), alert(service="web"), REGISTRY, run_id="r", run_url="http://v/r"
    )
    outcome = await http_request(context(services), planned.params)
    assert isinstance(outcome, Executed)
    assert outcome.detail == {
        "status": 200,
        "response_bytes": 2,
        "response_sha256": hashlib.sha256(b"ok").hexdigest(),
    }


@pytest.mark.parametrize(
    "tail",
    [
        "/hook/../admin/users/delete?all=true",
        "/hook/%2e%2e/admin/users/delete?all=true",
        "/hook/services/%2E%2e/%2e%2e/admin",
        "/hooked",
        "/admin",
    ],
)
async def test_the_allow_list_resolves_dot_segments_before_it_compares(hook, tail):
    base, services, seen = hook
    planned = REGISTRY.get("http.request")
    assert planned is not None
    params = planned.params.model_validate(
        {
            "method": "GET",
            "url": base + tail,
            "headers": {"Authorization": {"secret": "hook-token"}},
        }
    )
    outcome = await http_request(context(services), params)
    assert isinstance(outcome, Failed) and "not in http.allowed_urls" in outcome.error
    assert seen == []


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com.evil.net/x", "https://hooks.example.com@evil.net/x"]
)
async def test_a_prefix_without_a_trailing_slash_keeps_its_host(url):
    async with aiohttp.ClientSession() as session:
        services = LiveServices(
            session,
            alertmanager_url=None,
            prometheus_url=None,
            secrets_dir=None,
            allowed_urls=("https://hooks.example.com",),
        )
        assert not services.url_allowed(url)
        assert services.url_allowed("https://hooks.example.com/x")
        spec = REGISTRY.get("notify")
        assert spec is not None
        outcome = await notify(
            context(services), spec.params.model_validate({"url": url, "text": "hi"})
        )
        assert isinstance(outcome, Failed)


def test_check_reports_a_template_in_the_host_with_its_line(tmp_path) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "bad-url.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "vigil/v1",
                "kind": "Playbook",
                "metadata": {"name": "bad-url"},
                "spec": {
                    "match": {"labels": {"alertname": "X"}},
                    "steps": [
                        {
                            "name": "call",
                            "action": "http.request",
                            "params": {"url": "https://{{ labels.host }}/hook"},
                        }
                    ],
                    "verify": [{"query": 'up{a="{{ labels.a }}"'}],
                },
            },
            indent=1,
        )
    )
    catalog = load_catalog([folder], REGISTRY)
    path = folder / "bad-url.yaml"
    assert [p.split(": ", 2)[1] for p in catalog.problems] == [
        "spec.steps[0].params.url",
        "spec.verify[0].query",
    ]
    assert all(p.startswith(f"{path}:") for p in catalog.problems)
    assert "stands in the URL's host" in catalog.problems[0]
    assert "not valid PromQL" in catalog.problems[1]


async def test_a_query_may_name_the_run_it_belongs_to(aiohttp_client, tmp_path):
    """Queries are judged with the run's scope: `{{ run.id }}` is never empty there (an
    empty value is refused in a query, so judging without the run refused every run)."""
    book = playbook_dir(tmp_path, pre=None, verify='vigil_fixed{run="{{ run.id }}"} == 1')
    client, st, fake, _ = await start(
        aiohttp_client, tmp_path, services=InjectablePrometheus(), playbooks=[book]
    )
    await client.post("/webhook", json=notification(instance="web-1"))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)
    queries = {c[1] for c in fake.calls if c[0] == "prometheus"}
    assert queries == {f'vigil_fixed{{run="{run.id}"}} == 1'}
