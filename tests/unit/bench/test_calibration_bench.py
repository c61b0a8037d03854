import json
import sys

from bench import calibration


def test_the_calibration_bench_ends_with_its_figures(monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["calibration.py", "--series", "20", "--samples", "3000", "--skip", "1000"]
    )
    assert calibration.main() == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rates = figures["false_alarm_rate"]
    assert set(rates) == {"gauss", "student3", "lognormal", "poisson2"}
    # spot's sensitivity is a false-alarm rate whatever the tail; robust's Gaussian tail
    # is not on a heavy one
    for noise in rates:
        assert 0.01 / 5 < rates[noise]["spot"]["0.01"] < 0.01 * 3, noise
    assert rates["student3"]["robust"]["0.001"] > 5 * rates["student3"]["spot"]["0.001"]
    assert set(figures["fresh_series_paged"]) == {"spot", "robust", "ensemble"}
    assert figures["ten_sigma"]["ensemble_default"]["ten_sigma_caught"] > 0.99
