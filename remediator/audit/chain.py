"""The audit's hash chain: how an event is hashed, and the walk that checks a chain.

Every row of ``events`` stores ``prev_hash`` (the ``hash`` of the event before it, or of the
prune checkpoint, or ``GENESIS``) and ``hash = sha256(prev_hash || canonical JSON of the
event's fields)``, the fields being ``id, run_id, ts_ms, kind, name, verdict, detail``.
Editing a field breaks that event's hash; deleting or inserting a row breaks the next
event's ``prev_hash``. The mutable tables are covered through the chain:

- ``runs``: every write to a run appends a ``run`` event whose detail carries the digest
  of the whole row after the write (``row_sha256``); a row that no longer matches its last
  ``run`` event was edited outside the remediator.
- ``flags``: every change is a chained ``note`` named ``flag <name>``, and each prune or
  migration note carries a snapshot of all flags; the table must equal what the chain says.
- the prune checkpoint (``chain_base``: pruned through event N whose hash was H) must equal
  the one recorded by the last chained ``audit_pruned`` note.

Not chained: ``notifications`` and ``episodes`` (inputs Alertmanager re-sends; what a run
acted on is in its run row, ``alert``, which is covered). Without a secret, someone who can
write the file can recompute the whole chain after an edit; the head hash the remediator
logs after every prune pass is the anchor against that (compare it with a later ``audit
verify``).

Pure: no I/O, no clock. ``audit.py`` reads the rows and feeds them here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
RUN_KIND = "run"  # EventKind.RUN: a snapshot of a run row after a write
PRUNED = "audit_pruned"  # note: rows before a checkpoint were deleted by retention
CHAINED = "audit_chained"  # note: rows written before schema 4 were chained at migration
FLAG_PREFIX = "flag "  # note names of flag changes (AuditLog.set_flag)
HINT = (
    "a row of the events table was edited, deleted or inserted outside the remediator "
    "(or the file is damaged); restore the database from a copy you trust and compare"
)


def canonical(value: Any) -> bytes:
    """The one byte form that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def event_hash(
    prev_hash: str,
    *,
    event_id: int,
    run_id: str | None,
    ts_ms: int,
    kind: str,
    name: str,
    verdict: str | None,
    detail: Any,
) -> str:
    fields = {
        "id": event_id,
        "run_id": run_id,
        "ts_ms": ts_ms,
        "kind": kind,
        "name": name,
        "verdict": verdict,
        "detail": detail,
    }
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(fields)).hexdigest()


