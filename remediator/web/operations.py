"""The remediator's operator endpoints: the kill switch, breakers, playbooks, the report,
POST /-/reload and the probes.

This module owns these handlers. Changing anything (pause, resume, a breaker reset, a
reload) needs the admin token (401 otherwise); the switch and the reset are recorded in
the audit log with who asked. ``/healthz`` says the process answers, ``/readyz`` that the
audit log, the runner and the catalog are up.
"""

from __future__ import annotations

import logging

from aiohttp import web

from remediator import review
from remediator.audit.store import AuditLog, EventKind
from remediator.catalog.loader import load_catalog
from remediator.errors import IdentityError
from remediator.runtime import STATE
from remediator.web import access
from servicekit import probes

log = logging.getLogger(__name__)


async def handle_pause(request: web.Request) -> web.Response:
    return await _switch(request, paused=True)


async def handle_resume(request: web.Request) -> web.Response:
    return await _switch(request, paused=False)


async def _switch(request: web.Request, *, paused: bool) -> web.Response:
    st = request.app[STATE]
    if (refused := access.admin_refusal(request, st.admin_token, "the kill switch")) is not None:
        return refused
    assert st.audit is not None
    try:
        who = access.actor(request, st.cfg.auth.trusted_user_header)
    except IdentityError as exc:
        return access.identity_refusal(exc)
    value, now_ms = "paused via API" if paused else None, int(st.clock() * 1000)

    def record(db: AuditLog) -> None:  # the switch and who flipped it, as one write
        with db.atomic():
            db.set_flag("paused", value, now_ms=now_ms)
            db.add_event(
                None,
                kind=EventKind.NOTE,
                name="kill_switch",
                verdict="paused" if paused else "resumed",
                detail={"by": who},
                now_ms=now_ms,
            )

    await st.audit.run(record)
    if st.runner is not None and st.runner.shared is not None:
        await st.runner.shared.set_flag("paused", value)  # every replica stops
    st.metrics.paused.set(1 if paused else 0)
    log.warning("remediation %s via the API by %s", "paused" if paused else "resumed", who)
    return web.json_response({"paused": paused})


async def handle_reset_breaker(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if (
        refused := access.admin_refusal(request, st.admin_token, "resetting a breaker")
    ) is not None:
        return refused
    assert st.runner is not None
    playbook = request.match_info["playbook"]
    try:
        by = access.actor(request, st.cfg.auth.trusted_user_header)
    except IdentityError as exc:
        return access.identity_refusal(exc)
    if not await st.runner.reset_breaker(
        playbook, by=by, claimed=access.claim(request.query.get("by"))
    ):
        return web.json_response(
            {"error": f"the breaker of {playbook!r} is not tripped"}, status=404
        )
    return web.json_response({"playbook": playbook, "breaker": "closed"})


async def handle_report(request: web.Request) -> web.Response:
    st = request.app[STATE]
    return await review.respond(
        request.query,
        audit_path=st.audit_path,
        services=st.services,
        now_ms=int(st.clock() * 1000),
    )


async def handle_playbooks(request: web.Request) -> web.Response:
    st = request.app[STATE]
    return web.json_response(
        {
            "loaded": [
                {
                    "name": e.playbook.name,
                    "file": str(e.path),
                    "mode": e.playbook.spec.mode.value,
                    "description": e.playbook.metadata.description,
                }
                for e in st.catalog.entries
            ],
            "problems": list(load_catalog(st.playbook_dirs, st.registry).problems),
        }
    )


async def handle_reload(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if (refused := access.admin_refusal(request, st.admin_token, "reload")) is not None:
        return refused
    fresh = await st.reload_all()
    return web.json_response(
        {"loaded": len(st.catalog.entries), "reloaded": fresh.ok, "problems": list(fresh.problems)},
        status=200 if fresh.ok else 422,
    )


async def handle_healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def handle_readyz(request: web.Request) -> web.Response:
    if request.app[STATE].ready.is_set():
        return web.Response(text="ready\n")
    return web.Response(status=503, text="starting\n")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/pause", handle_pause)
    app.router.add_post("/api/v1/resume", handle_resume)
    app.router.add_get("/api/v1/playbooks", handle_playbooks)
    app.router.add_get("/api/v1/report", handle_report)
    app.router.add_post("/api/v1/breakers/{playbook}/reset", handle_reset_breaker)
    app.router.add_post("/-/reload", handle_reload)
    probes.add_routes(app.router, healthy=handle_healthz, ready=handle_readyz)
