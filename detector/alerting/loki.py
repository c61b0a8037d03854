"""Recent error log lines of a pod from Loki, for alert context; nothing else.

Owns the LogQL query built from a series' labels, one ``GET /loki/api/v1/query_range`` per call
(on the injected session, bounded by ``request_timeout_s``) and the parse of Loki's JSON into
:class:`LogLine`; no other module sees that JSON. It never retries: every failure is an
:class:`~detector.errors.EnrichmentError` and the alert goes out without the lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import aiohttp

from detector.errors import EnrichmentError
from servicekit import tls

log = logging.getLogger(__name__)

# Labels a log shipper (promtail, Alloy, the Loki operator) keeps from Kubernetes discovery,
# in selector order; namespace and pod are required so one query reads one pod's streams.
_SELECTOR_LABELS = ("namespace", "pod", "container")
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line: when, what, and the labels of the Loki stream it came from."""

    ts_ms: int
    line: str
    stream: Mapping[str, str]  # read-only view (MappingProxyType) of the stream labels

    def __hash__(self) -> int:  # the generated one would fail on the mapping
        return hash((self.ts_ms, self.line, tuple(sorted(self.stream.items()))))


class LogFetcher:
    """Asks Loki for the newest lines matching ``line_filter`` in a pod's streams."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        limit: int = 5,
        line_filter: str = "(?i)(error|exception|fatal|panic|traceback)",
        max_line_chars: int = 500,
        request_timeout_s: float = 2.0,
        tenant: str | None = None,
    ) -> None:
        if limit < 1 or max_line_chars < 1 or request_timeout_s <= 0:
            raise ValueError(
                f"LogFetcher: limit={limit}, max_line_chars={max_line_chars}, "
                f"request_timeout_s={request_timeout_s}; use positive values"
            )
        self._session = session
        self._endpoint = url.rstrip("/") + "/loki/api/v1/query_range"
        self._limit = limit
        self._line_filter = line_filter
        self._max_chars = max_line_chars
        self._timeout_s = request_timeout_s
        self._headers = {"X-Scope-OrgID": tenant} if tenant else {}

    async def error_lines(
        self, labels: Mapping[str, str], *, start_ms: int, end_ms: int
    ) -> list[LogLine]:
        """Up to ``limit`` matching lines between the two instants, newest first.

        Returns ``[]`` without asking Loki when the labels lack a namespace or a pod.
        """
        query = build_query(labels, line_filter=self._line_filter)
        if query is None:
            return []
        where = f"loki {self._endpoint} {query}"
        if end_ms < start_ms:
            raise EnrichmentError(
                f"{where}: end_ms {end_ms} is before start_ms {start_ms}; pass the window in order"
            )
        params = {
            "query": query,
            "start": str(start_ms * _NS_PER_MS),
            "end": str(end_ms * _NS_PER_MS),
            "limit": str(self._limit),
            "direction": "backward",
        }
        log.debug("loki: %s", query)
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._session.get(self._endpoint, params=params, headers=self._headers) as resp,
            ):
                status, body = resp.status, await resp.read()
        except TimeoutError as exc:
            raise EnrichmentError(
                f"{where}: no answer within {self._timeout_s} s; check that "
                "Loki is up or raise request_timeout_s"
            ) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise EnrichmentError(
                f"{where}: request failed ({tls.explain(exc)}); check the Loki URL"
            ) from exc
        if status != 200:
            raise EnrichmentError(
                f"{where}: HTTP {status} {body[:200]!r}; check the query, the "
                "tenant and Loki's limits"
            )
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise EnrichmentError(f"{where}: response is not JSON ({exc})") from exc
        newest = sorted(_parse_streams(doc, where=where), key=lambda e: e[0], reverse=True)
        return [self._truncated(line) for _, line in newest[: self._limit]]

    def _truncated(self, entry: LogLine) -> LogLine:
        if len(entry.line) <= self._max_chars:
            return entry
        return replace(entry, line=entry.line[: self._max_chars - 1] + "…")


def build_query(labels: Mapping[str, str], *, line_filter: str) -> str | None:
    """The LogQL query for a series' pod, or None when namespace or pod is missing.

    >>> print(build_query({"namespace": "shop", "pod": "web-1", "job": "x"}, line_filter="err"))
    {namespace="shop", pod="web-1"} |~ "err"
    """
    if not labels.get("namespace") or not labels.get("pod"):
        return None
    matchers = [f"{name}={_literal(labels[name])}" for name in _SELECTOR_LABELS if labels.get(name)]
    query = "{" + ", ".join(matchers) + "}"
    return f"{query} |~ {_literal(line_filter)}" if line_filter else query


def _literal(value: str) -> str:
    r"""A LogQL string literal: LogQL unquotes with Go's rules, and every escape json.dumps
    writes (\" \\ \n \t \uXXXX) is a valid Go escape."""
    return json.dumps(value, ensure_ascii=False)


def _parse_streams(doc: Any, *, where: str) -> list[tuple[int, LogLine]]:
    """A decoded query_range answer → (timestamp ns, LogLine) pairs, in Loki's order.

    Anything not shaped like Loki's documented ``streams`` result is an EnrichmentError that
    says which part was wrong.
    """
    if not isinstance(doc, dict) or doc.get("status") != "success":
        status = doc.get("status") if isinstance(doc, dict) else type(doc).__name__
        raise EnrichmentError(f"{where}: status is {status!r}, not 'success'")
    data = doc.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind != "streams" or not isinstance(result, list):
        raise EnrichmentError(
            f"{where}: data is not a streams result (resultType {kind!r}); "
            "query_range with a log query must return streams"
        )
    out: list[tuple[int, LogLine]] = []
    for i, entry in enumerate(result):
        at = f"{where}: data.result[{i}]"
        stream = entry.get("stream", {}) if isinstance(entry, dict) else None
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(stream, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in stream.items()
        ):
            raise EnrichmentError(f"{at}: stream is not an object of string labels")
        if not isinstance(values, list):
            raise EnrichmentError(f"{at}: values is not a list")
        labels: Mapping[str, str] = MappingProxyType(dict(stream))
        for j, value in enumerate(values):
            if not (
                isinstance(value, list)
                and len(value) >= 2
                and isinstance(value[0], str)
                and value[0].isascii()
                and value[0].isdigit()
                and isinstance(value[1], str)
            ):
                raise EnrichmentError(
                    f'{at}.values[{j}]: expected ["<ns epoch>", "<line>"], got {value!r:.120}'
                )
            ts_ns = int(value[0])
            out.append((ts_ns, LogLine(ts_ms=ts_ns // _NS_PER_MS, line=value[1], stream=labels)))
    return out
