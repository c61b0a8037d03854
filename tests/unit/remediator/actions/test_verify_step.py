"""The ``vigil.verify`` step: what it sends to the detector, and how the verdict decides
the step (``expect: pass`` after a change, ``expect: fail`` as a gate before an undo)."""

from __future__ import annotations

import logging

import pytest

from remediator.actions.basic import VerifyParams, vigil_verify
from remediator.actions.registry import ActionContext, Executed, Failed
from tests.unit.remediator.fakes import FakeServices


def ctx(fake: FakeServices) -> ActionContext:
    return ActionContext(
        run_id="r-1",
        run_url="http://vigil/r-1",
        dry_run=False,
        services=fake,
        alert=None,
        log=logging.LoggerAdapter(logging.getLogger("test")),
    )


def report(verdict: str) -> dict:
    return {
        "verdict": verdict,
        "mode": "before_after",
        "queries": [
            {
                "name": "errors",
                "verdict": verdict,
                "reasons": ["median 0.001 -> 0.08"],
                "p_value": 1e-9,
            }
        ],
    }


PARAMS = VerifyParams.model_validate(
    {
        "queries": [{"name": "errors", "query": 'max({__name__="errors"})'}],
        "change_time": "2026-11-27T10:00:00Z",
        "expect": "fail",
    }
)


async def test_the_step_posts_the_request_and_passes_on_the_expected_verdict():
    fake = FakeServices()
    fake.verdicts.append((200, report("fail")))
    outcome = await vigil_verify(ctx(fake), PARAMS)
    assert isinstance(outcome, Executed)
    assert outcome.detail["verdict"] == "fail"
    assert outcome.detail["queries"] == [
        {"name": "errors", "verdict": "fail", "reasons": ["median 0.001 -> 0.08"]}
    ]
    assert fake.calls == [("detector", "POST", "/api/v1/verify")]
    assert fake.bodies == [
        {
            "baseline_s": 1800.0,
            "observe_s": 900.0,
            "skip_s": 0.0,
            "step_s": 15.0,
            "change_time": "2026-11-27T10:00:00Z",
            "queries": [
                {"name": "errors", "query": 'max({__name__="errors"})', "direction": "up_is_bad"}
            ],
        }
    ]


@pytest.mark.parametrize("verdict", ["pass", "inconclusive"])
async def test_a_gate_that_is_not_confirmed_fails_the_step_with_the_reasons(verdict):
    fake = FakeServices()
    fake.verdicts.append((200, report(verdict)))
    outcome = await vigil_verify(ctx(fake), PARAMS)
    assert isinstance(outcome, Failed) and not outcome.temporary
    assert f"says {verdict}, the step expects fail" in outcome.error
    assert "errors: " + verdict in outcome.error


@pytest.mark.parametrize(("status", "temporary"), [(503, True), (400, False)])
async def test_a_detector_that_cannot_answer_fails_the_step(status, temporary):
    fake = FakeServices()
    fake.verdicts.append((status, {"error": "no --prometheus"}))
    outcome = await vigil_verify(ctx(fake), PARAMS)
    assert isinstance(outcome, Failed) and outcome.temporary is temporary
    assert f"HTTP {status}" in outcome.error
