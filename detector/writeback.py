"""Writes the detector's view back by remote-write so Grafana can draw it.

Every ``interval_s``, each tracked series (of the ``writeback.match`` selector) that got a
scored sample since the last write-back contributes four samples at that sample's
timestamp: ``anomaly_score``, ``anomaly_expected``, ``anomaly_lower`` and
``anomaly_upper``, labelled with the series' labels, its metric name as ``metric_name``
and ``detector``. Bounded: at most ``max_series`` series per interval (the most anomalous
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
from detector.pipeline import Pipeline
from detector.remote_write import encode
from detector.selector import Selector
from detector.series import SeriesRegistry
from servicekit import tls

log = logging.getLogger(__name__)

NAMES = ("anomaly_score", "anomaly_expected", "anomaly_lower", "anomaly_upper")
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "vigil-detector"}


class WriteBack:
    """Collects the latest scores and bands of updated series and posts them."""

    def __init__(self, session: aiohttp.ClientSession, *, cfg: WritebackConfig,
                 registry: SeriesRegistry, pipeline: Pipeline, metrics: AlertMetrics,
                 token: str | None = None) -> None:
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
            self._written_ts[self._checked:] = np.iinfo(np.int64).min
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
            (last_ts > self._written_ts[:n]) & (self._selected[:n] != 0) & np.isfinite(score))
        if fresh.shape[0] == 0:
            return None
        if fresh.shape[0] > self.cfg.max_series:
            order = np.argsort(-score[fresh], kind="stable")
            self.metrics.writeback_dropped.inc(int(fresh.shape[0]) - self.cfg.max_series)
            fresh = np.sort(fresh[order[: self.cfg.max_series]])
        series = []
        families = p.detectors
        for s in fresh.tolist():
            all_labels = self.registry.labels_of(s)
            labels = [(k, v) for k, v in all_labels if k != "__name__"]
            metric = dict(all_labels).get("__name__", "")
            kind = families.params[int(families.family_of[s])].kind
            extra = [("detector", kind)] + ([("metric_name", metric)] if metric else [])
            base = sorted(dict(extra + labels).items())  # the series' own labels win
            ts = int(last_ts[s])
            values = (score[s], p.last_expected[s], p.last_lower[s], p.last_upper[s])
            for name, value in zip(NAMES, values, strict=True):
                if math.isfinite(value):
                    series.append(encode.Series(labels=[("__name__", name), *base],
                                                samples=[(ts, float(value))]))
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
                    self.url, data=body, headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)) as resp:
                text = await resp.text()
                if 200 <= resp.status < 300:
                    return None
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.error("write-back to %s refused: %s %s", self.url, resp.status,
                              text[:300])
                    return "rejected"
                log.warning("write-back to %s answered %s; retrying", self.url, resp.status)
                return "status"
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("write-back to %s failed (%s); retrying", self.url,
                        tls.explain(exc))
            return "unreachable"

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval_s)
            try:
                await self.flush()
            except Exception:  # task root: a bug here must not end write-back for good
                log.exception("write-back failed; trying again next interval")
