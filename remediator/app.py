"""build_app(): wires the audit thread, the catalog, the runner and the routes.

No domain logic here: handlers read, call one domain function and map the result to a
status. Each resource is created in its own cleanup context; app state lives only in
the typed ``AppKey`` below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.trace import SpanKind, Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from remediator import console, identity, redaction, reloading, review
from remediator.actions import basic, k8s
from remediator.actions.registry import ActionRegistry, Services
from remediator.audit.store import AuditLog, EventKind, RunRecord, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog, load_catalog
from remediator.cluster.kube import Kube
from remediator.cluster.leases import LeaderElector, LeaseLock
from remediator.cluster.state import ClusterState
from remediator.config import RemediatorConfig, read_token
from remediator.errors import (
    ApprovalError,
    ApproverError,
    AuditError,
    ConfigError,
    IdentityError,
    TemplateError,
    WebhookError,
)
from remediator.metrics import RemediatorMetrics, build_metrics, zero_playbook_series
from remediator.runs import guards
from remediator.runs.runner import Runner
from remediator.services import LiveServices
from remediator.webhook import parse_notification
from servicekit import bearer, mediatype, probes, telemetry, tls

log = logging.getLogger(__name__)

EXPIRE_INTERVAL_S = 30.0


def build_registry() -> ActionRegistry:
    """Every action the service offers."""
    return ActionRegistry.collect(basic, k8s)


@dataclass
class State:
    """The live objects of one app, built by build_app and its cleanup contexts."""

    cfg: RemediatorConfig
    metrics: RemediatorMetrics
    registry: ActionRegistry
    playbook_dirs: list[Path]
    audit_path: Path
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    token: str | None
    admin_token: str | None
    external_url: str
    alertmanager_url: str | None
    prometheus_url: str | None
    catalog: Catalog = field(default_factory=Catalog)
    audit: AuditThread | None = None
    runner: Runner | None = None
    services: Services | None = None
    kube_factory: Callable[[], Awaitable[Kube]] | None = None
    tracer: Tracer | None = None
    kube: Kube | None = None
    elector: LeaderElector | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    users: identity.Users = field(default_factory=lambda: identity.load_users(None, {}))
    load_config: Callable[[], RemediatorConfig] | None = None  # reload reads the file again
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sighup: bool = False  # SIGHUP reloads (set by serve)

    async def reload_all(self) -> reloading.Prepared:
        """SIGHUP and ``POST /-/reload``: the config, its users file and the playbooks,
        validated together off the loop, then switched together on it; with any problem
        nothing changes (every problem logged, ``vigil_config_last_reload_successful``
        0). Runs in flight keep the playbook they started with."""
        async with self.reload_lock:
            fresh = await asyncio.to_thread(
                reloading.prepare,
                load_config=self.load_config,
                current=self.cfg,
                playbook_dirs=self.playbook_dirs,
                registry=self.registry,
            )
            if not fresh.ok or fresh.cfg is None or fresh.users is None:
                for problem in fresh.problems:
                    log.error("reload: %s", problem)
                log.error(
                    "reload failed with %d problems; the last good config and its %d "
                    "playbooks stay",
                    len(fresh.problems),
                    len(self.catalog.entries),
                )
                self.metrics.reload_ok.set(0)
                self.metrics.reloads.labels("failure").inc()
                self.metrics.playbook_problems.set(len(fresh.catalog.problems))
                return fresh
            for name in reloading.restart_only(self.cfg, fresh.cfg):
                log.warning("reload: %s changed; it takes effect at the next restart", name)
            self.cfg = reloading.effective(self.cfg, fresh.cfg)
            self.users = fresh.users
            self.catalog = fresh.catalog
            self.metrics.playbooks_loaded.set(len(self.catalog.entries))
            self.metrics.playbook_problems.set(0)
            zero_playbook_series(
                self.metrics, (e.playbook.name for e in self.catalog.entries), guards.GUARD_NAMES
            )
            if self.runner is not None:
                self.runner.set_limits(_limits(self.cfg))
            if isinstance(self.services, LiveServices):
                self.services.allowed_urls = self.cfg.http.allowed_urls
            self.metrics.reload_ok.set(1)
            self.metrics.reloads.labels("success").inc()
            self.metrics.reload_success_ts.set(self.clock())
            log.info("reloaded: config and %d playbooks", len(self.catalog.entries))
            return fresh

    def reload(self) -> Catalog:
        """Load the playbooks again; with problems, the last good set stays."""
        fresh = load_catalog(self.playbook_dirs, self.registry)
        for problem in fresh.problems:
            log.error("playbook problem: %s", problem)
        if fresh.problems and self.catalog.entries:
            log.error(
                "playbooks not reloaded: %d problems; the %d loaded stay",
                len(fresh.problems),
                len(self.catalog.entries),
            )
        else:
            self.catalog = fresh
        self.metrics.playbooks_loaded.set(len(self.catalog.entries))
        self.metrics.playbook_problems.set(len(fresh.problems))
        zero_playbook_series(
            self.metrics, (e.playbook.name for e in self.catalog.entries), guards.GUARD_NAMES
        )
        return fresh


STATE = web.AppKey("state", State)


def _authorized(request: web.Request, token: str | None) -> bool:
    """The request carries ``token`` (servicekit.bearer's rule); always, when it is None."""
    if token is None:
        return True
    return bearer.is_authorized(request.headers.get("Authorization"), token)


def _unauthorized(error: str) -> web.Response:
    return web.json_response(
        {"error": error}, status=401, headers={"WWW-Authenticate": bearer.CHALLENGE}
    )


def _media_refusal(request: web.Request, *, body_optional: bool = False) -> web.Response | None:
    """The 415 for a body that does not say it is JSON (a browser posts text/plain
    cross-site without asking); None when it may go on. ``body_optional``: no body at
    all is fine too."""
    content_type = request.headers.get("Content-Type")
    problem = (
        mediatype.empty_or_json_problem(content_type, has_body=request.body_exists)
        if body_optional
        else mediatype.json_problem(content_type)
    )
    return None if problem is None else web.json_response({"error": problem}, status=415)


def _admin_refusal(request: web.Request, token: str | None, what: str) -> web.Response | None:
    """The 401 for an admin endpoint without the admin token; None when it may go on."""
    if token is not None and _authorized(request, token):
        return _media_refusal(request, body_optional=True)
    return _unauthorized(f"{what} needs the admin token (auth.admin_token_file)")


MAX_CLAIM_CHARS = 200


def _actor(request: web.Request, trusted_header: str | None) -> str:
    """Who makes an admin request, from its credential: the user a trusted proxy names in
    ``trusted_header`` (auth.trusted_user_header), else the admin token itself. Call it
    only once ``_admin_refusal`` let the request in: the header counts only beside the
    admin token (which that proxy holds), never alone. IdentityError (a 400) when the
    header comes twice or names ``admin-token`` (identity.trusted_user)."""
    if trusted_header is not None:
        user = identity.trusted_user(request.headers, trusted_header)
        if user and user.isprintable():
            return user[:MAX_CLAIM_CHARS]
    return identity.ADMIN


def _identity_refusal(exc: IdentityError) -> web.Response:
    return web.json_response({"error": str(exc)}, status=400)


def _decider(request: web.Request, st: State) -> identity.Identity | web.Response:
    """Who approves or rejects, from the request's credential (a users-file token, or the
    admin token with the trusted proxy's header); the 401 or 415 when it may not go on;
    IdentityError when the trusted headers cannot say who."""
    auth = st.cfg.auth
    credential = bearer.parse_credential(request.headers.get("Authorization"))
    who = identity.identify(
        credential=credential,
        headers=request.headers,
        admin_token=st.admin_token,
        users=st.users,
        trusted_user_header=auth.trusted_user_header,
        trusted_groups_header=auth.trusted_groups_header,
    )
    if who is None:
        return _unauthorized(
            "approving or rejecting needs your token (auth.users_file) or "
            "the admin token (auth.admin_token_file)"
        )
    return _media_refusal(request, body_optional=True) or who


async def _json_body(request: web.Request) -> object:
    """The request's JSON body ({} when it has none); mediatype.BodyError (a 400) when it
    is not UTF-8 JSON or its Content-Type names another charset."""
    if not request.body_exists:
        return {}
    return mediatype.json_body(await request.read(), request.headers.get("Content-Type"))


def _claim(value: object) -> str | None:
    """A name the request gives for itself (``by``): kept as an unverified note."""
    if value is None:
        return None
    text = str(value)
    return text[:MAX_CLAIM_CHARS] if text.isprintable() else repr(text)[:MAX_CLAIM_CHARS]


def _run_json(run: RunRecord) -> dict[str, Any]:
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


def build_app(  # noqa: C901 (issue 24: split the handlers out)
    cfg: RemediatorConfig,
    *,
    playbook_dirs: list[Path],
    state_dir: Path,
    alertmanager_url: str | None = None,
    prometheus_url: str | None = None,
    token: str | None = None,
    admin_token: str | None = None,
    external_url: str = "http://127.0.0.1:9421",
    detector_url: str | None = None,
    metrics: CollectorRegistry | None = None,
    services: Services | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    kube: Callable[[], Awaitable[Kube]] | None = None,
    tracer: Tracer | None = None,
    load_config: Callable[[], RemediatorConfig] | None = None,
    sighup: bool = False,
) -> web.Application:
    """The remediator's aiohttp application. ``services`` None means the live clients;
    ``load_config`` reads the config again on reload (None: reload reads only the
    playbooks and the users file); ``sighup``: SIGHUP reloads too (the process's own
    service, not in tests that share a loop);
    ``kube`` builds the Kubernetes client at start-up (None: no cluster actions);
    ``detector_url`` is the detector console that the console at / links to; ``tracer``
    (None: off) traces each webhook and the runs it starts."""
    registry_metrics = metrics if metrics is not None else CollectorRegistry()
    st = State(
        cfg=cfg,
        metrics=build_metrics(registry_metrics),
        registry=build_registry(),
        playbook_dirs=playbook_dirs,
        audit_path=cfg.audit_path or state_dir / "audit.db",
        clock=clock,
        sleep=sleep,
        token=token,
        admin_token=admin_token,
        external_url=(cfg.external_url or external_url).rstrip("/"),
        alertmanager_url=alertmanager_url,
        prometheus_url=prometheus_url,
        services=services,
        kube_factory=kube,
        tracer=tracer,
    )
    st.users = identity.load_users(cfg.auth.users_file, cfg.auth.groups)  # ConfigError
    st.load_config = load_config
    st.sighup = sighup
    app = web.Application(client_max_size=cfg.max_body_bytes)
    app[STATE] = st

    async def handle_webhook(request: web.Request) -> web.Response:
        if st.tracer is None:  # traces off: nothing else is paid
            return await webhook(request)
        with st.tracer.start_as_current_span(
            "webhook", context=telemetry.remote_parent(request.headers), kind=SpanKind.SERVER
        ) as span:
            response = await webhook(request)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def webhook(request: web.Request) -> web.Response:
        if not _authorized(request, st.token):
            st.metrics.webhooks.labels("401").inc()
            return _unauthorized("missing or wrong bearer token")
        if (refused := _media_refusal(request)) is not None:
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
            return web.json_response(
                {"error": f"could not record the notification: {exc}"}, status=503
            )
        for alert in note.alerts:
            st.metrics.alerts_received.labels(alert.status).inc()
        st.runner.spawn(st.runner.handle(nid, note, received))
        st.metrics.webhooks.labels("200").inc()
        return web.json_response({"status": "recorded", "notification": nid})

    async def handle_runs(request: web.Request) -> web.Response:
        assert st.audit is not None
        q = request.query
        try:
            limit = min(1000, max(1, int(q.get("limit", "100"))))
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
        return web.json_response({"data": [_run_json(r) for r in runs]})

    async def handle_run(request: web.Request) -> web.Response:
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
        doc = _run_json(run) | {
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

    async def deciding(request: web.Request, action: str) -> identity.Identity | web.Response:
        """``_decider``, with a refused trusted-header identity answered 400 and audited."""
        try:
            return _decider(request, st)
        except IdentityError as exc:
            assert st.runner is not None
            await st.runner.approvals.refused_credential(
                request.match_info["id"], action=action, reason=str(exc)
            )
            return _identity_refusal(exc)

    async def handle_approve(request: web.Request) -> web.Response:
        if isinstance(who := await deciding(request, "approve"), web.Response):
            return who
        assert st.runner is not None
        expected = 'expected {"plan_hash": "..."}'
        try:
            doc = await _json_body(request)
        except mediatype.BodyError as exc:
            return web.json_response({"error": f"{exc}; {expected}"}, status=400)
        if not isinstance(doc, dict) or "plan_hash" not in doc:
            return web.json_response({"error": expected}, status=400)
        plan_hash = str(doc["plan_hash"])
        claimed = _claim(doc.get("by"))  # a note: who approves is the credential's
        return await _decided(
            st.runner.approve(
                request.match_info["id"], plan_hash_seen=plan_hash, who=who, claimed=claimed
            )
        )

    async def handle_reject(request: web.Request) -> web.Response:
        if isinstance(who := await deciding(request, "reject"), web.Response):
            return who
        assert st.runner is not None
        expected = 'expected {"reason": "..."} or no body'
        try:
            doc = await _json_body(request)
        except mediatype.BodyError as exc:
            return web.json_response({"error": f"{exc}; {expected}"}, status=400)
        if not isinstance(doc, dict):
            return web.json_response({"error": expected}, status=400)
        reason = _claim(doc.get("reason", "")) or ""
        return await _decided(st.runner.reject(request.match_info["id"], who=who, reason=reason))

    async def handle_pause(request: web.Request) -> web.Response:
        return await _switch(request, paused=True)

    async def handle_resume(request: web.Request) -> web.Response:
        return await _switch(request, paused=False)

    async def _switch(request: web.Request, *, paused: bool) -> web.Response:
        if (refused := _admin_refusal(request, st.admin_token, "the kill switch")) is not None:
            return refused
        assert st.audit is not None
        try:
            who = _actor(request, st.cfg.auth.trusted_user_header)
        except IdentityError as exc:
            return _identity_refusal(exc)
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
        if (refused := _admin_refusal(request, st.admin_token, "resetting a breaker")) is not None:
            return refused
        assert st.runner is not None
        playbook = request.match_info["playbook"]
        try:
            by = _actor(request, st.cfg.auth.trusted_user_header)
        except IdentityError as exc:
            return _identity_refusal(exc)
        if not await st.runner.reset_breaker(
            playbook, by=by, claimed=_claim(request.query.get("by"))
        ):
            return web.json_response(
                {"error": f"the breaker of {playbook!r} is not tripped"}, status=404
            )
        return web.json_response({"playbook": playbook, "breaker": "closed"})

    async def handle_report(request: web.Request) -> web.Response:
        return await review.respond(
            request.query,
            audit_path=st.audit_path,
            services=st.services,
            now_ms=int(st.clock() * 1000),
        )

    async def handle_playbooks(request: web.Request) -> web.Response:
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
        if (refused := _admin_refusal(request, st.admin_token, "reload")) is not None:
            return refused
        fresh = await st.reload_all()
        return web.json_response(
            {
                "loaded": len(st.catalog.entries),
                "reloaded": fresh.ok,
                "problems": list(fresh.problems),
            },
            status=200 if fresh.ok else 422,
        )

    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        if st.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    app.router.add_post("/webhook", handle_webhook)
    app.router.add_get("/api/v1/runs", handle_runs)
    app.router.add_get("/api/v1/runs/{id}", handle_run)
    app.router.add_post("/api/v1/runs/{id}/approve", handle_approve)
    app.router.add_post("/api/v1/runs/{id}/reject", handle_reject)
    app.router.add_post("/api/v1/pause", handle_pause)
    app.router.add_post("/api/v1/resume", handle_resume)
    app.router.add_get("/api/v1/playbooks", handle_playbooks)
    app.router.add_get("/api/v1/report", handle_report)
    app.router.add_post("/api/v1/breakers/{playbook}/reset", handle_reset_breaker)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_metrics))
    probes.add_routes(app.router, healthy=handle_healthz, ready=handle_readyz)
    console.add_routes(
        app,
        console.Sources(  # /, its assets, /api/v1/status and simulate
            catalog=lambda: st.catalog,
            registry=st.registry,
            cfg=lambda: st.cfg,
            audit=lambda: st.audit,
            clock=clock,
            detector_url=detector_url,
        ),
    )
    app.cleanup_ctx.append(_runtime_ctx)
    return app


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    st = app[STATE]
    st.reload()
    audit_log = await asyncio.to_thread(AuditLog.open, st.audit_path)
    st.audit = AuditThread(audit_log)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(st.audit.close)
        if st.services is None:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        ssl=tls.build_client_context(st.cfg.outgoing_tls, error=ConfigError)
                    )
                )
            )
            st.services = LiveServices(
                session,
                alertmanager_url=st.alertmanager_url,
                prometheus_url=st.prometheus_url,
                secrets_dir=st.cfg.secrets_dir,
                allowed_urls=st.cfg.http.allowed_urls,
                timeout_s=st.cfg.request_timeout_s,
                detector_url=st.cfg.detector.url,
                detector_token=read_token(
                    st.cfg.detector.bearer_token_file, "detector.bearer_token_file"
                ),
                detector_timeout_s=st.cfg.detector.timeout_s,
                outgoing_tls=st.cfg.outgoing_tls,
                redactor=_token_redactor(st),
            )
        if st.kube_factory is not None:
            st.kube = await st.kube_factory()
            stack.push_async_callback(st.kube.api.close)
        cl = st.cfg.cluster
        shared = None
        if st.kube is not None and cl.namespace is not None:
            shared = ClusterState(st.kube, namespace=cl.namespace)
        st.runner = Runner(
            audit=st.audit,
            catalog=lambda: st.catalog,
            registry=st.registry,
            services=st.services,
            metrics=st.metrics,
            limits=_limits(st.cfg),
            external_url=st.external_url,
            clock=st.clock,
            sleep=st.sleep,
            kube=st.kube,
            shared=shared,
            identity=cl.identity or socket.gethostname(),
            lock_namespace=cl.namespace,
            replay_s=cl.replay_s,
            tracer=st.tracer,
        )
        stack.push_async_callback(st.runner.close)
        interrupted = await st.runner.recover()
        if interrupted:
            log.warning(
                "%d runs were interrupted by the last stop; marked and escalated", interrupted
            )
        paused = await st.audit.run(lambda db: db.get_flag("paused"))
        st.metrics.paused.set(1 if paused else 0)
        tasks = [asyncio.create_task(_expire_forever(st)), asyncio.create_task(_prune_forever(st))]
        if shared is not None and st.kube is not None and cl.namespace is not None:
            runner = st.runner

            async def on_change(leading: bool) -> None:
                st.metrics.leader.set(1 if leading else 0)
                await runner.on_leadership(leading)

            st.elector = LeaderElector(
                LeaseLock(st.kube, namespace=cl.namespace, name=cl.lease_name, clock=st.clock),
                identity=runner.identity,
                duration_s=cl.lease_duration_s,
                retry_s=cl.retry_s,
                on_change=on_change,
            )
            tasks.append(asyncio.create_task(st.elector.run()))
        else:
            st.metrics.leader.set(1)
        st.metrics.reload_ok.set(1)  # the config and playbooks of the start count as one
        st.metrics.reload_success_ts.set(st.clock())
        loop = asyncio.get_running_loop()
        if st.sighup:
            loop.add_signal_handler(signal.SIGHUP, _on_sighup, st)
        st.ready.set()
        try:
            yield
        finally:
            if st.sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if st.elector is not None:
                with contextlib.suppress(Exception):  # best effort: the lease expires anyway
                    await st.elector.resign()


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


