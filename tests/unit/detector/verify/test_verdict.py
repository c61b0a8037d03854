"""Deployment verification's judgement (detector/verify/verdict.py) on synthetic samples, the
request model, the windows it plans, and the CLI's argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from detector.__main__ import main, parse_duration
from detector.errors import ConfigError
from detector.verify import verdict

Q = verdict.VerifyQuery(name="latency", query="x")
TH = verdict.Thresholds()
W = verdict.Window("x", 0.0, 1.0, 15.0)


def judge(
    baseline, observed, q: verdict.VerifyQuery = Q, th: verdict.Thresholds = TH
) -> verdict.Judgement:
    b = np.asarray(baseline, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    bt = np.arange(b.shape[0], dtype=np.int64) * 15_000
    ot = (b.shape[0] + np.arange(o.shape[0], dtype=np.int64)) * 15_000
    return verdict.judge(
        q, th, base=W, seen=W, baseline_ts=bt, baseline=b, observed_ts=ot, observed=o
    )


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_same_distribution_passes(rng):
    j = judge(0.2 + 0.02 * rng.standard_normal(120), 0.2 + 0.02 * rng.standard_normal(60))
    assert j.verdict == "pass" and j.reasons[0].startswith("not material")


def test_a_clear_regression_fails_on_all_three_pieces_of_evidence(rng):
    j = judge(0.2 + 0.02 * rng.standard_normal(120), 0.6 + 0.05 * rng.standard_normal(60))
    assert j.verdict == "fail"
    assert j.p_value is not None and j.p_value < 1e-10
    assert j.effect == pytest.approx(1.0)
    assert j.anomalous_share == 1.0
    assert j.relative_change is not None and j.relative_change > 1.5


def test_an_improvement_passes_when_up_is_bad_and_fails_when_down_is_bad(rng):
    base, better = 100 + rng.standard_normal(120), 50 + rng.standard_normal(60)
    assert judge(base, better).verdict == "pass"
    down = verdict.VerifyQuery(name="throughput", query="x", direction="down_is_bad")
    assert judge(base, better, q=down).verdict == "fail"
    both = verdict.VerifyQuery(name="anything", query="x", direction="both")
    assert judge(base, better, q=both).verdict == "fail"


def test_a_small_change_is_not_material(rng):
    j = judge(0.2 + 0.002 * rng.standard_normal(120), 0.21 + 0.002 * rng.standard_normal(60))
    assert j.verdict == "pass"  # 5% worse, though significant: below min_relative_change
    strict = verdict.VerifyQuery(name="latency", query="x", min_relative_change=0.02)
    assert (
        judge(
            0.2 + 0.002 * rng.standard_normal(120), 0.21 + 0.002 * rng.standard_normal(60), q=strict
        ).verdict
        == "fail"
    )


def test_min_absolute_change_keeps_tiny_ratios_from_failing():
    q = verdict.VerifyQuery(name="errors", query="x", min_absolute_change=0.01)
    j = judge(np.zeros(120), np.full(60, 0.001))
    assert j.verdict == "fail"  # 0 -> 0.1%: infinitely worse, relatively
    assert judge(np.zeros(120), np.full(60, 0.001), q=q).verdict == "pass"


def test_when_test_and_detector_disagree_the_verdict_is_inconclusive(rng):
    # significant and material, but the detector must see a third of the samples as
    # anomalous: with the bar at 100% it cannot, so the evidence disagrees
    th = verdict.Thresholds(min_anomalous_share=1.0)
    j = judge(0.2 + 0.02 * rng.standard_normal(120), 0.25 + 0.02 * rng.standard_normal(60), th=th)
    assert j.verdict == "inconclusive"
    assert any("disagree" in r for r in j.reasons)


def test_too_few_samples_are_inconclusive_and_non_finite_ones_do_not_count(rng):
    j = judge(rng.standard_normal(19), rng.standard_normal(60))
    assert j.verdict == "inconclusive" and "19 baseline samples" in j.reasons[0]
    observed = np.full(60, np.nan)
    observed[:7] = 1.0
    j = judge(rng.standard_normal(120), observed)
    assert j.verdict == "inconclusive" and j.n_observed == 7


def test_observed_samples_are_scored_against_the_baseline_state_only():
    base = np.full(120, 10.0) + np.tile([0.1, -0.1], 60)
    observed = np.full(40, 20.0)
    scores = verdict.score_against(
        np.arange(120, dtype=np.int64) * 1000,
        base,
        np.arange(120, 160, dtype=np.int64) * 1000,
        observed,
    )
    # learning the observed samples would adopt 20 as normal after ~30 of them; scored
    # against the baseline alone, every one of them stays extreme
    assert np.all(scores.score >= 0.999)
    assert np.allclose(scores.expected, scores.expected[0])


def test_overall_is_the_worst_and_exit_codes_follow():
    mk = [verdict.unjudged(Q, base=W, seen=W, reason="r")]
    assert verdict.overall(mk) == "inconclusive"
    assert verdict.overall([]) == "inconclusive"
    assert verdict.EXIT_CODES == {"pass": 0, "fail": 1, "inconclusive": 2}


def test_requests_are_checked_with_reasons():
    with pytest.raises(ValidationError, match="canary and baseline_selector go together"):
        verdict.VerifyRequest(canary='job="c"')
    with pytest.raises(ValidationError, match="give selector"):
        verdict.VerifyRequest()  # the standard queries use $selector
    with pytest.raises(ValidationError, match="leaves nothing"):
        verdict.VerifyRequest(selector='job="a"', skip_s=900, observe_s=900)
    with pytest.raises(ValidationError, match="selector"):
        verdict.VerifyRequest(selector="job=")
    with pytest.raises(ValidationError, match="must use \\$selector"):
        verdict.VerifyRequest(queries=(Q,), canary='job="c"', baseline_selector='job="s"')
    with pytest.raises(ValidationError, match="RFC 3339"):
        verdict.VerifyRequest(selector='job="a"', change_time="yesterday")
    req = verdict.VerifyRequest(selector='{job="a"}', change_time="2026-11-27T10:00:00Z")
    assert req.selector == 'job="a"' and req.change_time == 1795773600.0


def test_plan_places_the_windows_around_the_change():
    req = verdict.VerifyRequest(
        selector='job="a"', change_time=10_000, baseline_s=600, observe_s=300, skip_s=60, step_s=15
    )
    (q, base, seen), *_ = verdict.plan(req, now_s=20_000)
    assert q.name == "error_ratio" and 'job="a"' in base.query and "$" not in base.query
    assert (base.start_s, base.end_s) == (9_400, 9_985)
    assert (seen.start_s, seen.end_s) == (10_060, 10_300)
    canary = verdict.VerifyRequest(
        canary='job="c"', baseline_selector='job="s"', change_time=10_000, observe_s=300
    )
    (_, base, seen), *_ = verdict.plan(canary, now_s=10_200)  # observation still running
    assert 'job="s"' in base.query and 'job="c"' in seen.query
    assert (base.start_s, base.end_s) == (seen.start_s, seen.end_s) == (10_000, 10_200)


def test_the_report_renders_for_people_and_as_json(rng):
    req = verdict.VerifyRequest(selector='job="a"', change_time=0)
    j = judge(0.2 + 0.02 * rng.standard_normal(120), 0.6 + 0.05 * rng.standard_normal(60))
    doc = verdict.report(req, [j], now_s=1000)
    assert doc["verdict"] == "fail" and doc["mode"] == "before_after"
    assert doc["change_time"] == "1970-01-01T00:00:00+00:00"
    text = verdict.render_text(doc)
    assert text.startswith("verdict: FAIL (before_after")
    assert "  fail         latency  [120 baseline, 60 observed samples]" in text
    zero = verdict.report(req, [judge(np.zeros(120), np.full(60, 0.5))], now_s=1000)
    assert zero["queries"][0]["relative_change"] == "inf"  # JSON has no Infinity


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "--observe") == seconds


@pytest.mark.parametrize("text", ["15x", "m", "-5m", "0", "1.5m", "30m1h"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(ConfigError, match="--observe"):
        parse_duration(text, "--observe")


def test_cli_errors_exit_2_with_the_reason(capsys, tmp_path):
    assert main(["verify", "--prometheus", "http://127.0.0.1:9", "--observe", "soon"]) == 2
    assert "--observe 'soon': expected a duration" in capsys.readouterr().err
    assert main(["verify", "--prometheus", "http://127.0.0.1:9", "--query", "nope"]) == 2
    assert "expected NAME=PROMQL" in capsys.readouterr().err
    spec = tmp_path / "spec.yaml"
    spec.write_text("selector: 'job=\"a\"'\nobserve_s: fast\n")
    assert main(["verify", "--prometheus", "http://127.0.0.1:9", "--spec", str(spec)]) == 2
    assert f"{spec}:2: observe_s:" in capsys.readouterr().err


def test_unreachable_prometheus_is_inconclusive(capsys):
    code = main(["verify", "--prometheus", "http://127.0.0.1:9", "--selector", 'job="a"', "--json"])
    assert code == 2
    out = capsys.readouterr().out
    assert "Prometheus unreachable" in out


def test_the_spec_example_in_docs_loads(tmp_path):
    import re

    from detector.verify import prometheus
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "verify.md").read_text()
    example = re.search(r"```yaml\n(selector.*?)```", text, re.S)
    assert example is not None
    path = tmp_path / "spec.yaml"
    path.write_text(example.group(1))
    req = prometheus.load_spec(path)
    assert req.change_time == 1795773600.0 and len(req.queries) == 2
    assert req.queries[1].direction == "down_is_bad"
