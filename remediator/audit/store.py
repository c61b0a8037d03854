"""The remediator's durable record: one SQLite database (WAL) of everything it did and why.

This module owns the audit schema and its migrations, the run lifecycle rows (one run per
``(playbook, fingerprint, startsAt)`` for ever: the unique key is the dedup mechanism, across
restarts and an Alertmanager HA pair sending the same notification twice), the event trail
(decisions, guard verdicts, action requests and responses, verification, undo, escalation,
approvals), the flags (kill switch ``paused``, circuit breakers ``breaker:<playbook>``), and
the queries guards answer from, so that every guard survives a restart. It decides nothing:
guard verdicts are computed elsewhere from what these queries return.

Threading: ``AuditLog`` is synchronous and holds one connection that must be used from ONE
thread at a time; the app calls it only through its single-thread executor. The connection is
opened with ``check_same_thread=False`` because that executor thread is not the one that opens
it; sqlite3 would otherwise refuse. Durability: ``synchronous=FULL`` with WAL fsyncs the log
on every commit, so a call that returned survives a crash or power loss (``NORMAL`` could lose
the last commits on power loss). No clock is read here: every timestamp is an epoch-ms int
passed in by the caller (``now_ms`` and the like). Every sqlite3 error becomes ``AuditError``.

Events are written by the caller; the log adds one itself only for what it changes on its own
(an approval expiring), what belongs to no run (a flag change: a ``note`` with run_id None),
and a ``run`` event after every write to a run (its state and the digest of its row).

Tamper evidence and retention (schema version 4): every event is hash-chained
(``chain``: what the chain covers and what it does not), ``verify`` walks the chain,
and ``prune`` deletes old terminal runs as a prefix of the chain behind a checkpoint
(``retention``). A webhook body is stored once per distinct body (by sha256; a repeat
bumps ``count`` and ``last_ms``) and at most ``max_stored_body_bytes`` of it.
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from remediator.audit import chain, retention
from remediator.catalog.playbook import Mode
from remediator.errors import ApprovalError, AuditError, WebhookError
from remediator.webhook import Alert, parse_notification

SCHEMA_VERSION = 4
Json = dict[str, Any] | list[Any]  # a JSON object or array as json.loads returns it
BUSY_TIMEOUT_S = 5.0  # another process holding the write lock (a second replica, a CLI)
E = TypeVar("E", bound=Enum)


class RunState(StrEnum):
    PLANNED = "planned"
    REFUSED = "refused"  # a guard said no
    SHADOW = "shadow"  # decided, not executed
    WAITING_APPROVAL = "waiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNDONE = "undone"
    ESCALATED = "escalated"
    INTERRUPTED = "interrupted"  # found unfinished at start-up; escalated, never repeated
    EXPIRED = "expired"  # approval not given in time
    DRY_RUN = "dry_run"  # executed with the API server's dry-run


TERMINAL = frozenset(
    {
        RunState.REFUSED,
        RunState.SHADOW,
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.UNDONE,
        RunState.ESCALATED,
        RunState.INTERRUPTED,
        RunState.EXPIRED,
        RunState.DRY_RUN,
    }
)
NON_TERMINAL = frozenset(RunState) - TERMINAL
ACTIVE = frozenset({RunState.APPROVED, RunState.RUNNING, RunState.VERIFYING})
# mark_executing accepts these; ``running`` too, for a caller that set the state first
STARTABLE = frozenset({RunState.PLANNED, RunState.APPROVED, RunState.RUNNING})


class EventKind(StrEnum):
    DECISION = "decision"
    GUARD = "guard"
    PLAN = "plan"
    ACTION_REQUEST = "action_request"
    ACTION_RESPONSE = "action_response"
    VERIFY = "verify"
    UNDO = "undo"
    ESCALATE = "escalate"
    APPROVAL = "approval"
    NOTE = "note"
    RUN = "run"  # written by the log after every write to a run; not listed by ``events``


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: int
    received_ms: int
    receiver: str
    status: str
    group_key: str
    n_alerts: int
    body: str  # the webhook body as received, or its reduced/truncated form (body_form)
    sha256: str | None = None  # of the body as received (None: stored before schema 4)
    size_bytes: int | None = None  # of the body as received
    body_form: str = "verbatim"  # verbatim, reduced or truncated (not replayable)
    last_ms: int | None = None  # the last time this same body was received
    count: int = 1  # times this same body was received

    @property
    def is_replayable(self) -> bool:
        return self.body_form != "truncated"


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One alert episode, (fingerprint, startsAt), as the notifications showed it."""

    fingerprint: str
    starts_at: str
    starts_ms: int
    alertname: str
    labels: dict[str, str]
    detector: str | None  # the ``detector`` annotation: the alert came from Vigil's detector
    first_ms: int  # first and last notification received about it
    last_ms: int
    status: str  # "resolved" once a resolved notification came, else "firing"
    ends_ms: int | None  # endsAt of the resolved notification
    peak_score: float | None  # highest numeric ``score`` annotation seen
    notifications: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str  # f"{created_ms:013d}-{8 hex}": sorts by creation time
    playbook: str
    fingerprint: str
    starts_at: str  # the alert's raw startsAt string, part of the unique key
    alertname: str
    target: str | None  # e.g. "deployment/shop/checkout"
    mode: Mode
    state: RunState
    created_ms: int
    updated_ms: int
    executed_ms: int | None  # when the run started acting; what rate limits and cooldowns count
    notification_id: int | None
    alert: dict[str, Any]
    plan: Json | None
    plan_hash: str | None
    approval_expires_ms: int | None
    approved_by: str | None
    approved_ms: int | None
    outcome: str | None  # a short reason for the last state
    trace_id: str | None = None  # its trace (webhook, guards, actions, verification)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    run_id: str | None  # None: not about one run (a flag change)
    ts_ms: int
    kind: EventKind
    name: str
    verdict: str | None  # allow/refuse, ok/failed, ...
    detail: dict[str, Any]


