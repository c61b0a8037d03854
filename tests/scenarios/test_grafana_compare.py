"""The instrument that runs Prometheus rules over history (``bench/promrules.py``) and
feeds it the scenario series (``bench/grafana_compare.py``).

Grafana's rule files are not in this repository, so the real-process test checks the
instrument on a rule file written here, whose firing interval is worked out by hand.
"""

import numpy as np
import pytest

from bench import grafana_compare, promrules, scenarios
from bench.promrules import Firing
from bench.scenario_data import Series

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MIN = 60_000


def _grid(n):
    return T0 + MIN * np.arange(n, dtype=np.int64)


def test_for_holds_pending_then_fires_and_resolves_at_first_inactive_evaluation():
    grid = _grid(20)
    active = grid[[2, 3, 4, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19]]
    periods = promrules.firing_periods(active, grid, for_s=120)
    # run 2..5: pending at 2 and 3, firing from 4 (4 - 2 = 2 min), inactive at 6;
    # run 9..9 never lasts 2 min; run 12..19 fires from 14 and is firing at the end
    assert periods == [Firing(int(grid[4]), int(grid[6])), Firing(int(grid[14]), None)]
    assert promrules.firing_periods(active, grid, for_s=0)[0] == Firing(int(grid[2]), int(grid[6]))


def test_firing_mask_holds_between_evaluations():
    ts = T0 + 15_000 * np.arange(12, dtype=np.int64)
    mask = promrules.firing_mask(ts, [Firing(T0 + MIN, T0 + 2 * MIN)])
    assert mask.tolist() == [False] * 4 + [True] * 4 + [False] * 4


