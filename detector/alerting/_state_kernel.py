"""numba kernels of the alert lifecycle: per series, normal → pending → firing → resolved.

One pass over a batch's scores (in sample order) updates each series' alert state and
writes an event for every transition into preallocated arrays. Kernels only: the rule
tables come from ``detector.alerting.state``; nothing here touches Python objects.

States per series: NORMAL, PENDING (anomalous samples in a row, not yet ``for`` long),
FIRING.

Durations are Prometheus's ``for:``: a sample stands for the interval that ends at it (the
time since the series' previous sample, at most ``MAX_SPAN_MS``, Prometheus's 5-minute
lookback; 0 for a series' first sample). An anomalous run has lasted from the start of its
first sample's interval to the current sample, so a rule with ``for_ms`` of one minute
fires on the first anomalous sample of 5-minute data and on the fourth at a 15 s scrape
(45 s since the first plus its own 15 s); a normal run is counted the same way for
``resolve_ms``. The ``for_samples``/``resolve_samples`` counts are required as well.

A NaN score (still warming up) changes nothing. A run starts with a score at or above
the lowest threshold; after that, a sample is anomalous if it scores that high *or* its
value lies outside the expected band. While pending, a sample that is neither ends the
run (as Prometheus's ``for`` does) only once the series has come back: it scores below
``normal_below`` and lies in the inner half of its band (nearer the expected value than
the midpoint to the band's edge). One that has not come back neither ends nor advances the
run (pending-side hysteresis), so a moderate shift whose samples hover at the band's edge
is not restarted by every one that dips just inside. While firing, a sample counts as
normal if it is inside the band and scores below ``normal_below``; one in between restarts
the normal run without counting as anomalous (hysteresis), so a series hovering at the
edge does not resolve and page again. Severity comes from the score alone.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NEVER = np.int64(-(2**62))
NORMAL, PENDING, FIRING = 0, 1, 2
EV_FIRE, EV_ESCALATE, EV_RESOLVE = 1, 2, 3
MAX_SPAN_MS = 300_000  # the longest interval one sample stands for (Prometheus's lookback)

STEP_SIG = (
    "int64(int32[::1], int64[::1], float64[::1], float64[::1], float64[::1], float64[::1], "
    "int16[::1], float64[:, ::1], int64[::1], "
    "int64[::1], float64[::1], int64[::1], int64[::1], uint8[::1], uint8[::1], int64[::1], "
    "int64[::1], int64[::1], float64[::1], int32[::1], uint8[::1], uint8[::1], int64[::1], "
    "float64[::1], float64[::1], float64[::1], float64[::1], float64[::1], float64[::1], "
    "float64[::1], float64[::1], int64[::1], int64[::1])"
)


@njit(cache=True, nogil=True)
def _event(
    n_ev: int,
    i: int,
    s: int,
    kind: int,
    lv: int,
    since: np.ndarray,
    peak: np.ndarray,
    base_exp: np.ndarray,
    base_lo: np.ndarray,
    base_hi: np.ndarray,
    ev_index: np.ndarray,
    ev_kind: np.ndarray,
    ev_level: np.ndarray,
    ev_since: np.ndarray,
    ev_peak: np.ndarray,
    ev_exp: np.ndarray,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
) -> int:
    """Write event ``n_ev`` (sample ``i`` of series ``s``) with the run's start, peak and
    band as they are now; the next event's index."""
    ev_index[n_ev] = i
    ev_kind[n_ev] = kind
    ev_level[n_ev] = lv
    ev_since[n_ev] = since[s]
    ev_peak[n_ev] = peak[s]
    ev_exp[n_ev] = base_exp[s]
    ev_lo[n_ev] = base_lo[s]
    ev_hi[n_ev] = base_hi[s]
    return n_ev + 1