_V1 = (
    """CREATE TABLE notifications (
        id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, receiver TEXT NOT NULL,
        status TEXT NOT NULL, group_key TEXT NOT NULL, n_alerts INTEGER NOT NULL,
        body TEXT NOT NULL)""",
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY, playbook TEXT NOT NULL, fingerprint TEXT NOT NULL,
        starts_at TEXT NOT NULL, alertname TEXT NOT NULL, target TEXT, mode TEXT NOT NULL,
        state TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        executed_ms INTEGER, notification_id INTEGER REFERENCES notifications(id),
        alert TEXT NOT NULL, plan TEXT, plan_hash TEXT, approval_expires_ms INTEGER,
        approved_by TEXT, approved_ms INTEGER, outcome TEXT,
        UNIQUE (playbook, fingerprint, starts_at))""",
    "CREATE INDEX runs_state ON runs(state)",
    "CREATE INDEX runs_executed ON runs(executed_ms)",
    "CREATE INDEX runs_playbook_executed ON runs(playbook, executed_ms)",
    "CREATE INDEX runs_target_executed ON runs(target, executed_ms)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY, run_id TEXT REFERENCES runs(id), ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL, name TEXT NOT NULL, verdict TEXT, detail TEXT NOT NULL)""",
    "CREATE INDEX events_run ON events(run_id, id)",
    "CREATE INDEX events_kind_verdict_ts ON events(kind, verdict, ts_ms)",
    """CREATE TABLE flags (
        name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL)""",
)
# RFC 3339 text -> epoch ms in SQL (julianday reads any number of fractional digits and Z
# or an offset); only the version 2 back-fill uses it, Python parses everything else
_SQL_MS = "CAST(round((julianday({}) - 2440587.5) * 86400000) AS INTEGER)"
_A = "json_extract(a.value, '$.{}')"
# One row per alert episode, (fingerprint, startsAt) as in runs: what the alert-quality
# report reads instead of re-parsing every stored webhook body. Upserted with the
# notification, in its transaction (no extra fsync). The back-fill rebuilds the episodes of
# the notifications an older version stored.
_V2 = (
    """CREATE TABLE episodes (
        fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL, starts_ms INTEGER NOT NULL,
        alertname TEXT NOT NULL, labels TEXT NOT NULL, detector TEXT,
        first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, status TEXT NOT NULL,
        ends_ms INTEGER, peak_score REAL, notifications INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, starts_at))""",
    "CREATE INDEX episodes_last ON episodes(last_ms)",
    f"""INSERT INTO episodes SELECT
        {_A.format("fingerprint")}, {_A.format("startsAt")},
        {_SQL_MS.format(_A.format("startsAt"))},
        coalesce({_A.format("labels.alertname")}, ''), json({_A.format("labels")}),
        max({_A.format("annotations.detector")}), min(n.received_ms), max(n.received_ms),
        CASE WHEN max({_A.format("status")} = 'resolved') THEN 'resolved' ELSE 'firing' END,
        min(CASE WHEN {_A.format("status")} = 'resolved'
            THEN {_SQL_MS.format(_A.format("endsAt"))} END),
        max(CASE WHEN trim({_A.format("annotations.score")}) GLOB '[0-9]*'
            THEN CAST({_A.format("annotations.score")} AS REAL) END),
        count(*)
        FROM notifications n, json_each(n.body, '$.alerts') a
        WHERE json_valid(n.body) AND {_A.format("fingerprint")} IS NOT NULL
            AND {_A.format("startsAt")} IS NOT NULL
        GROUP BY 1, 2""",
)
# version 3: the trace a run belongs to (OpenTelemetry trace id, 32 hex digits)
_V3 = ("ALTER TABLE runs ADD COLUMN trace_id TEXT",)
# version 4: the hash chain over events, the prune checkpoint, bodies stored once and capped;
# _migrate_v4 then hashes the stored bodies and chains the existing rows
_V4 = (
    "ALTER TABLE events ADD COLUMN prev_hash TEXT",
    "ALTER TABLE events ADD COLUMN hash TEXT",
    "ALTER TABLE notifications ADD COLUMN sha256 TEXT",
    "ALTER TABLE notifications ADD COLUMN size_bytes INTEGER",
    "ALTER TABLE notifications ADD COLUMN body_form TEXT NOT NULL DEFAULT 'verbatim'",
    "ALTER TABLE notifications ADD COLUMN last_ms INTEGER",
    "ALTER TABLE notifications ADD COLUMN count INTEGER NOT NULL DEFAULT 1",
    "UPDATE notifications SET last_ms = received_ms",
    "CREATE INDEX notifications_sha256 ON notifications(sha256)",
    "CREATE INDEX notifications_last ON notifications(last_ms)",
    "CREATE INDEX events_ts ON events(ts_ms)",
    """CREATE TABLE chain_base (
        id INTEGER PRIMARY KEY CHECK (id = 1), through_id INTEGER NOT NULL,
        hash TEXT NOT NULL, pruned_ms INTEGER NOT NULL)""",
)
# MIGRATIONS[n - 1] takes the schema from version n - 1 to n; append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
_UPSERT_EPISODE = """INSERT INTO episodes (fingerprint, starts_at, starts_ms, alertname, labels,
        detector, first_ms, last_ms, status, ends_ms, peak_score, notifications)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
    ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
        last_ms = max(last_ms, excluded.last_ms),
        status = CASE WHEN status = 'resolved' THEN status ELSE excluded.status END,
        ends_ms = coalesce(ends_ms, excluded.ends_ms),
        peak_score = max(coalesce(peak_score, excluded.peak_score),
                         coalesce(excluded.peak_score, peak_score)),
        notifications = notifications + 1"""


def _json(value: Json) -> str:
    return json.dumps(value, sort_keys=True)


def _marks(states: frozenset[RunState]) -> str:
    return ",".join(f"'{s.value}'" for s in sorted(states))  # enum values, not user input