def _limits(cfg: RemediatorConfig) -> guards.GlobalLimits:
    gl = cfg.guards
    return guards.GlobalLimits(rate=gl.rate, max_concurrent=gl.max_concurrent, freeze=gl.freeze)


def _on_sighup(st: State) -> None:
    """SIGHUP: reload as a task of the runner (closed, and awaited, with it)."""

    async def reload() -> None:
        await st.reload_all()  # logs and counts its own problems

    if st.runner is not None:
        st.runner.spawn(reload())


def _token_redactor(st: State) -> redaction.Redactor:
    """A redactor that already masks this app's own tokens (the services add the secrets
    they read and the detector token)."""
    redactor = redaction.Redactor()
    redactor.register("webhook token", st.token)
    redactor.register("admin token", st.admin_token)
    return redactor


async def _prune_forever(st: State) -> None:
    """Audit retention at start, then every ``audit.prune_interval_s``; logs the chain head
    after each pass, an anchor a later ``vigil-remediator audit verify`` can be held to."""
    assert st.audit is not None
    while True:
        ac = st.cfg.audit  # each pass: a reload may change it
        try:
            done = await st.audit.run(
                lambda db, ac=ac: db.prune(  # type: ignore[misc]
                    now_ms=int(st.clock() * 1000),
                    retention_s=ac.retention_s,
                    max_size_bytes=ac.max_size_bytes,
                )
            )
            head = await st.audit.run(lambda db: db.chain_head())
            log.info(
                "audit retention: deleted %d runs, %d events, %d notifications, "
                "%d episodes; %d bytes in use; chain head %s",
                done.runs,
                done.events,
                done.notifications,
                done.episodes,
                done.used_bytes,
                head,
            )
            if done.over_cap:
                log.warning(
                    "audit database still over audit.max_size_bytes (%d > %d): "
                    "runs still active or the last hour hold it",
                    done.used_bytes,
                    ac.max_size_bytes,
                )
        except AuditError:
            log.exception("audit retention failed; trying again at the next interval")
        # real time, like _expire_forever: st.sleep is the runner's (a test's fake sleep
        # advances the fake clock, which a background loop must not do)
        await asyncio.sleep(ac.prune_interval_s)


async def _expire_forever(st: State) -> None:
    assert st.audit is not None
    while True:
        try:
            expired = await st.audit.run(
                lambda db: db.expire_approvals(now_ms=int(st.clock() * 1000))
            )
            for run_id in expired:
                log.info("approval of run %s expired", run_id)
            if expired and st.runner is not None:
                await st.runner.expired(expired)
        except AuditError:
            log.exception("could not expire approvals; trying again")
        await asyncio.sleep(EXPIRE_INTERVAL_S)
