"""The remediator's part of the Vigil console: the page at /, its assets, status, simulator.

This module owns the console routes of the remediator: ``/`` and ``/console/<asset>``
(the static files shipped in ``remediator/console/`` and the shared ones in
``servicekit/console/``, served by ``servicekit.console`` with a strict
Content-Security-Policy), ``GET /api/v1/status`` (kill switch and catalog state, for the
page's header) and ``POST /api/v1/simulate`` (``remediator.simulate`` over HTTP: an
alert, a webhook body or a recorded webhook request in, the plan and guard verdicts out,
no side effect). The runs, approvals and kill switch endpoints the page also calls are
in ``remediator.web``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from remediator.actions.registry import ActionRegistry
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog
from remediator.config import RemediatorConfig
from remediator.errors import AuditError, WebhookError
from remediator.simulate import parse_alerts, simulate
from servicekit import console as shared_console
from servicekit import mediatype

ASSETS = Path(__file__).parent / "console"  # this service's own; servicekit has the rest
SECURITY_HEADERS = shared_console.SECURITY_HEADERS
MAX_SIMULATED_ALERTS = 50


@dataclass(frozen=True)
class Sources:
    """What the console reads, handed over by build_app (the audit thread exists only
    once the app runs, hence a getter)."""

    catalog: Callable[[], Catalog]
    registry: ActionRegistry
    cfg: Callable[[], RemediatorConfig]  # the config as reloaded
    audit: Callable[[], AuditThread | None]
    clock: Callable[[], float]
    detector_url: str | None = None


def add_routes(app: web.Application, src: Sources) -> None:
    """Register the console's page, assets, status and simulator on ``app``."""
    shared_console.add_asset_routes(
        app, own=ASSETS, page=shared_console.Page(title="Remediation", script="remediation.js")
    )

    async def handle_status(request: web.Request) -> web.Response:
        audit = src.audit()
        if audit is None:
            return web.json_response({"error": "starting"}, status=503)
        try:
            paused = await audit.run(lambda db: db.get_flag("paused"))
        except AuditError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        catalog = src.catalog()
        return web.json_response(
            {
                "paused": paused is not None,
                "paused_reason": paused,
                "playbooks": len(catalog.entries),
                "problems": len(catalog.problems),
                "detector_url": src.detector_url,
            },
            headers=SECURITY_HEADERS,
        )

    async def handle_simulate(request: web.Request) -> web.Response:
        if (problem := mediatype.json_problem(request.headers.get("Content-Type"))) is not None:
            return web.json_response({"error": problem}, status=415)
        audit = src.audit()
        try:
            alerts = parse_alerts(await request.read(), max_alerts=MAX_SIMULATED_ALERTS)
        except WebhookError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if audit is None:
            return web.json_response({"error": "starting"}, status=503)
        catalog, cfg, now_ms = src.catalog(), src.cfg(), int(src.clock() * 1000)
        try:  # on the audit thread: cooldowns, rate limits and the kill switch, read only
            reports = await audit.run(
                lambda db: [
                    simulate(a, catalog, src.registry, cfg, now_ms=now_ms, audit_log=db)
                    for a in alerts
                ]
            )
        except AuditError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"reports": reports}, headers=SECURITY_HEADERS)

    app.router.add_get("/api/v1/status", handle_status)
    app.router.add_post("/api/v1/simulate", handle_simulate)
