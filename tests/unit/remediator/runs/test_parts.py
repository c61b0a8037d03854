"""The parts of remediator.runs on their own: retries, undo planning, silence matching
and the target a run is named after, without the app around them."""

from __future__ import annotations

import logging

import pydantic

from remediator import silences
from remediator.actions.registry import ActionContext, Executed, Failed, Outcome
from remediator.audit.store import EventKind
from remediator.cluster.targets import target_of
from remediator.errors import ActionTemporaryError
from remediator.runs.execution import MAX_RETRY_DELAY_S, attempts
from remediator.runs.plan import PlannedStep
from tests.unit.remediator.fakes import FakeServices


class _Params(pydantic.BaseModel, frozen=True):
    n: int = 1


def _step(retries: int) -> PlannedStep:
    return PlannedStep("restart", "http.request", _Params(), {"n": 1}, retries, 5.0)


def _ctx() -> ActionContext:
    return ActionContext(
        run_id="r1",
        run_url="http://vigil/api/v1/runs/r1",
        dry_run=False,
        services=FakeServices(),
        alert=None,
        log=logging.LoggerAdapter(logging.getLogger("test"), {}),
    )


async def _attempt(step: PlannedStep, fails: int, delay_s: float):
    calls, slept, recorded = [], [], []

    async def func(ctx: ActionContext, params: pydantic.BaseModel) -> Outcome:
        calls.append(params)
        if len(calls) <= fails:
            raise ActionTemporaryError("busy", delay_s=delay_s)
        return Executed({"ok": True})

    async def record(kind, detail, verdict):
        recorded.append((kind, verdict))

    async def sleep(s: float) -> None:
        slept.append(s)

    outcome = await attempts(
        step, func, _ctx(), record=record, observe=lambda kind, s: None, sleep=sleep
    )
    return outcome, calls, slept, recorded


async def test_a_temporary_failure_is_retried_with_doubling_backoff():
    outcome, calls, slept, recorded = await _attempt(_step(retries=3), fails=3, delay_s=1.0)
    assert outcome == Executed({"ok": True})
    assert len(calls) == 4
    assert slept == [1.0, 2.0, 4.0]
    assert [k for k, _ in recorded] == [EventKind.ACTION_REQUEST, EventKind.ACTION_RESPONSE] * 4
    assert recorded[-1] == (EventKind.ACTION_RESPONSE, "executed")


async def test_retries_stop_at_the_step_limit_and_the_delay_at_its_cap():
    outcome, calls, slept, _ = await _attempt(_step(retries=2), fails=5, delay_s=20.0)
    assert outcome == Failed("busy", temporary=True, delay_s=20.0)
    assert len(calls) == 3
    assert slept == [20.0, MAX_RETRY_DELAY_S]


def test_only_active_silences_whose_matchers_all_hold_mute():
    labels = {"alertname": "HighLatency", "instance": "db-1:9100"}
    doc = [
        {
            "id": "a",
            "status": {"state": "active"},
            "matchers": [{"name": "instance", "value": "db-.*", "isRegex": True}],
        },
        {"id": "b", "status": {"state": "expired"}, "matchers": []},
        {
            "id": "c",
            "status": {"state": "active"},
            "matchers": [{"name": "instance", "value": "web-1", "isRegex": False}],
        },
        {
            "id": "d",
            "status": {"state": "active"},
            "matchers": [{"name": "instance", "value": "(?P<x", "isRegex": True}],
        },  # Python cannot tell
    ]
    assert silences.muting(doc, labels) == ("a", "d")
    assert silences.muting({"error": "not a list"}, labels) == ()


def test_a_run_is_named_after_the_most_specific_label():
    assert target_of({"namespace": "shop", "pod": "web-1", "node": "n1"}) == "shop/pod/web-1"
    assert target_of({"deployment": "web"}) == "-/deployment/web"
    assert target_of({"node": "n1", "instance": "10.0.0.1:9100"}) == "node/n1"
    assert target_of({"instance": "10.0.0.1:9100"}) == "instance/10.0.0.1:9100"
    assert target_of({"alertname": "X"}) is None
