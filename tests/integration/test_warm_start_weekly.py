"""Warm start finds a weekly period in 15 days of history read from the real Prometheus.

Prometheus holds 15 days (backfilled by promtool) of two gauges: ``weekly`` follows a daily
shape that drops to 35 % on the two weekend days, ``daily`` the same shape every day. The
live samples fall on a Saturday noon of that history (the detector bins samples by their
own timestamps, so the history's calendar is shifted to put "now" there). A weekend level
is normal for the weekly series and an outage for the daily one; a weekday level is the
reverse. The alerts say which profile judged them ("for a <day> HH:MM UTC" is a weekly
one, "for HH:MM UTC" a daily one).

The second test starts the detector before Prometheus: the warm starts fail, both series
start cold on the daily profile and the weekly one pages; once Prometheus is up, the
seasonal re-check reads their history, moves the weekly series to its weekly profile and
keeps the daily one, and the firing alert goes on (not resolved, not paged again), now
judged by the weekly profile.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from detector.remote_write import encode
from tests.integration.procs import free_port, process, require, vigil_detector_argv, wait_until
from tests.integration.stack import get_json, write

pytestmark = pytest.mark.integration

DAY_S = 86_400
DAYS = 15
STEP_S = 300  # the history's spacing, older than the last six hours
RECENT_S = 6 * 3600  # warm_start.history_s: the part read at full resolution
RECENT_STEP_S = 60
WEEKLY = (("__name__", "vigil_shop_orders"), ("job", "weekly"))
DAILY = (("__name__", "vigil_shop_orders"), ("job", "daily"))
KINDS = ("fire", "resolve", "stale")


def level(t: np.ndarray, *, noon_s: int, weekends: bool) -> np.ndarray:
    """The noise-free value at ``t``: 20 at midnight to 100 at noon, where ``noon_s`` is
    a Saturday noon; with ``weekends``, Saturdays and Sundays at 35 %."""
    shape = 60.0 + 40.0 * np.cos(2 * np.pi * (t - noon_s) / DAY_S)
    if not weekends:
        return shape
    weekday = np.floor((t - (noon_s - DAY_S // 2)) / DAY_S).astype(np.int64) % 7  # 0: Saturday
    return np.where(weekday < 2, 0.35 * shape, shape)


def history_times(noon_s: int) -> np.ndarray:
    """Every five minutes for 15 days, every minute in the last six hours, up to a minute
    before ``noon_s``."""
    sparse = np.arange(noon_s - DAYS * DAY_S, noon_s - RECENT_S, STEP_S)
    recent = np.arange(noon_s - RECENT_S, noon_s, RECENT_STEP_S)
    return np.concatenate((sparse, recent)).astype(np.int64)


def backfill(tmp: Path, noon_s: int) -> Path:
    rng = np.random.default_rng(11)
    t = history_times(noon_s)
    lines = ["# HELP vigil_shop_orders Orders a minute.", "# TYPE vigil_shop_orders gauge"]
    for labels, weekends in ((WEEKLY, True), (DAILY, False)):
        values = level(t, noon_s=noon_s, weekends=weekends) + rng.normal(0.0, 1.5, t.shape)
        job = dict(labels)["job"]
        lines += [
            f'vigil_shop_orders{{job="{job}"}} {v:.4f} {s}' for s, v in zip(t, values, strict=True)
        ]
    lines.append("# EOF")
    source = tmp / "history.om"
    source.write_text("\n".join(lines) + "\n")
    tsdb = tmp / "tsdb"
    subprocess.run(
        [
            require("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",  # 16 blocks for Prometheus to open, not 180
            str(source),
            str(tsdb),
        ],
        check=True,
        capture_output=True,
    )
    return tsdb


def live(start_s: int, values: list[float]) -> list[encode.Series]:
    """Both series, the same ``values`` a minute apart from ``start_s``."""
    return [
        encode.Series(
            labels=list(labels),
            samples=[((start_s + 60 * i) * 1000, v) for i, v in enumerate(values)],
        )
        for labels in (WEEKLY, DAILY)
    ]


def series_by_job(port: int) -> dict[str, dict]:
    data = get_json(f"http://127.0.0.1:{port}/api/v1/series?match[]=vigil_shop_orders")["data"]
    return {s["labels"]["job"]: s for s in data}


def scored_up_to(port: int, ts_s: int) -> bool:
    listed = series_by_job(port)
    return len(listed) == 2 and all(s["last_timestamp_ms"] == ts_s * 1000 for s in listed.values())


def firing_by_job(port: int) -> dict[str, dict]:
    data = get_json(f"http://127.0.0.1:{port}/api/v1/anomalies")["data"]
    return {a["labels"]["job"]: a for a in data}


def metrics(port: int) -> dict[str, float]:
    """/metrics as {sample name with its labels, as exposed: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    }


def contexts(start_s: int, n: int, *, weekly: bool) -> set[str]:
    """How an alert names the profile bin of any of ``n`` samples a minute apart."""
    out = set()
    for i in range(n):
        t = datetime.fromtimestamp(start_s + 60 * i, UTC)
        out.add(f"for a {t:%A %H:%M} UTC" if weekly else f"for {t:%H:%M} UTC")
    return out


