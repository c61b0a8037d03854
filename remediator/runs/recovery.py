"""Recovery at start: runs a crash interrupted are marked so and escalated, never
repeated. A run waiting for an approval is left waiting (the approval still applies)."""

from __future__ import annotations

import json
from collections.abc import Callable

from remediator.audit.store import EventKind, RunState
from remediator.audit.thread import AuditThread
from remediator.catalog.loader import Catalog
from remediator.catalog.playbook import Mode
from remediator.runs.escalation import Escalator
from remediator.runs.journal import Journal
from remediator.webhook import alert_from_json


async def recover(
    *, audit: AuditThread, catalog: Callable[[], Catalog], journal: Journal, escalator: Escalator
) -> int:
    """Mark every unfinished run interrupted and escalate it; returns how many."""
    n = 0
    for run in await audit.run(lambda db: db.non_terminal_runs()):
        if run.state is RunState.WAITING_APPROVAL:
            continue
        entry = catalog().by_name(run.playbook)
        await journal.event(
            run.id, EventKind.NOTE, "interrupted", "interrupted", {"state": run.state}
        )
        if entry is not None:
            alert = alert_from_json(
                json.loads(run.alert) if isinstance(run.alert, str) else run.alert
            )
            await escalator.escalate(
                run.id,
                entry.playbook,
                alert,
                f"interrupted by a restart while {run.state}; "
                "not repeated",  # a dry run pages nobody, even now
                dry_run=run.mode in (Mode.DRY_RUN, Mode.SHADOW),
            )
        await journal.finish(
            run.id,
            run.playbook,
            RunState.INTERRUPTED,
            f"interrupted while {run.state}; not repeated",
        )
        n += 1
    return n
