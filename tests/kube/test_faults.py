"""Kubernetes API faults injected in the double, through the whole remediator: 5xx and
read timeouts are retried a bounded number of times with doubling delays; a write that
times out is not repeated (it may have been applied); a persistent 409 gives up after a
few fresh reads; repeated failures trip the playbook's circuit breaker. Each run's audit
record says what happened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remediator.app import STATE, build_app
from remediator.audit.store import RunState
from remediator.cluster.kube import Kube
from remediator.config import RemediatorConfig
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import Clock, notification, settle

pytestmark = pytest.mark.kube
NS = "shop"
KUBE_TIMEOUT_S = 0.2  # the client's per-call timeout in these tests
VERIFY = "backlog < 100"

PLAYBOOK = """
apiVersion: vigil/v1
kind: Playbook
metadata: {name: scale-up}
spec:
  match: {labels: {alertname: QueueBacklog}}
  mode: auto
  guards: {respect_silences: false, circuit_breaker: {failures: 2, window_s: 3600}}
  steps:
    - name: scale
      action: kubernetes.scale
      params: {namespace: '{{ target.namespace }}', name: '{{ target.name }}', delta: 2,
               max_replicas: 6}
  verify:
    - {query: 'backlog < 100', within_s: 30, interval_s: 10}
"""


class RecordingClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await super().sleep(seconds)


async def _start(aiohttp_client, tmp_path: Path, kube_double):
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "scale-up.yaml").write_text(PLAYBOOK)
    fake, clock = FakeServices(), RecordingClock()
    fake.query_results[VERIFY] = [{"value": [0, "1"]}]

    async def kube() -> Kube:
        return Kube(await kube_double.api_client(), timeout_s=KUBE_TIMEOUT_S)

    app = build_app(
        RemediatorConfig(),
        playbook_dirs=[book],
        state_dir=tmp_path / "state",
        services=fake,
        clock=clock,
        sleep=clock.sleep,
        kube=kube,
        external_url="http://vigil",
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st, fake, clock


async def _events(client, run_id):
    return (await (await client.get(f"/api/v1/runs/{run_id}")).json())["events"]


def _scale_patches(d, name="worker"):
    return [
        r for r in d.requests if r.subresource == "scale" and r.verb == "patch" and r.name == name
    ]


async def _no_answer_held(d):
    """Wait (bounded) until the double has released every answer it was told to hold."""
    async with asyncio.timeout(5):
        await d.none_held.wait()


async def test_5xx_is_retried_with_doubling_delays_then_the_step_acts(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    d.inject_error(
        503, "ServiceUnavailable", "etcd leader changed", verb="patch", subresource="scale", times=2
    )
    client, st, _fake, clock = await _start(aiohttp_client, tmp_path, kube_double)
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 5
    assert len(_scale_patches(d)) == 3
    assert clock.delays[:2] == [2.0, 4.0]  # 5xx: 2 s, doubling
    events = await _events(client, run.id)
    answers = [(e["verdict"], e["detail"]) for e in events if e["kind"] == "action_response"]
    assert [v for v, _ in answers] == ["failed", "failed", "executed"]
    assert "HTTP 503" in answers[0][1]["error"] and answers[0][1]["temporary"] is True
    attempts = [e["detail"]["attempt"] for e in events if e["kind"] == "action_request"]
    assert attempts == [0, 1, 2]


async def test_5xx_past_the_retries_fails_the_run_and_changes_nothing(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    d.inject_error(
        500,
        "InternalError",
        "etcdserver: request timed out",
        verb="patch",
        subresource="scale",
        times=100,
    )
    client, st, fake, clock = await _start(aiohttp_client, tmp_path, kube_double)
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.FAILED)
    assert len(_scale_patches(d)) == 3  # the first try and retries: 2
    assert clock.delays == [2.0, 4.0]
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3
    assert run.outcome.startswith("step scale: ") and "HTTP 500" in run.outcome
    events = await _events(client, run.id)
    assert any(e["kind"] == "note" and e["name"] == "step_failed" for e in events)
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert escalation[0]["labels"]["alertname"] == "VigilRemediationFailed"
    assert not any(e["kind"] == "verify" for e in events)


async def test_a_read_that_times_out_is_retried(aiohttp_client, tmp_path, kube_double):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    d.inject_delay(KUBE_TIMEOUT_S * 5, verb="get", subresource="scale", times=1)
    client, st, _fake, clock = await _start(aiohttp_client, tmp_path, kube_double)
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    events = await _events(client, run.id)
    answers = [(e["verdict"], e["detail"]) for e in events if e["kind"] == "action_response"]
    assert [v for v, _ in answers] == ["failed", "executed"]
    assert (
        f"no answer from the Kubernetes API within {KUBE_TIMEOUT_S:g} s" in answers[0][1]["error"]
    )
    assert clock.delays[0] == 1.0
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 5
    await _no_answer_held(d)


async def test_a_write_that_times_out_is_not_repeated(aiohttp_client, tmp_path, kube_double):
    """The API server applied the patch but answered too late: repeating ``delta: 2`` would
    scale twice. The run fails, says the change may have been applied, and escalates."""
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    d.inject_delay(KUBE_TIMEOUT_S * 5, verb="patch", subresource="scale", times=1)
    client, st, fake, clock = await _start(aiohttp_client, tmp_path, kube_double)
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.FAILED)
    assert len(_scale_patches(d)) == 1
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 5  # once, not 7
    assert "may or may not have been applied" in run.outcome
    assert clock.delays == []
    [escalation] = [b for b in fake.bodies if isinstance(b, list)]
    assert "may or may not have been applied" in escalation[0]["annotations"]["summary"]
    await _no_answer_held(d)


async def test_a_conflict_that_persists_gives_up_after_a_few_fresh_reads(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    pod = d.seed_deployment("worker", NS, replicas=3).pods[0]["metadata"]["name"]
    d.inject_error(
        409,
        "Conflict",
        "the object has been modified; please apply your "
        "changes to the latest version and try again",
        verb="patch",
        subresource="scale",
        times=100,
    )
    client, st, _fake, clock = await _start(aiohttp_client, tmp_path, kube_double)
    await client.post("/webhook", json=notification("QueueBacklog", namespace=NS, pod=pod))
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.FAILED)
    reads = [r for r in d.requests if r.subresource == "scale" and r.verb == "get"]
    assert len(_scale_patches(d)) == len(reads) == 3  # each try reads afresh
    assert clock.delays == []  # a conflict is not a temporary fault for the runner
    assert "HTTP 409 Conflict" in run.outcome
    assert d.get("Deployment", NS, "worker")["spec"]["replicas"] == 3


async def test_repeated_api_failures_trip_the_circuit_breaker(
    aiohttp_client, tmp_path, kube_double
):
    d = kube_double.double
    d.seed_namespace(NS)
    pods = {
        name: d.seed_deployment(name, NS, replicas=3).pods[0]["metadata"]["name"]
        for name in ("w-a", "w-b", "w-c")
    }
    d.inject_error(
        503,
        "ServiceUnavailable",
        "apiserver overloaded",
        verb="patch",
        subresource="scale",
        times=100,
    )
    client, st, _fake, _clock = await _start(aiohttp_client, tmp_path, kube_double)
    for i, name in enumerate(("w-a", "w-b")):
        await client.post(
            "/webhook",
            json=notification("QueueBacklog", fingerprint=f"f{i}", namespace=NS, pod=pods[name]),
        )
        await settle(st, lambda runs, n=i + 1: len(runs) == n and runs[0].state == RunState.FAILED)
    runs = await st.audit.run(lambda db: db.list_runs())
    tripping = await _events(client, runs[0].id)
    [note] = [e for e in tripping if e["kind"] == "note" and e["name"] == "circuit_breaker"]
    assert note["verdict"] == "tripped" and note["detail"]["failures"] == 2
    await client.post(
        "/webhook",
        json=notification("QueueBacklog", fingerprint="f2", namespace=NS, pod=pods["w-c"]),
    )
    runs = await settle(st, lambda runs: len(runs) == 3 and runs[0].state == RunState.SHADOW)
    assert "circuit breaker" in runs[0].outcome
    assert _scale_patches(d, "w-c") == []  # nothing was sent for the third
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_circuit_breaker_trips_total{playbook="scale-up"} 1.0' in metrics
