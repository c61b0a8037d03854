"""Calibration: does a score of 1 - q mean "one normal sample in 1/q", whatever the noise?

For each noise shape (Gaussian, Student t with 3 degrees of freedom, lognormal, Poisson
with mean 2), ``--series`` stationary series of ``--samples`` samples each go through a
fresh family; the share of samples scoring at least 1 - q (the first ``--skip`` of each
series left out) is the measured false-alarm rate at q. Families: ``spot`` (DSPOT, whose
sensitivity is meant to be a false-alarm rate), ``robust`` (Gaussian tail) and the default
``ensemble`` without its seasonal profile (empirical tails). Then fresh series: 1,000
noise-only series of 300 samples each, and the share of them with any score >= 0.9999;
and, for the default ensemble (daily profile on) and the one without it, the share of
those series on which a 10-sigma sample after those 300 (one a minute) scores >= 0.9999,
and the lowest score it gets.

Prints a table and, as its last line, one JSON object with every figure.
Usage: python bench/calibration.py [--series 200] [--samples 5000] [--skip 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detector.config import DetectorParams, EnsembleParams, RobustParams, SpotParams
from detector.detectors.base import Scores
from detector.detectors.kinds import build_family

RATES = (1e-2, 1e-3, 1e-4)
FAMILIES: dict[str, DetectorParams] = {
    "spot": SpotParams(),
    "robust": RobustParams(),
    "ensemble": EnsembleParams(season_bins=0),
}
Draw = Callable[[np.random.Generator, tuple[int, int]], NDArray[np.float64]]
NOISES: dict[str, Draw] = {
    "gauss": lambda g, s: g.normal(0.0, 1.0, s),
    "student3": lambda g, s: g.standard_t(3, s),
    "lognormal": lambda g, s: g.lognormal(0.0, 1.0, s),
    "poisson2": lambda g, s: g.poisson(2.0, s).astype(np.float64),
}


def scores(
    params: DetectorParams, x: NDArray[np.float64], step_ms: int = 15_000
) -> NDArray[np.float64]:
    """Scores of ``x[series, sample]``, one fresh series per row, fed sample-major with
    ``step_ms`` between samples."""
    n_series, n = x.shape
    family = build_family(params, capacity=n_series)
    for s in range(n_series):
        family.configure(s)
    slots = np.tile(np.arange(n_series, dtype=np.int32), n)
    ts = np.repeat(np.arange(n, dtype=np.int64) * step_ms, n_series)
    out = Scores.empty(slots.size)
    family.score_learn(slots, ts, np.ascontiguousarray(x.T.ravel()), out)
    return out.score.reshape(n, n_series).T


def ten_sigma(params: EnsembleParams) -> dict[str, float]:
    """1,000 fresh noise series, 300 samples a minute apart, then one 10 sigmas up."""
    n = 300
    x = 100.0 + np.random.default_rng(3).normal(0.0, 1.0, (1000, n + 1))
    x[:, n] += 10.0
    sc = scores(params, x, step_ms=60_000)
    noise, last = sc[:, :n], sc[:, n]
    return {
        "paged_on_noise": float(np.mean((noise >= 0.9999).any(axis=1))),
        "alarmed_on_noise": float(np.mean((noise >= 0.999).any(axis=1))),
        "ten_sigma_caught": float(np.mean(last >= 0.9999)),
        "ten_sigma_min_score": float(last.min()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--skip", type=int, default=1000)
    args = ap.parse_args()
    figures: dict[str, object] = {"series": args.series, "samples": args.samples, "skip": args.skip}
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for noise, draw in NOISES.items():
        x = 100.0 + draw(np.random.default_rng(1), (args.series, args.samples))
        rates[noise] = {}
        for fam in FAMILIES:
            sc = scores(FAMILIES[fam], x)[:, args.skip :]
            rates[noise][fam] = {str(q): float(np.mean(sc >= 1.0 - q)) for q in RATES}
    figures["false_alarm_rate"] = rates
    print("share of samples scoring >= 1 - q on stationary noise (spot / robust / ensemble)")
    print(f"{'q':>8} " + " ".join(f"{n:>28}" for n in NOISES))
    for q in RATES:
        cells = [" / ".join(f"{rates[n][f][str(q)]:.5f}" for f in FAMILIES) for n in NOISES]
        print(f"{q:>8} " + " ".join(f"{c:>28}" for c in cells))
    fresh: dict[str, float] = {}
    x = 100.0 + np.random.default_rng(2).normal(0.0, 1.0, (1000, 300))
    for fam in FAMILIES:
        fresh[fam] = float(np.mean((scores(FAMILIES[fam], x) >= 0.9999).any(axis=1)))
    figures["fresh_series_paged"] = fresh
    print(
        "fresh noise-only series (1,000 x 300) with any score >= 0.9999: "
        + ", ".join(f"{f} {v:.1%}" for f, v in fresh.items())
    )
    ten: dict[str, dict[str, float]] = {}
    for name, params in (
        ("ensemble_default", EnsembleParams()),
        ("ensemble_no_season", EnsembleParams(season_bins=0)),
    ):
        ten[name] = r = ten_sigma(params)
        print(
            f"{name}: fresh series paged on noise {r['paged_on_noise']:.1%} (alarmed, "
            f">= 0.999, outside the band: {r['alarmed_on_noise']:.1%}); a 10-sigma sample after "
            f"300 scores >= 0.9999 on {r['ten_sigma_caught']:.1%} (lowest score "
            f"{r['ten_sigma_min_score']:.6f})"
        )
    figures["ten_sigma"] = ten
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
