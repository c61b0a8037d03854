"""Writes the detector's view back by remote-write so Grafana can draw it.

Every ``interval_s``, each tracked series (of the ``writeback.match`` selector) that got a
scored sample since the last write-back contributes four samples at that sample's
timestamp: ``vigil_anomaly_score``, ``vigil_anomaly_expected``, ``vigil_anomaly_lower`` and
``vigil_anomaly_upper``, labelled with the series' labels, its metric name as
``metric_name`` and ``detector``. The ``vigil_`` prefix keeps them apart from vmanomaly's
``anomaly_score`` in one database.

With ``format: vmanomaly`` it writes what vmanomaly writes instead, so its dashboards and
alert rules work unchanged: ``anomaly_score`` (scaled so that ``anomalous_above`` maps to
1.0 and more than 1 means anomalous), ``y`` (the value the detector saw: the rate of a
counter), ``yhat``, ``yhat_lower`` and ``yhat_upper``, with the series' labels and its
metric name as ``for`` (vmanomaly's default ``metric_format``: ``__name__: $VAR``,
``for: $QUERY_KEY``). Bounded: at most ``max_series`` series per interval (the most anomalous
first; the rest are counted), one request in flight, retried until the next interval and
then replaced by fresher values (counted). The body is built in a thread; the tables are
read while the worker writes them, which can mix two neighbouring samples of one series
but never tears a value.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import aiohttp
import numpy as np
from numpy.typing import NDArray

from detector.config import WritebackConfig
from detector.metrics import AlertMetrics
from detector.pipeline.worker import Pipeline
from detector.remote_write import encode
from detector.series.registry import SeriesRegistry
from detector.series.selector import Selector
from servicekit import tls

log = logging.getLogger(__name__)

NAMES = (
    "vigil_anomaly_score",
    "vigil_anomaly_expected",
    "vigil_anomaly_lower",
    "vigil_anomaly_upper",
)
VMANOMALY_NAMES = ("anomaly_score", "y", "yhat", "yhat_lower", "yhat_upper")
_BELOW_ONE = 1.0 - 2.0**-52  # the largest score the scaling takes (1.0 would be infinite)


def vmanomaly_score(score: float, anomalous_above: float) -> float:
    """Vigil's score (0..1, a tail probability's complement) on vmanomaly's scale: 0 stays
    0, ``anomalous_above`` becomes 1.0, and the rarer the sample the larger: the ratio of
    the two tail probabilities' logarithms, so each factor of 10 rarer adds the same step.

    >>> round(vmanomaly_score(0.9999, 0.9999), 6), round(vmanomaly_score(0.999999, 0.9999), 6)
    (1.0, 1.5)
    >>> vmanomaly_score(0.0, 0.9999)
    0.0
    """
    return math.log1p(-min(score, _BELOW_ONE)) / math.log1p(-anomalous_above)


HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "vigil-detector",
}


class WriteBack:
    """Collects the latest scores and bands of updated series and posts them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        cfg: WritebackConfig,
        registry: SeriesRegistry,
        pipeline: Pipeline,
        metrics: AlertMetrics,
        token: str | None = None,
    ) -> None:
        assert cfg.url is not None
        self.session = session
        self.cfg = cfg
        self.url = cfg.url
        self.registry = registry
        self.pipeline = pipeline
        self.metrics = metrics
        self.selector: Selector | None = cfg.selector()
        self.headers = dict(HEADERS)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self._written_ts = np.zeros(0, dtype=np.int64)
        self._selected = np.zeros(0, dtype=np.uint8)
        self._checked = 0  # slots below this have their selection decided
        self.sent = asyncio.Event()  # set after each accepted write (tests wait on it)

    def reconfigure(self, cfg: WritebackConfig) -> None:
        """Take a reloaded config (its url stays: a new one needs a restart); the series'
        selection is decided again."""
        self.cfg = cfg
        self.selector = cfg.selector()
        self._checked = 0

    def _grow(self, n: int) -> None:
        if n > self._written_ts.shape[0]:
            size = max(n, 2 * self._written_ts.shape[0], 1024)
            self._written_ts = np.resize(self._written_ts, size)
            self._written_ts[self._checked :] = np.iinfo(np.int64).min
            self._selected = np.resize(self._selected, size)
        for slot in range(self._checked, n):
            labels = dict(self.registry.labels_of(slot))
            self._selected[slot] = self.selector is None or self.selector.matches(labels)
        self._checked = max(self._checked, n)

    def collect(self) -> tuple[bytes, int] | None:
        """The compressed body for the series updated since the last call, and its sample
        count; None when nothing changed. Runs in a thread."""
        p = self.pipeline
        n = min(self.registry.n_tracked, p.capacity)
        self._grow(n)
        last_ts = p.last_ts[:n].copy()
        score = p.last_score[:n].copy()
        fresh: NDArray[np.intp] = np.flatnonzero(
            (last_ts > self._written_ts[:n]) & (self._selected[:n] != 0) & np.isfinite(score)
        )
        if fresh.shape[0] == 0:
            return None
        if fresh.shape[0] > self.cfg.max_series:
            order = np.argsort(-score[fresh], kind="stable")
            self.metrics.writeback_dropped.inc(int(fresh.shape[0]) - self.cfg.max_series)
            fresh = np.sort(fresh[order[: self.cfg.max_series]])
        series = []
        families = p.detectors
        vmanomaly = self.cfg.format == "vmanomaly"
        for s in fresh.tolist():
            all_labels = self.registry.labels_of(s)
            labels = [(k, v) for k, v in all_labels if k != "__name__"]
            metric = dict(all_labels).get("__name__", "")
            ts = int(last_ts[s])
            if vmanomaly:
                base = sorted(dict([*labels, ("for", metric)]).items())
                names: tuple[str, ...] = VMANOMALY_NAMES
                values: tuple[float, ...] = (
                    vmanomaly_score(float(score[s]), self.cfg.anomalous_above),
                    p.last_input[s],
                    p.last_expected[s],
                    p.last_lower[s],
                    p.last_upper[s],
                )
            else:
                kind = families.params[int(families.family_of[s])].kind
                extra = [("detector", kind)] + ([("metric_name", metric)] if metric else [])
                base = sorted(dict(extra + labels).items())  # the series' own labels win
                names = NAMES
                values = (score[s], p.last_expected[s], p.last_lower[s], p.last_upper[s])
            for name, value in zip(names, values, strict=True):
                if math.isfinite(value):
                    series.append(
                        encode.Series(
                            labels=[("__name__", name), *base], samples=[(ts, float(value))]
                        )
                    )
            self._written_ts[s] = ts
        return encode.compress(encode.encode_v1(series)), len(series)

    async def flush(self) -> bool:
        """Build and send one write-back; retry until ``interval_s`` runs out."""
        start = time.perf_counter()
        collected = await asyncio.to_thread(self.collect)
        if collected is None:
            return True
        body, n_samples = collected
        deadline = start + self.cfg.interval_s
        delay = 0.5
        while True:
            reason = await self._post(body)
            if reason is None:
                self.metrics.writeback_samples.inc(n_samples)
                self.metrics.writeback_seconds.observe(time.perf_counter() - start)
                self.sent.set()
                return True
            self.metrics.writeback_failures.labels(reason).inc()
            if reason == "rejected" or time.perf_counter() + delay >= deadline:
                self.metrics.writeback_dropped.inc(n_samples // len(NAMES))
                return False
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)

    async def _post(self, body: bytes) -> str | None:
        """None when accepted, else the failure reason (a metric label)."""
        try:
            async with self.session.post(
                self.url,
                data=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            ) as resp:
                text = await resp.text()
                if 200 <= resp.status < 300:
                    return None
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.error("write-back to %s refused: %s %s", self.url, resp.status, text[:300])
                    return "rejected"
                log.warning("write-back to %s answered %s; retrying", self.url, resp.status)
                return "status"
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("write-back to %s failed (%s); retrying", self.url, tls.explain(exc))
            return "unreachable"

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval_s)
            try:
                await self.flush()
            except Exception:  # task root: a bug here must not end write-back for good
                log.exception("write-back failed; trying again next interval")
