"""Hostile Alertmanager webhooks: 10^5 mutated documents answer only WebhookError (HTTP
400), deep nesting and huge numbers included; over HTTP, malformed bodies get 4xx and the
limits on body size and alerts per notification hold."""

from __future__ import annotations

import json
import os
import random
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.config import RemediatorConfig
from remediator.errors import WebhookError
from remediator.webhook import parse_notification
from tests.property import hostile
from tests.unit.remediator.test_app import drained, notification, start

N_INPUTS = int(os.environ.get("VIGIL_HOSTILE_INPUTS", "100000"))


def test_mutated_documents_raise_only_webhook_error():
    target = hostile.WebhookTarget(max_alerts=1000)
    rng = random.Random(20261127)
    n = 0
    for body in hostile.webhook_inputs(rng, N_INPUTS):
        target(body)
        n += 1
    assert n == N_INPUTS
    assert target.outcomes["ok"] > N_INPUTS // 50, target.outcomes
    assert target.outcomes["webhook_error"] > N_INPUTS // 2, target.outcomes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]) | json_values,
        "labels": st.dictionaries(st.text(max_size=10), st.text(max_size=10)) | json_values,
        "startsAt": st.sampled_from(
            ["2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123+02:00", "yesterday", ""]
        )
        | st.text(max_size=30),
        "fingerprint": st.text(min_size=1, max_size=70),
    },
    optional={
        "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | json_values,
        "endsAt": st.text(max_size=30),
        "generatorURL": json_values,
    },
)
notifications = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", "3", 4]),
        "status": st.sampled_from(["firing", "x"]),
        "alerts": st.lists(alerts, max_size=5) | json_values,
    },
    optional={
        "receiver": json_values,
        "groupKey": json_values,
        "truncatedAlerts": st.integers() | json_values,
        "extra": json_values,
    },
)


@given(notifications)
def test_generated_notifications_parse_or_raise_webhook_error(doc):
    body = json.dumps(doc).encode("utf-8", "surrogatepass")
    try:
        note = parse_notification(body)
    except WebhookError:
        return
    assert len(note.alerts) == len(doc["alerts"])
    assert all(a.labels and a.fingerprint for a in note.alerts)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": "4", "alerts": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
        b'{"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": '
        + b"9" * 5000
        + b"}",
        b'{"version": "4", "status": "firing", "alerts": [], "truncatedAlerts": 1e999}',
        b"\xff\xfe{}",
        b"",
        b"null",
        b'"\\ud800"',
    ],
    ids=[
        "deep-array",
        "deep-object",
        "5000-digit-int",
        "inf",
        "utf16-bom",
        "empty",
        "null",
        "lone-surrogate",
    ],
)
def test_deep_nesting_and_huge_numbers_are_webhook_errors(body):
    """Regression: deep nesting raised RecursionError and a 5000-digit integer ValueError,
    which the handler answered with 500."""
    with pytest.raises(WebhookError):
        parse_notification(body)


def test_a_lone_surrogate_is_a_webhook_error_and_a_pair_is_text():
    """Regression: an escaped lone surrogate in a label passed the parser, then the audit
    could not store the notification and the handler answered 503, which Alertmanager
    retries forever."""
    doc = notification()
    doc["alerts"][0]["labels"]["pod"] = "web-\ud800"
    with pytest.raises(WebhookError, match="lone UTF-16 surrogate"):
        parse_notification(json.dumps(doc).encode())
    doc["alerts"][0]["labels"]["pod"] = "web-\U0001f600"  # sent as the pair \ud83d\ude00
    body = json.dumps(doc).encode()
    assert b"\\ud83d\\ude00" in body
    assert parse_notification(body).alerts[0].labels["pod"] == "web-\U0001f600"


def test_deep_and_wide_bodies_stay_within_a_memory_bound():
    wide = json.dumps({"version": "4", "status": "firing", "alerts": [{}] * 1_000_000}).encode()
    deep = b"[" * (4 << 20)
    for body in (wide, deep):
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(WebhookError):
                parse_notification(body, max_alerts=1000)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 20 * len(body) + (1 << 20), peak
        assert time.perf_counter() - t0 < 30.0  # a hang guard; speed lives in bench/


# ---------------------------------------------------------------------------- over HTTP


async def test_malformed_webhooks_get_4xx_never_5xx(aiohttp_client, tmp_path):
    cfg = RemediatorConfig(max_alerts_per_webhook=50, max_body_bytes=64 << 10)
    client, st, _, _ = await start(aiohttp_client, tmp_path, cfg=cfg)
    rng = random.Random(7)
    bodies = list(hostile.webhook_inputs(rng, 400))
    bodies += [b"[" * 60_000, b'{"version": "4", "truncatedAlerts": ' + b"9" * 5000 + b"}"]
    statuses: dict[int, int] = {}
    for body in bodies:
        resp = await client.post(
            "/webhook", data=body, headers={"Content-Type": "application/json"}
        )
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        if resp.status == 400:
            assert "error" in await resp.json()
        resp.release()
    assert all(code < 500 for code in statuses), statuses
    assert statuses.get(400, 0) > len(bodies) // 2, statuses

    over = notification()
    over["alerts"] = over["alerts"] * 51
    resp = await client.post("/webhook", json=over)
    assert resp.status == 400
    assert "more than the limit of 50 (max_alerts_per_webhook)" in (await resp.json())["error"]

    big = json.dumps({**notification(), "pad": "x" * (64 << 10)}).encode()
    resp = await client.post("/webhook", data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413

    resp = await client.post("/webhook", json=notification())
    assert resp.status == 200
    assert (await client.get("/healthz")).status == 200
    await drained(st)
