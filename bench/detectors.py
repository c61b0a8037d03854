"""Detector speed and memory: each family over 100k series x 100 steps, against river.

Single thread, after compilation (compile and warm-up time reported separately). For each
family: samples/s through its kernel (one call per step, 100k series per call), state
bytes per series, and the same streams through river's closest equivalents (run on a
subset, per-sample rate compared). Then one million series resident with the default
ensemble, in a fresh process: peak RSS and samples/s.

Usage: python bench/detectors.py [--series 100000] [--steps 100] [--river-series 1000]
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.config import DetectorParams, EnsembleParams, RobustParams, SpotParams  # noqa: E402
from detector.detectors.base import Scores  # noqa: E402
from detector.detectors.kinds import build_family  # noqa: E402

STEP_MS = 60_000
FAMILIES: dict[str, DetectorParams] = {
    "robust": RobustParams(),
    "ensemble_no_season": EnsembleParams(season_bins=0),
    "ensemble_default": EnsembleParams(),
    "spot": SpotParams(),
}


def workload(n_series: int, steps: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(ts_ms[step], values[step, series]): noise around per-series levels, a daily wave."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(steps, dtype=np.int64) * STEP_MS
    level = rng.uniform(10, 1000, n_series)
    wave = np.sin(2 * np.pi * (ts % 86_400_000) / 86_400_000)[:, None]
    values = level[None, :] * (1 + 0.1 * wave) + rng.normal(0, 1, (steps, n_series))
    return ts, values


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_family(params: DetectorParams, n_series: int, steps: int) -> dict[str, float]:
    """Timed over every step, the first ``warmup_samples`` (cheaper: not scored) included."""
    t0 = time.perf_counter()
    warm = build_family(params, capacity=2)
    warm.configure(0)
    warm.score_learn(np.zeros(1, np.int32), np.ones(1, np.int64), np.ones(1), Scores.empty(1))
    compile_s = time.perf_counter() - t0
    ts, values = workload(n_series, steps)
    family = build_family(params, capacity=n_series)
    for s in range(n_series):
        family.configure(s)
    slots = np.arange(n_series, dtype=np.int32)
    out = Scores.empty(n_series)
    step_ts = np.empty(n_series, dtype=np.int64)
    t0 = time.perf_counter()
    for k in range(steps):
        step_ts.fill(ts[k])
        family.score_learn(slots, step_ts, values[k], out)
    seconds = time.perf_counter() - t0
    return {
        "samples_per_s": n_series * steps / seconds,
        "seconds": seconds,
        "compile_s": compile_s,
        "bytes_per_series": family.bytes_per_series(),
    }


def river_equivalent(name: str) -> Any:
    """A per-series river model that does what family ``name`` does, and its update."""
    from river import stats, time_series

    class Level:
        """EWMean + EWVar and a z-score: the robust level's counterpart."""

        def __init__(self, alpha: float) -> None:
            self.mean, self.var = stats.EWMean(alpha), stats.EWVar(alpha)

        def score_learn(self, x: float) -> float:
            sd = self.var.get() ** 0.5
            z = abs(x - self.mean.get()) / sd if sd > 0 else 0.0
            self.mean.update(x)
            self.var.update(x)
            return z

    class Ensemble:
        """Fast and slow levels (EWMean + EWVar each) and, with seasonality, HoltWinters."""

        def __init__(self, seasonal: bool) -> None:
            self.fast, self.slow = Level(0.01), Level(0.002)
            self.hw = (
                time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.05, seasonality=48)
                if seasonal
                else None
            )

        def score_learn(self, x: float) -> float:
            z = max(self.fast.score_learn(x), self.slow.score_learn(x))
            if self.hw is not None:
                self.hw.learn_one(x)
            return z

    class Tails:
        """river has no SPOT/DSPOT: the nearest is a level (EWMean + EWVar) and two
        streaming quantiles (P², ``stats.Quantile``) of the residual as the thresholds."""

        def __init__(self) -> None:
            self.level = Level(0.002)
            self.hi, self.lo = stats.Quantile(0.999), stats.Quantile(0.001)

        def score_learn(self, x: float) -> float:
            r = x - self.level.mean.get()
            hi, lo = self.hi.get(), self.lo.get()
            out = float(hi is not None and lo is not None and not lo <= r <= hi)
            self.level.score_learn(x)
            self.hi.update(r)
            self.lo.update(r)
            return out

    if name == "robust":
        return lambda: Level(0.02)
    if name == "spot":
        return Tails
    return lambda: Ensemble(seasonal=name == "ensemble_default")


