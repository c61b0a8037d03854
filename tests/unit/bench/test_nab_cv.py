"""Leave-one-category-out cross-validation of NAB thresholds (bench.nab cv): the
arithmetic on small synthetic corpora, never the shared data."""

import json
import random

import pytest

from bench import nab

STANDARD = nab.PROFILES["standard"]
N = 100  # rows per synthetic file; the first 15 are probationary


def _stamps(n=N):
    return [f"2020-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}" for i in range(n)]


def _file(name, scores, window=None, weights=STANDARD):
    """Points of one file; ``window`` = (first row, last row) or None."""
    stamps = _stamps(len(scores))
    windows = (
        [] if window is None else [[stamps[window[0]] + ".000000", stamps[window[1]] + ".000000"]]
    )
    return nab.file_points(name, stamps, scores, windows, weights)


def _spike(at, height, n=N, base=0.1):
    scores = [base] * n
    scores[at] = height
    return scores


def test_score_at_the_swept_threshold_is_the_swept_score():
    rng = random.Random(7)
    for weights in nab.PROFILES.values():
        points = []
        for f in range(6):
            scores = [rng.random() for _ in range(N)]
            points += _file(f"f{f}.csv", scores, (50, 59) if f % 2 else None, weights)
        best = nab.sweep(points, 3, weights)
        at = nab.score_at(points, 3, weights, best.threshold)
        assert at.raw == pytest.approx(best.raw)
        assert at.normalised == pytest.approx(best.normalised)
        assert (at.tp, at.fn, at.fp) == (best.tp, best.fn, best.fp)
        # and no other candidate does better
        for t in {p.score for p in points}:
            assert nab.score_at(points, 3, weights, t).raw <= best.raw + 1e-12


def test_score_at_counts_rows_at_or_above_the_threshold():
    points = _file("f.csv", _spike(40, 0.8), (40, 49))
    assert nab.score_at(points, 1, STANDARD, 0.8).tp == 1
    assert nab.score_at(points, 1, STANDARD, 0.8000001).fn == 1
    assert nab.score_at(points, 1, STANDARD, 0.8000001).raw == pytest.approx(-1.0)


def test_each_category_is_scored_at_the_threshold_chosen_on_the_others():
    # "a" and "b" catch their window at 0.9 and have a false positive at 0.5 (row 90, far
    # after the window: -A_FP); "c" catches its window only at 0.5
    ab = _spike(40, 0.9)
    ab[90] = 0.5
    a, b = _file("a/1.csv", ab, (40, 49)), _file("b/1.csv", ab, (40, 49))
    c = _file("c/1.csv", _spike(40, 0.5), (40, 49))
    res = nab.cross_validate({"a": a, "b": b, "c": c}, {"a": 1, "b": 1, "c": 1}, STANDARD)
    held = {f.category: f for f in res.folds}
    # on a + b, 0.5 would only add false positives: c, held out, is scored at 0.9 and misses
    assert held["c"].held.threshold == nab.sweep(a + b, 2, STANDARD).threshold == 0.9
    assert held["c"].held.fn == 1 and held["c"].held.raw == pytest.approx(-1.0)
    # on b + c (or a + c), catching c's window is worth one false positive: 0.5
    for name in ("a", "b"):
        assert held[name].held.threshold == 0.5
        assert held[name].held.tp == 1 and held[name].held.fp == 1
        assert held[name].held.raw == pytest.approx(1.0 - STANDARD[1])
    # pooled: the held-out raws summed, normalised over all three windows
    raw = -1.0 + 2 * (1.0 - STANDARD[1])
    assert res.raw == pytest.approx(raw)
    assert res.normalised == pytest.approx(100.0 * (raw + 3) / 6)
    # in-sample, one threshold for all three: 0.5 (3 windows, 2 false positives)
    assert res.in_sample.threshold == 0.5
    assert res.in_sample.raw == pytest.approx(3.0 - 2 * STANDARD[1])
    assert res.normalised < res.in_sample.normalised


def test_a_perfect_detector_scores_100_held_out_and_a_silent_one_0():
    cats = {c: _file(f"{c}/1.csv", _spike(40, 0.99), (40, 49)) for c in "abc"}
    cats["quiet"] = _file("quiet/1.csv", [0.1] * N)  # a category with no window
    counts = {"a": 1, "b": 1, "c": 1, "quiet": 0}
    assert nab.cross_validate(cats, counts, STANDARD).normalised == pytest.approx(100.0)
    silent = {c: _file(f"{c}/1.csv", [0.1] * N, (40, 49)) for c in "abc"}
    silent["quiet"] = _file("quiet/1.csv", [0.1] * N)
    # the lowest swept threshold detects every row; the best is to detect none
    res = nab.cross_validate(silent, counts, STANDARD)
    assert res.normalised == pytest.approx(0.0)


def test_false_positives_of_a_category_without_windows_count_when_pooled():
    cats = {c: _file(f"{c}/1.csv", _spike(40, 0.99), (40, 49)) for c in "ab"}
    cats["quiet"] = _file("quiet/1.csv", _spike(20, 0.99))  # before any window: -A_FP
    res = nab.cross_validate(cats, {"a": 1, "b": 1, "quiet": 0}, STANDARD)
    quiet = next(f for f in res.folds if f.category == "quiet")
    assert quiet.held.fp == 1
    assert quiet.held.raw == pytest.approx(-STANDARD[1])
    assert res.raw == pytest.approx(2.0 - STANDARD[1])
    assert res.normalised == pytest.approx(100.0 * (2.0 - STANDARD[1] + 2) / 4)


def test_cv_command_prints_a_table_and_ends_with_its_figures(tmp_path, capsys):
    stamps = _stamps()
    windows = {}
    for cat, at in (("catA", 40), ("catB", 45), ("catC", 50)):
        path = nab.result_file(tmp_path / "det", "det", f"{cat}/x.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        scores = _spike(at, 0.95)
        path.write_text(
            "timestamp,value,anomaly_score\n"
            + "".join(f"{s},1.0,{v}\n" for s, v in zip(stamps, scores, strict=True))
        )
        windows[f"{cat}/x.csv"] = [[stamps[at] + ".000000", stamps[at + 9] + ".000000"]]
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    assert (
        nab.main(
            ["cv", "--results", str(tmp_path / "det"), "--windows", str(tmp_path / "windows.json")]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert any("leave-one-category-out" in line for line in out)
    figures = json.loads(out[-1])
    assert figures["detector"] == "det" and figures["files"] == 3
    for profile in nab.PROFILES:
        assert figures[profile]["cv"] == pytest.approx(100.0)
        assert figures[profile]["in_sample"] == pytest.approx(100.0)
        assert set(figures[profile]["folds"]) == {"catA", "catB", "catC"}