@njit(STEP_SIG, cache=True, nogil=True)
def step(
    slots: np.ndarray,
    ts: np.ndarray,
    score: np.ndarray,
    value: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rule_of: np.ndarray,
    thresholds: np.ndarray,
    for_samples: np.ndarray,
    for_ms: np.ndarray,
    normal_below: np.ndarray,
    resolve_samples: np.ndarray,
    resolve_ms: np.ndarray,
    state: np.ndarray,
    level: np.ndarray,
    since: np.ndarray,
    run: np.ndarray,
    normal_since: np.ndarray,
    peak: np.ndarray,
    ev_index: np.ndarray,
    ev_kind: np.ndarray,
    ev_level: np.ndarray,
    ev_since: np.ndarray,
    ev_peak: np.ndarray,
    expected: np.ndarray,
    base_exp: np.ndarray,
    base_lo: np.ndarray,
    base_hi: np.ndarray,
    ev_exp: np.ndarray,
    ev_lo: np.ndarray,
    ev_hi: np.ndarray,
    prev_ts: np.ndarray,
    run_from: np.ndarray,
) -> int:
    """Advance the alert state of each sample's series; return the number of events.

    ``thresholds[r]`` holds rule r's ascending severity thresholds, padded with +inf.
    ``level`` is the severity (1-based; 0 none) reached by the pending run or the alert.
    ``ev_index`` receives the sample index of each event, ``ev_kind`` FIRE/ESCALATE/
    RESOLVE, ``ev_level`` the level it concerns, ``ev_since`` the first anomalous sample's
    timestamp and ``ev_peak`` the highest score of the run. ``base_*`` keep, per series,
    the expected value and band of the sample that started the run (before any anomalous
    sample was learned): an alert says what was expected, not what the anomaly has since
    taught the detector; ``ev_exp``/``ev_lo``/``ev_hi`` receive them for each event.
    ``prev_ts`` is each series' previous sample seen here (NaN scores included), which
    gives a sample its interval; ``run_from`` the start of the pending run's first
    interval, and ``normal_since`` that of the firing alert's normal run.
    """
    n_ev = 0
    n_levels = thresholds.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        r = rule_of[s]
        x = score[i]
        t = ts[i]
        span = 0 if prev_ts[s] == NEVER else min(max(t - prev_ts[s], 0), MAX_SPAN_MS)
        prev_ts[s] = t
        if r < 0 or x != x:
            continue
        lv = 0
        for k in range(n_levels):
            if x >= thresholds[r, k]:
                lv = k + 1
        # once a run has started, a value still outside the expected band keeps it going
        # (the score of a lasting shift fades as the calibration sees more of it; the band
        # moves only when the detector adopts the new level)
        outside = value[i] < lower[i] or value[i] > upper[i]
        if state[s] == FIRING:
            if lv > 0 or outside:
                run[s] = 0
                normal_since[s] = NEVER
                if x > peak[s]:
                    peak[s] = x
                if lv > level[s]:
                    level[s] = lv
                    n_ev = _event(
                        n_ev,
                        i,
                        s,
                        EV_ESCALATE,
                        lv,
                        since,
                        peak,
                        base_exp,
                        base_lo,
                        base_hi,
                        ev_index,
                        ev_kind,
                        ev_level,
                        ev_since,
                        ev_peak,
                        ev_exp,
                        ev_lo,
                        ev_hi,
                    )
            elif x < normal_below[r]:
                if normal_since[s] == NEVER:
                    normal_since[s] = t - span
                    run[s] = 0
                run[s] += 1
                if run[s] >= resolve_samples[r] and t - normal_since[s] >= resolve_ms[r]:
                    n_ev = _event(
                        n_ev,
                        i,
                        s,
                        EV_RESOLVE,
                        level[s],
                        since,
                        peak,
                        base_exp,
                        base_lo,
                        base_hi,
                        ev_index,
                        ev_kind,
                        ev_level,
                        ev_since,
                        ev_peak,
                        ev_exp,
                        ev_lo,
                        ev_hi,
                    )
                    state[s] = NORMAL
                    level[s] = 0
                    run[s] = 0
                    since[s] = NEVER
                    normal_since[s] = NEVER
            else:
                run[s] = 0
                normal_since[s] = NEVER
        elif lv > 0 or (state[s] == PENDING and outside):
            if state[s] == NORMAL:
                state[s] = PENDING
                since[s] = t
                run_from[s] = t - span
                base_exp[s] = expected[i]
                base_lo[s] = lower[i]
                base_hi[s] = upper[i]
                run[s] = 0
                level[s] = 0
                peak[s] = 0.0
            run[s] += 1
            if x > peak[s]:
                peak[s] = x
            if lv > level[s]:
                level[s] = lv
            if run[s] >= for_samples[r] and t - run_from[s] >= for_ms[r]:
                state[s] = FIRING
                run[s] = 0
                normal_since[s] = NEVER
                n_ev = _event(
                    n_ev,
                    i,
                    s,
                    EV_FIRE,
                    level[s],
                    since,
                    peak,
                    base_exp,
                    base_lo,
                    base_hi,
                    ev_index,
                    ev_kind,
                    ev_level,
                    ev_since,
                    ev_peak,
                    ev_exp,
                    ev_lo,
                    ev_hi,
                )
        elif state[s] == PENDING and (
            x >= normal_below[r]
            or value[i] < 0.5 * (expected[i] + lower[i])
            or value[i] > 0.5 * (expected[i] + upper[i])
        ):
            # pending-side hysteresis: a sample that has not come back (it scores at least
            # ``normal_below``, or lies in the outer half of its band, between the edge
            # and the midpoint to the expected value) neither counts as anomalous nor
            # ends the run, so a shift hovering at the band's edge keeps its run
            pass
        elif state[s] == PENDING:
            state[s] = NORMAL
            run[s] = 0
            level[s] = 0
            since[s] = NEVER
    return n_ev
