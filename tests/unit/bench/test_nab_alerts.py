"""``bench.nab run``'s default output: the score of each alert's first firing sample
through the default alert rule's lifecycle, 0 elsewhere; ``--output raw`` every score."""

import csv
from datetime import UTC, datetime, timedelta

import numpy as np

from bench import nab, nabdetect
from detector.config import AlertRule, SeverityLevel
from detector.detectors.base import Scores

RULE = AlertRule(severities=(SeverityLevel(severity="warning", score=0.99),), resolve_below=0.9)


def _scores(score):
    """Values inside their band: only the scores start and keep a run."""
    n = len(score)
    return np.zeros(n), Scores(
        np.asarray(score, float), np.zeros(n), np.full(n, -1.0), np.full(n, 1.0)
    )


def test_a_five_minute_row_that_starts_an_alert_carries_its_score_and_no_other():
    ts = np.arange(8, dtype=np.int64) * 300_000
    values, out = _scores([0.1, 0.995, 0.999, 0.5, 0.1, 0.1, 0.992, 0.1])
    starts = nabdetect.alert_starts(ts, values, out, RULE)
    # the first anomalous sample stands for its 5 minutes: for 60 s fires there; the
    # firing alert's later samples are not new pages; after it resolves a new one starts
    assert starts.tolist() == [0, 0.995, 0, 0, 0, 0, 0.992, 0]


def test_at_15_s_the_alert_starts_on_the_fourth_anomalous_sample_with_that_score():
    ts = np.arange(8, dtype=np.int64) * 15_000
    values, out = _scores([0.1, 0.995, 0.999, 0.996, 0.9991, 0.999, 0.1, 0.1])
    starts = nabdetect.alert_starts(ts, values, out, RULE)
    assert starts.tolist() == [0, 0, 0, 0, 0.9991, 0, 0, 0]
    values, out = _scores([0.1, 0.995, 0.999, 0.996, 0.1, 0.1, 0.1, 0.1])
    assert not nabdetect.alert_starts(ts, values, out, RULE).any()  # 45 s: never fires


def test_run_writes_alert_starts_by_default_and_raw_scores_on_request(tmp_path):
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    rng = np.random.default_rng(3)
    values = np.concatenate([10 + rng.standard_normal(600), 40 + rng.standard_normal(50)])
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    (data / "x.csv").write_text(
        "timestamp,value\n"
        + "".join(
            f"{(t0 + timedelta(minutes=5 * i)):%Y-%m-%d %H:%M:%S},{v}\n"
            for i, v in enumerate(values)
        )
    )
    nab.run("default", tmp_path / "data", tmp_path / "alerts")
    nab.run("default", tmp_path / "data", tmp_path / "raw", output="raw")

    def column(root):
        with (root / "default" / "cat" / "default_x.csv").open(newline="") as fh:
            return np.array([float(r["anomaly_score"]) for r in csv.DictReader(fh)])

    alerts, raw = column(tmp_path / "alerts"), column(tmp_path / "raw")
    assert (raw > 0).sum() > 100
    fired = np.flatnonzero(alerts)
    assert 600 in fired  # the shift pages on its first 5-minute sample
    assert np.array_equal(alerts[fired], raw[fired])  # with that sample's own score
    assert (alerts[fired] >= 0.9999).all() and len(fired) < 10