def _vigil_config(tmp_path: Path, warm_start_extra: str = "") -> None:
    """vigil.yaml: the warm start reads the backfilled history (plus ``warm_start_extra``
    keys). The live samples are sent minutes after their timestamps: silence is judged
    over an hour, so no alert goes stale and no series absent while a test reads them."""
    (tmp_path / "vigil.yaml").write_text(
        f"warm_start:\n  history_s: {RECENT_S}\n  period_history_s: {DAYS * DAY_S}\n"
        + warm_start_extra
        + "alerting:\n  stale_min_s: 3600\npresence:\n  absent_min_s: 3600\n"
    )


def _prometheus_argv(tmp_path: Path, tsdb: Path, port: int) -> list[str]:
    """A Prometheus serving the backfilled TSDB (an empty config: nothing scraped)."""
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    return [
        require("prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tsdb}",
        # the history starts at the default retention's (15 days) edge
        "--storage.tsdb.retention.time=30d",
        f"--web.listen-address=127.0.0.1:{port}",
    ]


def test_weekend_history_gives_a_weekly_profile(tmp_path: Path):
    # "now" is a Saturday noon of the history; the live samples follow it, none of them
    # ahead of the wall clock (the alert book never dates an alert in the future)
    noon_s = (int(time.time()) - 660) // 60 * 60
    tsdb = backfill(tmp_path, noon_s)
    prom_port, vigil_port = free_port(), free_port()
    _vigil_config(tmp_path)
    with (
        process(
            "prometheus",
            _prometheus_argv(tmp_path, tsdb, prom_port),
            tmp_path,
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ),
        process(
            "vigil",
            vigil_detector_argv(
                vigil_port,
                "--config",
                str(tmp_path / "vigil.yaml"),
                "--prometheus",
                f"http://127.0.0.1:{prom_port}",
            ),
            tmp_path,
            ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
            timeout_s=180,
        ),
    ):
        rng = np.random.default_rng(12)
        # a Saturday at the weekend level: an outage for the daily series only
        write(vigil_port, live(noon_s, list(35.0 + rng.normal(0.0, 1.5, 5))))
        wait_until("the weekend samples scored", lambda: scored_up_to(vigil_port, noon_s + 240))
        wait_until("the daily series pages", lambda: "daily" in firing_by_job(vigil_port))
        weekend = series_by_job(vigil_port)
        weekend_alerts = firing_by_job(vigil_port)
        fired_on_weekend = metrics(vigil_port)['vigil_alert_events_total{kind="fire"}']

        # the same Saturday at the weekday level: an outage for the weekly series only
        write(vigil_port, live(noon_s + 300, list(100.0 + rng.normal(0.0, 1.5, 5))))
        wait_until("the weekday samples scored", lambda: scored_up_to(vigil_port, noon_s + 540))
        wait_until(
            "the weekly series pages and the daily one recovers",
            lambda: set(firing_by_job(vigil_port)) == {"weekly"},
        )
        weekday = series_by_job(vigil_port)
        weekday_alerts = firing_by_job(vigil_port)
        exposed = metrics(vigil_port)

    # both histories were read whole: 15 days every five minutes (the subquery) joined to
    # the last six hours every minute, without the overlap twice
    history = weekday["weekly"]["samples"] - 10
    most = (DAYS * DAY_S - RECENT_S) // STEP_S + RECENT_S // RECENT_STEP_S
    assert DAYS * DAY_S // STEP_S < history <= most
    assert weekday["daily"]["samples"] - 10 == history
    assert exposed['vigil_warm_starts_total{result="ok"}'] == 2
    assert exposed["vigil_warm_start_samples_total"] == 2 * history
    # each series was given its own period (a week, and a day)
    assert exposed['vigil_seasonal_periods_detected_total{period="weekly"}'] == 1
    assert exposed['vigil_seasonal_periods_detected_total{period="daily"}'] == 1

    # on the weekend, the weekly profile expects the weekend level (a daily profile of the
    # same history expects about 47 in a band of 7-87: the weekdays and weekends averaged)
    assert 27 < weekend["weekly"]["expected"] < 43 and weekend["weekly"]["upper"] < 60
    assert weekend["weekly"]["score"] < 0.999
    assert 90 < weekend["daily"]["expected"] < 110 and weekend["daily"]["score"] >= 0.9999
    assert "weekly" not in weekend_alerts and fired_on_weekend == 1
    summary = weekend_alerts["daily"]["annotations"]["summary"]
    assert any(c in summary for c in contexts(noon_s, 5, weekly=False)), summary

    # weekday values on that Saturday: the weekly series pages, the daily one recovers
    assert 27 < weekday["weekly"]["expected"] < 43 and weekday["weekly"]["upper"] < 60
    assert weekday["weekly"]["score"] >= 0.9999
    assert 90 < weekday["daily"]["expected"] < 110 and weekday["daily"]["score"] < 0.999
    events = {k: exposed.get(f'vigil_alert_events_total{{kind="{k}"}}', 0.0) for k in KINDS}
    assert events == {"fire": 2, "resolve": 1, "stale": 0}  # the daily one by normal samples
    summary = weekday_alerts["weekly"]["annotations"]["summary"]
    assert any(c in summary for c in contexts(noon_s + 300, 5, weekly=True)), summary


def at_15s(labels: tuple[tuple[str, str], ...], start_s: int, values) -> encode.Series:
    """One series' ``values`` 15 s apart from ``start_s``."""
    return encode.Series(
        labels=list(labels),
        samples=[((start_s + 15 * i) * 1000, float(v)) for i, v in enumerate(values)],
    )


def test_a_cold_series_is_rechecked_and_moved_keeping_its_alert(tmp_path: Path):
    # a Saturday noon of the history; 60 live samples 15 s apart, none ahead of the clock
    noon_s = (int(time.time()) - 1200) // 60 * 60
    tsdb = backfill(tmp_path, noon_s)
    prom_port, vigil_port = free_port(), free_port()
    _vigil_config(tmp_path, "  timeout_s: 5\n  recheck_interval_s: 2s\n")
    prometheus = _prometheus_argv(tmp_path, tsdb, prom_port)
    rng = np.random.default_rng(13)
    with process(
        "vigil",
        vigil_detector_argv(
            vigil_port,
            "--config",
            str(tmp_path / "vigil.yaml"),
            "--prometheus",
            f"http://127.0.0.1:{prom_port}",  # not up yet: the warm starts fail
        ),
        tmp_path,
        ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
        timeout_s=180,
    ):
        # cold: 40 samples at the Saturday level each, learned by a daily profile
        write(
            vigil_port,
            [
                at_15s(WEEKLY, noon_s, 35.0 + rng.normal(0.0, 1.5, 40)),
                at_15s(DAILY, noon_s, 100.0 + rng.normal(0.0, 1.5, 40)),
            ],
        )
        wait_until(
            "both warm starts failed",
            lambda: metrics(vigil_port).get('vigil_warm_starts_total{result="error"}') == 2,
        )
        # the weekly series at its weekday level on a Saturday: an outage, paged
        shift_s = noon_s + 15 * 40
        for i in range(8):
            write(
                vigil_port,
                [
                    at_15s(WEEKLY, shift_s + 15 * i, [100.0 + rng.normal(0.0, 1.5)]),
                    at_15s(DAILY, shift_s + 15 * i, [100.0 + rng.normal(0.0, 1.5)]),
                ],
            )
        wait_until("the weekly series pages", lambda: "weekly" in firing_by_job(vigil_port))
        before = firing_by_job(vigil_port)["weekly"]
        assert any(
            c in before["annotations"]["summary"] for c in contexts(shift_s, 8, weekly=False)
        ), before["annotations"]["summary"]  # judged by the daily profile
        assert metrics(vigil_port).get('vigil_seasonal_moves_total{result="moved"}', 0) == 0

        with process(
            "prometheus",
            prometheus,
            tmp_path,
            ready_url=f"http://127.0.0.1:{prom_port}/-/ready",
        ):
            wait_until(
                "the re-check moves the weekly series",
                lambda: metrics(vigil_port).get('vigil_seasonal_moves_total{result="moved"}') == 1,
                timeout_s=90,
                log=tmp_path / "vigil.log",
            )
            wait_until(
                "the re-check keeps the daily series",
                lambda: (
                    metrics(vigil_port).get('vigil_seasonal_rechecks_total{result="kept"}', 0) >= 1
                ),
                timeout_s=30,
            )
            moved = metrics(vigil_port)
            after_s = shift_s + 15 * 8
            write(
                vigil_port,
                [
                    at_15s(WEEKLY, after_s, 100.0 + rng.normal(0.0, 1.5, 4)),
                    at_15s(DAILY, after_s, 100.0 + rng.normal(0.0, 1.5, 4)),
                ],
            )
            wait_until("the last samples scored", lambda: scored_up_to(vigil_port, after_s + 45))
            firing = firing_by_job(vigil_port)
            listed = series_by_job(vigil_port)
            exposed = metrics(vigil_port)

    assert moved['vigil_seasonal_rechecks_total{result="moved"}'] == 1
    assert moved['vigil_seasonal_periods_detected_total{period="weekly"}'] == 1
    assert moved.get('vigil_seasonal_moves_total{result="refused"}', 0) == 0
    # the alert went on through the move: still firing since the same time, never resolved
    # nor paged again, and now judged by the weekly profile (a Saturday noon is 35)
    assert set(firing) == {"weekly"}
    assert firing["weekly"]["startsAt"] == before["startsAt"]
    events = {k: exposed.get(f'vigil_alert_events_total{{kind="{k}"}}', 0.0) for k in KINDS}
    assert events == {"fire": 1, "resolve": 0, "stale": 0}
    summary = firing["weekly"]["annotations"]["summary"]
    assert any(c in summary for c in contexts(after_s, 4, weekly=True)), summary
    assert 27 < listed["weekly"]["expected"] < 43 and listed["weekly"]["score"] >= 0.9999
    assert listed["daily"]["score"] < 0.999
