"""The live objects of one remediator app, built in one place, and what keeps them current.

This module owns ``State`` (configuration, catalog, users, audit thread, runner, services,
Kubernetes client and leader election of one app), ``build_state`` (what exists before the
app runs), ``start`` (what needs the running loop: the audit database, the HTTP session,
the Kubernetes client, the runner and the background loops), the reload of the config,
users file and playbooks, and the periodic audit retention and approval expiry. The
handlers in ``remediator.web`` reach it through the ``STATE`` key; the decisions stay in
``remediator.runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.trace import Tracer

from remediator import identity, redaction, reloading
from remediator.actions import basic, k8s
from remediator.actions.registry import ActionRegistry, Services
from remediator.audit.store import AuditLog
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog, load_catalog
from remediator.cluster.kube import Kube
from remediator.cluster.leases import LeaderElector, LeaseLock
from remediator.cluster.state import ClusterState
from remediator.config import RemediatorConfig, read_token
from remediator.errors import AuditError, ConfigError
from remediator.metrics import RemediatorMetrics, zero_playbook_series
from remediator.runs import guards
from remediator.runs.runner import Runner
from remediator.services import LiveServices
from servicekit import tls

log = logging.getLogger(__name__)

EXPIRE_INTERVAL_S = 30.0


def build_registry() -> ActionRegistry:
    """Every action the service offers."""
    return ActionRegistry.collect(basic, k8s)


@dataclass
class State:
    """The live objects of one app: built by ``build_state``; ``start`` adds what needs
    the running loop."""

    cfg: RemediatorConfig  # the config in effect: a reload replaces it
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
    users: identity.Users  # a reload replaces it
    load_config: Callable[[], RemediatorConfig] | None  # reload reads the file again
    sighup: bool  # SIGHUP reloads (serve sets it; tests that share a loop do not)
    detector_url: str | None  # the detector console the console at / links to
    services: Services | None  # None until ``start`` opens the live clients
    kube_factory: Callable[[], Awaitable[Kube]] | None  # None: no cluster actions
    tracer: Tracer | None  # None: traces off
    catalog: Catalog = field(default_factory=Catalog)  # loaded by ``start``, then reloads
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set by ``start``, not here: opening the audit database, the HTTP session and the
    # Kubernetes client needs the running loop, and they close with it.
    audit: AuditThread | None = None
    runner: Runner | None = None
    kube: Kube | None = None
    elector: LeaderElector | None = None

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
                self.runner.set_limits(limits_of(self.cfg))
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


def limits_of(cfg: RemediatorConfig) -> guards.GlobalLimits:
    gl = cfg.guards
    return guards.GlobalLimits(rate=gl.rate, max_concurrent=gl.max_concurrent, freeze=gl.freeze)


def _token_redactor(st: State) -> redaction.Redactor:
    """A redactor that already masks this app's own tokens (the services add the secrets
    they read and the detector token)."""
    redactor = redaction.Redactor()
    redactor.register("webhook token", st.token)
    redactor.register("admin token", st.admin_token)
    return redactor


async def _open_services(st: State, stack: contextlib.AsyncExitStack) -> Services:
    """The live HTTP clients (Alertmanager, Prometheus, the detector, the http action) on
    one session that closes with ``stack``."""
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=tls.build_client_context(st.cfg.outgoing_tls, error=ConfigError)
            )
        )
    )
    return LiveServices(
        session,
        alertmanager_url=st.alertmanager_url,
        prometheus_url=st.prometheus_url,
        secrets_dir=st.cfg.secrets_dir,
        allowed_urls=st.cfg.http.allowed_urls,
        timeout_s=st.cfg.request_timeout_s,
        detector_url=st.cfg.detector.url,
        detector_token=read_token(st.cfg.detector.bearer_token_file, "detector.bearer_token_file"),
        detector_timeout_s=st.cfg.detector.timeout_s,
        outgoing_tls=st.cfg.outgoing_tls,
        redactor=_token_redactor(st),
    )


def _build_runner(st: State, *, audit: AuditThread, services: Services) -> Runner:
    cl = st.cfg.cluster
    shared = None
    if st.kube is not None and cl.namespace is not None:
        shared = ClusterState(st.kube, namespace=cl.namespace)
    return Runner(
        audit=audit,
        catalog=lambda: st.catalog,
        registry=st.registry,
        services=services,
        metrics=st.metrics,
        limits=limits_of(st.cfg),
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


def _build_elector(st: State, runner: Runner) -> LeaderElector | None:
    """Leader election among the replicas (cluster.namespace set); None: this one leads."""
    cl = st.cfg.cluster
    if runner.shared is None or st.kube is None or cl.namespace is None:
        return None

    async def on_change(leading: bool) -> None:
        st.metrics.leader.set(1 if leading else 0)
        await runner.on_leadership(leading)

    return LeaderElector(
        LeaseLock(st.kube, namespace=cl.namespace, name=cl.lease_name, clock=st.clock),
        identity=runner.identity,
        duration_s=cl.lease_duration_s,
        retry_s=cl.retry_s,
        on_change=on_change,
    )


@contextlib.asynccontextmanager
async def start(st: State) -> AsyncIterator[None]:
    """Run the app's resources for the duration of the block: load the playbooks, open the
    audit database, the clients and the runner, recover interrupted runs, start retention,
    approval expiry and leader election; ``st.ready`` once all of it is up."""
    st.reload()
    audit_log = await asyncio.to_thread(AuditLog.open, st.audit_path)
    st.audit = audit = AuditThread(audit_log)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(audit.close)
        if st.services is None:
            st.services = await _open_services(st, stack)
        if st.kube_factory is not None:
            st.kube = await st.kube_factory()
            stack.push_async_callback(st.kube.api.close)
        st.runner = runner = _build_runner(st, audit=audit, services=st.services)
        stack.push_async_callback(runner.close)
        interrupted = await runner.recover()
        if interrupted:
            log.warning(
                "%d runs were interrupted by the last stop; marked and escalated", interrupted
            )
        paused = await audit.run(lambda db: db.get_flag("paused"))
        st.metrics.paused.set(1 if paused else 0)
        tasks = [asyncio.create_task(_expire_forever(st)), asyncio.create_task(_prune_forever(st))]
        st.elector = _build_elector(st, runner)
        if st.elector is not None:
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


def _on_sighup(st: State) -> None:
    """SIGHUP: reload as a task of the runner (closed, and awaited, with it)."""

    async def reload() -> None:
        await st.reload_all()  # logs and counts its own problems

    if st.runner is not None:
        st.runner.spawn(reload())


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
