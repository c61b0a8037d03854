"""Runs a deployment verification against Prometheus: the shell around detector/verify/verdict.py.

This module owns the range queries (prometheus-api-client, a blocking client, called in
threads with a timeout and bounded concurrency), loading a spec file, and turning both
into ``verdict.judge`` calls. It decides nothing itself; a query that fails or returns
several series is judged inconclusive with the reason. A body that is not what
Prometheus's API promises (not JSON, no ``data.result``, values of the wrong type) is an
``UpstreamError`` for the whole request: the HTTP API answers 502 with the reason.
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
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from requests import JSONDecodeError, RequestException

from detector.errors import ConfigError, UpstreamError
from detector.verify import verdict
from servicekit import tls, yamlsrc


def load_spec(path: Path) -> verdict.VerifyRequest:
    """A YAML or JSON spec file; errors as ``file:line: path: message``."""
    try:
        return yamlsrc.load(path, verdict.VerifyRequest)
    except yamlsrc.YamlSourceError as exc:
        raise ConfigError(str(exc)) from exc


class RangeError(Exception):
    """A range query that cannot be used (unreachable, refused, several series)."""


class _RawSeries(BaseModel):
    """One series of a matrix result: ``{"metric": {...}, "values": [[ts, "v"], ...]}``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    metric: dict[str, str] = {}
    values: list[tuple[float, float]] = []  # "NaN", "+Inf" parse too


_MATRIX = TypeAdapter(list[_RawSeries])


def _explain(exc: ValidationError) -> str:
    return "; ".join(
        f"result.{'.'.join(map(str, e['loc']))}: {e['msg']}"
        for e in exc.errors(include_url=False)[:3]
    )


def parse_matrix(result: Any, query: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """A query_range ``data.result`` -> (ts_ms, values); UpstreamError if it is not a
    matrix, RangeError if it has several series."""
    try:
        matrix = _MATRIX.validate_python(result)
    except ValidationError as exc:
        raise UpstreamError(
            f"Prometheus answered {query!r} with a result that is not a "
            f"range-query matrix: {_explain(exc)}"
        ) from exc
    if len(matrix) > 1:
        raise RangeError(
            f"{query!r} returns {len(matrix)} series; aggregate it to one "
            "(sum, max, histogram_quantile by le)"
        )
    values = matrix[0].values if matrix else []
    ts = np.array([round(t * 1000) for t, _ in values], dtype=np.int64)
    vs = np.array([v for _, v in values], dtype=np.float64)
    return ts, vs


def fetch(
    client: PrometheusConnect, window: verdict.Window, *, timeout_s: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """One range query's samples (blocking: call it in a thread)."""
    if window.end_s <= window.start_s:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    try:
        result = client.custom_query_range(
            window.query,
            start_time=datetime.fromtimestamp(window.start_s, UTC),
            end_time=datetime.fromtimestamp(window.end_s, UTC),
            step=f"{window.step_s:g}s",
            timeout=max(1, round(timeout_s)),
        )
    except PrometheusApiClientException as exc:
        raise RangeError(f"Prometheus refused {window.query!r}: {exc}") from exc
    except JSONDecodeError as exc:  # before RequestException, which it also is
        raise UpstreamError(
            f"Prometheus answered {window.query!r} with a body that is not "
            f"JSON ({exc}); is --prometheus the Prometheus HTTP API, not a "
            "proxy's or a UI's page?"
        ) from exc
    except (KeyError, TypeError, IndexError) as exc:  # the client reads data.result blindly
        raise UpstreamError(
            f"Prometheus answered {window.query!r} with JSON that has no "
            f"data.result ({type(exc).__name__}: {exc})"
        ) from exc
    except RequestException as exc:
        raise RangeError(f"Prometheus unreachable: {tls.explain(exc)}") from exc
    return parse_matrix(result, window.query)


async def run(
    req: verdict.VerifyRequest,
    *,
    prometheus_url: str,
    now_s: float | None = None,
    timeout_s: float = 30.0,
    max_concurrent: int = 4,
    outgoing_tls: tls.OutgoingTLS | None = None,
) -> dict[str, Any]:
    """Fetch every window, judge every query, return the report document. An https://
    Prometheus is checked against ``outgoing_tls`` (default: the system's CAs). Raises
    UpstreamError when Prometheus answers with a body its API never gives."""
    now = time.time() if now_s is None else now_s
    client = PrometheusConnect(
        url=prometheus_url,
        session=tls.build_requests_session(outgoing_tls or tls.OutgoingTLS(), error=ConfigError),
    )
    gate = asyncio.Semaphore(max_concurrent)

    async def one(
        q: verdict.VerifyQuery, base: verdict.Window, seen: verdict.Window
    ) -> verdict.Judgement:
        try:
            async with gate:
                b_ts, b = await asyncio.to_thread(fetch, client, base, timeout_s=timeout_s)
                o_ts, o = await asyncio.to_thread(fetch, client, seen, timeout_s=timeout_s)
        except RangeError as exc:
            return verdict.unjudged(q, base=base, seen=seen, reason=str(exc))
        return verdict.judge(
            q,
            req.thresholds,
            base=base,
            seen=seen,
            baseline_ts=b_ts,
            baseline=b,
            observed_ts=o_ts,
            observed=o,
        )

    # every fetch finishes (threads cannot be cancelled) before a bad body is reported
    done = await asyncio.gather(
        *(one(*planned) for planned in verdict.plan(req, now_s=now)), return_exceptions=True
    )
    judgements = []
    for item in done:
        if isinstance(item, BaseException):
            raise item
        judgements.append(item)
    return verdict.report(req, judgements, now_s=now)
