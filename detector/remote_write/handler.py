"""POST /api/v1/write: HTTP in, status out. Thin: the steps live in ``detector.pipeline.ingest``.

Status codes follow both remote-write specs: 204 written; 400 malformed (the sender drops
the batch); 401 bad token; 413 over a size limit; 415 unknown encoding, type or proto;
503 with Retry-After when the detector queue is full (the sender retries). Nothing a client
sends can make it answer 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from aiohttp import web
from opentelemetry.trace import SpanContext, SpanKind, Tracer
from prometheus_client import Counter

from detector import stages
from detector.errors import DecodeError, TooLargeError, UnsupportedError
from detector.metrics import IngestMetrics
from detector.pipeline.ingest import Ingested, Ingestor
from detector.pipeline.worker import SampleQueue
from detector.remote_write import decode
from detector.remote_write.split import Split
from servicekit import bearer, telemetry

log = logging.getLogger(__name__)

# bodies whose snappy header announces more than this are decoded off the event loop
INLINE_DECODE_BYTES = 1 << 20
# requests waiting for the decode thread before new ones get 503 (a flood of new series
# must not pile up bodies in memory)
MAX_THREAD_BACKLOG = 16


RETRY = {"Retry-After": "1"}


class DecodeThreadBusyError(Exception):
    """Too many requests are waiting for the decode thread."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to a remote-write body: status, reason, extra headers, and the
    (samples, histograms, exemplars) written, for 2.0's -Written headers."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] | None = None
    written: tuple[int, int, int] = (0, 0, 0)


# serve --workers: sends each share of a split request to its owner; one Outcome a share
Forward = Callable[[Split], Awaitable[Sequence[Outcome]]]


