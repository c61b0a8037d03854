"""remediator.report on a recorded audit database: episodes, runs, silences → exact numbers,
suggestions that do what they claim, Markdown tables, JSON that round-trips; the episode
back-fill of a version-1 database; the CLI and GET /api/v1/report."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from remediator import report, review
from remediator.__main__ import main
from remediator.audit import store as audit
from remediator.audit.store import AuditLog, EventKind, RunState
from remediator.errors import AuditError, ConfigError
from remediator.silences import parse_silences
from remediator.webhook import parse_notification
from tests.unit.remediator.fakes import FakeServices
from tests.unit.remediator.test_app import start

S, MIN, DAY = 1000, 60_000, 86_400_000
NOW = 1_795_734_200_000  # 2026-11-26 23:03:20 UTC, the clock of test_app
ZERO = "0001-01-01T00:00:00Z"
VIGIL_PEAKS = {"a": "0.9999", "b": "0.99991", "c": "0.99993", "d": "0.99995", "e": "0.99999"}


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def webhook(alerts: list[dict]) -> bytes:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return json.dumps(
        {
            "version": "4",
            "receiver": "vigil",
            "status": status,
            "alerts": alerts,
            "groupKey": "{}:{}",
        }
    ).encode()


def alert(
    name: str,
    fp: str,
    start_ms: int,
    *,
    end_ms: int | None = None,
    annotations: dict | None = None,
    **labels: str,
) -> dict:
    return {
        "status": "firing" if end_ms is None else "resolved",
        "labels": {"alertname": name, **labels},
        "annotations": annotations or {},
        "startsAt": iso(start_ms),
        "endsAt": ZERO if end_ms is None else iso(end_ms),
        "fingerprint": fp,
    }


class Recorder:
    """Writes notifications and runs through the audit API, as the service does."""

    def __init__(self, db: AuditLog) -> None:
        self.db = db

    def notify(self, received_ms: int, *alerts: dict) -> None:
        body = webhook(list(alerts))
        note = parse_notification(body)
        self.db.record_notification(
            received_ms=received_ms,
            receiver=note.receiver,
            status=note.status,
            group_key=note.group_key,
            n_alerts=len(note.alerts),
            body=body.decode(),
            alerts=note.alerts,
        )

    def episode(
        self,
        name: str,
        fp: str,
        start_ms: int,
        end_ms: int | None,
        annotations: dict | None = None,
        **labels: str,
    ) -> dict:
        """A firing notification a minute in (Alertmanager's group_wait) and, when it ended,
        the resolved one a group_interval after."""
        firing = alert(name, fp, start_ms, end_ms=None, annotations=annotations, **labels)
        self.notify(start_ms + 30 * S, firing)
        if end_ms is not None:
            self.notify(
                end_ms + 5 * MIN,
                alert(name, fp, start_ms, end_ms=end_ms, annotations=annotations, **labels),
            )
        return firing

    def run(
        self,
        playbook: str,
        firing: dict,
        *,
        at_ms: int,
        state: RunState,
        mode: str = "auto",
        events: tuple[tuple[EventKind, str, str], ...] = (),
        acted: bool = True,
    ) -> str:
        run = self.db.create_run(
            playbook=playbook,
            fingerprint=firing["fingerprint"],
            starts_at=firing["startsAt"],
            alertname=firing["labels"]["alertname"],
            alert=firing,
            mode=mode,
            notification_id=None,
            target=None,
            now_ms=at_ms,
        )
        assert run is not None
        if acted:
            self.db.mark_executing(run.id, now_ms=at_ms + S)
        for kind, name, verdict in events:
            self.db.add_event(run.id, kind=kind, name=name, verdict=verdict, now_ms=at_ms + S)
        self.db.set_state(run.id, state, now_ms=at_ms + 2 * S, outcome="recorded by the test")
        return run.id


def record(db: AuditLog, now_ms: int) -> None:
    """The known mix; every number the tests assert follows from it."""
    r = Recorder(db)
    t = now_ms - 20 * DAY
    # a flapping disk: 10 episodes of 60..114 s, each resolved by itself; one dry run on it
    for i in range(10):
        start = t + i * 3_600_000
        firing = r.episode(
            "DiskFlapping",
            f"disk-{i}",
            start,
            start + 60 * S + i * 6 * S,
            instance="db-1",
            job="node",
            severity="warning",
        )
        if i == 0:
            r.run(
                "silence-noisy-disk",
                firing,
                at_ms=start + MIN,
                state=RunState.DRY_RUN,
                mode="dryRun",
            )
    # and one before the window, with its run: neither counts
    old = r.episode(
        "DiskFlapping",
        "disk-old",
        now_ms - 40 * DAY,
        now_ms - 40 * DAY + MIN,
        instance="db-1",
        job="node",
        severity="warning",
    )
    r.run("silence-noisy-disk", old, at_ms=now_ms - 40 * DAY, state=RunState.SUCCEEDED)
    # a real latency problem, remediated and verified twice; the second fix took 3 minutes:
    # short, but not "by itself"
    verified = ((EventKind.VERIFY, "p99 below 300ms", "ok"),)
    for i, minutes in enumerate((20, 3)):
        start = t + DAY + i * DAY
        firing = r.episode(
            "HighLatency",
            "lat",
            start,
            start + minutes * MIN,
            service="checkout",
            severity="critical",
        )
        r.run(
            "restart-checkout", firing, at_ms=start + MIN, state=RunState.SUCCEEDED, events=verified
        )
    # a crash loop whose rollback did not help: undone and escalated, still firing
    firing = r.episode(
        "PodCrashLooping", "crash", t + 3 * DAY, None, pod="api-7", severity="critical"
    )
    r.run(
        "rollback-deploy",
        firing,
        at_ms=t + 3 * DAY + MIN,
        state=RunState.UNDONE,
        events=(
            (EventKind.VERIFY, "pods ready", "failed"),
            (EventKind.UNDO, "undo-0-rollout", "executed"),
            (EventKind.ESCALATE, "VigilRemediationFailed", "ok"),
        ),
    )
    # memory that people silence instead of fixing
    for i in range(2):
        start = t + 4 * DAY + i * DAY
        r.episode(
            "NodeMemoryHigh", "mem", start, start + 30 * MIN, instance="node-3", severity="warning"
        )
    # Vigil's detector: six episodes, peak scores from 0.9999 to 0.999999; "f" went from
    # warning to critical (two label sets, one startsAt: one episode)
    for i, (series, peak) in enumerate(VIGIL_PEAKS.items()):
        start = t + 7 * DAY + i * DAY
        ann = {"score": peak, "detector": "robust", "value": "512ms"}
        firing = r.episode(
            "VigilAnomaly",
            f"va-{series}",
            start,
            start + 10 * MIN,
            ann,
            service=series,
            severity="warning",
        )
        if series in "abc":
            r.run(
                "scale-up",
                firing,
                at_ms=start + MIN,
                acted=series == "c",
                state=RunState.SUCCEEDED if series == "c" else RunState.REFUSED,
                events=()
                if series == "c"
                else (
                    (EventKind.GUARD, "kill_switch", "allow"),
                    (EventKind.GUARD, "cooldown", "refuse"),
                    (EventKind.GUARD, "rate", "refuse"),
                ),
            )
    start = t + 13 * DAY
    ann = {"detector": "robust"}
    r.episode(
        "VigilAnomaly",
        "va-f-warning",
        start,
        start + MIN,
        ann | {"score": "0.99999"},
        service="f",
        severity="warning",
    )
    r.episode(
        "VigilAnomaly",
        "va-f-critical",
        start,
        start + 20 * MIN,
        ann | {"score": "0.999999"},
        service="f",
        severity="critical",
    )


def silence(sid: str, starts_ms: int, by: str, **match: str) -> dict:
    return {
        "id": sid,
        "createdBy": by,
        "comment": "",
        "status": {"state": "expired"},
        "startsAt": iso(starts_ms),
        "endsAt": iso(starts_ms + 3_600_000),
        "updatedAt": iso(starts_ms),
        "matchers": [
            {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in match.items()
        ],
    }


def silences_doc(now_ms: int) -> list[dict]:
    t = now_ms - 20 * DAY
    return [
        silence(
            "s1", t + 4 * DAY + 10 * MIN, "alice", alertname="NodeMemoryHigh", instance="node-3"
        ),
        silence("s2", t + 5 * DAY + 10 * MIN, "bob", alertname="NodeMemoryHigh"),
        silence("s3", now_ms - 40 * DAY, "carol", alertname="NodeMemoryHigh"),  # too old
        silence("s4", t, "dave", alertname="SomethingElse"),  # matches no episode
        {"id": "broken", "matchers": "not a list"},
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "audit.db"
    with AuditLog.open(path) as db:
        record(db, NOW)
    return path


def build(db_path: Path, *, with_silences: bool = True) -> report.Report:
    records = review.read_audit(db_path, since_ms=NOW - 30 * DAY)
    found, skipped = parse_silences(silences_doc(NOW))
    assert skipped == 1
    return report.build_report(
        episodes=records.episodes,
        runs=records.runs,
        events=records.events,
        silences=found if with_silences else None,
        now_ms=NOW,
        since_ms=NOW - 30 * DAY,
    )


def test_per_alert_numbers(db_path):
    rep = build(db_path)
    assert (rep.episodes, rep.runs) == (21, 7)
    alerts = {a.alertname: a for a in rep.alerts}
    assert [a.alertname for a in rep.alerts] == [
        "DiskFlapping",
        "VigilAnomaly",
        "HighLatency",
        "NodeMemoryHigh",
        "PodCrashLooping",
    ]
    assert alerts["DiskFlapping"] == report.AlertStats(
        alertname="DiskFlapping",
        episodes=10,
        open=0,
        self_resolved=10,
        duration_total_s=870.0,
        duration_median_s=87.0,
        duration_p90_s=108.0,
        peak_score_median=None,
        silences=0,
        runs=1,
        runs_acted=0,
        runs_verified=0,
        runs_undone=0,
        escalations=0,
    )
    lat = alerts["HighLatency"]
    assert (lat.episodes, lat.self_resolved, lat.duration_median_s, lat.duration_p90_s) == (
        2,
        0,
        690.0,
        1200.0,
    )  # the 3-minute one was fixed, not self-resolved
    assert (lat.runs, lat.runs_acted, lat.runs_verified, lat.runs_undone) == (2, 2, 2, 0)
    crash = alerts["PodCrashLooping"]
    assert (crash.episodes, crash.open, crash.duration_median_s) == (1, 1, None)
    assert (crash.runs_acted, crash.runs_verified, crash.runs_undone, crash.escalations) == (
        1,
        0,
        1,
        1,
    )
    assert alerts["NodeMemoryHigh"].silences == 2
    va = alerts["VigilAnomaly"]
    assert (va.episodes, va.open, va.self_resolved, va.duration_median_s) == (6, 0, 0, 600.0)
    assert va.peak_score_median == pytest.approx((0.99993 + 0.99995) / 2)
    assert (va.runs, va.runs_acted) == (3, 1)


def test_per_playbook_numbers(db_path):
    pbs = {p.playbook: p for p in build(db_path).playbooks}
    assert set(pbs) == {"restart-checkout", "rollback-deploy", "scale-up", "silence-noisy-disk"}
    assert pbs["restart-checkout"] == report.PlaybookStats(
        playbook="restart-checkout",
        runs=2,
        states={"succeeded": 2},
        verified=2,
        verification_failed=0,
        undone=0,
        escalations=0,
        refused_by={},
    )
    assert pbs["rollback-deploy"] == report.PlaybookStats(
        playbook="rollback-deploy",
        runs=1,
        states={"undone": 1},
        verified=0,
        verification_failed=1,
        undone=1,
        escalations=1,
        refused_by={},
    )
    assert pbs["scale-up"].states == {"refused": 2, "succeeded": 1}
    assert pbs["scale-up"].refused_by == {"cooldown": 2}  # the first guard that refused
    assert pbs["silence-noisy-disk"].states == {"dry_run": 1}


def test_noisiest_series(db_path):
    rows = build(db_path).noisiest
    assert len(rows) == report.TOP_SERIES
    top = rows[0]
    assert (
        top.alertname,
        top.labels,
        top.episodes,
        top.self_resolved,
        top.self_resolved_share,
    ) == ("DiskFlapping", {"instance": "db-1", "job": "node"}, 10, 10, 1.0)
    assert [(s.alertname, s.episodes) for s in rows[1:4]] == [
        ("HighLatency", 2),
        ("NodeMemoryHigh", 2),
        ("PodCrashLooping", 1),
    ]
    assert {"service": "f"} in [s.labels for s in rows]  # one episode, severity merged


def test_score_suggestion_halves_the_episodes(db_path):
    rep = build(db_path)
    [s] = [s for s in rep.suggestions if s.kind == "score_threshold"]
    assert (s.subject, s.setting, s.proposed) == (
        "VigilAnomaly",
        "alerts[name=VigilAnomaly].severities[0].score",
        "0.99994",
    )
    records = review.read_audit(db_path, since_ms=NOW - 30 * DAY)
    peaks: dict[tuple[str, str], float] = {}
    for e in records.episodes:
        if e.peak_score is not None:
            key = (e.labels["service"], e.starts_at)
            peaks[key] = max(peaks.get(key, 0.0), e.peak_score)
    assert len(peaks) == 6
    assert s.proposed is not None
    still = sum(p >= float(s.proposed) for p in peaks.values())
    assert still == s.episodes_after == 3 and still * 2 <= len(peaks)
    assert (
        "from its current value (at most 0.9999, the lowest peak score that fired) to "
        "0.99994" in s.text
    )


@pytest.mark.parametrize(
    ("peaks", "expected"),
    [
        ([0.9999, 0.99991, 0.99993, 0.99995, 0.99999, 0.999999], (0.99994, 3)),
        ([0.5, 0.6, 0.7], (0.7, 1)),  # odd: at most half, rounded down
        ([0.99, 0.99, 0.99, 0.995], (0.993, 1)),  # ties: as many kept as possible below half
        ([0.99, 0.99], None),  # every peak the same: no threshold splits them
        ([2.5, 3.5, 4.0, 6.0], (4.0, 2)),  # not a probability: halfway, plainly
    ],
)
def test_score_threshold(peaks, expected):
    found = report.score_threshold(peaks)
    want: object = (pytest.approx(expected[0]), expected[1]) if expected else None
    assert found == want
    if found is not None:
        assert sum(p >= found[0] for p in peaks) == found[1] <= len(peaks) // 2


def test_lengthen_for_and_other_suggestions(db_path):
    by = {(s.kind, s.subject): s for s in build(db_path).suggestions}
    assert set(by) == {
        ("lengthen_for", "DiskFlapping"),
        ("score_threshold", "VigilAnomaly"),
        ("silenced", "NodeMemoryHigh"),
        ("undone", "rollback-deploy"),
        ("refused", "scale-up"),
    }
    flap = by[("lengthen_for", "DiskFlapping")]
    assert (flap.proposed, flap.episodes, flap.episodes_after) == ("+2m", 10, 0)
    assert flap.text.startswith(
        "DiskFlapping: lengthen `for` of the rule DiskFlapping by 2m. "
        "10 of 10 resolved episodes lasted 5m or less"
    )
    assert "(by alice, bob)" in by[("silenced", "NodeMemoryHigh")].text
    assert (
        "1 of 1 runs that acted were undone (1 failed verification)"
        in by[("undone", "rollback-deploy")].text
    )
    assert (
        "refused 2 of 3 runs, 2 by the cooldown guard (guards.cooldown_s): its alert "
        "came back" in by[("refused", "scale-up")].text
    )


def test_a_longer_self_resolve_bound_counts_more(db_path):
    records = review.read_audit(db_path, since_ms=NOW - 30 * DAY)
    rep = report.build_report(
        episodes=records.episodes,
        runs=records.runs,
        events=records.events,
        silences=None,
        now_ms=NOW,
        since_ms=NOW - 30 * DAY,
        self_resolve_s=90.0,
    )
    alerts = {a.alertname: a for a in rep.alerts}
    assert alerts["DiskFlapping"].self_resolved == 6  # 60, 66, ..., 90 s
    assert alerts["NodeMemoryHigh"].silences is None and not rep.silences_checked


def test_markdown_has_tables_and_suggestions(db_path):
    text = report.render_markdown(build(db_path))
    assert text.startswith(
        "# Alert-quality review\n\n2026-10-27 23:03 UTC → 2026-11-26 23:03 "
        "UTC (30d): 21 episodes of 5 alerts, 7 runs of 4 playbooks."
    )
    assert (
        "| DiskFlapping | 10 | 0 | 10 | 1m27s | 1m48s | 14m30s | – | 0 | 1 | 0 | 0 | 0 "
        "| 0 |" in text
    )
    assert "| rollback-deploy | 1 | undone 1 | 0 | 1 | 1 | 1 | – |" in text
    assert "| scale-up | 3 | refused 2, succeeded 1 | 0 | 0 | 0 | 0 | cooldown 2 |" in text
    assert '| DiskFlapping | `{instance="db-1", job="node"}` | 10 | 10 (100%) | 1m27s |' in text
    assert "1. DiskFlapping: lengthen `for`" in text
    assert "| PodCrashLooping | 1 | 1 | 0 | – | – | – | – |" in text  # open: no durations
    assert "raise `alerts[name=VigilAnomaly].severities[0].score` in the detector config" in text
    assert "> 1 silence(s) created in the window match no alert seen in it" in text


def test_json_round_trips(db_path):
    rep = build(db_path)
    text = report.report_json(rep)
    assert report.parse_report(text) == rep
    doc = json.loads(text)
    assert doc["alerts"][0]["alertname"] == "DiskFlapping"
    assert doc["suggestions"][0]["kind"] == "lengthen_for"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2_592_000.0), ("12h", 43_200.0), ("90m", 5_400.0), ("45s", 45.0)]
)
def test_parse_duration(text, seconds):
    assert report.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30x", "d", "0d", "-3d", "1.5h", ""])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="expected a duration like 30d, 12h, 90m"):
        report.parse_duration(text)


def test_the_episodes_of_a_version_1_database_are_back_filled(tmp_path):
    """The migration rebuilds from the stored bodies what the live path records."""
    live, old = tmp_path / "live.db", tmp_path / "old.db"
    with AuditLog.open(live) as db:
        record(db, NOW)
        bodies = [(n.received_ms, n.body) for n in db.notifications_since(0)]
        expected = db.episodes_since(0)
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
    for statement in audit.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.executemany(
        "INSERT INTO notifications (received_ms, receiver, status, group_key,"
        " n_alerts, body) VALUES (?, 'vigil', 'firing', '', 1, ?)",
        bodies,
    )
    conn.commit()
    conn.close()
    with pytest.raises(
        AuditError,
        match="schema version 1, this remediator reads "
        f"version {audit.SCHEMA_VERSION}; start "
        "`vigil-remediator serve`",
    ):
        AuditLog.open_readonly(old)
    with AuditLog.open(old) as db:
        assert db.schema_version() == audit.SCHEMA_VERSION
        assert db.episodes_since(0) == expected
    assert len(expected) == 23  # VigilAnomaly f has two label sets


def test_an_episode_keeps_its_resolution_and_its_peak(tmp_path):
    """Notifications may arrive out of order (an HA pair): resolved stays resolved, the
    first endsAt stays, the peak score only rises."""
    with AuditLog.open(tmp_path / "a.db") as db:
        r = Recorder(db)
        start = NOW - 10 * MIN
        ann = {"score": "0.9995"}
        r.notify(NOW - 9 * MIN, alert("X", "x", start, annotations=ann))
        r.notify(
            NOW - 8 * MIN,
            alert("X", "x", start, end_ms=NOW - 8 * MIN, annotations={"score": "0.9999"}),
        )
        r.notify(NOW - 7 * MIN, alert("X", "x", start, annotations={"score": "n/a"}))
        r.notify(NOW - 6 * MIN, alert("X", "x", start, end_ms=NOW - 6 * MIN, annotations=ann))
        [ep] = db.episodes_since(0)
    assert (ep.status, ep.ends_ms, ep.peak_score, ep.notifications) == (
        "resolved",
        NOW - 8 * MIN,
        0.9999,
        4,
    )
    assert (ep.first_ms, ep.last_ms, ep.starts_ms) == (NOW - 9 * MIN, NOW - 6 * MIN, start)


def test_readonly_reads_while_the_service_writes(db_path):
    with AuditLog.open(db_path) as writer, AuditLog.open_readonly(db_path) as reader:
        before = len(reader.episodes_since(0))
        Recorder(writer).episode("Late", "late", NOW - MIN, None, job="x")
        assert len(reader.episodes_since(0)) == before + 1
        with pytest.raises(AuditError, match="readonly"):
            reader.set_flag("paused", "yes", now_ms=NOW)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    """The same mix, relative to the real clock the command line reads."""
    path = tmp_path / "state" / "audit.db"
    with AuditLog.open(path) as db:
        record(db, int(time.time() * 1000))
    return path


def test_cli_json(live_db, capsys):
    assert main(["report", "--state-dir", str(live_db.parent), "--format", "json"]) == 0
    rep = report.parse_report(capsys.readouterr().out)
    assert {a.alertname: a.episodes for a in rep.alerts} == {
        "DiskFlapping": 10,
        "VigilAnomaly": 6,
        "HighLatency": 2,
        "NodeMemoryHigh": 2,
        "PodCrashLooping": 1,
    }
    assert not rep.silences_checked
    assert rep.notes == (
        "Alertmanager: not configured (--alertmanager URL); silences are not counted",
    )


def test_cli_markdown_with_a_shorter_window(live_db, capsys):
    assert (
        main(["report", "--audit", str(live_db), "--since", "10d", "--self-resolve-minutes", "1.5"])
        == 0
    )
    out = capsys.readouterr().out
    # 20..10 days ago fall outside: only the last VigilAnomaly episodes remain
    assert "(10d): 3 episodes of 1 alerts, 0 runs of 0 playbooks" in out
    assert "resolved within 1m30s" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "30x"], "--since 30x: expected a duration like 30d, 12h, 90m"),
        (["--self-resolve-minutes", "zero"], "--self-resolve-minutes zero: expected a number"),
        (["--alertmanager", "am:9093"], "--alertmanager am:9093: expected an http:// or https://"),
    ],
)
def test_cli_bad_flags(tmp_path, capsys, argv, message):
    assert main(["report", "--state-dir", str(tmp_path), *argv]) == 2
    assert f"vigil-remediator: {message}" in capsys.readouterr().err


def test_cli_without_a_database(tmp_path, capsys):
    assert main(["report", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"audit database {tmp_path / 'audit.db'}: cannot read it" in err
    assert not (tmp_path / "audit.db").exists()  # read-only: nothing created


async def test_review_reads_a_live_alertmanager(aiohttp_server, db_path):
    """The command line's own HTTP client against an Alertmanager double."""
    app = web.Application()
    answer = {"status": 200}

    async def silences(request: web.Request) -> web.Response:
        if answer["status"] != 200:
            return web.Response(status=answer["status"], text="no")
        return web.json_response(silences_doc(NOW))

    app.router.add_get("/api/v2/silences", silences)
    server = await aiohttp_server(app)
    url = str(server.make_url("/"))
    rep = await review.review_cli(
        audit_path=db_path, alertmanager_url=url, now_ms=NOW, since_s=30 * 86400, self_resolve_s=300
    )
    assert rep.silences_checked
    assert {a.alertname: a.silences for a in rep.alerts}["NodeMemoryHigh"] == 2
    assert "Alertmanager: 1 silence(s) could not be read and are not counted" in rep.notes
    answer["status"] = 500
    rep = await review.review_cli(
        audit_path=db_path, alertmanager_url=url, now_ms=NOW, since_s=30 * 86400, self_resolve_s=300
    )
    assert not rep.silences_checked and all(a.silences is None for a in rep.alerts)
    assert rep.notes[0] == (
        "Alertmanager: GET /api/v2/silences answered 500; silences are not counted"
    )
    assert rep.episodes == 21  # the rest of the report is all there


# -- the service ----------------------------------------------------------------------------


def _noise(status: str, start: str, end: str = ZERO) -> dict:
    body = json.loads(
        webhook(
            [
                {
                    "status": status,
                    "labels": {"alertname": "Noisy", "instance": "web-1"},
                    "annotations": {"score": "0.99992"},
                    "startsAt": start,
                    "endsAt": end,
                    "fingerprint": "n1",
                }
            ]
        )
    )
    return body


async def test_http_report_from_webhooks(aiohttp_client, tmp_path):
    fake = FakeServices()
    fake.silences = silences_doc(NOW)
    client, st, _, _ = await start(aiohttp_client, tmp_path, services=fake)
    for body in (
        _noise("firing", "2026-11-26T20:00:00Z"),
        _noise("resolved", "2026-11-26T20:00:00Z", "2026-11-26T20:01:30.5Z"),
    ):
        assert (await client.post("/webhook", json=body)).status == 200
    resp = await client.get("/api/v1/report", params={"since": "1d"})
    assert resp.status == 200 and resp.content_type == "application/json"
    rep = report.parse_report(await resp.text())
    [noisy] = rep.alerts
    assert (
        noisy.alertname,
        noisy.episodes,
        noisy.self_resolved,
        noisy.duration_median_s,
        noisy.peak_score_median,
        noisy.silences,
    ) == ("Noisy", 1, 1, 90.5, 0.99992, 0)
    assert rep.since_ms == int(st.clock() * 1000) - DAY
    md = await client.get("/api/v1/report", params={"since": "1d", "format": "markdown"})
    assert md.content_type == "text/markdown"
    assert "| Noisy | 1 | 0 | 1 | 1m30s |" in await md.text()


async def test_http_report_when_alertmanager_is_down(aiohttp_client, tmp_path):
    fake = FakeServices()
    fake.am_down = 1
    client, _st, _, _ = await start(aiohttp_client, tmp_path, services=fake)
    await client.post("/webhook", json=_noise("firing", "2026-11-26T20:00:00Z"))
    rep = report.parse_report(await (await client.get("/api/v1/report")).text())
    assert rep.notes == (
        "Alertmanager: cannot read its silences (connection refused); silences are not counted",
    )
    assert [(a.alertname, a.episodes, a.open, a.silences) for a in rep.alerts] == [
        ("Noisy", 1, 1, None)
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "30x"}, "bad query: 30x: expected a duration like 30d, 12h, 90m"),
        ({"format": "html"}, "bad query: format=html: expected json or markdown"),
        ({"self_resolve_minutes": "-1"}, "bad query: -1: expected a number of minutes greater"),
    ],
)
async def test_http_report_bad_query(aiohttp_client, tmp_path, query, message):
    client, *_ = await start(aiohttp_client, tmp_path)
    resp = await client.get("/api/v1/report", params=query)
    assert resp.status == 400 and (await resp.json())["error"].startswith(message)