def _rules(text, tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return promrules.load_rules(path).groups


def test_passes_follow_what_each_rule_reads(tmp_path):
    groups = _rules(
        """groups:
- name: a
  rules:
  - record: c:x4
    expr: c:x2 * 2
  - record: c:x2
    expr: x * 2
  - record: c:label
    expr: label_replace(x, "copy", "c:x4", "", "")
  - alert: High
    expr: c:x4 > 1
    for: 5m
""",
        tmp_path,
    )
    passes = promrules.backfill_passes(groups)
    assert [[p.rule.name for p in ps] for ps in passes] == [["c:x2", "c:label"], ["c:x4"]]


def test_cycle_and_bad_rules_are_clear_errors(tmp_path):
    cycle = _rules(
        """groups:
- name: a
  rules:
  - {record: "a:x", expr: "b:x"}
  - {record: "b:x", expr: "a:x + 1"}
""",
        tmp_path,
    )
    with pytest.raises(promrules.RulesError, match="cycle: a:x -> b:x -> a:x"):
        promrules.backfill_passes(cycle)
    with pytest.raises(promrules.RulesError, match=r"rules.yml:4: .*exactly one of"):
        _rules(
            """groups:
- name: a
  rules:
  - record: a:x
    alert: A
    expr: x
""",
            tmp_path,
        )


def test_gauges_are_fed_one_sample_a_minute_and_markers_as_nan():
    ts = T0 + 15_000 * np.arange(16, dtype=np.int64)
    stale = np.zeros(16, dtype=np.bool_)
    stale[8] = True  # the scrape at minute 2 failed
    s = Series(
        family="spike",
        metric="svc_gauge",
        anomalous=False,
        ts_ms=ts,
        values=np.arange(16, dtype=np.float64),
        stale=stale,
        anomaly=None,
        lasting=False,
    )
    minutes, values = grafana_compare.per_minute(s)
    assert minutes.tolist() == [T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    assert values[[0, 1, 3]].tolist() == [0.0, 4.0, 12.0] and np.isnan(values[2])


def test_openmetrics_is_written_a_file_per_block(tmp_path):
    ts = T0 + np.array([0, 7_199_999, 7_200_000, 3 * 7_200_000], dtype=np.int64)
    files = promrules.write_openmetrics(
        tmp_path,
        {
            ("c_total", "counter"): [
                promrules.OmSeries(
                    labels={"a": 'q"\\'}, ts_ms=ts, values=np.array([1, 2, 3, np.nan])
                )
            ]
        },
    )
    assert [f.read_text().splitlines() for f in files] == [
        [
            "# TYPE c counter",
            'c_total{a="q\\"\\\\"} 1.0 1704067200.000',
            'c_total{a="q\\"\\\\"} 2.0 1704074399.999',
            "# EOF",
        ],
        ["# TYPE c counter", 'c_total{a="q\\"\\\\"} 3.0 1704074400.000', "# EOF"],
        ["# TYPE c counter", 'c_total{a="q\\"\\\\"} NaN 1704088800.000', "# EOF"],
    ]
    with pytest.raises(promrules.RulesError, match="must end in _total"):
        promrules.write_openmetrics(tmp_path, {("c", "counter"): []})


def test_backfill_starts_on_a_block_edge():
    assert promrules.block_start(T0) == T0
    assert promrules.block_start(T0 - 500) == T0
    assert promrules.block_start(T0 + 1) == T0 + 7_200_000


SHIFT_RULES = """groups:
- name: chain
  rules:
  - record: t:x2
    expr: x * 2
  - record: t:x4
    expr: t:x2 * 2
- name: alerts
  rules:
  - alert: Shift
    expr: abs(x - avg_over_time(x[1h])) > 2.5 * stddev_over_time(x[1h])
    for: 1m
"""


@pytest.mark.integration
def test_alert_over_backfilled_history_fires_when_worked_out_by_hand(tmp_path):
    """x is 0 for 3 h, then 10 (one sample a minute). At the k-th minute of the shift the
    last hour holds k tens among 60 or 61 samples (share p); |x - mean| = 10 (1 - p) and
    the standard deviation is 10 sqrt(p (1 - p)), so the expression holds while
    1 - p > 6.25 p, i.e. for k = 1..8: evaluations T..T+7m. With ``for: 1m`` the alert is
    pending at T, firing from T+1m, and resolved at T+8m."""
    n = 6 * 60
    ts = _grid(n)
    x = np.where(np.arange(n) >= 180, 10.0, 0.0)
    om = promrules.write_openmetrics(
        tmp_path / "om",
        {("x", "gauge"): [promrules.OmSeries(labels={"job": "t"}, ts_ms=ts, values=x)]},
    )
    assert len(om) == 3  # 6 hours from midnight: three 2-hour blocks
    groups = _rules(SHIFT_RULES, tmp_path)
    end = int(ts[-1])
    with promrules.History(tmp_path / "h", openmetrics=om) as h:
        assert h.backfill([groups], start_ms=T0, end_ms=end) == [["t:x2"], ["t:x4"]]
        chained = promrules.query_range(h.url, "t:x4", start_ms=T0, end_ms=end, step_s=60)
        alert = next(r for g in groups for r in g.rules if r.alert)
        found = list(h.alert_periods(alert, groups[1], start_ms=T0, end_ms=end))
    shift = T0 + 180 * MIN
    assert found == [({"job": "t"}, [Firing(shift + MIN, shift + 8 * MIN)])]
    # the second pass read the first one's output: 4 x, at every minute
    assert len(chained) == 1 and set(chained[0].values.tolist()) == {0.0, 40.0}
    assert chained[0].values[0] == 0.0 and chained[0].values[-1] == 40.0


def test_series_are_opted_in_once_per_strategy_and_counters_through_their_rate():
    series = scenarios.build_series(["spike", "low_rate_errors_burst"], n=1, days=3, seed=1)
    families, tagging = grafana_compare.build_input(series, ["adaptive", "robust"])
    gauges = families[("svc_gauge", "gauge")]
    assert [dict(g.labels) for g in gauges] == [
        {"anomaly_name": f"spike/{v}/{k}", "anomaly_type": "resource", "anomaly_strategy": st}
        for k, v in ((0, "clean"), (1, "anomalous"))
        for st in ("adaptive", "robust")
    ]
    assert all(np.diff(g.ts_ms).min() == MIN for g in gauges)  # one sample a minute
    counters = families[("svc_errors_total", "counter")]
    assert [c.labels["scenario"] for c in counters] == [
        "low_rate_errors_burst/clean/2",
        "low_rate_errors_burst/anomalous/3",
    ]
    assert counters[0].ts_ms.shape == series[2].ts_ms.shape  # raw, at 15 s
    (group,) = tagging
    assert [(r.record, r.labels) for r in group.rules] == [
        ("scenario:svc_errors:rate5m", {"anomaly_strategy": "adaptive"}),
        ("scenario:svc_errors:rate5m", {"anomaly_strategy": "robust"}),
    ]
    assert group.rules[0].expr.startswith(
        'label_replace(rate(svc_errors_total[5m]), "anomaly_name", "$1", "scenario", "(.+)")'
    )
