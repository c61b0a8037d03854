"""Our NAB scorer reproduces NAB's own figures for its windowed-Gaussian baseline."""

import lzma
from pathlib import Path

import pytest

from bench import nab
from tests.conftest import FIXTURES

NAB = FIXTURES / "nab"


def _unpack_reference(into: Path) -> Path:
    """NAB's result layout from the repacked windowed-Gaussian scores (see PROVENANCE.md)."""
    out = None
    with lzma.open(NAB / "windowedGaussian.scores.xz", "rt") as packed:
        for line in packed:
            if line.startswith("# "):
                if out is not None:
                    out.close()
                path = nab.result_file(into, "windowedGaussian", line[2:].strip())
                path.parent.mkdir(parents=True, exist_ok=True)
                out = path.open("w")
                out.write("timestamp,anomaly_score\n")
            else:
                assert out is not None
                out.write(line)
    assert out is not None
    out.close()
    return into


def test_scorer_reproduces_windowed_gaussian_reference(tmp_path):
    windows = nab.load_windows(NAB / "windows_dev.json")
    results = nab.score_results(_unpack_reference(tmp_path), "windowedGaussian", windows)
    assert round(results["standard"].normalised, 2) == 36.71
    assert round(results["reward_low_FP_rate"].normalised, 2) == 21.40
    assert round(results["reward_low_FN_rate"].normalised, 2) == 45.17


def test_scaled_sigmoid_matches_the_published_points():
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.9866, abs=1e-4)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.9866, abs=1e-4)
    assert nab.scaled_sigmoid(3.5) == -1.0


def _points(scores, windows, n=100):
    stamps = [f"2020-01-01 00:{i // 60:02d}:{i % 60:02d}" for i in range(n)]
    return stamps, nab.file_points("f.csv", stamps, scores, windows, nab.PROFILES["standard"])


def test_earliest_detection_in_a_window_earns_full_credit_and_misses_cost():
    n = 100
    scores = [0.0] * n
    scores[40] = 1.0  # left edge of the window [40, 49]
    stamps, points = _points(scores, [], n)
    windows = [[stamps[40] + ".000000", stamps[49] + ".000000"]]
    points = nab.file_points("f.csv", stamps, scores, windows, nab.PROFILES["standard"])
    perfect = nab.sweep(points, 1, nab.PROFILES["standard"])
    assert perfect.raw == pytest.approx(1.0)
    assert perfect.normalised == pytest.approx(100.0)
    nothing = nab.sweep(
        nab.file_points("f.csv", stamps, [0.0] * n, windows, nab.PROFILES["standard"]),
        1,
        nab.PROFILES["standard"],
    )
    assert nothing.raw == pytest.approx(-1.0)
    assert nothing.normalised == pytest.approx(0.0)


def test_probationary_rows_are_not_scored():
    n = 100
    scores = [0.0] * n
    scores[3] = 1.0  # inside the first 15 rows
    _stamps, points = _points(scores, [], n)
    assert points[3].window == nab.PROBATION
    assert nab.sweep(points, 1, nab.PROFILES["standard"]).fp == 0


def test_folds_alternate_files_within_each_category_and_cover_the_half_once():
    windows = nab.load_windows(NAB / "windows_dev.json")
    a, b = nab.fold(windows, "a"), nab.fold(windows, "b")
    assert not set(a) & set(b)
    assert set(a) | set(b) == set(windows)
    for category in {key.split("/")[0] for key in windows}:
        files = sorted(k for k in windows if k.startswith(category + "/"))
        assert [k in a for k in files] == [i % 2 == 0 for i in range(len(files))]
    with pytest.raises(ValueError, match="fold must be 'a' or 'b'"):
        nab.fold(windows, "c")
