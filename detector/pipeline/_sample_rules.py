"""numba kernels of the pipeline's per-series bookkeeping (no detector arithmetic).

``track`` applies the sample rules every family relies on: a timestamp older than or
equal to the series' last one is out of order and dropped (so a retried batch is
idempotent); the staleness marker (NaN with bits 0x7ff0000000000002) marks the series
stale and is not learned; any other value, NaN and ±Inf included, becomes the series'
last value; counter series are turned into per-second rates (a decrease is a counter
reset), so detectors see how fast a counter grows, not its ever-growing total. ``record``
keeps each series' latest score and band. numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

STALE_BITS = np.uint64(0x7FF0000000000002)

C_ACCEPTED, C_OUT_OF_ORDER, C_STALE = range(3)

_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
_u64 = types.Array(types.uint64, 1, "C")
_f64 = types.Array(types.float64, 1, "C")
_u8 = types.Array(types.uint8, 1, "C")

TRACK_SIG = types.void(
    _i32, _i64, _u64, _i64, _f64, _i64, _u8, _u8, _f64, _i64, _f64, _i64, _f64, _f64, _u8, _i64
)
INTERVAL_ALPHA = 0.1  # weight of a new gap in a series' typical sampling interval
RUN_DECAY = 0.999  # per sample: how fast the memory of a long run of equal values fades
NEVER = np.iinfo(np.int64).min
RECORD_SIG = types.int64(
    _i32, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64, _f64, types.float64
)


@njit(TRACK_SIG, cache=True, nogil=True)
def track(
    slots: np.ndarray,
    ts: np.ndarray,
    bits: np.ndarray,
    last_ts: np.ndarray,
    last_value: np.ndarray,
    n_samples: np.ndarray,
    stale: np.ndarray,
    is_counter: np.ndarray,
    rate_prev: np.ndarray,
    rate_prev_ts: np.ndarray,
    interval_ms: np.ndarray,
    run_same: np.ndarray,
    run_max: np.ndarray,
    out_values: np.ndarray,
    keep: np.ndarray,
    counters: np.ndarray,
) -> None:
    """Apply the sample rules in order; mark in ``keep`` the samples the detectors score.

    ``out_values[i]`` is what the detectors see: the value, or for a counter series its
    per-second rate since the previous sample (a decrease is a reset, the increase is the
    new value). A counter's first sample, and its first after a staleness marker, has no
    rate and is not scored. Non-finite values pass through (the detectors score them NaN)
    and do not move a counter's reference point.

    It also keeps what flatline and absence checks need: the series' typical interval
    between samples (not across staleness), the current run of identical values and a
    slowly fading memory of its longest past run.
    """
    values = bits.view(np.float64)
    for i in range(slots.shape[0]):
        s = slots[i]
        keep[i] = 0
        if ts[i] <= last_ts[s]:
            counters[C_OUT_OF_ORDER] += 1
            continue
        previous_ts = last_ts[s]
        last_ts[s] = ts[i]
        counters[C_ACCEPTED] += 1
        if bits[i] == STALE_BITS:
            stale[s] = 1
            rate_prev_ts[s] = NEVER
            counters[C_STALE] += 1
            continue
        x = values[i]
        if previous_ts != NEVER and not stale[s]:
            gap = float(ts[i] - previous_ts)
            interval_ms[s] = (
                gap
                if interval_ms[s] == 0.0
                else (interval_ms[s] + INTERVAL_ALPHA * (gap - interval_ms[s]))
            )
        run_max[s] *= RUN_DECAY
        if n_samples[s] > 0 and x == last_value[s]:
            run_same[s] += 1
        else:
            run_max[s] = max(run_max[s], float(run_same[s]))
            run_same[s] = 0
        stale[s] = 0
        last_value[s] = x
        n_samples[s] += 1
        out_values[i] = x
        keep[i] = 1
        if not is_counter[s] or not math.isfinite(x):
            continue
        if rate_prev_ts[s] == NEVER:
            keep[i] = 0
        else:
            increase = x - rate_prev[s] if x >= rate_prev[s] else x
            out_values[i] = increase * 1000.0 / (ts[i] - rate_prev_ts[s])
        rate_prev[s] = x
        rate_prev_ts[s] = ts[i]


@njit(RECORD_SIG, cache=True, nogil=True)
def record(
    slots: np.ndarray,
    inputs: np.ndarray,
    score: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    last_input: np.ndarray,
    last_score: np.ndarray,
    last_expected: np.ndarray,
    last_lower: np.ndarray,
    last_upper: np.ndarray,
    threshold: float,
) -> int:
    """Keep the latest input (value or rate) and outputs per series; return how many
    samples scored >= threshold."""
    hits = 0
    for i in range(slots.shape[0]):
        s = slots[i]
        last_input[s] = inputs[i]
        last_score[s] = score[i]
        last_expected[s] = expected[i]
        last_lower[s] = lower[i]
        last_upper[s] = upper[i]
        if score[i] >= threshold:
            hits += 1
    return hits
