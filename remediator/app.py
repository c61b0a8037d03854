"""build_app(): the remediator's aiohttp application, its routes and its cleanup context.

No domain logic here: ``remediator.runtime`` holds the live objects and starts them, the
handlers live in ``remediator.web`` and ``remediator.console``. App state lives only in the
typed ``STATE`` key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from remediator import console, identity, runtime
from remediator.actions.registry import Services
from remediator.cluster.kube import Kube
from remediator.config import RemediatorConfig
from remediator.metrics import build_metrics
from remediator.runtime import STATE, State, build_registry
from remediator.web import intake, operations, runs

__all__ = ["STATE", "State", "build_app", "build_registry"]


def build_app(
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
        users=identity.load_users(cfg.auth.users_file, cfg.auth.groups),  # ConfigError
        load_config=load_config,
        sighup=sighup,
        detector_url=detector_url,
        services=services,
        kube_factory=kube,
        tracer=tracer,
    )
    app = web.Application(client_max_size=cfg.max_body_bytes)
    app[STATE] = st
    intake.add_routes(app)
    runs.add_routes(app)
    operations.add_routes(app)
    app.router.add_get("/metrics", make_aiohttp_handler(registry_metrics))
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
    async with runtime.start(app[STATE]):
        yield
