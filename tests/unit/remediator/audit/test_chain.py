"""The audit's hash chain, retention and stored webhook bodies: tampering with the SQLite
file is found (edited verdict, deleted row, inserted row, edited run, flag, checkpoint),
retention deletes old terminal runs only and keeps the chain verifiable, a body is stored
once and capped, and ``vigil-remediator audit verify`` reports it."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3

import pytest

from remediator.__main__ import main
from remediator.audit import chain as audit_chain
from remediator.audit import retention
from remediator.audit import store as audit
from remediator.audit.store import AuditLog, EventKind, RunState
from remediator.webhook import parse_notification

T0 = 1_700_000_000_000
MIN = 60_000
DAY = 86_400_000
ALERT = {"labels": {"alertname": "HighLatency"}, "status": "firing"}


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "audit.db"


def run(log, fp, *, now_ms, state=RunState.SUCCEEDED):
    """A run with a few events, left in ``state``."""
    r = log.create_run(
        playbook="p",
        fingerprint=fp,
        starts_at="s",
        alertname="A",
        alert=ALERT,
        mode="auto",
        notification_id=None,
        target=None,
        now_ms=now_ms,
    )
    assert r is not None
    log.add_event(r.id, kind=EventKind.GUARD, name="cooldown", verdict="allow", now_ms=now_ms)
    if state is RunState.WAITING_APPROVAL:
        log.request_approval(r.id, plan_hash="h", expires_ms=now_ms + 100 * DAY, now_ms=now_ms)
    elif state is not RunState.PLANNED:
        log.mark_executing(r.id, now_ms=now_ms)
        if state is not RunState.RUNNING:
            log.set_state(r.id, state, now_ms=now_ms, outcome="done")
    return r.id


def populated(db_path):
    with AuditLog.open(db_path) as log:
        for i in range(3):
            run(log, f"fp{i}", now_ms=T0 + i * MIN)
        log.set_flag("paused", "by bob", now_ms=T0 + 5 * MIN)


def raw(db_path, *statements):
    """Edit the file the way an attacker with write access would: plain SQL, no checks."""
    conn = sqlite3.connect(db_path)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()


def verify(db_path):
    with AuditLog.open_readonly(db_path) as log:
        return log.verify()


def guard_event(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT id FROM events WHERE kind = 'guard' ORDER BY id LIMIT 1 OFFSET 1"
        ).fetchone()[0]
    finally:
        conn.close()


def test_an_untouched_database_verifies(db_path):
    populated(db_path)
    done = verify(db_path)
    assert done.broken is None
    with AuditLog.open(db_path) as log:
        n = log._conn.execute("SELECT count(*) FROM events").fetchone()[0]
        head = log.chain_head()
    assert done.events == n and f"{done.head_id}:{done.head_hash}" == head
    assert done.summary() == f"{n} events verified, chain intact (head {done.head_hash})"


def test_every_run_write_is_chained_but_not_listed(db_path):
    with AuditLog.open(db_path) as log:
        rid = run(log, "fp", now_ms=T0)
        assert [e.kind for e in log.events(rid)] == [EventKind.GUARD]
        kinds = [
            r[0]
            for r in log._conn.execute("SELECT name FROM events WHERE kind = 'run' ORDER BY id")
        ]
    assert kinds == ["created", "executing", "state"]


def test_an_edited_verdict_is_found(db_path):
    populated(db_path)
    eid = guard_event(db_path)
    raw(db_path, ("UPDATE events SET verdict = 'refuse' WHERE id = ?", (eid,)))
    broken = verify(db_path).broken
    assert broken is not None and broken.event_id == eid
    assert "verdict 'refuse'" in broken.what and "edited" in broken.hint


def test_a_deleted_event_is_found(db_path):
    populated(db_path)
    eid = guard_event(db_path)
    raw(db_path, ("DELETE FROM events WHERE id = ?", (eid,)))
    broken = verify(db_path).broken
    assert broken is not None and broken.event_id == eid + 1
    assert f"ids {eid}..{eid} are missing" in broken.hint and "deleted" in broken.hint


def forge(db_path, event_id, prev_hash, *, verdict="approved"):
    """Insert an approval hashed correctly from ``prev_hash``; its hash."""
    detail = {"by": "mallory"}
    digest = audit_chain.event_hash(
        prev_hash,
        event_id=event_id,
        run_id=None,
        ts_ms=T0,
        kind="approval",
        name="approved",
        verdict=verdict,
        detail=detail,
    )
    raw(
        db_path,
        (
            "INSERT INTO events (id, run_id, ts_ms, kind, name, verdict, detail,"
            " prev_hash, hash) VALUES (?, NULL, ?, 'approval', 'approved', ?, ?, ?, ?)",
            (event_id, T0, verdict, json.dumps(detail), prev_hash, digest),
        ),
    )
    return digest


def test_an_event_inserted_before_the_first_is_found(db_path):
    populated(db_path)
    forge(db_path, 0, audit_chain.GENESIS)
    broken = verify(db_path).broken
    assert broken is not None and broken.event_id == 0
    assert "inserted before the first event" in broken.hint


def test_an_event_inserted_in_the_middle_is_found(db_path):
    """An event deleted and a forged one put in its place, hashed correctly from the
    event before it: the event after it no longer follows."""
    populated(db_path)
    eid = guard_event(db_path)
    raw(db_path, ("DELETE FROM events WHERE id = ?", (eid,)))
    conn = sqlite3.connect(db_path)
    before = conn.execute("SELECT hash FROM events WHERE id = ?", (eid - 1,)).fetchone()[0]
    conn.close()
    digest = forge(db_path, eid, before)
    broken = verify(db_path).broken
    assert broken is not None and broken.event_id == eid + 1
    assert broken.found == f"prev_hash {broken.found.split()[-1]}"
    assert broken.expected == f"prev_hash {digest}"
    assert f"inserted or replaced before event {eid + 1}" in broken.hint


def test_an_event_inserted_without_a_hash_is_found(db_path):
    populated(db_path)
    raw(
        db_path,
        (
            "INSERT INTO events (run_id, ts_ms, kind, name, verdict, detail)"
            " VALUES (NULL, ?, 'note', 'forged', NULL, '{}')",
            (T0,),
        ),
    )
    broken = verify(db_path).broken
    assert broken is not None and "inserted directly" in broken.hint


def test_an_edited_run_state_is_found(db_path):
    with AuditLog.open(db_path) as log:
        rid = run(log, "fp", now_ms=T0, state=RunState.FAILED)
    raw(db_path, ("UPDATE runs SET state = 'succeeded' WHERE id = ?", (rid,)))
    broken = verify(db_path).broken
    assert broken is not None and f"run {rid}'s row differs" in broken.what
    assert "(state failed)" in broken.expected and "(state succeeded)" in broken.found


def test_a_cleared_kill_switch_is_found(db_path):
    populated(db_path)
    raw(db_path, ("DELETE FROM flags WHERE name = 'paused'", ()))
    broken = verify(db_path).broken
    assert broken is not None and "flags table" in broken.what
    assert broken.expected == '{"paused": "by bob"}' and broken.found == "{}"


# -- retention --------------------------------------------------------------------------


def test_retention_deletes_old_terminal_runs_not_active_ones(db_path):
    now = T0 + 100 * DAY
    with AuditLog.open(db_path) as log:
        old = run(log, "old", now_ms=T0)
        nid = log.record_notification(
            received_ms=T0,
            receiver="r",
            status="firing",
            group_key="g",
            n_alerts=0,
            body='{"old": 1}',
        )
        young = run(log, "young", now_ms=now - DAY)
        done = log.prune(now_ms=now, retention_s=90 * 86400, max_size_bytes=1 << 30)
        assert (done.runs, done.notifications) == (1, 1)
        assert log.get_run(old) is None and log.get_notification(nid) is None
        assert log.get_run(young) is not None
        [note] = [e for e in log.events(None) if e.name == audit_chain.PRUNED]
        assert note.verdict == "age" and note.detail["runs"] == 1
    done = verify(db_path)
    assert done.broken is None and done.base.through_id == note.detail["through_id"] > 0
    assert f"events up to id {done.base.through_id} were deleted by retention" in done.summary()


@pytest.mark.parametrize("state", [RunState.WAITING_APPROVAL, RunState.RUNNING, RunState.VERIFYING])
def test_retention_never_deletes_a_live_run_nor_what_follows_it(db_path, state):
    now = T0 + 100 * DAY
    with AuditLog.open(db_path) as log:
        before = run(log, "before", now_ms=T0 - DAY)
        live = run(log, "live", now_ms=T0, state=state)
        after = run(log, "after", now_ms=T0 + DAY)
        done = log.prune(now_ms=now, retention_s=90 * 86400, max_size_bytes=1 << 30)
        assert done.runs == 1 and log.get_run(before) is None
        kept = log.get_run(live)
        assert kept is not None and kept.state is state and log.get_run(after) is not None
        assert log.events(live)  # its events stay with it
    assert verify(db_path).broken is None


def test_pruning_twice_keeps_the_chain_verifiable(db_path):
    with AuditLog.open(db_path) as log:
        for day in range(10):
            run(log, f"d{day}", now_ms=T0 + day * DAY)
        log.prune(now_ms=T0 + 95 * DAY, retention_s=90 * 86400, max_size_bytes=1 << 30)
        log.prune(now_ms=T0 + 98 * DAY, retention_s=90 * 86400, max_size_bytes=1 << 30)
        assert len(log.list_runs()) == 2
        assert (
            log.prune(now_ms=T0 + 98 * DAY, retention_s=90 * 86400, max_size_bytes=1 << 30).deleted
            == 0
        )
    assert verify(db_path).broken is None


def test_a_forged_checkpoint_is_found(db_path):
    """Deleting the oldest events and moving the checkpoint to hide it: the last chained
    audit_pruned note still says where the chain really started."""
    with AuditLog.open(db_path) as log:
        for day in range(4):
            run(log, f"d{day}", now_ms=T0 + day * DAY)
        log.prune(now_ms=T0 + 91 * DAY, retention_s=90 * 86400, max_size_bytes=1 << 30)
        base = log._base(log._conn)
    conn = sqlite3.connect(db_path)
    cut, cut_hash = conn.execute(
        "SELECT id, hash FROM events WHERE id > ? ORDER BY id LIMIT 1 OFFSET 3", (base.through_id,)
    ).fetchone()
    conn.close()
    raw(
        db_path,
        ("DELETE FROM events WHERE id <= ?", (cut,)),
        ("UPDATE chain_base SET through_id = ?, hash = ?", (cut, cut_hash)),
    )
    broken = verify(db_path).broken
    assert broken is not None and "prune checkpoint" in broken.what
    assert broken.found == f"through id {cut}, hash {cut_hash}"


def test_the_size_cap_deletes_younger_data_down_to_the_last_hour(db_path):
    now = T0 + 10 * DAY
    with AuditLog.open(db_path) as log:
        for hour in range(0, 10 * 24, 2):  # ten days, ~20 KB of events each time
            t = T0 + hour * 3_600_000
            rid = run(log, f"h{hour}", now_ms=t)
            log.add_event(
                rid, kind=EventKind.NOTE, name="log", detail={"x": "y" * 20_000}, now_ms=t
            )
        last_hour = run(log, "recent", now_ms=now - MIN)
        big = log.used_bytes()
        assert big > 2 << 20
        done = log.prune(now_ms=now, retention_s=90 * 86400, max_size_bytes=1 << 20)
        assert not done.over_cap and done.used_bytes <= 1 << 20 < big
        assert log.get_run(last_hour) is not None
        kept = log.list_runs(limit=1000)
        assert 1 < len(kept) < 120
        notes = [e for e in log.events(None) if e.name == audit_chain.PRUNED]
        assert {e.verdict for e in notes} == {"size"}
    assert verify(db_path).broken is None


def test_cut_point_stops_before_a_straddling_or_live_run():
    assert retention.cut_point(10, [(1, 3, False), (4, 12, False)]) == 3
    assert retention.cut_point(10, [(1, 3, False), (4, 5, True)]) == 3
    assert retention.cut_point(10, [(1, 3, False), (2, 5, True)]) == 0  # interleaved
    # lowering for one run makes an earlier one straddle
    assert retention.cut_point(10, [(1, 6, False), (7, 12, False)]) == 6
    assert retention.cut_point(10, [(1, 8, False), (7, 12, False)]) == 0
    assert retention.cut_point(10, [(1, 3, False), (5, 9, False)]) == 10


# -- stored bodies ----------------------------------------------------------------------


def body_of(n_alerts=1, annotation="x", **extra):
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "A", "i": str(i)},
            "annotations": {"summary": annotation},
            "startsAt": "2026-01-01T00:00:00Z",
            "fingerprint": f"f{i}",
        }
        for i in range(n_alerts)
    ]
    return json.dumps(
        {
            "version": "4",
            "receiver": "vigil",
            "status": "firing",
            "alerts": alerts,
            "groupKey": "g",
            **extra,
        }
    )


def record(log, body, *, at=T0, cap=retention.DEFAULT_MAX_STORED_BODY_BYTES):
    note = parse_notification(body.encode())
    return log.record_notification(
        received_ms=at,
        receiver=note.receiver,
        status=note.status,
        group_key=note.group_key,
        n_alerts=len(note.alerts),
        body=body,
        alerts=note.alerts,
        max_body_bytes=cap,
    )


def test_a_repeated_body_is_stored_once(db_path):
    body = body_of()
    with AuditLog.open(db_path) as log:
        first = record(log, body)
        assert record(log, body, at=T0 + 5 * MIN) == first
        other = record(log, body_of(annotation="changed"), at=T0 + 6 * MIN)
        got = log.get_notification(first)
        assert got is not None
        assert (got.count, got.received_ms, got.last_ms) == (2, T0, T0 + 5 * MIN)
        assert got.sha256 == hashlib.sha256(body.encode()).hexdigest()
        assert other != first
        assert [n.id for n in log.notifications_since(T0 + 5 * MIN)] == [first, other]
        [ep] = log.episodes_since(0)
        assert ep.notifications == 3  # the report still sees every delivery


def test_a_large_body_is_stored_reduced_and_still_replays(db_path):
    body = body_of(3, commonAnnotations={"runbook": "r" * 100_000})
    with AuditLog.open(db_path) as log:
        got = log.get_notification(record(log, body))
    assert got is not None
    assert (got.body_form, got.size_bytes, got.is_replayable) == ("reduced", len(body), True)
    assert len(got.body) < retention.DEFAULT_MAX_STORED_BODY_BYTES
    assert parse_notification(got.body.encode()).alerts == parse_notification(body.encode()).alerts


def test_a_body_too_large_even_reduced_is_truncated_and_not_replayable(db_path):
    body = body_of(annotation="é" * 200_000)
    with AuditLog.open(db_path) as log:
        got = log.get_notification(record(log, body, cap=4096))
    assert got is not None
    assert (got.body_form, got.is_replayable) == ("truncated", False)
    assert got.size_bytes == len(body.encode()) and len(got.body.encode()) <= 4096
    assert got.sha256 == hashlib.sha256(body.encode()).hexdigest()


def test_a_version_3_database_is_migrated_chained_and_capped(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
    for version in (1, 2, 3):
        for statement in audit.MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    big = body_of(annotation="z" * 1_000_000)
    conn.execute(
        "INSERT INTO notifications (received_ms, receiver, status, group_key,"
        " n_alerts, body) VALUES (?, 'vigil', 'firing', 'g', 1, ?)",
        (T0, big),
    )
    conn.execute(
        "INSERT INTO runs (id, playbook, fingerprint, starts_at, alertname, mode,"
        " state, created_ms, updated_ms, alert) VALUES ('r1', 'p', 'f', 's', 'A',"
        " 'auto', 'succeeded', ?, ?, '{}')",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO events (run_id, ts_ms, kind, name, verdict, detail)"
        " VALUES ('r1', ?, 'guard', 'cooldown', 'allow', '{}')",
        (T0,),
    )
    conn.execute("INSERT INTO flags VALUES ('paused', 'yes', ?)", (T0,))
    conn.commit()
    conn.close()
    with AuditLog.open(db_path) as log:
        assert log.schema_version() == audit.SCHEMA_VERSION == 4
        [note] = log.notifications_since(0)
        assert (note.body_form, note.size_bytes) == ("truncated", len(big))
        [chained] = [e for e in log.events(None) if e.name == audit_chain.CHAINED]
        assert chained.detail["chained_through_id"] == 1
    done = verify(db_path)
    assert done.broken is None and done.migrated_through == 1
    assert "chained when the database was migrated, not when written" in done.summary()


# -- the command line -----------------------------------------------------------------


def test_audit_verify_exit_codes_and_output(db_path, capsys):
    populated(db_path)
    assert main(["audit", "verify", "--db", str(db_path)]) == 0
    assert "events verified, chain intact (head " in capsys.readouterr().out
    eid = guard_event(db_path)
    raw(db_path, ("UPDATE events SET verdict = 'refuse' WHERE id = ?", (eid,)))
    assert main(["audit", "verify", "--state-dir", str(db_path.parent)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"chain BROKEN at event {eid}: ") and "expected: hash " in out
    assert "hint: the row was edited" in out
    assert main(["audit", "verify", "--db", str(db_path.parent / "none.db")]) == 2
    assert "cannot read it" in capsys.readouterr().err


# -- the found issue: five 1 MB posts grew the database by 6 MB ---------------------------


def db_bytes(path):
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@pytest.mark.parametrize("distinct", [False, True])
async def test_five_1mb_webhooks_keep_the_database_bounded(aiohttp_client, tmp_path, distinct):
    """Reproduces the report: five 1 MB posts (no token configured) took audit.db from
    1.2 to 7.5 MB. Now a body is stored once and at most 64 KiB of it."""
    from tests.unit.remediator.test_app import start

    client, st, _, _ = await start(aiohttp_client, tmp_path)
    path = st.audit_path
    before = db_bytes(path)
    ids = set()
    for i in range(5):
        body = body_of(annotation=f"{i if distinct else 0}" + "x" * (1 << 20)).encode()
        resp = await client.post(
            "/webhook", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 200
        ids.add((await resp.json())["notification"])
    assert len(ids) == (5 if distinct else 1)
    grown = db_bytes(path) - before
    assert grown < (5 if distinct else 1) * retention.DEFAULT_MAX_STORED_BODY_BYTES + (256 << 10), (
        grown
    )
    notes = await st.audit.run(lambda db: db.notifications_since(0))
    assert sum(n.count for n in notes) == 5
    assert {n.body_form for n in notes} == {"truncated"}
    assert all(n.size_bytes > 1 << 20 for n in notes)
