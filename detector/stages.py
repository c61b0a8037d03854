"""Where the ingest path spends its CPU: thread CPU time per stage, for ``--profile-stages``.

This module owns the stage names and their accumulators. Each thread that does ingest
work (the event loop, the decode thread, the detector worker) calls ``lap(stage)`` at
the end of each stage: the thread CPU time since that thread's previous lap is added to
the stage. Every CPU nanosecond of an instrumented thread therefore lands in exactly one
stage; on the event loop, what lies between two handlers (aiohttp parsing the request,
writing the response, the loop itself) is lapped as ``receive`` when the next handler
starts. The bench compares the sum with the process's CPU time; the rest is ``other``.

Thread CPU time (``CLOCK_THREAD_CPUTIME_ID``), not wall time: the detector worker and the
event loop share one core in the benchmark, and wall time would charge one thread for the
other's work. A lap is one ``clock_gettime`` (~0.2 µs), a dozen per 2,000-sample request.
When profiling is off the app holds ``OFF``, whose ``lap`` is an empty method: no clock
is read and nothing is stored. No I/O, no globals written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

STAGES = (
    "receive",
    "decompress",
    "scan",
    "resolve",
    "route",
    "detect",
    "alerts",
    "history_metrics",
)
RECEIVE, DECOMPRESS, SCAN, RESOLVE, ROUTE, DETECT, ALERTS, HISTORY_METRICS = range(len(STAGES))


class StageClock:
    """Thread CPU time per stage, summed over the threads that lap."""

    enabled = True

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._per_thread: list[list[int]] = []

    def _state(self) -> list[int]:
        # [mark, stage 0, stage 1, ...]: one list per thread, so no lap ever locks
        state: list[int] | None = getattr(self._local, "state", None)
        if state is None:
            state = [time.thread_time_ns()] + [0] * len(STAGES)
            self._local.state = state
            with self._lock:
                self._per_thread.append(state)
        return state

    def lap(self, stage: int) -> None:
        """Charge this thread's CPU time since its previous lap to ``stage``."""
        state = self._state()
        now = time.thread_time_ns()
        state[1 + stage] += now - state[0]
        state[0] = now

    def seconds(self) -> dict[str, float]:
        """CPU seconds per stage so far, all threads together."""
        with self._lock:
            rows = [list(s) for s in self._per_thread]
        return {name: sum(r[1 + i] for r in rows) / 1e9 for i, name in enumerate(STAGES)}


class _Off(StageClock):
    """Profiling off: ``lap`` does nothing."""

    enabled = False

    def lap(self, stage: int) -> None:
        return None


OFF: StageClock = _Off()


class StageCollector(Collector):
    """Exports a StageClock as ``vigil_profile_stage_cpu_seconds_total{stage}``."""

    def __init__(self, clock: StageClock) -> None:
        self.clock = clock

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "vigil_profile_stage_cpu_seconds",
            "CPU time of the ingest path per stage (serve --profile-stages; docs/ingestion.md).",
            labels=("stage",),
        )
        for name, seconds in self.clock.seconds().items():
            family.add_metric((name,), seconds)
        yield family