def row_digest(row: Mapping[str, Any]) -> str:
    """Digest of a run row. NULL columns are left out, so a later migration that adds a
    nullable column does not change the digest of the rows already written."""
    return hashlib.sha256(canonical({k: v for k, v in row.items() if v is not None})).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    id: int
    run_id: str | None
    ts_ms: int
    kind: str
    name: str
    verdict: str | None
    detail: str  # as stored (JSON text)
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True, slots=True)
class Base:
    """Where the chain starts: after event ``through_id`` whose hash was ``hash``."""

    through_id: int = 0
    hash: str = GENESIS
    pruned_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link."""

    event_id: int | None
    what: str
    expected: str
    found: str
    hint: str = HINT


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int  # events verified
    head_id: int | None
    head_hash: str
    base: Base
    migrated_through: int | None  # events up to this id were chained at migration
    broken: Break | None

    def summary(self) -> str:
        if self.broken is not None:
            b = self.broken
            where = f"event {b.event_id}" if b.event_id is not None else "chain"
            return (
                f"chain BROKEN at {where}: {b.what}\n  expected: {b.expected}\n"
                f"  found:    {b.found}\n  hint: {b.hint}"
            )
        text = f"{self.events} events verified, chain intact (head {self.head_hash})"
        if self.base.through_id:
            text += (
                f"; events up to id {self.base.through_id} were deleted by retention "
                f"(checkpoint hash {self.base.hash}, pruned at {self.base.pruned_ms} ms)"
            )
        if self.migrated_through is not None:
            text += (
                f"; events up to id {self.migrated_through} were written before the "
                "chain existed and were chained when the database was migrated, not "
                "when written"
            )
        return text


@dataclass
class Walk:
    """Feed ``ChainRow``s in id order, then ``finish`` with the current runs and flags."""

    base: Base
    events: int = 0
    prev_id: int = 0
    prev_hash: str = ""
    broken: Break | None = None
    migrated_through: int | None = None
    runs: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # id, digest, state
    flags: dict[str, str] = field(default_factory=dict)
    flags_from: int | None = None  # event that last gave a full flag snapshot
    checkpoint: tuple[int, int, str] | None = None  # event, through_id, hash of last note

    def __post_init__(self) -> None:
        self.prev_id, self.prev_hash = self.base.through_id, self.base.hash

    def feed(self, row: ChainRow) -> bool:
        """Check one event; False once the chain is broken (stop feeding)."""
        if self.broken is None:
            self.broken = self._link(row)
        if self.broken is not None:
            return False
        self.events += 1
        self.prev_id, self.prev_hash = row.id, str(row.hash)
        self._remember(row)
        return True

    def _link(self, row: ChainRow) -> Break | None:
        if row.id < 1:
            return Break(
                row.id,
                "an event before the start of the chain",
                "the first event has id 1",
                f"event {row.id} ({row.kind} {row.name!r})",
                "a row was inserted before the first event",
            )
        if row.id <= self.base.through_id:
            return Break(
                row.id,
                "an event at or before the prune checkpoint",
                f"no events with id <= {self.base.through_id}",
                f"event {row.id} ({row.kind} {row.name!r})",
                "a row was inserted after retention deleted that range",
            )
        if row.prev_hash is None or row.hash is None:
            return Break(
                row.id,
                "an event without prev_hash/hash",
                "every event written by the remediator is chained",
                f"prev_hash={row.prev_hash!r}, hash={row.hash!r}",
                "the row was inserted directly into the database",
            )
        if row.prev_hash != self.prev_hash:
            before = (
                "the prune checkpoint"
                if self.prev_id == self.base.through_id and self.base.through_id
                else (f"event {self.prev_id}" if self.prev_id else "the start of the chain")
            )
            if row.id != self.prev_id + 1:
                hint = (
                    f"ids {self.prev_id + 1}..{row.id - 1} are missing: rows were "
                    "deleted (retention never deletes without a checkpoint)"
                )
            else:
                hint = (
                    f"a row was inserted or replaced before event {row.id}, or {before} was edited"
                )
            return Break(
                row.id,
                f"prev_hash does not match {before}",
                f"prev_hash {self.prev_hash}",
                f"prev_hash {row.prev_hash}",
                hint,
            )
        try:
            detail = json.loads(row.detail)
        except ValueError:
            detail = row.detail
        want = event_hash(
            row.prev_hash,
            event_id=row.id,
            run_id=row.run_id,
            ts_ms=row.ts_ms,
            kind=row.kind,
            name=row.name,
            verdict=row.verdict,
            detail=detail,
        )
        if want != row.hash:
            return Break(
                row.id,
                f"its fields do not hash to its stored hash ({row.kind} "
                f"{row.name!r}, verdict {row.verdict!r})",
                f"hash {want} (recomputed from the row's fields)",
                f"hash {row.hash}",
                "the row was edited after it was written (a verdict, detail, time or run changed)",
            )
        return None

    def _remember(self, row: ChainRow) -> None:
        try:
            detail = json.loads(row.detail)
        except ValueError:
            return
        if not isinstance(detail, dict):
            return
        if row.kind == RUN_KIND and row.run_id is not None:
            self.runs[row.run_id] = (
                row.id,
                str(detail.get("row_sha256")),
                str(detail.get("state")),
            )
        elif row.kind == "note" and row.run_id is None:
            if row.name.startswith(FLAG_PREFIX):
                value = detail.get("value")
                name = row.name[len(FLAG_PREFIX) :]
                if value is None:
                    self.flags.pop(name, None)
                else:
                    self.flags[name] = str(value)
            elif row.name in (PRUNED, CHAINED) and isinstance(detail.get("flags"), dict):
                self.flags = {str(k): str(v) for k, v in detail["flags"].items()}
                self.flags_from = row.id
                if row.name == CHAINED:
                    self.migrated_through = int(detail.get("chained_through_id", 0))
                else:
                    self.checkpoint = (
                        row.id,
                        int(detail.get("through_id", 0)),
                        str(detail.get("head_hash")),
                    )

    def finish(
        self, *, runs: Mapping[str, tuple[str, str]], flags: Mapping[str, str]
    ) -> ChainReport:
        """``runs``: every run row, id -> (row digest, state); ``flags``: the flags table."""
        if self.broken is None:
            self.broken = self._tables(runs, flags)
        return ChainReport(
            events=self.events,
            head_id=self.prev_id if self.events else None,
            head_hash=self.prev_hash,
            base=self.base,
            migrated_through=self.migrated_through,
            broken=self.broken,
        )

    def _tables(
        self, runs: Mapping[str, tuple[str, str]], flags: Mapping[str, str]
    ) -> Break | None:
        base = self.base
        recorded = self.checkpoint[1:] if self.checkpoint else (0, GENESIS)
        if (base.through_id, base.hash) != recorded and (base.through_id or self.checkpoint):
            return Break(
                self.checkpoint[0] if self.checkpoint else None,
                "the prune checkpoint differs from the last chained audit_pruned note",
                f"through id {recorded[0]}, hash {recorded[1]}",
                f"through id {base.through_id}, hash {base.hash}",
                "the chain_base table was edited, or events were deleted and a "
                "checkpoint forged to hide it",
            )
        for run_id in sorted(set(runs) | set(self.runs)):
            if run_id not in runs:
                event_id = self.runs[run_id][0]
                return Break(
                    event_id,
                    f"run {run_id} has chained records but no row",
                    f"a row for run {run_id} (state {self.runs[run_id][2]})",
                    "no row",
                    "the run row was deleted outside the remediator",
                )
            digest, state = runs[run_id]
            if run_id not in self.runs:
                return Break(
                    None,
                    f"run {run_id} has a row but no chained record",
                    "a `run` event for every run row",
                    f"run {run_id} (state {state}) with none",
                    "the run row was inserted directly into the database",
                )
            event_id, want, recorded_state = self.runs[run_id]
            if digest != want:
                return Break(
                    event_id,
                    f"run {run_id}'s row differs from its last chained record",
                    f"row digest {want} (state {recorded_state})",
                    f"row digest {digest} (state {state})",
                    "the run row (state, outcome, plan, ...) was edited outside the remediator",
                )
        if dict(flags) != self.flags:
            return Break(
                self.flags_from,
                "the flags table differs from the chained flag changes",
                json.dumps(self.flags, sort_keys=True),
                json.dumps(dict(flags), sort_keys=True),
                "a flag (the kill switch `paused`, a `breaker:`) was set or cleared "
                "outside the remediator",
            )
        return None
