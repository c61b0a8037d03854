"""Runs a deployment verification against Prometheus: the shell around detector/verify.py.

This module owns the range queries (prometheus-api-client, a blocking client, called in
threads with a timeout and bounded concurrency), loading a spec file, and turning both
into ``verify.judge`` calls. It decides nothing itself; a query that fails or returns
several series is judged inconclusive with the reason.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException

from detector import tls, verify, yamlsrc
from detector.errors import ConfigError


def load_spec(path: Path) -> verify.VerifyRequest:
    """A YAML or JSON spec file; errors as ``file:line: path: message``."""
    try:
        return yamlsrc.load(path, verify.VerifyRequest)
    except yamlsrc.YamlSourceError as exc:
        raise ConfigError(str(exc)) from exc


class RangeError(Exception):
    """A range query that cannot be used (unreachable, refused, several series)."""


def _series(result: list[dict[str, Any]], query: str) -> tuple[NDArray[np.int64],
                                                               NDArray[np.float64]]:
    if len(result) > 1:
        raise RangeError(f"{query!r} returns {len(result)} series; aggregate it to one "
                         "(sum, max, histogram_quantile by le)")
    values = result[0]["values"] if result else []
    ts = np.array([round(float(t) * 1000) for t, _ in values], dtype=np.int64)
    vs = np.array([float(v) for _, v in values], dtype=np.float64)
    return ts, vs


def fetch(client: PrometheusConnect, window: verify.Window, *,
          timeout_s: float) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """One range query's samples (blocking: call it in a thread)."""
    if window.end_s <= window.start_s:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    try:
        result = client.custom_query_range(
            window.query, start_time=datetime.fromtimestamp(window.start_s, UTC),
            end_time=datetime.fromtimestamp(window.end_s, UTC), step=f"{window.step_s:g}s",
            timeout=max(1, round(timeout_s)))
    except PrometheusApiClientException as exc:
        raise RangeError(f"Prometheus refused {window.query!r}: {exc}") from exc
    except RequestException as exc:
        raise RangeError(f"Prometheus unreachable: {tls.explain(exc)}") from exc
    return _series(result, window.query)


async def run(req: verify.VerifyRequest, *, prometheus_url: str, now_s: float | None = None,
              timeout_s: float = 30.0, max_concurrent: int = 4,
              outgoing_tls: tls.OutgoingTLS | None = None) -> dict[str, Any]:
    """Fetch every window, judge every query, return the report document. An https://
    Prometheus is checked against ``outgoing_tls`` (default: the system's CAs)."""
    now = time.time() if now_s is None else now_s
    client = PrometheusConnect(url=prometheus_url, session=tls.build_requests_session(
        outgoing_tls or tls.OutgoingTLS()))
    gate = asyncio.Semaphore(max_concurrent)

    async def one(q: verify.VerifyQuery, base: verify.Window,
                  seen: verify.Window) -> verify.Judgement:
        try:
            async with gate:
                b_ts, b = await asyncio.to_thread(fetch, client, base, timeout_s=timeout_s)
                o_ts, o = await asyncio.to_thread(fetch, client, seen, timeout_s=timeout_s)
        except RangeError as exc:
            return verify.unjudged(q, base=base, seen=seen, reason=str(exc))
        return verify.judge(q, req.thresholds, base=base, seen=seen, baseline_ts=b_ts,
                            baseline=b, observed_ts=o_ts, observed=o)

    judgements = await asyncio.gather(*(one(*planned)
                                        for planned in verify.plan(req, now_s=now)))
    return verify.report(req, judgements, now_s=now)
