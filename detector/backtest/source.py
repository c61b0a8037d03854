"""The backtest's reads from Prometheus: the selector check and the range queries.

This module owns the only network I/O of the backtest: ``query_range`` through
prometheus-api-client (the client warm start and verification use, with the same TLS
session), one chunk at a time, and turning each answer into typed ``SeriesBlock`` values.
A body that is not what the API promises is an ``UpstreamError``; a refusal or an
unreachable Prometheus is a ``QueryError`` with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import promql_parser
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from requests import JSONDecodeError, RequestException

from detector.backtest.replay import SeriesBlock
from detector.backtest.span import Chunk
from detector.errors import ConfigError, DetectorError, UpstreamError
from detector.warmstart.prometheus import selector_of
from servicekit import tls

DEFAULT_MATCH = '{__name__=~".+"}'
MAX_SELECTOR_CHARS = 4096
MAX_TIMESTAMP_S = 1e10  # seconds: year 2286


class QueryError(DetectorError):
    """Prometheus refused a range query or could not be reached."""


def check_selector(text: str) -> str:
    """``--match``: a PromQL vector selector (``name{label="v"}``), no offset or ``@``;
    ConfigError otherwise. The text is sent as given."""
    if len(text) > MAX_SELECTOR_CHARS:
        raise ConfigError(f"--match: {len(text)} characters, more than {MAX_SELECTOR_CHARS}")
    try:
        expr = promql_parser.parse(text)
    except ValueError as exc:
        raise ConfigError(f"--match {text!r}: not a PromQL selector: {exc}") from None
    if not isinstance(expr, promql_parser.VectorSelector):
        kind = type(expr).__name__
        raise ConfigError(
            f"--match {text!r}: a {kind}, not a series selector; give "
            'label matchers like http_request_duration_seconds{job="api"} '
            "(the backtest reads raw series, as the detector receives them)"
        )
    if expr.offset is not None or expr.at is not None:
        raise ConfigError(
            f"--match {text!r}: offset and @ move the series in time; use --end instead"
        )
    return text


def exact_selector(labels: tuple[tuple[str, str], ...]) -> str:
    """A selector for exactly these labels' series (and any with more labels: the caller
    keeps only the exact label set); checked by the same parser."""
    text = selector_of(labels)
    check_selector(text)
    return text


class _RawSeries(BaseModel):
    """One series of a matrix: ``{"metric": {...}, "values": [[ts, "v"], ...]}``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    metric: dict[str, str]
    values: list[tuple[float, float]] = []  # "NaN", "+Inf" parse too


_MATRIX = TypeAdapter(list[_RawSeries])


def parse_result(
    result: Any, query: str, *, window_ms: tuple[int, int] | None = None
) -> list[SeriesBlock]:
    """A ``query_range`` ``data.result`` -> one block per series, labels sorted; with
    ``window_ms`` (first, last), samples outside the window asked for are dropped."""
    try:
        matrix = _MATRIX.validate_python(result)
    except ValidationError as exc:
        where = "; ".join(
            f"result.{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False)[:3]
        )
        raise UpstreamError(
            f"Prometheus answered {query!r} with a result that is not a range-query matrix: {where}"
        ) from exc
    blocks = []
    for series in matrix:
        stamps = np.array([t for t, _ in series.values], dtype=np.float64)
        if not np.all(np.abs(stamps) < MAX_TIMESTAMP_S):  # NaN fails this too
            raise UpstreamError(
                f"Prometheus answered {query!r} with a sample timestamp "
                "that is not a time (infinite or beyond year 2286)"
            )
        ts = np.round(stamps * 1000).astype(np.int64)
        values = np.array([v for _, v in series.values], dtype=np.float64)
        keep = (
            np.ones(ts.shape[0], dtype=np.bool_)
            if window_ms is None
            else (ts >= window_ms[0]) & (ts <= window_ms[1])
        )
        ts, values = ts[keep], values[keep]
        order = np.argsort(ts, kind="stable")
        blocks.append(
            SeriesBlock(
                labels=tuple(sorted(series.metric.items())), ts_ms=ts[order], values=values[order]
            )
        )
    return blocks


class RangeReader:
    """Range queries of one selector against one Prometheus (blocking)."""

    def __init__(
        self, url: str, *, timeout_s: float = 60.0, outgoing_tls: tls.OutgoingTLS | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--prometheus {url!r}: expected an http:// or https:// URL")
        self.url = url
        self.timeout_s = timeout_s
        self.client = PrometheusConnect(
            url=url,
            session=tls.build_requests_session(
                outgoing_tls or tls.OutgoingTLS(), error=ConfigError
            ),
        )
        self.queries = 0

    def read(self, query: str, chunk: Chunk, *, step_ms: int) -> list[SeriesBlock]:
        """Every series ``query`` selects on the chunk's grid points."""
        self.queries += 1
        try:
            result = self.client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(chunk.start_ms / 1000, UTC),
                end_time=datetime.fromtimestamp(chunk.end_ms / 1000, UTC),
                step=f"{step_ms // 1000}s",
                timeout=max(1, round(self.timeout_s)),
            )
        except PrometheusApiClientException as exc:
            raise QueryError(f"Prometheus at {self.url} refused {query!r}: {exc}") from exc
        except JSONDecodeError as exc:  # before RequestException, which it also is
            raise UpstreamError(
                f"Prometheus at {self.url} answered {query!r} with a body "
                f"that is not JSON ({exc}); is --prometheus the Prometheus "
                "HTTP API, not a proxy's or a UI's page?"
            ) from exc
        except (KeyError, TypeError, IndexError) as exc:  # the client reads data.result
            raise UpstreamError(
                f"Prometheus at {self.url} answered {query!r} with JSON "
                f"that has no data.result ({type(exc).__name__}: {exc})"
            ) from exc
        except RequestException as exc:
            raise QueryError(f"Prometheus at {self.url} unreachable: {tls.explain(exc)}") from exc
        return parse_result(result, query, window_ms=(chunk.start_ms, chunk.end_ms))