def measure_river(name: str, n_series: int, steps: int) -> dict[str, float]:
    _, values = workload(n_series, steps)
    factory = river_equivalent(name)
    models = [factory() for _ in range(n_series)]
    t0 = time.perf_counter()
    for k in range(steps):
        row = values[k].tolist()
        for s in range(n_series):
            models[s].score_learn(row[s])
    seconds = time.perf_counter() - t0
    return {"samples_per_s": n_series * steps / seconds, "seconds": seconds}


def cold_compile() -> float:
    """Seconds to compile every detector kernel from scratch, in a fresh process with an
    empty numba cache (a new pod's first start without the image's cache)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        code = (
            "import time; t=time.perf_counter(); "
            "import detector.detectors.kinds, detector.remote_write._wire, "
            "detector.series._index, detector.pipeline._sample_rules; "
            "print(time.perf_counter()-t)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "NUMBA_CACHE_DIR": cache},
        )
    return float(out.stdout.strip().splitlines()[-1])


def million(n_series: int, steps: int) -> dict[str, float]:
    """Run in a fresh process: the default ensemble with ``n_series`` resident, timed over
    ``steps`` steps after its warm-up."""
    out = subprocess.run(
        [sys.executable, __file__, "--million-child", str(n_series), str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def million_child(n_series: int, steps: int) -> None:
    family = build_family(EnsembleParams(), capacity=n_series)
    for s in range(n_series):
        family.configure(s)
    rng = np.random.default_rng(3)
    slots = np.arange(n_series, dtype=np.int32)
    out = Scores.empty(n_series)
    ts = np.empty(n_series, dtype=np.int64)
    warmup = EnsembleParams().warmup_samples
    seconds = 0.0
    for k in range(warmup + steps):  # the warm-up steps are cheaper: not timed
        values = 100 + rng.normal(0, 1, n_series)
        ts.fill(1_700_000_000_000 + k * STEP_MS)
        t0 = time.perf_counter()
        family.score_learn(slots, ts, values, out)
        if k >= warmup:
            seconds += time.perf_counter() - t0
    print(
        json.dumps(
            {
                "series": n_series,
                "steps": steps,
                "samples_per_s": n_series * steps / seconds,
                "peak_rss_mb": _peak_rss_mb(),
                "state_mb": n_series * family.bytes_per_series() / 2**20,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--million-child":
        million_child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--river-series", type=int, default=1000)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--million-steps", type=int, default=20)
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "river": importlib.metadata.version("river"),
        },
        "series": args.series,
        "steps": args.steps,
        "river_series": args.river_series,
    }
    figures["cold_compile_s"] = cold_compile()
    print(
        f"compiling every kernel from an empty cache: {figures['cold_compile_s']:.1f} s", flush=True
    )
    for name, params in FAMILIES.items():
        ours = measure_family(params, args.series, args.steps)
        theirs = measure_river(name, args.river_series, args.steps)
        ratio = ours["samples_per_s"] / theirs["samples_per_s"]
        figures[name] = {"vigil": ours, "river": theirs, "ratio": ratio}
        print(
            f"{name:<20} {ours['samples_per_s']:>14,.0f} samples/s  "
            f"(first call {ours['compile_s']:.2f} s)  {ours['bytes_per_series']:>5} B/series  "
            f"river {theirs['samples_per_s']:>10,.0f} samples/s  -> {ratio:,.0f}x",
            flush=True,
        )
    if args.million:
        m = million(args.million, args.million_steps)
        figures["million"] = m
        print(
            f"{m['series']:,} series resident (default ensemble): "
            f"{m['samples_per_s']:,.0f} samples/s, peak RSS {m['peak_rss_mb']:.0f} MB "
            f"(state {m['state_mb']:.0f} MB)",
            flush=True,
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