class AuditLog:
    """The audit database. Use from one thread only (see the module docstring)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self._depth = 0  # > 0 inside atomic()
        self._path = path
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> AuditLog:
        """Open (creating it and its parent directory if needed) and migrate the database."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(
                f"audit database {path}: cannot create its directory: {exc}; "
                "point the remediator at a writable path"
            ) from exc
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise AuditError(f"audit database {path}: cannot open: {exc}") from exc
        log = cls(path, conn)
        try:
            log._setup()
        except AuditError:
            conn.close()
            raise
        return log

    @classmethod
    def open_readonly(cls, path: Path) -> AuditLog:
        """Open an existing database for reading only (``mode=ro``; WAL lets it read while
        the service writes). No migration: a schema older than this code is an error."""
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            found = int(
                conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            )
        except sqlite3.Error as exc:
            raise AuditError(
                f"audit database {path}: cannot read it: {exc}; pass the "
                "remediator's --state-dir or the file itself"
            ) from exc
        if found != SCHEMA_VERSION:
            conn.close()
            hint = (
                "start `vigil-remediator serve` of this version once to migrate it"
                if found < SCHEMA_VERSION
                else "use a newer vigil-remediator"
            )
            raise AuditError(
                f"audit database {path}: schema version {found}, this "
                f"remediator reads version {SCHEMA_VERSION}; {hint}"
            )
        return cls(path, conn)

    def close(self) -> None:
        with self._failing("close"):
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise AuditError(f"audit database {self._path}: {what}: {exc}") from exc
        except (TypeError, ValueError) as exc:  # json.dumps of a value it cannot encode
            raise AuditError(
                f"audit database {self._path}: {what}: not storable as JSON: "
                f"{exc}; pass JSON-serialisable values"
            ) from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock first, so a read-then-write inside
        it cannot race another connection."""
        if self._depth:  # inside atomic(): part of the outer transaction
            with self._failing(what):
                yield self._conn
            return
        with self._failing(what):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Several writes as one transaction: one commit (one fsync), all or nothing."""
        with self._write("atomic writes"):
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def _setup(self) -> None:
        with self._failing("set pragmas"):
            self._conn.row_factory = sqlite3.Row
            # takes effect only on a new, empty file: prune can then give pages back
            self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        if str(mode).lower() != "wal":
            raise AuditError(
                f"audit database {self._path}: journal_mode is {mode}, not wal; "
                "put the database on a local filesystem that supports WAL"
            )
        with self._write("migrate schema") as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            found = int(
                db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            )
            if found > SCHEMA_VERSION:
                raise AuditError(
                    f"audit database {self._path}: schema version {found} is newer than this "
                    f"remediator knows ({SCHEMA_VERSION}); run a newer remediator or use "
                    "another database file"
                )
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    db.execute(statement)
                if version == 4:
                    self._migrate_v4(db)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        with self._failing("read schema version"):
            return int(self._conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    def _enum(self, cls: type[E], value: str, what: str) -> E:
        """``value`` as a member of ``cls``: callers may pass the plain string."""
        try:
            return cls(value)
        except ValueError as exc:
            choices = ", ".join(str(m.value) for m in cls)
            raise AuditError(
                f"audit database {self._path}: {what}: unknown {cls.__name__} "
                f"{value!r}; use one of {choices}"
            ) from exc

    def _run(self, db: sqlite3.Connection, run_id: str) -> RunRecord | None:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run_record(row)

    def _event(
        self,
        db: sqlite3.Connection,
        run_id: str | None,
        *,
        kind: EventKind,
        name: str,
        verdict: str | None,
        detail: dict[str, Any] | None,
        now_ms: int,
    ) -> int:
        """Append a chained event. The id is chosen here (never below the prune checkpoint,
        which SQLite's reuse of max(id) + 1 could do) because it is part of the hash."""
        text = _json(detail or {})
        base = self._base(db)
        last = db.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        prev_id, prev_hash = (
            (base.through_id, base.hash)
            if last is None or last[0] <= base.through_id
            else (int(last[0]), str(last[1] or ""))
        )
        event_id = prev_id + 1
        digest = chain.event_hash(
            prev_hash,
            event_id=event_id,
            run_id=run_id,
            ts_ms=now_ms,
            kind=kind.value,
            name=name,
            verdict=verdict,
            detail=json.loads(text),
        )
        db.execute(
            "INSERT INTO events (id, run_id, ts_ms, kind, name, verdict, detail,"
            " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, run_id, now_ms, kind.value, name, verdict, text, prev_hash, digest),
        )
        return event_id

    def _base(self, db: sqlite3.Connection) -> chain.Base:
        row = db.execute("SELECT through_id, hash, pruned_ms FROM chain_base").fetchone()
        return chain.Base() if row is None else chain.Base(*row)

    def _snapshot(self, db: sqlite3.Connection, run_id: str, change: str, *, now_ms: int) -> None:
        """Chain the run row as it is now (a ``run`` event): ``verify`` compares the row
        with it, so a later edit of the row outside this class shows."""
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is not None:
            self._event(
                db,
                run_id,
                kind=EventKind.RUN,
                name=change,
                verdict=row["state"],
                detail={
                    "state": row["state"],
                    "outcome": row["outcome"],
                    "row_sha256": chain.row_digest(dict(row)),
                },
                now_ms=now_ms,
            )

    def _migrate_v4(self, db: sqlite3.Connection) -> None:
        """Hash (and cap) the stored bodies, then chain the events and runs written before
        the chain existed, in id order, and say so in an ``audit_chained`` note: those rows
        were chained when migrated, not when written. Timestamps are the newest stored one
        (no clock here)."""
        for nid, body in db.execute("SELECT id, body FROM notifications").fetchall():
            stored = retention.stored_body(
                str(body),
                max_bytes=retention.DEFAULT_MAX_STORED_BODY_BYTES,
                reduced=functools.partial(_reduced_body, str(body)),
            )
            db.execute(
                "UPDATE notifications SET body = ?, sha256 = ?, size_bytes = ?,"
                " body_form = ? WHERE id = ?",
                (stored.text, stored.sha256, stored.size_bytes, stored.form, nid),
            )
        prev = chain.GENESIS
        rows = db.execute("SELECT * FROM events ORDER BY id").fetchall()
        for r in rows:
            prev_hash, prev = (
                prev,
                chain.event_hash(
                    prev,
                    event_id=r["id"],
                    run_id=r["run_id"],
                    ts_ms=r["ts_ms"],
                    kind=r["kind"],
                    name=r["name"],
                    verdict=r["verdict"],
                    detail=json.loads(r["detail"]),
                ),
            )
            db.execute(
                "UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?", (prev_hash, prev, r["id"])
            )
        run_ids = [str(r[0]) for r in db.execute("SELECT id FROM runs ORDER BY rowid")]
        if not rows and not run_ids:
            return  # a new database: nothing was written unchained
        now_ms = int(
            db.execute(
                "SELECT max(coalesce((SELECT max(ts_ms) FROM events), 0),"
                " coalesce((SELECT max(updated_ms) FROM runs), 0))"
            ).fetchone()[0]
        )
        for run_id in run_ids:
            self._snapshot(db, run_id, "chained", now_ms=now_ms)
        self._event(
            db,
            None,
            kind=EventKind.NOTE,
            name=chain.CHAINED,
            verdict=None,
            detail={
                "chained_through_id": rows[-1]["id"] if rows else 0,
                "runs": len(run_ids),
                "flags": _flags(db),
                "note": "rows written before schema version 4 were chained "
                "when the database was migrated, not when written",
            },
            now_ms=now_ms,
        )

    def _must_exist(self, db: sqlite3.Connection, run_id: str, what: str) -> RunRecord:
        run = self._run(db, run_id)
        if run is None:
            raise AuditError(
                f"audit database {self._path}: {what}: no run {run_id!r}; "
                "pass an id returned by create_run"
            )
        return run

    # -- notifications and runs ---------------------------------------------------------------

    def record_notification(
        self,
        *,
        received_ms: int,
        receiver: str,
        status: str,
        group_key: str,
        n_alerts: int,
        body: str,
        alerts: Sequence[Alert] = (),
        max_body_bytes: int = retention.DEFAULT_MAX_STORED_BODY_BYTES,
    ) -> int:
        """Store a notification and, in the same transaction, update the episodes of its
        ``alerts`` (the parsed alerts of ``body``). A body already stored (same sha256: an
        Alertmanager repeat, or the other member of an HA pair) is not stored again: its row
        gets ``count + 1`` and ``last_ms`` and its id is returned. A body over
        ``max_body_bytes`` is stored reduced or truncated (``retention.stored_body``)."""
        stored = retention.stored_body(
            body,
            max_bytes=max_body_bytes,
            reduced=lambda: _json(
                _notification_doc(
                    receiver=receiver, status=status, group_key=group_key, alerts=alerts
                )
            ),
        )
        rows = [
            (
                str(a.fingerprint),
                a.starts_at,
                a.starts_ms,
                a.labels.get("alertname", ""),
                _json(dict(a.labels)),
                a.annotations.get("detector"),
                received_ms,
                received_ms,
                a.status,
                None if a.is_firing else a.ends_ms,
                a.score,
            )
            for a in alerts
        ]
        with self._write("record notification") as db:
            db.executemany(_UPSERT_EPISODE, rows)
            seen = db.execute(
                "SELECT id FROM notifications WHERE sha256 = ? ORDER BY id DESC LIMIT 1",
                (stored.sha256,),
            ).fetchone()
            if seen is not None:
                db.execute(
                    "UPDATE notifications SET count = count + 1,"
                    " last_ms = max(coalesce(last_ms, received_ms), ?) WHERE id = ?",
                    (received_ms, seen[0]),
                )
                return int(seen[0])
            cur = db.execute(
                "INSERT INTO notifications (received_ms, receiver, status, group_key,"
                " n_alerts, body, sha256, size_bytes, body_form, last_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    received_ms,
                    receiver,
                    status,
                    group_key,
                    n_alerts,
                    stored.text,
                    stored.sha256,
                    stored.size_bytes,
                    stored.form,
                    received_ms,
                ),
            )
            return int(cur.lastrowid or 0)

    def get_notification(self, notification_id: int) -> NotificationRecord | None:
        with self._failing(f"read notification {notification_id}"):
            row = self._conn.execute(
                "SELECT * FROM notifications WHERE id = ?", (notification_id,)
            ).fetchone()
        return None if row is None else NotificationRecord(**dict(row))

    def notifications_since(self, since_ms: int) -> list[NotificationRecord]:
        """Notifications last received at or after ``since_ms``, oldest first (replayed by
        a replica that has just become the leader; skip the ones not ``is_replayable``)."""
        with self._failing("list notifications"):
            rows = self._conn.execute(
                "SELECT * FROM notifications WHERE coalesce(last_ms, received_ms) >= ? ORDER BY id",
                (since_ms,),
            ).fetchall()
        return [NotificationRecord(**dict(row)) for row in rows]

    def create_run(
        self,
        *,
        playbook: str,
        fingerprint: str,
        starts_at: str,
        alertname: str,
        alert: dict[str, Any],
        mode: str,
        notification_id: int | None,
        target: str | None,
        now_ms: int,
        trace_id: str | None = None,
    ) -> RunRecord | None:
        """Insert a ``planned`` run, or return None when this (playbook, fingerprint,
        starts_at) already has one: that alert was handled before and must not run again.
        ``trace_id`` names the trace of the notification that started it."""
        run_id = f"{now_ms:013d}-{secrets.token_hex(4)}"
        mode_value = self._enum(Mode, mode, f"create run for {playbook}").value
        with self._write(f"create run for {playbook}") as db:
            cur = db.execute(
                "INSERT INTO runs (id, playbook, fingerprint, starts_at, alertname, target,"
                " mode, state, created_ms, updated_ms, notification_id, alert, trace_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (playbook, fingerprint, starts_at) DO NOTHING",
                (
                    run_id,
                    playbook,
                    fingerprint,
                    starts_at,
                    alertname,
                    target,
                    mode_value,
                    RunState.PLANNED.value,
                    now_ms,
                    now_ms,
                    notification_id,
                    _json(alert),
                    trace_id,
                ),
            )
            if cur.rowcount != 1:
                return None
            self._snapshot(db, run_id, "created", now_ms=now_ms)
            return self._run(db, run_id)

    def set_state(
        self, run_id: str, state: RunState, *, now_ms: int, outcome: str | None = None
    ) -> None:
        """Move a run to ``state``. A terminal run may move only to another terminal state
        (failed -> undone -> escalated); it is never made live again."""
        new = self._enum(RunState, state, f"set state of run {run_id}")
        with self._write(f"set run {run_id} to {new.value}") as db:
            cur = db.execute(
                "UPDATE runs SET state = ?, updated_ms = ?, outcome = coalesce(?, outcome)"
                f" WHERE id = ? AND (? OR state NOT IN ({_marks(TERMINAL)}))",
                (new.value, now_ms, outcome, run_id, new in TERMINAL),
            )
            if cur.rowcount == 0:
                run = self._must_exist(db, run_id, f"set state {new.value}")
                raise AuditError(
                    f"run {run_id} is {run.state.value}, which is final; it "
                    f"cannot become {new.value}. Create a new run instead"
                )
            self._snapshot(db, run_id, "state", now_ms=now_ms)

    def set_plan(self, run_id: str, *, plan: Json, plan_hash: str, now_ms: int) -> None:
        self._update(
            run_id, "set plan", "plan = ?, plan_hash = ?", (_json(plan), plan_hash), now_ms=now_ms
        )

    def set_target(self, run_id: str, target: str | None, *, now_ms: int) -> None:
        self._update(run_id, "set target", "target = ?", (target,), now_ms=now_ms)

    def _update(
        self, run_id: str, what: str, assignments: str, args: tuple[object, ...], *, now_ms: int
    ) -> None:
        with self._write(f"{what} of run {run_id}") as db:
            cur = db.execute(
                f"UPDATE runs SET {assignments}, updated_ms = ? WHERE id = ?",
                (*args, now_ms, run_id),
            )
            if cur.rowcount == 0:
                self._must_exist(db, run_id, what)
            self._snapshot(db, run_id, what.replace(" ", "_"), now_ms=now_ms)

    def mark_executing(self, run_id: str, *, now_ms: int) -> None:
        """Set state ``running`` and ``executed_ms`` (kept if already set). Only a planned,
        approved or running run may start: an interrupted or finished run never acts again."""
        with self._write(f"mark run {run_id} executing") as db:
            cur = db.execute(
                "UPDATE runs SET state = ?, executed_ms = coalesce(executed_ms, ?),"
                f" updated_ms = ? WHERE id = ? AND state IN ({_marks(STARTABLE)})",
                (RunState.RUNNING.value, now_ms, now_ms, run_id),
            )
            if cur.rowcount == 0:
                run = self._must_exist(db, run_id, "mark executing")
                raise AuditError(
                    f"run {run_id} is {run.state.value}; only a planned, approved "
                    "or running run may act, so it was not started"
                )
            self._snapshot(db, run_id, "executing", now_ms=now_ms)

    def add_event(
        self,
        run_id: str | None,
        *,
        kind: EventKind,
        name: str,
        verdict: str | None = None,
        detail: dict[str, Any] | None = None,
        now_ms: int,
    ) -> int:
        """Append an event (``run_id`` None: not about one run). Returns its id."""
        what = f"add {kind} event {name!r} to run {run_id}"
        kind = self._enum(EventKind, kind, what)
        with self._write(what) as db:
            return self._event(
                db, run_id, kind=kind, name=name, verdict=verdict, detail=detail, now_ms=now_ms
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._failing(f"read run {run_id}"):
            return self._run(self._conn, run_id)

    def list_runs(
        self,
        *,
        limit: int = 100,
        playbook: str | None = None,
        state: RunState | None = None,
        before_id: str | None = None,
        fingerprint: str | None = None,
    ) -> list[RunRecord]:
        """Newest first; pass the last id of a page as ``before_id`` for the next page."""
        sql, args = "SELECT * FROM runs WHERE 1", []
        # rowid is the insertion order: ids made in the same millisecond sort at random
        for clause, value in (
            ("playbook = ?", playbook),
            ("fingerprint = ?", fingerprint),
            ("rowid < (SELECT rowid FROM runs WHERE id = ?)", before_id),
            ("state = ?", state and self._enum(RunState, state, "list runs")),
        ):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        with self._failing("list runs"):
            rows = self._conn.execute(
                sql + " ORDER BY rowid DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [_run_record(row) for row in rows]

    def events(self, run_id: str | None) -> list[EventRecord]:
        """A run's events in the order they were added (None: the events of no run)."""
        with self._failing(f"read events of run {run_id}"):
            rows = self._conn.execute(
                "SELECT * FROM events WHERE run_id IS ? AND kind != ? ORDER BY id",
                (run_id, EventKind.RUN.value),
            ).fetchall()
        return [_event_record(r) for r in rows]

    # -- the alert-quality report ------------------------------------------------------------

    def episodes_since(self, since_ms: int) -> list[EpisodeRecord]:
        """Episodes with a notification received at or after ``since_ms``, oldest first."""
        with self._failing("list episodes"):
            rows = self._conn.execute(
                "SELECT * FROM episodes WHERE last_ms >= ? ORDER BY starts_ms, fingerprint",
                (since_ms,),
            ).fetchall()
        return [EpisodeRecord(**(dict(r) | {"labels": json.loads(r["labels"])})) for r in rows]

    def runs_since(self, since_ms: int) -> list[RunRecord]:
        """Runs created at or after ``since_ms``, oldest first."""
        with self._failing("list runs since"):
            rows = self._conn.execute(
                "SELECT * FROM runs WHERE created_ms >= ? ORDER BY rowid", (since_ms,)
            ).fetchall()
        return [_run_record(row) for row in rows]

    def run_events_since(self, since_ms: int, kinds: frozenset[EventKind]) -> list[EventRecord]:
        """The events of ``kinds`` of the runs created at or after ``since_ms``."""
        marks = ",".join(f"'{k.value}'" for k in sorted(kinds))  # enum values, not user input
        with self._failing("list run events"):
            rows = self._conn.execute(
                "SELECT e.* FROM events e JOIN runs r ON r.id = e.run_id"
                f" WHERE r.created_ms >= ? AND e.kind IN ({marks}) ORDER BY e.id",
                (since_ms,),
            ).fetchall()
        return [_event_record(r) for r in rows]

    # -- approvals ---------------------------------------------------------------------------

    def request_approval(
        self, run_id: str, *, plan_hash: str, expires_ms: int, now_ms: int
    ) -> None:
        """Put a planned run in ``waiting_approval`` for the plan with ``plan_hash``. Like
        ``approve``, it records no event: the caller adds the ``approval`` event it wants."""
        with self._write(f"request approval for run {run_id}") as db:
            run = self._must_exist(db, run_id, "request approval")
            if run.state not in (RunState.PLANNED, RunState.WAITING_APPROVAL):
                raise AuditError(
                    f"run {run_id} is {run.state.value}; only a planned run can wait for approval"
                )
            if run.plan_hash is not None and run.plan_hash != plan_hash:
                raise AuditError(
                    f"run {run_id}: approval requested for plan {plan_hash} but "
                    f"the recorded plan is {run.plan_hash}; call set_plan first"
                )
            db.execute(
                "UPDATE runs SET state = ?, plan_hash = ?, approval_expires_ms = ?,"
                " updated_ms = ? WHERE id = ?",
                (RunState.WAITING_APPROVAL.value, plan_hash, expires_ms, now_ms, run_id),
            )
            self._snapshot(db, run_id, "approval_requested", now_ms=now_ms)

    def approve(self, run_id: str, *, plan_hash: str, by: str, now_ms: int) -> RunRecord:
        """Approve the exact plan ``plan_hash``. Raises AuditError when the run does not exist,
        is not waiting, the plan changed, or the approval expired (the run then becomes
        ``expired`` and gets an ``approval``/``expired`` event, as in ``expire_approvals``)."""
        approved = None
        with self._write(f"approve run {run_id}") as db:
            run = self._must_exist(db, run_id, "approve")
            refusal = self._undecidable(
                db,
                run,
                "approved",
                now_ms=now_ms,
                expired=f" (now {now_ms} ms); the run is now expired and will not act",
            )
            if refusal is None and plan_hash != run.plan_hash:
                refusal = (
                    f"the plan changed since approval was requested (requested for "
                    f"{run.plan_hash}, approval given for {plan_hash}); review the "
                    f"current plan and approve {run.plan_hash}"
                )
            if refusal is None:
                db.execute(
                    "UPDATE runs SET state = ?, approved_by = ?, approved_ms = ?,"
                    " updated_ms = ? WHERE id = ?",
                    (RunState.APPROVED.value, by, now_ms, now_ms, run_id),
                )
                self._snapshot(db, run_id, "approved", now_ms=now_ms)
                approved = self._must_exist(db, run_id, "approve")
        if approved is None:
            raise ApprovalError(f"run {run_id}: cannot approve: {refusal}")
        return approved

    def reject(self, run_id: str, *, by: dict[str, str], reason: str, now_ms: int) -> RunRecord:
        """A person says no to a waiting run: it ends ``refused`` with outcome ``rejected
        by <name>: <reason>`` and an ``approval``/``rejected`` event naming them (``by``:
        the identity's audit fields). ApprovalError when the run does not exist, is not
        waiting, or its approval already expired (it then becomes ``expired``)."""
        rejected = None
        with self._write(f"reject run {run_id}") as db:
            run = self._must_exist(db, run_id, "reject")
            refusal = self._undecidable(
                db, run, "rejected", now_ms=now_ms, expired="; the run is expired already"
            )
            if refusal is None:
                why = f"rejected by {by['by']}" + (f": {reason}" if reason else "")
                db.execute(
                    "UPDATE runs SET state = ?, updated_ms = ?, outcome = ? WHERE id = ?",
                    (RunState.REFUSED.value, now_ms, why, run_id),
                )
                self._snapshot(db, run_id, "rejected", now_ms=now_ms)
                self._event(
                    db,
                    run_id,
                    kind=EventKind.APPROVAL,
                    name="rejected",
                    verdict="refuse",
                    detail={**by, "reason": reason},
                    now_ms=now_ms,
                )
                rejected = self._must_exist(db, run_id, "reject")
        if rejected is None:
            raise ApprovalError(f"run {run_id}: cannot reject: {refusal}")
        return rejected

    def _undecidable(
        self, db: sqlite3.Connection, run: RunRecord, decided: str, *, now_ms: int, expired: str
    ) -> str | None:
        """Why a person cannot decide ``run`` now (it is not waiting, or its approval is past
        its deadline, which expires it here); None when they can. ``decided`` and
        ``expired`` finish the two sentences for approve or reject."""
        expires = run.approval_expires_ms
        if run.state is not RunState.WAITING_APPROVAL:
            return (
                f"it is {run.state.value}, not waiting for approval; only a run in "
                f"waiting_approval can be {decided}"
            )
        if expires is not None and now_ms >= expires:
            self._expire(db, run.id, now_ms=now_ms)
            return f"approval expired at {expires} ms{expired}"
        return None

    def _expire(self, db: sqlite3.Connection, run_id: str, *, now_ms: int) -> None:
        db.execute(
            "UPDATE runs SET state = ?, updated_ms = ?, outcome = ? WHERE id = ?",
            (RunState.EXPIRED.value, now_ms, "approval not given in time", run_id),
        )
        self._snapshot(db, run_id, "expired", now_ms=now_ms)
        self._event(
            db,
            run_id,
            kind=EventKind.APPROVAL,
            name="expired",
            verdict="expired",
            detail={},
            now_ms=now_ms,
        )

    def expire_approvals(self, *, now_ms: int) -> list[str]:
        """Expire every waiting run whose deadline is at or before ``now_ms``; their ids."""
        with self._write("expire approvals") as db:
            ids = [
                str(r[0])
                for r in db.execute(
                    "SELECT id FROM runs WHERE state = ? AND approval_expires_ms <= ? ORDER BY id",
                    (RunState.WAITING_APPROVAL.value, now_ms),
                )
            ]
            for run_id in ids:
                self._expire(db, run_id, now_ms=now_ms)
        return ids

    # -- guard queries -----------------------------------------------------------------------

    def _scalar(self, what: str, sql: str, args: tuple[object, ...]) -> int | None:
        with self._failing(what):
            value = self._conn.execute(sql, args).fetchone()[0]
        return None if value is None else int(value)

    def count_executed(self, *, since_ms: int, playbook: str | None = None) -> int:
        """Runs that started acting at or after ``since_ms`` (playbook None: all)."""
        return (
            self._scalar(
                "count executed runs",
                "SELECT count(*) FROM runs WHERE executed_ms >= ? AND (? IS NULL OR playbook = ?)",
                (since_ms, playbook, playbook),
            )
            or 0
        )

    def last_executed_on_target(self, target: str, *, playbook: str | None = None) -> int | None:
        """When a run last started acting on ``target`` (playbook None: any); None if never."""
        return self._scalar(
            f"read last execution on {target}",
            "SELECT max(executed_ms) FROM runs WHERE target = ? AND (? IS NULL OR playbook = ?)",
            (target, playbook, playbook),
        )

    def count_active(
        self, *, playbook: str | None = None, now_ms: int | None = None, exclude: str | None = None
    ) -> int:
        """Runs approved, running or verifying, and runs waiting for an approval that has
        not expired at ``now_ms`` (None: every waiting run), since an approval can make
        any of them act (playbook None: all). ``exclude``: a run not to count (the one
        being judged)."""
        return (
            self._scalar(
                "count active runs",
                f"SELECT count(*) FROM runs WHERE (state IN ({_marks(ACTIVE)})"
                " OR (state = ? AND (? IS NULL OR approval_expires_ms IS NULL"
                " OR approval_expires_ms > ?)))"
                " AND (? IS NULL OR playbook = ?) AND (? IS NULL OR id != ?)",
                (
                    RunState.WAITING_APPROVAL.value,
                    now_ms,
                    now_ms,
                    playbook,
                    playbook,
                    exclude,
                    exclude,
                ),
            )
            or 0
        )

    def count_failed_verifications(self, playbook: str, *, since_ms: int) -> int:
        """Failures of ``playbook``'s runs since ``since_ms`` that count toward its circuit
        breaker: ``verify`` events with verdict ``failed`` and ``step_failed`` notes (a step
        that failed for good, e.g. the Kubernetes API answering 5xx past the retries)."""
        return (
            self._scalar(
                "count failed verifications",
                "SELECT count(*) FROM events e JOIN runs r ON r.id = e.run_id"
                " WHERE ((e.kind = ? AND e.verdict = 'failed') OR (e.kind = ?"
                " AND e.name = 'step_failed')) AND e.ts_ms >= ?"
                " AND r.playbook = ?",
                (EventKind.VERIFY.value, EventKind.NOTE.value, since_ms, playbook),
            )
            or 0
        )

    def non_terminal_runs(self) -> list[RunRecord]:
        """Runs left unfinished, oldest first: at start-up these were interrupted by a crash."""
        with self._failing("list unfinished runs"):
            rows = self._conn.execute(
                f"SELECT * FROM runs WHERE state IN ({_marks(NON_TERMINAL)}) ORDER BY rowid"
            ).fetchall()
        return [_run_record(row) for row in rows]

    # -- flags and metrics -------------------------------------------------------------------

    def get_flag(self, name: str) -> str | None:
        with self._failing(f"read flag {name}"):
            row = self._conn.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_flag(self, name: str, value: str | None, *, now_ms: int) -> None:
        """Set a flag (None deletes it); the change is also recorded as a ``note`` event."""
        with self._write(f"set flag {name}") as db:
            if value is None:
                db.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT INTO flags (name, value, updated_ms) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                    " updated_ms = excluded.updated_ms",
                    (name, value, now_ms),
                )
            self._event(
                db,
                None,
                kind=EventKind.NOTE,
                name=f"flag {name}",
                verdict=None,
                detail={"value": value},
                now_ms=now_ms,
            )

    def stats(self) -> dict[str, int]:
        """Number of runs in each state (every state present, zero included)."""
        counts = {state.value: 0 for state in RunState}
        with self._failing("count runs per state"):
            for state, n in self._conn.execute("SELECT state, count(*) FROM runs GROUP BY state"):
                counts[str(state)] = int(n)
        return counts

    # -- retention and verification ---------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes the database's live pages take (free pages left by deletes not counted)."""
        with self._failing("measure the database"):
            pages = int(self._conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
            size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    def prune(self, *, now_ms: int, retention_s: float, max_size_bytes: int) -> PruneResult:
        """Delete what is older than ``retention_s``, then, while the database is over
        ``max_size_bytes``, what is older than half that age, and so on down to
        ``retention.MIN_KEEP_S``. Each pass is one transaction and records what it deleted
        in a chained ``audit_pruned`` note. Runs that are not terminal are never deleted.
        Then free pages go back to the file system (databases created since schema 4)."""
        total = PruneResult()
        for i, cutoff in enumerate(retention.cutoffs(now_ms, retention_s=retention_s)):
            if i and self.used_bytes() <= max_size_bytes:
                break
            total = total + self._prune_before(
                cutoff, now_ms=now_ms, reason="age" if i == 0 else "size"
            )
        with self._failing("give free pages back"):
            if total.deleted and not self._depth:
                self._conn.execute("PRAGMA incremental_vacuum")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return replace(
            total, used_bytes=self.used_bytes(), over_cap=self.used_bytes() > max_size_bytes
        )

    def _prune_before(self, cutoff_ms: int, *, now_ms: int, reason: str) -> PruneResult:
        with self._write(f"prune before {cutoff_ms} ms") as db:
            base = self._base(db)
            head = db.execute("SELECT max(id) FROM events").fetchone()[0]
            young = db.execute(
                "SELECT min(id) FROM events WHERE ts_ms >= ?", (cutoff_ms,)
            ).fetchone()[0]
            limit = int(young) - 1 if young is not None else int(head or 0)
            spans = [
                (int(lo), int(hi), state is None or state in _NON_TERMINAL_VALUES)
                for lo, hi, state in db.execute(
                    "SELECT min(e.id), max(e.id), r.state FROM events e"
                    " LEFT JOIN runs r ON r.id = e.run_id WHERE e.run_id IS NOT NULL"
                    " GROUP BY e.run_id"
                )
            ]
            last = db.execute(
                "SELECT id, hash FROM events WHERE id <= ? ORDER BY id DESC LIMIT 1",
                (retention.cut_point(limit, spans),),
            ).fetchone()
            events = runs = 0
            if last is not None and last[0] > base.through_id:
                through, head_hash = int(last[0]), str(last[1])
                run_ids = [
                    str(r[0])
                    for r in db.execute(
                        "SELECT DISTINCT run_id FROM events WHERE id <= ? AND run_id IS NOT NULL",
                        (through,),
                    )
                ]
                events = db.execute("DELETE FROM events WHERE id <= ?", (through,)).rowcount
                runs = sum(
                    db.execute("DELETE FROM runs WHERE id = ?", (r,)).rowcount for r in run_ids
                )
                db.execute(
                    "INSERT INTO chain_base (id, through_id, hash, pruned_ms)"
                    " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " through_id = excluded.through_id, hash = excluded.hash,"
                    " pruned_ms = excluded.pruned_ms",
                    (through, head_hash, now_ms),
                )
                base = self._base(db)
            notifications = db.execute(
                "DELETE FROM notifications WHERE coalesce(last_ms, received_ms) < ? AND id"
                " NOT IN (SELECT notification_id FROM runs WHERE notification_id IS NOT NULL)",
                (cutoff_ms,),
            ).rowcount
            episodes = db.execute("DELETE FROM episodes WHERE last_ms < ?", (cutoff_ms,)).rowcount
            result = PruneResult(
                events=events, runs=runs, notifications=notifications, episodes=episodes
            )
            if result.deleted:
                self._event(
                    db,
                    None,
                    kind=EventKind.NOTE,
                    name=chain.PRUNED,
                    verdict=reason,
                    detail={
                        "through_id": base.through_id,
                        "head_hash": base.hash,
                        "cutoff_ms": cutoff_ms,
                        "events": events,
                        "runs": runs,
                        "notifications": notifications,
                        "episodes": episodes,
                        "flags": _flags(db),
                    },
                    now_ms=now_ms,
                )
        return result

    def chain_head(self) -> str:
        """``<id>:<hash>`` of the newest event: what a later ``verify`` must still reach."""
        with self._failing("read the chain head"):
            row = self._conn.execute(
                "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"
            ).fetchone()
            base = self._base(self._conn)
        return f"{base.through_id}:{base.hash}" if row is None else f"{row[0]}:{row[1]}"

    def verify(self) -> chain.ChainReport:
        """Walk the hash chain and compare runs and flags with it (``chain``), all in
        one read transaction, so a service writing meanwhile cannot make it disagree."""
        with self._failing("verify the chain"):
            outer = self._conn.in_transaction
            if not outer:
                self._conn.execute("BEGIN")
            try:
                walk = chain.Walk(self._base(self._conn))
                for r in self._conn.execute(
                    "SELECT id, run_id, ts_ms, kind, name, verdict, detail, prev_hash, hash"
                    " FROM events ORDER BY id"
                ):
                    if not walk.feed(chain.ChainRow(*r)):
                        break
                runs = {
                    str(r["id"]): (chain.row_digest(dict(r)), str(r["state"]))
                    for r in self._conn.execute("SELECT * FROM runs")
                }
                return walk.finish(runs=runs, flags=_flags(self._conn))
            finally:
                if not outer:
                    self._conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``prune`` deleted."""

    events: int = 0
    runs: int = 0
    notifications: int = 0
    episodes: int = 0
    used_bytes: int = 0  # after the prune
    over_cap: bool = False  # still over max_size_bytes (live runs, or the last hour)

    @property
    def deleted(self) -> int:
        return self.events + self.runs + self.notifications + self.episodes

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.events + other.events,
            self.runs + other.runs,
            self.notifications + other.notifications,
            self.episodes + other.episodes,
        )


_NON_TERMINAL_VALUES = frozenset(s.value for s in NON_TERMINAL)


def _flags(db: sqlite3.Connection) -> dict[str, str]:
    return {str(n): str(v) for n, v in db.execute("SELECT name, value FROM flags")}


def _notification_doc(
    *, receiver: str, status: str, group_key: str, alerts: Sequence[Alert]
) -> dict[str, Any]:
    """The smallest webhook body that replays to the same alerts."""
    return {
        "version": "4",
        "receiver": receiver,
        "status": status,
        "groupKey": group_key,
        "alerts": [a.to_json() for a in alerts],
    }


def _reduced_body(body: str) -> str | None:
    try:
        note = parse_notification(body.encode("utf-8"), max_alerts=1 << 30)
    except WebhookError:
        return None
    return _json(
        _notification_doc(
            receiver=note.receiver, status=note.status, group_key=note.group_key, alerts=note.alerts
        )
    )


def _run_record(row: sqlite3.Row) -> RunRecord:
    plan = row["plan"]
    return RunRecord(
        id=row["id"],
        playbook=row["playbook"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        alertname=row["alertname"],
        target=row["target"],
        mode=Mode(row["mode"]),
        state=RunState(row["state"]),
        created_ms=row["created_ms"],
        updated_ms=row["updated_ms"],
        executed_ms=row["executed_ms"],
        notification_id=row["notification_id"],
        alert=json.loads(row["alert"]),
        plan=None if plan is None else json.loads(plan),
        plan_hash=row["plan_hash"],
        approval_expires_ms=row["approval_expires_ms"],
        approved_by=row["approved_by"],
        approved_ms=row["approved_ms"],
        outcome=row["outcome"],
        trace_id=row["trace_id"],
    )


def _event_record(r: sqlite3.Row) -> EventRecord:
    return EventRecord(
        id=r["id"],
        run_id=r["run_id"],
        ts_ms=r["ts_ms"],
        kind=EventKind(r["kind"]),
        name=r["name"],
        verdict=r["verdict"],
        detail=json.loads(r["detail"]),
    )
