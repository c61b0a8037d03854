"""The runs API: GET /api/v1/runs, GET /api/v1/runs/{id}, and their approval or rejection.

This module owns the JSON of a run (``run_json``) and the answers of a decision: 401
without a credential, 400 for a body that is not the expected JSON, 403 not an approver,
409 the run cannot be decided, 503 the audit log failed. Who decides comes from the
credential (``remediator.web.access``); the decision itself is the runner's.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from remediator import identity
from remediator.audit.store import EventKind, RunRecord, RunState
from remediator.errors import (
    ApprovalError,
    ApproverError,
    AuditError,
    IdentityError,
    TemplateError,
    WebhookError,
)
from remediator.runtime import STATE
from remediator.web import access
from servicekit import mediatype

MAX_RUNS = 1000


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "playbook": run.playbook,
        "fingerprint": run.fingerprint,
        "startsAt": run.starts_at,
        "alertname": run.alertname,
        "target": run.target,
        "mode": str(run.mode),
        "state": str(run.state),
        "outcome": run.outcome,
        "created_ms": run.created_ms,
        "updated_ms": run.updated_ms,
        "executed_ms": run.executed_ms,
        "plan_hash": run.plan_hash,
        "approval_expires_ms": run.approval_expires_ms,
        "approved_by": run.approved_by,
        "trace_id": run.trace_id,
    }


async def handle_runs(request: web.Request) -> web.Response:
    st = request.app[STATE]
    assert st.audit is not None
    q = request.query
    try:
        limit = min(MAX_RUNS, max(1, int(q.get("limit", "100"))))
        state = RunState(q["state"]) if "state" in q else None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"bad query: {exc}\n") from exc
    runs = await st.audit.run(
        lambda db: db.list_runs(
            limit=limit,
            playbook=q.get("playbook"),
            state=state,
            before_id=q.get("before"),
            fingerprint=q.get("fingerprint"),
        )
    )
    return web.json_response({"data": [run_json(r) for r in runs]})


async def handle_run(request: web.Request) -> web.Response:
    st = request.app[STATE]
    assert st.audit is not None
    run_id = request.match_info["id"]
    run = await st.audit.run(lambda db: db.get_run(run_id))
    if run is None:
        raise web.HTTPNotFound(text=f"no run {run_id}\n")
    events = await st.audit.run(lambda db: db.events(run_id))
    # approved_by alone cannot tell a person from the proxy naming them; the approval
    # event records how the approver was identified (identity.Via)
    approved_via = next(
        (
            e.detail.get("via")
            for e in events
            if (e.kind, e.name) == (EventKind.APPROVAL, "approved")
        ),
        None,
    )
    doc = run_json(run) | {
        "approved_via": approved_via,
        "alert": run.alert,
        "plan": run.plan,
        "events": [
            {
                "ts_ms": e.ts_ms,
                "kind": str(e.kind),
                "name": e.name,
                "verdict": e.verdict,
                "detail": e.detail,
            }
            for e in events
        ],
    }
    return web.json_response(doc)


async def _deciding(request: web.Request, action: str) -> identity.Identity | web.Response:
    """``access.decider``, with a refused trusted-header identity answered 400 and audited."""
    st = request.app[STATE]
    try:
        return access.decider(request, st)
    except IdentityError as exc:
        assert st.runner is not None
        await st.runner.approvals.refused_credential(
            request.match_info["id"], action=action, reason=str(exc)
        )
        return access.identity_refusal(exc)


async def _decided(decision: Awaitable[dict[str, Any]]) -> web.Response:
    """An approval's or rejection's answer: 403 not an approver, 409 cannot, 503 audit."""
    try:
        return web.json_response(await decision)
    except ApproverError as exc:
        return web.json_response({"error": str(exc)}, status=403)
    except (ApprovalError, TemplateError, WebhookError) as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except AuditError as exc:
        return web.json_response({"error": str(exc)}, status=503)


async def handle_approve(request: web.Request) -> web.Response:
    if isinstance(who := await _deciding(request, "approve"), web.Response):
        return who
    runner = request.app[STATE].runner
    assert runner is not None
    expected = 'expected {"plan_hash": "..."}'
    try:
        doc = await access.json_body(request)
    except mediatype.BodyError as exc:
        return web.json_response({"error": f"{exc}; {expected}"}, status=400)
    if not isinstance(doc, dict) or "plan_hash" not in doc:
        return web.json_response({"error": expected}, status=400)
    plan_hash = str(doc["plan_hash"])
    claimed = access.claim(doc.get("by"))  # a note: who approves is the credential's
    return await _decided(
        runner.approve(request.match_info["id"], plan_hash_seen=plan_hash, who=who, claimed=claimed)
    )


async def handle_reject(request: web.Request) -> web.Response:
    if isinstance(who := await _deciding(request, "reject"), web.Response):
        return who
    runner = request.app[STATE].runner
    assert runner is not None
    expected = 'expected {"reason": "..."} or no body'
    try:
        doc = await access.json_body(request)
    except mediatype.BodyError as exc:
        return web.json_response({"error": f"{exc}; {expected}"}, status=400)
    if not isinstance(doc, dict):
        return web.json_response({"error": expected}, status=400)
    reason = access.claim(doc.get("reason", "")) or ""
    return await _decided(runner.reject(request.match_info["id"], who=who, reason=reason))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/runs", handle_runs)
    app.router.add_get("/api/v1/runs/{id}", handle_run)
    app.router.add_post("/api/v1/runs/{id}/approve", handle_approve)
    app.router.add_post("/api/v1/runs/{id}/reject", handle_reject)
