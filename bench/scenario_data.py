"""Seeded synthetic SRE metric series with labelled anomalies (the scenario suite's inputs).

This module owns the shapes (``FAMILIES``) and ``generate``: pure numpy, no clock, no
I/O, no detector. Every family comes as a clean series and an anomalous one drawn from
the same base (same seed, same noise), the anomalous one carrying its labelled anomaly
interval. Series are what Prometheus would send by remote-write: timestamps in epoch ms
from ``EPOCH_MS`` (a Monday, 00:00 UTC) on a ``STEP_MS`` scrape grid, values as scraped
(a counter's running total, not its rate), and staleness markers where a scrape failed.

Shapes: level shifts up and down (30 min, or the last 6 h to the end of the series),
one-minute spikes and dips, variance bursts, a slow drift, daily seasonality with night
traffic at daytime level, weekly seasonality with a Saturday at weekday level, a
low-rate error counter (Poisson, about 1 a scrape) with a 15-fold 50-minute burst,
quantised values, Student-t and lognormal latencies, scrape gaps with jitter, and a
busy counter that restarts now and then. ``bench/scenarios.py`` runs them through the
service.

Examples
--------
>>> s = generate("shift_up_short", seed=1, index=0, days=3, anomalous=True)
>>> s.anomaly is not None and not s.lasting
True
>>> bool((generate("shift_up_short", seed=1, index=0, days=3, anomalous=True).values
...       == s.values).all())
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

STEP_MS = 15_000
EPOCH_MS = 1_704_067_200_000  # 2024-01-01 00:00:00 UTC, a Monday
DAY_S = 86_400.0
HOUR_S = 3_600.0
EARLIEST_S = 1.5 * DAY_S  # no anomaly before: the daily profile needs a day and a bit
MARGIN_S = 2 * HOUR_S  # a short anomaly ends this long before the series does
LASTING_S = 6 * HOUR_S  # a lasting anomaly covers the series' last six hours


@dataclass(frozen=True, slots=True)
class Series:
    """One generated series, as Prometheus would send it."""

    family: str
    metric: str  # the __name__ label; counters end in _total (the service rates them)
    anomalous: bool
    ts_ms: NDArray[np.int64]  # strictly increasing sample timestamps
    values: NDArray[np.float64]  # scraped values (running totals for counters)
    stale: NDArray[np.bool_]  # staleness markers: these samples carry no value
    anomaly: tuple[int, int] | None  # labelled interval [start, end) in epoch ms
    lasting: bool  # the anomaly lasts to the last sample

    @property
    def is_counter(self) -> bool:
        return self.metric.endswith("_total")

    def in_anomaly(self) -> NDArray[np.bool_]:
        """Which samples lie in the labelled interval (all False for a clean series)."""
        if self.anomaly is None:
            return np.zeros(self.ts_ms.shape[0], dtype=np.bool_)
        return (self.ts_ms >= self.anomaly[0]) & (self.ts_ms < self.anomaly[1])


@dataclass(frozen=True, slots=True)
class Grid:
    """The nominal scrape times of a series, in seconds from EPOCH_MS."""

    t_s: NDArray[np.float64]

    @property
    def n(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def end_s(self) -> float:
        return float(self.t_s[-1]) + STEP_MS / 1000.0


# A shape draws its base signal from ``base`` (identical for the clean and the anomalous
# series) and, when anomalous, its anomaly from ``anom``. It returns the per-scrape
# signal (a gauge's value, or a counter's increase since the previous scrape) and the
# labelled interval in seconds.
Shape = Callable[
    [np.random.Generator, np.random.Generator, Grid, bool],
    tuple[NDArray[np.float64], tuple[float, float] | None],
]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    metric: str
    shape: Shape
    what: str  # one line for the report
    min_days: float = 3.0
    gaps: bool = False  # scrape failures (staleness markers) and timestamp jitter
    resets: bool = False  # the counter restarts from zero now and then


def _place(
    anom: np.random.Generator, grid: Grid, duration_s: float, *, lasting: bool = False
) -> tuple[float, float]:
    """A labelled interval of ``duration_s`` on the scrape grid: the series' last
    ``duration_s`` when ``lasting``, else anywhere after EARLIEST_S ending MARGIN_S
    before the series does."""
    step = STEP_MS / 1000.0
    if lasting:
        start = grid.end_s - duration_s
        return start, grid.end_s
    latest = grid.end_s - MARGIN_S - duration_s
    if latest < EARLIEST_S:
        raise ValueError(
            f"a {duration_s:.0f} s anomaly does not fit in "
            f"{grid.end_s / DAY_S:.2f} days; give more days"
        )
    start = EARLIEST_S + step * np.floor(anom.uniform(0, latest - EARLIEST_S) / step)
    return float(start), float(start + duration_s)


def _mask(grid: Grid, interval: tuple[float, float]) -> NDArray[np.bool_]:
    return (grid.t_s >= interval[0]) & (grid.t_s < interval[1])


def _gauss(sigma_shift: float, duration_s: float, lasting: bool) -> Shape:
    """Level 100, sigma 5; anomalous: the level moves ``sigma_shift`` sigmas."""

    def shape(
        base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
    ) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
        x = 100.0 + 5.0 * base.standard_normal(grid.n)
        if not anomalous:
            return x, None
        interval = _place(anom, grid, duration_s, lasting=lasting)
        x[_mask(grid, interval)] += 5.0 * sigma_shift
        return x, interval

    return shape


def _variance_burst(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    noise = base.standard_normal(grid.n)
    if not anomalous:
        return 100.0 + 5.0 * noise, None
    interval = _place(anom, grid, 30 * 60.0)
    return 100.0 + 5.0 * noise * np.where(_mask(grid, interval), 6.0, 1.0), interval


def _drift(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """A ramp of 2 sigmas an hour for 4 hours, then held: the last 12 h of the series."""
    x = 100.0 + 5.0 * base.standard_normal(grid.n)
    if not anomalous:
        return x, None
    interval = _place(anom, grid, 12 * HOUR_S, lasting=True)
    hours = np.clip((grid.t_s - interval[0]) / HOUR_S, 0.0, 4.0)
    x += np.where(_mask(grid, interval), 5.0 * 2.0 * hours, 0.0)
    return x, interval


def _daily_curve(t_s: NDArray[np.float64]) -> NDArray[np.float64]:
    """0 at 04:00, 1 at 16:00 (UTC), a cosine between."""
    hour = (t_s % DAY_S) / HOUR_S
    return 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 4.0) / 24.0)


def _traffic(level: NDArray[np.float64], base: np.random.Generator) -> NDArray[np.float64]:
    """Request-rate-like noise: sigma 1 + 4% of the level."""
    return level + (1.0 + 0.04 * level) * base.standard_normal(level.shape[0])


def _daily(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """Traffic between 20 (night) and 100 (afternoon); anomalous: 01:00-03:00 of one night
    at the day's peak level."""
    level = 20.0 + 80.0 * _daily_curve(grid.t_s)
    if not anomalous:
        return _traffic(level, base), None
    days = int((grid.end_s - MARGIN_S - 3 * HOUR_S) // DAY_S)
    first = int(np.ceil((EARLIEST_S - HOUR_S) / DAY_S))
    if days < first:
        raise ValueError("the daily contextual anomaly needs at least 3 days")
    day = int(anom.integers(first, days + 1))
    interval = (day * DAY_S + HOUR_S, day * DAY_S + 3 * HOUR_S)
    level[_mask(grid, interval)] = 100.0
    return _traffic(level, base), interval


def _weekly(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """The daily traffic on weekdays, 35% of it at weekends; anomalous: 10:00-16:00 of the
    second Saturday at weekday level."""
    weekend = (grid.t_s // DAY_S) % 7 >= 5  # EPOCH_MS is a Monday
    curve = 20.0 + 80.0 * _daily_curve(grid.t_s)
    level = np.where(weekend, 0.35 * curve, curve)
    if not anomalous:
        return _traffic(level, base), None
    saturday = 12 * DAY_S
    interval = (saturday + 10 * HOUR_S, saturday + 16 * HOUR_S)
    if interval[1] + MARGIN_S > grid.end_s:
        raise ValueError("the weekly contextual anomaly needs at least 13 days")
    m = _mask(grid, interval)
    level[m] = curve[m]
    return _traffic(level, base), interval


def _low_rate(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """Errors: Poisson, 1 a scrape; anomalous: 15 a scrape for 50 minutes."""
    u = base.random(grid.n)  # one uniform per scrape, shared by clean and anomalous
    lam = np.ones(grid.n)
    interval = None
    if anomalous:
        interval = _place(anom, grid, 50 * 60.0)
        lam[_mask(grid, interval)] = 15.0
    return _poisson_quantile(u, lam), interval


def _poisson_quantile(u: NDArray[np.float64], lam: NDArray[np.float64]) -> NDArray[np.float64]:
    """Poisson draws by inversion, so the clean and anomalous series share their uniforms."""
    k = np.zeros(u.shape[0])
    p = np.exp(-lam)
    cdf = p.copy()
    todo = u > cdf
    while todo.any():
        k[todo] += 1
        p = np.where(todo, p * lam / np.maximum(k, 1.0), p)
        cdf = np.where(todo, cdf + p, cdf)
        todo &= u > cdf
    return k


def _busy_counter(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """Requests: 50/s with 2% noise; anomalous: half of that for the last 6 hours."""
    rate = 50.0 * (1.0 + 0.02 * base.standard_normal(grid.n))
    interval = None
    if anomalous:
        interval = _place(anom, grid, LASTING_S, lasting=True)
        rate[_mask(grid, interval)] *= 0.5
    return np.round(rate * STEP_MS / 1000.0), interval


def _quantised(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """A queue length: round(N(3, 1)) at least 0; anomalous: mean 9 for the last 6 h."""
    x = 3.0 + base.standard_normal(grid.n)
    interval = None
    if anomalous:
        interval = _place(anom, grid, LASTING_S, lasting=True)
        x[_mask(grid, interval)] += 6.0
    return np.maximum(np.round(x), 0.0), interval


def _student(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """Latency in ms: 200 + 10 t(3); anomalous: +60 ms for an hour."""
    x = 200.0 + 10.0 * base.standard_t(3, grid.n)
    interval = None
    if anomalous:
        interval = _place(anom, grid, HOUR_S)
        x[_mask(grid, interval)] += 60.0
    return x, interval


def _lognormal(
    base: np.random.Generator, anom: np.random.Generator, grid: Grid, anomalous: bool
) -> tuple[NDArray[np.float64], tuple[float, float] | None]:
    """Latency in seconds: lognormal, median 0.2, log-sigma 0.3; anomalous: twice as slow
    for an hour."""
    x = 0.2 * np.exp(0.3 * base.standard_normal(grid.n))
    interval = None
    if anomalous:
        interval = _place(anom, grid, HOUR_S)
        x[_mask(grid, interval)] *= 2.0
    return x, interval


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "shift_up_short",
            "svc_gauge",
            _gauss(6.0, 30 * 60.0, False),
            "level +6 sigma for 30 min",
        ),
        Family(
            "shift_up_lasting",
            "svc_gauge",
            _gauss(6.0, LASTING_S, True),
            "level +6 sigma for the last 6 h",
        ),
        Family(
            "shift_down_short",
            "svc_gauge",
            _gauss(-6.0, 30 * 60.0, False),
            "level -6 sigma for 30 min",
        ),
        Family(
            "shift_down_lasting",
            "svc_gauge",
            _gauss(-6.0, LASTING_S, True),
            "level -6 sigma for the last 6 h",
        ),
        Family("spike", "svc_gauge", _gauss(12.0, 60.0, False), "+12 sigma for 1 min (4 samples)"),
        Family("dip", "svc_gauge", _gauss(-12.0, 60.0, False), "-12 sigma for 1 min (4 samples)"),
        Family("variance_burst", "svc_gauge", _variance_burst, "sigma x6 for 30 min"),
        Family("slow_drift", "svc_gauge", _drift, "+2 sigma/h for 4 h, then held (last 12 h)"),
        Family(
            "daily_night_at_day_level",
            "svc_requests_rate",
            _daily,
            "daily traffic; 01:00-03:00 at the afternoon peak",
        ),
        Family(
            "weekly_saturday_at_weekday_level",
            "svc_requests_rate",
            _weekly,
            "weekends at 35%; 2nd Saturday 10:00-16:00 at weekday level",
            min_days=14.0,
        ),
        Family(
            "low_rate_errors_burst",
            "svc_errors_total",
            _low_rate,
            "counter, Poisson 1/scrape; x15 for 50 min",
        ),
        Family(
            "quantised_shift",
            "svc_queue_length",
            _quantised,
            "round(N(3,1)); mean 9 for the last 6 h",
        ),
        Family("student_t_latency", "svc_latency_ms", _student, "200 + 10 t(3) ms; +60 ms for 1 h"),
        Family(
            "lognormal_latency",
            "svc_latency_seconds",
            _lognormal,
            "lognormal median 0.2 s; x2 for 1 h",
        ),
        Family(
            "gaps_jitter_shift",
            "svc_gauge",
            _gauss(6.0, LASTING_S, True),
            "scrape gaps (stale markers), +-0.5 s jitter; +6 sigma last 6 h",
            gaps=True,
        ),
        Family(
            "counter_resets_drop",
            "svc_requests_total",
            _busy_counter,
            "counter 50/s, restarts ~1/day; rate halves for the last 6 h",
            resets=True,
        ),
    )
}


def _gaps(base: np.random.Generator, grid: Grid) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(kept, stale): about four failed stretches of 1-20 scrapes a day, none in the first
    hour; the first failed scrape of each carries a staleness marker, the rest is silent."""
    kept = np.ones(grid.n, dtype=np.bool_)
    stale = np.zeros(grid.n, dtype=np.bool_)
    n_gaps = int(base.poisson(4.0 * grid.end_s / DAY_S))
    first = int(HOUR_S // (STEP_MS / 1000.0))
    for start, length in zip(
        base.integers(first, grid.n - 21, n_gaps), base.integers(1, 21, n_gaps), strict=True
    ):
        kept[start + 1 : start + length] = False
        stale[start] = True
    return kept, stale


def _restart(base: np.random.Generator, increase: NDArray[np.float64]) -> NDArray[np.float64]:
    """Running total of ``increase`` from a random offset, restarting from zero about once
    a day (a process restart loses part of that scrape's increase)."""
    n = increase.shape[0]
    per_scrape = STEP_MS / 1000.0 / DAY_S
    restarts = np.flatnonzero(base.random(n) < per_scrape)
    restarts = restarts[restarts > 0]
    total = np.empty(n)
    running = float(base.integers(0, 10**6))
    kept = base.random(restarts.shape[0])  # share of that scrape's increase kept
    r = 0
    for i in range(n):  # ~1e5 iterations at most a series: a loop is clear and cheap enough
        if r < restarts.shape[0] and restarts[r] == i:
            running = np.floor(kept[r] * increase[i])
            r += 1
        else:
            running += increase[i]
        total[i] = running
    return total


def generate(family: str, *, seed: int, index: int, days: float, anomalous: bool) -> Series:
    """Series ``index`` of ``family`` for ``seed``, ``days`` long (at least the family's
    ``min_days``): the clean one, or the anomalous one built on the same base draws.

    Deterministic: the same arguments give the same series on any machine with the same
    numpy (PCG64 streams keyed by seed, family and index)."""
    spec = FAMILIES[family]
    if days < spec.min_days:
        raise ValueError(f"{family} needs at least {spec.min_days:g} days, got {days:g}")
    key = [seed, list(FAMILIES).index(family), index]
    base = np.random.default_rng([*key, 0])
    anom = np.random.default_rng([*key, 1])
    n = round(days * DAY_S * 1000.0 / STEP_MS)
    grid = Grid(np.arange(n, dtype=np.float64) * (STEP_MS / 1000.0))
    signal, interval = spec.shape(base, anom, grid, anomalous)
    # nuisances come from their own stream, so they are the same with or without anomaly
    nuisance = np.random.default_rng([*key, 2])
    ts = EPOCH_MS + np.arange(n, dtype=np.int64) * STEP_MS
    values = signal
    if spec.metric.endswith("_total"):
        values = (
            _restart(nuisance, signal)
            if spec.resets
            else float(nuisance.integers(0, 10**6)) + np.cumsum(signal)
        )
    kept = np.ones(n, dtype=np.bool_)
    stale = np.zeros(n, dtype=np.bool_)
    if spec.gaps:
        kept, stale = _gaps(nuisance, grid)
        ts = ts + nuisance.integers(-500, 501, n)  # jitter well under half a step
    anomaly = None
    lasting = False
    if interval is not None:
        # the interval's edges sit half a step before the scrapes they name, so a jittered
        # timestamp stays on the side of the edge its scrape is on
        anomaly = (
            EPOCH_MS + round(interval[0] * 1000) - STEP_MS // 2,
            EPOCH_MS + round(interval[1] * 1000) - STEP_MS // 2,
        )
        lasting = interval[1] >= grid.end_s
    return Series(
        family=family,
        metric=spec.metric,
        anomalous=anomalous,
        ts_ms=np.ascontiguousarray(ts[kept]),
        values=np.ascontiguousarray(values[kept], dtype=np.float64),
        stale=np.ascontiguousarray(stale[kept]),
        anomaly=anomaly,
        lasting=lasting,
    )
