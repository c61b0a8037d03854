"""POST /webhook: an Alertmanager notification recorded, then handed to the runner.

This module owns the webhook's answers: 401 without the token, 415 for a body that is not
JSON, 400 for one ``remediator.webhook`` refuses, 503 when the audit log cannot record it,
200 once it is durable (the runs start after the answer). It counts each answer in
``vigil_webhook_requests_total`` and, with tracing on, opens the request's span.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from opentelemetry.trace import SpanKind

from remediator.errors import AuditError, WebhookError
from remediator.runtime import STATE
from remediator.web import access
from remediator.webhook import parse_notification
from servicekit import telemetry

log = logging.getLogger(__name__)


async def handle_webhook(request: web.Request) -> web.Response:
    tracer = request.app[STATE].tracer
    if tracer is None:  # traces off: nothing else is paid
        return await _receive(request)
    with tracer.start_as_current_span(
        "webhook", context=telemetry.remote_parent(request.headers), kind=SpanKind.SERVER
    ) as span:
        response = await _receive(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


async def _receive(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if not access.authorized(request, st.token):
        st.metrics.webhooks.labels("401").inc()
        return access.unauthorized("missing or wrong bearer token")
    if (refused := access.media_refusal(request)) is not None:
        st.metrics.webhooks.labels("415").inc()
        return refused
    received = time.perf_counter()
    body = await request.read()
    try:
        note = parse_notification(body, max_alerts=st.cfg.max_alerts_per_webhook)
    except WebhookError as exc:
        st.metrics.webhooks.labels("400").inc()
        return web.json_response({"error": str(exc)}, status=400)
    assert st.audit is not None and st.runner is not None
    try:
        nid = await st.audit.run(
            lambda db: db.record_notification(
                received_ms=int(st.clock() * 1000),
                receiver=note.receiver,
                status=note.status,
                group_key=note.group_key,
                n_alerts=len(note.alerts),
                body=body.decode("utf-8", "replace"),
                alerts=note.alerts,
                max_body_bytes=st.cfg.audit.max_stored_body_bytes,
            )
        )
    except AuditError as exc:
        log.error("webhook not recorded: %s", exc)
        st.metrics.webhooks.labels("503").inc()
        return web.json_response({"error": f"could not record the notification: {exc}"}, status=503)
    for alert in note.alerts:
        st.metrics.alerts_received.labels(alert.status).inc()
    st.runner.spawn(st.runner.handle(nid, note, received))
    st.metrics.webhooks.labels("200").inc()
    return web.json_response({"status": "recorded", "notification": nid})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhook", handle_webhook)