class WriteHandler:
    """Holds what the handler needs; built once in ``build_app``."""

    def __init__(
        self,
        *,
        ingestor: Ingestor,
        queue: SampleQueue,
        metrics: IngestMetrics,
        executor: Executor,
        token: str | None,
        max_body_bytes: int,
        on_new_slots: Callable[[list[int]], None] | None = None,
        tracer: Tracer | None = None,
        clock: stages.StageClock = stages.OFF,
    ) -> None:
        self.ingestor = ingestor
        self.stages = clock
        self.tracer = tracer
        self.queue = queue
        self.metrics = metrics
        self.executor = executor
        self.token = token
        self.max_body_bytes = max_body_bytes
        self._thread_backlog = 0
        self.on_new_slots = on_new_slots
        self.forward: Forward | None = None  # serve --workers (detector.fleet)
        # set by the app's event-loop lag monitor: while True, writes are shed with 503
        self.overloaded = False
        # labels() hashes and locks: each child once, not per request
        self._requests: dict[tuple[int, int], Counter] = {}
        self._inline = metrics.ingest_path.labels("inline")

    def authorized(self, request: web.Request) -> bool:
        """The request carries the bearer token (always, when none is configured)."""
        if self.token is None:
            return True
        return bearer.is_authorized(request.headers.get("Authorization"), self.token)

    async def handle_write(self, request: web.Request) -> web.StreamResponse:
        if self.tracer is None:  # traces off: nothing else is paid
            return await self._handle_write(request, None)
        with self.tracer.start_as_current_span(
            "remote_write", context=telemetry.remote_parent(request.headers), kind=SpanKind.SERVER
        ) as span:
            ctx = span.get_span_context()
            response = await self._handle_write(request, ctx if ctx.trace_flags.sampled else None)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def _handle_write(
        self, request: web.Request, trace: SpanContext | None
    ) -> web.StreamResponse:
        """The request; a sampled ``trace`` goes with its samples to the detectors, so
        an alert they raise joins this request's trace."""
        self.stages.lap(stages.RECEIVE)  # aiohttp and the loop since the last lap
        start = time.perf_counter()
        try:
            return await self._answer(request, trace)
        finally:
            self.metrics.request_seconds.observe(time.perf_counter() - start)

    async def _answer(self, request: web.Request, trace: SpanContext | None) -> web.Response:
        version = 0
        try:
            if not self.authorized(request):
                return self._reply(
                    version,
                    401,
                    "missing or wrong bearer token",
                    {"WWW-Authenticate": bearer.CHALLENGE},
                )
            version = decode.parse_content_type(
                request.headers.get("Content-Type"), request.headers.get("Content-Encoding")
            )
            if self.overloaded:  # counted as a 503 in vigil_remote_write_requests_total
                return self._reply(
                    version,
                    503,
                    "overloaded: the detector's event loop is "
                    "running late (limits.max_loop_lag_s); retry later",
                    {"Retry-After": "1"},
                )
            if (request.content_length or 0) > self.max_body_bytes:
                raise TooLargeError(
                    f"body of {request.content_length} bytes is over the "
                    f"limit of {self.max_body_bytes} (limits.max_body_bytes)"
                )
            body = await request.read()
            self.stages.lap(stages.RECEIVE)
        except web.HTTPRequestEntityTooLarge:
            return self._reply(
                version,
                413,
                f"body is over the limit of {self.max_body_bytes} bytes (limits.max_body_bytes)",
            )
        except UnsupportedError as exc:
            return self._reply(version, 415, str(exc))
        except TooLargeError as exc:
            return self._reply(version, 413, str(exc))
        out = await self.accept(body, version, trace=trace)
        return self._reply(version, out.status, out.reason, out.headers, out.written)

    async def accept(
        self,
        body: bytes | bytearray,
        version: int,
        *,
        trace: SpanContext | None = None,
        compressed: bool = True,
        forwarded: bool = False,
    ) -> Outcome:
        """Ingest one request body and queue its samples: the answer, without HTTP.

        ``compressed`` False: raw protobuf. ``forwarded``: another worker's share of a
        request (serve --workers), whose histograms, exemplars and metadata the receiving
        worker has counted. With ``forward`` set, the shares of other workers' series go
        to them, and the answer is 204 only once every one accepted its share.
        """
        try:
            result = await self._ingest(body, version, compressed)
        except TooLargeError as exc:
            return Outcome(413, str(exc))
        except UnsupportedError as exc:
            return Outcome(415, str(exc))
        except DecodeError as exc:
            log.debug("refused remote-write request: %s", exc)
            return Outcome(400, str(exc))
        except DecodeThreadBusyError:
            return Outcome(
                503,
                "too many requests with new series are waiting to be decoded; retry later",
                RETRY,
            )
        self._count(result, forwarded=forwarded)
        self.stages.lap(stages.HISTORY_METRICS)
        if trace is not None and result.batch.n_samples:
            result = dataclasses.replace(
                result, batch=dataclasses.replace(result.batch, trace=trace)
            )
        if not self.queue.offer(result.batch):
            self.metrics.samples_dropped.labels("queue_full").inc(result.batch.n_samples)
            return Outcome(503, "detector queue is full; retry later", RETRY)
        self.stages.lap(stages.ROUTE)
        self.metrics.queue_samples.set(self.queue.depth)
        if self.on_new_slots is not None and result.batch.new_slots:
            self.on_new_slots([spec.slot for spec in result.batch.new_slots])
        written = (result.n_samples - result.n_over_limit, result.n_histograms, result.n_exemplars)
        if result.forward is not None:
            if self.forward is None or forwarded:  # a share is never passed on again
                log.error("a request has other workers' series but nowhere to send them")
                return Outcome(503, "series of another worker arrived at its share", RETRY)
            shares = await self.forward(result.forward)
            written = (written[0] + sum(o.written[0] for o in shares), *written[1:])
            refused = [o for o in shares if o.status >= 300]
            if refused:  # 503 first: the sender retries, and this worker drops the repeats
                worst = min(refused, key=lambda o: (o.status != 503, o.status))
                return dataclasses.replace(worst, written=written)
        if version == 2 and result.n_over_limit:
            # 2.0 forbids a 2xx when something was not written; a 400 with the counts says
            # what was, and the sender does not retry
            return Outcome(
                400,
                f"{result.n_over_limit} samples of series over "
                "the series limit were not written (limits.max_series or a "
                "rule's max_series)",
                written=written,
            )
        return Outcome(204, written=written)

    async def _ingest(self, body: bytes | bytearray, version: int, compressed: bool) -> Ingested:
        """The steady state (small body, known series) runs inline: a few hundred µs of
        nogil kernels. Anything slower runs in the decode thread, so the event loop keeps
        serving other requests and /healthz meanwhile."""
        t0 = time.perf_counter()
        result = None
        size = len(body) if not compressed or len(body) < 10 else decode.snappy_length(body)
        if size <= INLINE_DECODE_BYTES:
            result = self.ingestor.ingest_known(body, version, compressed=compressed)
        if result is None:
            if self._thread_backlog >= MAX_THREAD_BACKLOG:
                raise DecodeThreadBusyError
            self._thread_backlog += 1
            try:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self.executor,
                    functools.partial(self.ingestor.ingest, body, version, compressed=compressed),
                )
            finally:
                self._thread_backlog -= 1
            self.stages.lap(stages.RECEIVE)  # the loop's own work while it waited
            self.metrics.ingest_path.labels("thread").inc()
        else:
            self._inline.inc()
        self.metrics.decode_seconds.observe(time.perf_counter() - t0)
        return result

    def _count(self, result: Ingested, *, forwarded: bool = False) -> None:
        m = self.metrics
        m.samples_received.inc(result.n_samples)
        if result.n_untracked:
            m.samples_dropped.labels("untracked").inc(result.n_untracked)
        if result.n_over_limit:
            m.samples_dropped.labels("series_limit").inc(result.n_over_limit)
        if forwarded:  # the receiving worker counted the rest
            pass
        elif result.n_histograms:
            m.histograms_received.inc(result.n_histograms)
        if result.n_exemplars and not forwarded:
            m.exemplars_received.inc(result.n_exemplars)
        if result.n_metadata and not forwarded:
            m.metadata_received.inc(result.n_metadata)
        if result.new_tracked:
            m.series_new.inc(result.new_tracked)
            m.active_series.set(self.ingestor.registry.n_tracked)
        if result.new_over_limit:
            m.series_dropped.labels("series_limit").inc(result.new_over_limit)

    def _reply(
        self,
        version: int,
        status: int,
        reason: str,
        headers: Mapping[str, str] | None = None,
        written: tuple[int, int, int] = (0, 0, 0),
    ) -> web.Response:
        """A response; 2.0 always carries the -Written headers, on errors too."""
        child = self._requests.get((version, status))
        if child is None:
            child = self._requests[version, status] = self.metrics.requests.labels(
                str(version), str(status)
            )
        child.inc()
        self.stages.lap(stages.HISTORY_METRICS)
        headers = dict(headers or {})
        if version == 2:
            headers["X-Prometheus-Remote-Write-Samples-Written"] = str(written[0])
            headers["X-Prometheus-Remote-Write-Histograms-Written"] = str(written[1])
            headers["X-Prometheus-Remote-Write-Exemplars-Written"] = str(written[2])
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(status=status, text=reason + "\n", headers=headers)
