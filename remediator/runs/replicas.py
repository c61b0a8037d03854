"""Several replicas: what this one shares with the others through the cluster, and what
a new leader takes over from them.

``SharedRuns`` claims a run in the shared ConfigMap before it acts, shares how runs end,
and reads the kill switch and breakers every replica sees. ``Takeover`` is the leader's
side: import the runs the others shared (a run a crashed leader left unfinished is marked
interrupted and escalated, never repeated), then replay the notifications recorded while
following. With one replica (``shared`` None) there is nothing to share or take over.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from remediator.audit.store import TERMINAL as TERMINAL_STATES
from remediator.audit.store import AuditLog, EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog
from remediator.catalog.playbook import Playbook
from remediator.cluster.state import ClusterState, run_key
from remediator.errors import ActionError, WebhookError
from remediator.metrics import RemediatorMetrics
from remediator.runs.escalation import Escalator
from remediator.runs.journal import Journal
from remediator.webhook import Alert, Notification, alert_from_json, parse_notification

log = logging.getLogger(__name__)


class SharedRuns:
    def __init__(
        self,
        *,
        shared: ClusterState | None,
        audit: AuditThread,
        identity: str,
        metrics: RemediatorMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.shared = shared
        self.audit = audit
        self.identity = identity
        self.metrics = metrics
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def claim(self, run_id: str, pb: Playbook, alert: Alert) -> str | None:
        """Claim the run in the cluster; None when this replica has it (or is alone),
        else why it must not act: another replica has it, or the claim cannot be made."""
        if self.shared is None:
            return None
        key = run_key(pb.name, str(alert.fingerprint), alert.starts_at)
        record = {
            "run_id": run_id,
            "replica": self.identity,
            "playbook": pb.name,
            "mode": pb.spec.mode.value,
            "fingerprint": str(alert.fingerprint),
            "starts_at": alert.starts_at,
            "alert": alert.to_json(),
            "created_ms": self.now_ms(),
            "state": RunState.PLANNED.value,
        }
        try:
            claimed = await self.shared.claim(key, record)
        except ActionError as exc:
            return f"cannot claim the run in the cluster ({exc}); not acting without it"
        if not claimed:
            self.metrics.duplicates.labels(pb.name).inc()
            return "already handled by another replica"
        return None

    async def share(self, run_id: str, pb_name: str, state: RunState) -> None:
        """Tell the other replicas how a run ended (best effort: logged on failure)."""
        if self.shared is None:
            return
        run = await self.audit.run(lambda db: db.get_run(run_id))
        if run is None:
            return
        try:
            await self.shared.update(
                run_key(pb_name, run.fingerprint, run.starts_at),
                {"state": state.value, "executed_ms": run.executed_ms, "target": run.target},
            )
        except ActionError as exc:
            log.warning("run %s: could not share its state %s: %s", run_id, state.value, exc)

    async def flags(self) -> dict[str, Any] | None:
        """The kill switch and breakers as every replica sees them (None: one replica);
        when the cluster cannot be read, act as if paused: refuse rather than guess."""
        if self.shared is None:
            return None
        try:
            return dict((await self.shared.load())["flags"])
        except ActionError as exc:
            log.warning("shared flags unreadable (%s); treating the remediator as paused", exc)
            return {"paused": f"unknown: {exc}"}


HandleFunc = Callable[[int, Notification, float], Awaitable[None]]


class Takeover:
    """What a replica does when it becomes the leader."""

    def __init__(
        self,
        *,
        shared: ClusterState | None,
        audit: AuditThread,
        identity: str,
        catalog: Callable[[], Catalog],
        journal: Journal,
        escalator: Escalator,
        handle: HandleFunc,
        clock: Callable[[], float],
        replay_s: float,
    ) -> None:
        self.shared = shared
        self.audit = audit
        self.identity = identity
        self.catalog = catalog
        self.journal = journal
        self.escalator = escalator
        self.handle = handle
        self.clock = clock
        self.replay_s = replay_s

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def sync_from_cluster(self) -> int:
        """Import the runs and flags other replicas shared; escalate the ones a crashed
        leader left unfinished. Returns how many runs were imported."""
        if self.shared is None:
            return 0
        doc = await self.shared.load()
        for name, value in doc["flags"].items():
            await self.audit.run(
                functools.partial(
                    AuditLog.set_flag, name=name, value=str(value), now_ms=self.now_ms()
                )
            )
        imported = 0
        for key, rec in sorted(doc["runs"].items(), key=lambda kv: kv[1].get("created_ms", 0)):
            if rec.get("replica") == self.identity:
                continue
            fields: dict[str, Any] = {
                "playbook": rec["playbook"],
                "fingerprint": rec["fingerprint"],
                "starts_at": rec["starts_at"],
                "alertname": rec.get("alert", {}).get("labels", {}).get("alertname", ""),
                "alert": rec.get("alert", {}),
                "mode": rec.get("mode", "auto"),
                "notification_id": None,
                "target": rec.get("target"),
                "now_ms": int(rec.get("created_ms", 0)),
            }
            run = await self.audit.run(functools.partial(AuditLog.create_run, **fields))
            if run is None:
                continue
            imported += 1
            await self._import(run.id, key, rec)
        return imported

    async def _import(self, run_id: str, key: str, rec: dict[str, Any]) -> None:
        shared_state = str(rec.get("state", RunState.PLANNED.value))
        executed = rec.get("executed_ms")
        origin = f"run {rec.get('run_id')} of replica {rec.get('replica')}"
        if executed is not None or shared_state in (RunState.RUNNING, RunState.VERIFYING):
            when = int(executed if executed is not None else rec.get("created_ms", 0))
            await self.audit.run(lambda db: db.mark_executing(run_id, now_ms=when))
        state = RunState(shared_state)
        if state in TERMINAL_STATES:
            await self.audit.run(
                lambda db: db.set_state(
                    run_id, state, now_ms=self.now_ms(), outcome=f"done by {origin}"
                )
            )
            return
        # the leader that owned it stopped mid-run: never repeat, escalate
        await self.journal.event(
            run_id,
            EventKind.NOTE,
            "interrupted",
            "interrupted",
            {"origin": origin, "state": state.value},
        )
        entry = self.catalog().by_name(str(rec["playbook"]))
        if entry is not None and rec.get("alert"):
            await self.escalator.escalate(
                run_id,
                entry.playbook,
                alert_from_json(rec["alert"]),
                f"{origin} was interrupted while {state.value}; not repeated",
            )
        await self.audit.run(
            lambda db: db.set_state(
                run_id,
                RunState.INTERRUPTED,
                now_ms=self.now_ms(),
                outcome=f"{origin} was interrupted while {state.value}; not repeated",
            )
        )
        if self.shared is not None:
            await self.shared.update(key, {"state": RunState.INTERRUPTED.value})

    async def replay(self) -> None:
        """Handle the notifications recorded in the last ``replay_s`` (idempotent)."""
        since = self.now_ms() - int(self.replay_s * 1000)
        for note in await self.audit.run(lambda db: db.notifications_since(since)):
            if not note.is_replayable:  # over audit.max_stored_body_bytes, stored truncated
                log.warning(
                    "notification %d not replayed: its %s-byte body was stored truncated",
                    note.id,
                    note.size_bytes,
                )
                continue
            try:
                parsed = parse_notification(note.body.encode())
            except WebhookError:
                continue
            await self.handle(note.id, parsed, time.perf_counter())
