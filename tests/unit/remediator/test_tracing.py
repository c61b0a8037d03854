"""Traces of a run's path: the webhook, the run it started, each guard's verdict, each
action and the verification are one connected trace; the audit record and the run's API
name it; the run links to the detector's trace the alert carried."""

from __future__ import annotations

import shutil

from remediator.app import STATE, build_app
from remediator.audit.store import RunState
from remediator.config import RemediatorConfig
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import HERE, Clock, drained, notification, settle

DETECTOR_TRACE = "0af7651916cd43dd8448eb211c80319c"
DETECTOR_SPAN = "b7ad6b7169203331"


async def _start(aiohttp_client, tmp_path, tracer):
    book = tmp_path / "playbooks"
    book.mkdir()
    shutil.copy(HERE / "playbooks" / "silence-noisy-disk.yaml", book)
    fake, clock = FakeServices(), Clock()
    fake.query_results['up{instance="db-1:9100"} == 1'] = [{"value": [0, "1"]}]
    app = build_app(
        RemediatorConfig(),
        playbook_dirs=[book],
        state_dir=tmp_path,
        services=fake,
        clock=clock,
        sleep=clock.sleep,
        external_url="http://vigil:9421",
        tracer=tracer,
    )
    client = await aiohttp_client(app)
    st = app[STATE]
    await st.ready.wait()
    return client, st


async def test_a_run_is_one_trace_from_webhook_to_verification(aiohttp_client, tmp_path, spans):
    provider, exporter = spans
    client, st = await _start(aiohttp_client, tmp_path, provider.get_tracer("t"))
    note = notification()
    note["alerts"][0]["annotations"]["traceparent"] = f"00-{DETECTOR_TRACE}-{DETECTOR_SPAN}-01"
    assert (await client.post("/webhook", json=note)).status == 200
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    await drained(st)
    got = exporter.get_finished_spans()
    by_name = {s.name: s for s in got}
    webhook, the_run = by_name["webhook"], by_name["run"]
    trace_id = webhook.context.trace_id
    assert {s.context.trace_id for s in got} == {trace_id}
    assert the_run.parent.span_id == webhook.context.span_id
    guards = [s for s in got if s.name.startswith("guard ")]
    assert {s.name for s in guards} >= {
        "guard kill_switch",
        "guard cooldown",
        "guard circuit_breaker",
    }
    assert all(s.parent.span_id == the_run.context.span_id for s in guards)
    assert all(s.attributes["vigil.allow"] is True for s in guards)
    action = by_name["action alertmanager.silence"]
    assert action.parent.span_id == the_run.context.span_id
    assert action.attributes["vigil.outcome"] == "executed"
    verify = by_name["verify"]
    assert verify.attributes["vigil.ok"] is True
    assert the_run.attributes["vigil.playbook"] == "silence-noisy-disk"
    assert the_run.attributes["vigil.run_id"] == run.id
    # the link back to the detection that raised the alert
    [link] = the_run.links
    assert format(link.context.trace_id, "032x") == DETECTOR_TRACE
    assert format(link.context.span_id, "016x") == DETECTOR_SPAN
    # the audit record and the API name the run's trace
    assert run.trace_id == format(trace_id, "032x")
    doc = await (await client.get(f"/api/v1/runs/{run.id}")).json()
    assert doc["trace_id"] == run.trace_id


async def test_traces_off_records_no_trace_id(aiohttp_client, tmp_path):
    client, st = await _start(aiohttp_client, tmp_path, None)
    assert (await client.post("/webhook", json=notification())).status == 200
    [run] = await settle(st, lambda runs: runs and runs[0].state == RunState.SUCCEEDED)
    assert run.trace_id is None
