"""remediator.audit.store: schema, idempotency, events, approvals, guard queries, durability."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from remediator.audit.store import (
    SCHEMA_VERSION,
    AuditLog,
    EventKind,
    RunRecord,
    RunState,
)
from remediator.catalog.playbook import Mode
from remediator.errors import AuditError

ROOT = Path(__file__).resolve().parents[4]
T0 = 1_700_000_000_000
MIN = 60_000
ALERT = {"labels": {"alertname": "HighLatency", "namespace": "shop"}, "status": "firing"}


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "audit.db"


@pytest.fixture
def log(db_path):
    with AuditLog.open(db_path) as opened:
        yield opened


def new_run(
    log: AuditLog,
    *,
    playbook: str = "restart-checkout",
    fingerprint: str = "fp1",
    starts_at: str = "2024-01-01T00:00:00Z",
    target: str | None = "deployment/shop/checkout",
    now_ms: int = T0,
    mode: str = "auto",
) -> RunRecord:
    run = log.create_run(
        playbook=playbook,
        fingerprint=fingerprint,
        starts_at=starts_at,
        alertname="HighLatency",
        alert=ALERT,
        mode=mode,
        notification_id=None,
        target=target,
        now_ms=now_ms,
    )
    assert run is not None
    return run


def test_open_creates_parent_schema_and_wal(db_path):
    with AuditLog.open(db_path) as log:
        assert log.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_version", "notifications", "runs", "events", "flags"} <= tables
    finally:
        conn.close()


def test_pragmas_on_the_connection(log):
    conn = log._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_does_not_migrate_twice(db_path):
    AuditLog.open(db_path).close()
    with AuditLog.open(db_path) as log:
        assert log.schema_version() == SCHEMA_VERSION


def test_newer_schema_version_is_refused(db_path):
    AuditLog.open(db_path).close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(
        AuditError,
        match=rf"{db_path}: schema version {SCHEMA_VERSION + 1} "
        r"is newer than this remediator knows",
    ):
        AuditLog.open(db_path)


def test_unwritable_location_names_the_path(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "audit.db"
    with pytest.raises(AuditError, match=str(path)):
        AuditLog.open(path)


def test_not_a_database_is_audit_error(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AuditError, match=rf"audit database {path}: "):
        AuditLog.open(path)


def test_closed_log_raises_audit_error(db_path):
    log = AuditLog.open(db_path)
    log.close()
    with pytest.raises(AuditError, match=str(db_path)):
        log.get_run("nope")


def test_notification_round_trip(log):
    nid = log.record_notification(
        received_ms=T0,
        receiver="vigil",
        status="firing",
        group_key='{}:{alertname="X"}',
        n_alerts=2,
        body='{"a":1}',
    )
    got = log.get_notification(nid)
    assert got is not None
    assert (got.id, got.received_ms, got.receiver, got.n_alerts, got.body) == (
        nid,
        T0,
        "vigil",
        2,
        '{"a":1}',
    )
    assert log.get_notification(nid + 1) is None


def test_create_run_starts_planned_with_sortable_id(log):
    nid = log.record_notification(
        received_ms=T0, receiver="r", status="firing", group_key="g", n_alerts=1, body="{}"
    )
    run = log.create_run(
        playbook="p",
        fingerprint="f",
        starts_at="s",
        alertname="A",
        alert=ALERT,
        mode=Mode.APPROVAL,
        notification_id=nid,
        target=None,
        now_ms=T0,
    )
    assert run is not None
    assert run.state is RunState.PLANNED and run.mode is Mode.APPROVAL
    assert run.id.startswith(f"{T0:013d}-")
    assert (run.created_ms, run.updated_ms, run.executed_ms) == (T0, T0, None)
    assert run.alert == ALERT and run.notification_id == nid and run.target is None
    assert log.get_run(run.id) == run


def test_unknown_mode_is_refused(log):
    with pytest.raises(AuditError, match="unknown Mode 'sometimes'; use one of dryRun, "):
        new_run(log, mode="sometimes")


def test_notification_foreign_key_is_enforced(log):
    with pytest.raises(AuditError, match="FOREIGN KEY"):
        log.create_run(
            playbook="p",
            fingerprint="f",
            starts_at="s",
            alertname="A",
            alert={},
            mode="auto",
            notification_id=999,
            target=None,
            now_ms=T0,
        )


def test_same_triple_is_deduplicated_even_after_reopen(db_path):
    with AuditLog.open(db_path) as log:
        first = new_run(log)
        assert (
            log.create_run(
                playbook=first.playbook,
                fingerprint="fp1",
                starts_at=first.starts_at,
                alertname="HighLatency",
                alert={},
                mode="auto",
                notification_id=None,
                target=None,
                now_ms=T0 + 5,
            )
            is None
        )
        other = new_run(log, starts_at="2024-01-02T00:00:00Z")  # fired again: a new run
        assert other.id != first.id
        new_run(log, playbook="another")  # another playbook on the same alert
    with AuditLog.open(db_path) as log:
        assert (
            log.create_run(
                playbook=first.playbook,
                fingerprint="fp1",
                starts_at=first.starts_at,
                alertname="HighLatency",
                alert={},
                mode="auto",
                notification_id=None,
                target=None,
                now_ms=T0 + 9,
            )
            is None
        )
        assert log.stats()["planned"] == 3


def test_two_logs_on_one_file_create_one_run(db_path):
    with AuditLog.open(db_path) as a, AuditLog.open(db_path) as b:
        run = new_run(a)
        assert (
            b.create_run(
                playbook=run.playbook,
                fingerprint=run.fingerprint,
                starts_at=run.starts_at,
                alertname="HighLatency",
                alert=ALERT,
                mode="auto",
                notification_id=None,
                target=None,
                now_ms=T0 + 1,
            )
            is None
        )
        assert b.get_run(run.id) == run


def test_racing_logs_on_one_file_create_one_run(db_path):
    AuditLog.open(db_path).close()
    barrier = threading.Barrier(4)
    results: list[RunRecord | None] = []

    def create() -> None:
        with AuditLog.open(db_path) as own:
            barrier.wait(timeout=30)
            results.append(
                own.create_run(
                    playbook="p",
                    fingerprint="f",
                    starts_at="s",
                    alertname="A",
                    alert={},
                    mode="auto",
                    notification_id=None,
                    target=None,
                    now_ms=T0,
                )
            )

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert sum(r is not None for r in results) == 1


def test_plain_strings_from_untyped_callers(log):
    run = new_run(log)
    log.set_state(run.id, "verifying", now_ms=T0 + 1)
    log.add_event(run.id, kind="verify", name="latency", verdict="failed", now_ms=T0 + 1)
    assert [r.id for r in log.list_runs(state="verifying")] == [run.id]
    assert log.events(run.id)[0].kind is EventKind.VERIFY
    with pytest.raises(AuditError, match="unknown RunState 'bogus'; use one of planned, "):
        log.set_state(run.id, "bogus", now_ms=T0 + 2)


def test_events_keep_order_and_json(log):
    run = new_run(log)
    detail = {"z": 1, "a": [1, 2, {"b": None}], "s": "ü"}
    ids = [
        log.add_event(
            run.id,
            kind=EventKind.GUARD,
            name="cooldown",
            verdict="allow",
            detail=detail,
            now_ms=T0 + 1,
        ),
        log.add_event(run.id, kind=EventKind.ACTION_REQUEST, name="scale", now_ms=T0 + 1),
        log.add_event(
            run.id,
            kind=EventKind.VERIFY,
            name="latency",
            verdict="ok",
            detail={"value": 0.25},
            now_ms=T0 + 2,
        ),
    ]
    events = log.events(run.id)
    assert [e.id for e in events] == ids == sorted(ids)
    assert [e.kind for e in events] == [EventKind.GUARD, EventKind.ACTION_REQUEST, EventKind.VERIFY]
    assert events[0].detail == detail and events[0].verdict == "allow"
    assert events[1].detail == {} and events[1].verdict is None
    assert [e.ts_ms for e in events] == [T0 + 1, T0 + 1, T0 + 2]
    stored = log._conn.execute("SELECT detail FROM events WHERE id = ?", (ids[0],)).fetchone()
    assert stored[0].startswith('{"a": ')  # sort_keys


def test_unstorable_detail_and_unknown_kind_are_audit_errors(log):
    run = new_run(log)
    with pytest.raises(AuditError, match="not storable"):
        log.add_event(run.id, kind=EventKind.NOTE, name="x", detail={"x": object()}, now_ms=T0)
    with pytest.raises(AuditError, match="unknown EventKind 'gossip'; use one of decision, "):
        log.add_event(run.id, kind="gossip", name="x", now_ms=T0)  # as an untyped caller
    with pytest.raises(AuditError, match="FOREIGN KEY"):
        log.add_event("no-such-run", kind=EventKind.NOTE, name="x", now_ms=T0)
    assert log.events(run.id) == []


def test_state_transitions_update_timestamps_and_outcome(log):
    run = new_run(log)
    log.set_plan(run.id, plan=[{"action": "scale"}], plan_hash="h1", now_ms=T0 + 1)
    log.set_target(run.id, "deployment/shop/web", now_ms=T0 + 2)
    log.mark_executing(run.id, now_ms=T0 + 3)
    got = log.get_run(run.id)
    assert got is not None
    assert got.plan == [{"action": "scale"}] and got.plan_hash == "h1"
    assert got.target == "deployment/shop/web"
    assert (got.state, got.executed_ms, got.updated_ms) == (RunState.RUNNING, T0 + 3, T0 + 3)
    log.set_state(run.id, RunState.VERIFYING, now_ms=T0 + 4)
    log.set_state(run.id, RunState.FAILED, now_ms=T0 + 5, outcome="latency still high")
    log.set_state(run.id, RunState.UNDONE, now_ms=T0 + 6)  # outcome kept when not given
    got = log.get_run(run.id)
    assert got is not None
    assert (got.state, got.updated_ms, got.outcome) == (
        RunState.UNDONE,
        T0 + 6,
        "latency still high",
    )
    assert got.created_ms == T0 and got.executed_ms == T0 + 3


def test_terminal_run_never_goes_live_again(log):
    run = new_run(log)
    log.set_state(run.id, RunState.INTERRUPTED, now_ms=T0 + 1, outcome="crash")
    with pytest.raises(AuditError, match="interrupted, which is final"):
        log.set_state(run.id, RunState.RUNNING, now_ms=T0 + 2)
    with pytest.raises(AuditError, match="only a planned, approved or running run may act"):
        log.mark_executing(run.id, now_ms=T0 + 2)
    log.set_state(run.id, RunState.ESCALATED, now_ms=T0 + 3)  # terminal -> terminal is fine
    got = log.get_run(run.id)
    assert got is not None and got.state is RunState.ESCALATED and got.executed_ms is None


def test_updates_of_a_missing_run_say_so(log):
    calls: list[Callable[[], None]] = [
        lambda: log.set_state("r-x", RunState.FAILED, now_ms=T0),
        lambda: log.set_plan("r-x", plan={}, plan_hash="h", now_ms=T0),
        lambda: log.set_target("r-x", None, now_ms=T0),
        lambda: log.mark_executing("r-x", now_ms=T0),
    ]
    for call in calls:
        with pytest.raises(AuditError, match="no run 'r-x'"):
            call()
    assert log.get_run("r-x") is None


def waiting(
    log: AuditLog, *, fingerprint: str = "fp1", playbook: str = "restart-checkout"
) -> RunRecord:
    run = new_run(log, mode="approval", fingerprint=fingerprint, playbook=playbook)
    log.set_plan(run.id, plan={"replicas": 3}, plan_hash="h1", now_ms=T0)
    log.request_approval(run.id, plan_hash="h1", expires_ms=T0 + 10 * MIN, now_ms=T0)
    return run


def test_approve_ok(log):
    run = waiting(log)
    got = log.get_run(run.id)
    assert got is not None and got.state is RunState.WAITING_APPROVAL
    assert got.approval_expires_ms == T0 + 10 * MIN
    approved = log.approve(run.id, plan_hash="h1", by="alice", now_ms=T0 + MIN)
    assert (approved.state, approved.approved_by, approved.approved_ms) == (
        RunState.APPROVED,
        "alice",
        T0 + MIN,
    )
    assert log.events(run.id) == []  # the caller records the approval events it wants
    assert log.count_active() == 1
    log.set_state(run.id, RunState.RUNNING, now_ms=T0 + 2 * MIN)  # the runner does this first
    log.mark_executing(run.id, now_ms=T0 + 2 * MIN)
    log.mark_executing(run.id, now_ms=T0 + 3 * MIN)  # executed_ms keeps the first start
    got = log.get_run(run.id)
    assert got is not None and got.executed_ms == T0 + 2 * MIN


def test_approve_refuses_a_changed_plan(log):
    run = waiting(log)
    with pytest.raises(AuditError, match="the plan changed since approval was requested"):
        log.approve(run.id, plan_hash="h2", by="alice", now_ms=T0 + MIN)
    log.set_plan(run.id, plan={"replicas": 9}, plan_hash="h2", now_ms=T0 + MIN)
    with pytest.raises(AuditError, match="the plan changed since approval was requested"):
        log.approve(run.id, plan_hash="h1", by="alice", now_ms=T0 + MIN)
    got = log.get_run(run.id)
    assert got is not None and got.state is RunState.WAITING_APPROVAL


def test_approve_after_expiry_expires_the_run(log):
    run = waiting(log)
    with pytest.raises(AuditError, match="approval expired"):
        log.approve(run.id, plan_hash="h1", by="alice", now_ms=T0 + 10 * MIN)
    got = log.get_run(run.id)
    assert got is not None and got.state is RunState.EXPIRED and got.approved_by is None
    with pytest.raises(AuditError, match="it is expired, not waiting for approval"):
        log.approve(run.id, plan_hash="h1", by="alice", now_ms=T0 + 11 * MIN)


def test_approve_refuses_missing_and_not_waiting_runs(log):
    with pytest.raises(AuditError, match="no run 'nope'"):
        log.approve("nope", plan_hash="h1", by="alice", now_ms=T0)
    run = new_run(log)
    with pytest.raises(AuditError, match="it is planned, not waiting for approval"):
        log.approve(run.id, plan_hash="h1", by="alice", now_ms=T0)
    log.set_plan(run.id, plan={}, plan_hash="h1", now_ms=T0)
    with pytest.raises(AuditError, match="call set_plan first"):
        log.request_approval(run.id, plan_hash="h0", expires_ms=T0 + MIN, now_ms=T0)


def test_expire_approvals_only_past_deadline(log):
    early = waiting(log, fingerprint="a")
    late = new_run(log, fingerprint="b", mode="approval")
    log.request_approval(late.id, plan_hash="x", expires_ms=T0 + 20 * MIN, now_ms=T0)
    assert log.expire_approvals(now_ms=T0 + 10 * MIN - 1) == []
    assert log.expire_approvals(now_ms=T0 + 10 * MIN) == [early.id]
    assert log.expire_approvals(now_ms=T0 + 10 * MIN) == []
    got = log.get_run(early.id)
    assert got is not None and got.state is RunState.EXPIRED
    assert log.events(early.id)[-1].name == "expired"
    got = log.get_run(late.id)
    assert got is not None and got.state is RunState.WAITING_APPROVAL


def test_cooldown_per_target(log):
    assert log.last_executed_on_target("deployment/shop/checkout") is None
    a = new_run(log, fingerprint="a", now_ms=T0)
    log.mark_executing(a.id, now_ms=T0 + 1)
    b = new_run(log, fingerprint="b", playbook="other", now_ms=T0)
    log.mark_executing(b.id, now_ms=T0 + 5 * MIN)
    new_run(log, fingerprint="c", now_ms=T0 + 9 * MIN)  # planned: never acted
    c = new_run(log, fingerprint="d", target="deployment/shop/web")
    log.mark_executing(c.id, now_ms=T0 + 7 * MIN)
    assert log.last_executed_on_target("deployment/shop/checkout") == T0 + 5 * MIN
    assert (
        log.last_executed_on_target("deployment/shop/checkout", playbook="restart-checkout")
        == T0 + 1
    )
    assert log.last_executed_on_target("deployment/shop/web") == T0 + 7 * MIN


def test_rate_window_counts_executed_runs(log):
    for i, at in enumerate([T0, T0 + MIN, T0 + 2 * MIN]):
        run = new_run(log, fingerprint=f"f{i}")
        log.mark_executing(run.id, now_ms=at)
    other = new_run(log, fingerprint="o", playbook="other")
    log.mark_executing(other.id, now_ms=T0 + 2 * MIN)
    new_run(log, fingerprint="planned-only")
    assert log.count_executed(since_ms=T0) == 4
    assert log.count_executed(since_ms=T0 + MIN) == 3
    assert log.count_executed(since_ms=T0 + MIN, playbook="restart-checkout") == 2
    assert log.count_executed(since_ms=T0 + 3 * MIN) == 0


def test_active_count_by_state(log):
    states = [RunState.RUNNING, RunState.VERIFYING, RunState.SUCCEEDED, RunState.PLANNED]
    for i, state in enumerate(states):
        run = new_run(log, fingerprint=f"f{i}")
        if state is not RunState.PLANNED:
            log.mark_executing(run.id, now_ms=T0)
            log.set_state(run.id, state, now_ms=T0)
    w = waiting(log, fingerprint="w", playbook="other")
    # a waiting run counts until its approval expires: an approval can make it act
    assert log.count_active() == 3
    assert log.count_active(now_ms=T0 + 10 * MIN - 1) == 3
    assert log.count_active(now_ms=T0 + 10 * MIN) == 2
    assert log.count_active(exclude=w.id) == 2
    log.approve(w.id, plan_hash="h1", by="bob", now_ms=T0)
    assert log.count_active() == 3
    assert log.count_active(playbook="other") == 1
    assert log.count_active(playbook="nobody") == 0


def test_failed_verifications_window_per_playbook(log):
    a = new_run(log, fingerprint="a")
    b = new_run(log, fingerprint="b", playbook="other")
    for ts, verdict in [
        (T0, "failed"),
        (T0 + MIN, "ok"),
        (T0 + 2 * MIN, "failed"),
        (T0 + 3 * MIN, "failed"),
    ]:
        log.add_event(a.id, kind=EventKind.VERIFY, name="latency", verdict=verdict, now_ms=ts)
    log.add_event(
        a.id, kind=EventKind.ACTION_RESPONSE, name="x", verdict="failed", now_ms=T0 + 3 * MIN
    )
    log.add_event(
        b.id, kind=EventKind.VERIFY, name="latency", verdict="failed", now_ms=T0 + 3 * MIN
    )
    assert log.count_failed_verifications("restart-checkout", since_ms=T0) == 3
    assert log.count_failed_verifications("restart-checkout", since_ms=T0 + MIN) == 2
    assert log.count_failed_verifications("other", since_ms=T0) == 1
    assert log.count_failed_verifications("nobody", since_ms=T0) == 0


def test_unfinished_runs_are_listed_after_a_crash(db_path):
    with AuditLog.open(db_path) as log:
        running = new_run(log, fingerprint="a")
        log.mark_executing(running.id, now_ms=T0 + 1)
        done = new_run(log, fingerprint="b")
        log.set_state(done.id, RunState.SHADOW, now_ms=T0 + 1)
        planned = new_run(log, fingerprint="c", now_ms=T0 + 2)
        waiting(log, fingerprint="d")
    # no terminal state was set for "a", "c", "d": the process "crashed"
    with AuditLog.open(db_path) as log:
        unfinished = log.non_terminal_runs()
        assert {r.fingerprint for r in unfinished} == {"a", "c", "d"}
        assert [r.fingerprint for r in unfinished] == ["a", "c", "d"]  # in creation order
        assert next(r for r in unfinished if r.id == running.id).state is RunState.RUNNING
        assert planned.id in {r.id for r in unfinished}


def test_list_runs_newest_first_with_pagination_and_filters(log):
    ids = [
        new_run(log, fingerprint=f"f{i}", playbook="p1" if i % 2 else "p2", now_ms=T0 + i).id
        for i in range(7)
    ]
    log.set_state(ids[3], RunState.REFUSED, now_ms=T0 + 10, outcome="cooldown")
    assert [r.id for r in log.list_runs()] == ids[::-1]
    page1 = log.list_runs(limit=3)
    page2 = log.list_runs(limit=3, before_id=page1[-1].id)
    page3 = log.list_runs(limit=3, before_id=page2[-1].id)
    assert [r.id for r in page1 + page2 + page3] == ids[::-1]
    assert [r.id for r in log.list_runs(playbook="p1")] == [ids[5], ids[3], ids[1]]
    assert [r.id for r in log.list_runs(state=RunState.REFUSED)] == [ids[3]]
    assert [
        r.id for r in log.list_runs(playbook="p1", state=RunState.PLANNED, before_id=ids[5])
    ] == [ids[1]]


def test_flags_set_replace_delete_and_audit(db_path):
    with AuditLog.open(db_path) as log:
        assert log.get_flag("paused") is None
        log.set_flag("paused", "by alice: incident 42", now_ms=T0)
        log.set_flag("breaker:restart-checkout", "open", now_ms=T0)
        log.set_flag("breaker:restart-checkout", "closed", now_ms=T0 + 1)
    with AuditLog.open(db_path) as log:
        assert log.get_flag("paused") == "by alice: incident 42"
        assert log.get_flag("breaker:restart-checkout") == "closed"
        log.set_flag("paused", None, now_ms=T0 + 2)
        assert log.get_flag("paused") is None
        notes = log.events(None)
        assert [(e.name, e.detail["value"]) for e in notes][-2:] == [
            ("flag breaker:restart-checkout", "closed"),
            ("flag paused", None),
        ]


def test_stats_counts_every_state(log):
    new_run(log, fingerprint="a")
    b = new_run(log, fingerprint="b")
    log.set_state(b.id, RunState.SHADOW, now_ms=T0)
    stats = log.stats()
    assert set(stats) == {s.value for s in RunState}
    assert (stats["planned"], stats["shadow"], stats["running"]) == (1, 1, 0)


CHILD = """
import os, signal, sys
from pathlib import Path
from remediator.audit.store import AuditLog
log = AuditLog.open(Path(sys.argv[1]))
run = log.create_run(playbook="p", fingerprint="f", starts_at="s", alertname="A",
                     alert={"k": "v"}, mode="auto", notification_id=None, target="t",
                     now_ms=1)
log.mark_executing(run.id, now_ms=2)
sys.stdout.write(run.id + "\\n")
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_returned_write_survives_sigkill(db_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(db_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    with AuditLog.open(db_path) as log:
        run = log.get_run(run_id)
        assert run is not None
        assert (run.state, run.executed_ms, run.alert) == (RunState.RUNNING, 2, {"k": "v"})
        assert [r.id for r in log.non_terminal_runs()] == [run_id]
