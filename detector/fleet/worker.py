"""What one worker of ``serve --workers N`` adds to the single-process app, and how it runs.

``install`` wires a built app into the fleet: its registry tracks only the worker's hash
share of the series, its ingestor cuts the other workers' series out of each request, and
its write handler sends those shares to their owners over Unix sockets (``peer``) and
answers 204 only when every owner accepted. It also answers /metrics, the readiness
probe and the JSON lists for the whole service, from whichever worker a client reaches,
by asking the peers over a second Unix socket where every worker serves its own app
(``merge``). ``serve`` runs the app like ``web.run_app``, but binds the public address
with SO_REUSEPORT, so every worker listens on it and the kernel spreads connections.

POST /-/reload is passed on to every worker too (as SIGHUP is, by the supervisor): 200
when all reloaded, else the first refusal. The console's data (recent anomalies and each
one's chart) comes from every worker too. Per worker, not fanned out: /runbooks, POST
/api/v1/verify (the same answer from any worker), /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from detector.fleet import merge, peer
from detector.fleet.partition import Partition
from detector.remote_write.decode import DecodedRequest
from detector.remote_write.handler import Outcome
from detector.remote_write.split import Split, split_request
from detector.runtime import RUNTIME
from detector.series.registry import FOREIGN
from servicekit import bearer, probes

log = logging.getLogger(__name__)

LIST_PATHS = ("/api/v1/series", "/api/v1/entities", "/api/v1/anomalies")
RELOAD_PATH = "/-/reload"
RECENT_PATH = "/api/v1/anomalies/recent"
FAN_OUT_PATHS = frozenset(("/metrics", *probes.READY_PATHS, *LIST_PATHS, RECENT_PATH))
HISTORY_PREFIX, HISTORY_SUFFIX = "/api/v1/anomalies/", "/history"
PEER_READ_TIMEOUT_S = 10.0
DEFAULT_LIST_LIMIT = 1000  # detector.web.api's default


def share_socket(fleet_dir: Path, index: int) -> Path:
    """Where worker ``index`` takes shares of requests."""
    return fleet_dir / f"worker-{index}.shares.sock"


def http_socket(fleet_dir: Path, index: int) -> Path:
    """Where worker ``index`` serves its own app to its peers (reads, never fanned out)."""
    return fleet_dir / f"worker-{index}.http.sock"


@dataclass(frozen=True, slots=True)
class FleetMetrics:
    shares: Counter
    share_bytes: Counter
    restarts: Counter


def build_fleet_metrics(registry: CollectorRegistry, partition: Partition) -> FleetMetrics:
    info = Gauge(
        "vigil_fleet_workers", "Workers of this service (serve --workers).", registry=registry
    )
    info.set(partition.workers)
    return FleetMetrics(
        shares=Counter(
            "vigil_fleet_shares_sent",
            "Shares of requests sent to the worker that owns their series, by answer "
            "(accepted, refused: a 4xx, retry: a 503 or the owner unreachable).",
            ["result"],
            registry=registry,
        ),
        share_bytes=Counter(
            "vigil_fleet_share_bytes_sent",
            "Bytes of raw protobuf sent to other workers.",
            registry=registry,
        ),
        restarts=Counter(
            "vigil_fleet_worker_restarts",
            "Times the supervisor restarted this worker after it died.",
            registry=registry,
        ),
    )


def splitter(workers: int) -> Callable[[DecodedRequest, NDArray[np.int32]], Split]:
    """The ingestor's split: registry values FOREIGN - w become owner w, the rest stay."""

    def split(req: DecodedRequest, values: NDArray[np.int32]) -> Split:
        owners = np.where(values <= FOREIGN, FOREIGN - values, -1).astype(np.int32)
        return split_request(req, owners, workers)

    return split


def _via_unix(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or not isinstance(transport.get_extra_info("sockname"), tuple)


class Fleet:
    """The links of one worker to its peers."""

    def __init__(
        self, *, partition: Partition, fleet_dir: Path, registry: CollectorRegistry
    ) -> None:
        self.partition = partition
        self.fleet_dir = fleet_dir
        self.registry = registry
        self.clients = {
            w: peer.ShareClient(share_socket(fleet_dir, w))
            for w in range(partition.workers)
            if w != partition.index
        }
        self.sessions: dict[int, aiohttp.ClientSession] = {}
        self.metrics = build_fleet_metrics(registry, partition)
        # children looked up once: labels() hashes and locks
        self._shares = [self.metrics.shares.labels(r) for r in ("accepted", "refused", "retry")]
        self._share_bytes = self.metrics.share_bytes

    @property
    def peers(self) -> list[int]:
        return sorted(self.clients)

    async def forward(self, split: Split) -> Sequence[Outcome]:
        """Send every share to its owner at once; one Outcome per share."""
        parts = split.parts
        if len(parts) == 1:  # two workers: always one share
            outcomes: Sequence[Outcome] = [
                await self.clients[parts[0].owner].send(split.version, parts[0].body)
            ]
        else:
            outcomes = await asyncio.gather(
                *(self.clients[p.owner].send(split.version, p.body) for p in parts)
            )
        self._share_bytes.inc(sum(len(p.body) for p in parts))
        for o in outcomes:
            self._shares[0 if o.status < 300 else 2 if o.status == 503 else 1].inc()
        return outcomes

    async def read(
        self, worker: int, path_qs: str, *, method: str = "GET", headers: Mapping[str, str] = {}
    ) -> tuple[int, bytes] | None:
        """``path_qs`` of one peer's own app; None if it does not answer."""
        session = self.sessions.get(worker)
        if session is None:
            return None
        try:
            async with session.request(
                method, f"http://worker-{worker}{path_qs}", headers=headers
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def history(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """A chart of the merged recent list: from the worker its id names."""
        text = request.path[len(HISTORY_PREFIX) : -len(HISTORY_SUFFIX)]
        target = merge.history_target(text, self.partition.workers)
        if target is None:
            return await handler(request)  # its own 404 for an id that is not a number
        worker, slot = target
        if worker == self.partition.index:
            answer = await self.read_self(f"{HISTORY_PREFIX}{slot}{HISTORY_SUFFIX}")
        else:
            answer = await self.read(worker, f"{HISTORY_PREFIX}{slot}{HISTORY_SUFFIX}")
        if answer is None:
            return web.json_response(
                {"status": "error", "error": f"worker {worker} is not answering; retry"},
                status=503,
            )
        return web.Response(status=answer[0], body=answer[1], content_type="application/json")

    async def read_self(self, path_qs: str) -> tuple[int, bytes] | None:
        """``path_qs`` of this worker's own app, through its peer socket (no fan-out)."""
        return await self.read(self.partition.index, path_qs)

    async def reload_all(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """POST /-/reload on this worker and then on every peer (same token)."""
        local = await handler(request)
        if local.status != 200:  # a bad token or a refused file: the same everywhere
            return local
        # the token this worker just accepted, passed on as a clean header (parsed by
        # servicekit.bearer like every incoming one)
        token = bearer.parse_credential(request.headers.get("Authorization"))
        auth = {} if token is None else {"Authorization": f"Bearer {token}"}
        answers = await asyncio.gather(
            *(self.read(w, RELOAD_PATH, method="POST", headers=auth) for w in self.peers)
        )
        for worker, answer in zip(self.peers, answers, strict=True):
            if answer is None:
                return web.json_response(
                    {
                        "ok": False,
                        "problems": [
                            f"worker {worker} did not answer the reload (restarting?); "
                            "it reads the config when it starts"
                        ],
                    },
                    status=503,
                )
            if answer[0] != 200:
                return web.Response(
                    status=answer[0], body=answer[1], content_type="application/json"
                )
        return local

    async def read_all(self, path_qs: str) -> dict[int, tuple[int, bytes] | None]:
        answers = await asyncio.gather(*(self.read(w, path_qs) for w in self.peers))
        return dict(zip(self.peers, answers, strict=True))

    async def answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """The whole service's answer to a fanned-out GET."""
        me = self.partition.index
        path = request.path
        peers = await self.read_all(request.path_qs)
        if path == "/metrics":
            texts: dict[int, str | None] = {
                w: (a[1].decode("utf-8", "replace") if a is not None and a[0] == 200 else None)
                for w, a in peers.items()
            }
            texts[me] = generate_latest(self.registry).decode("utf-8")
            return web.Response(
                body=merge.merge_metrics(texts).encode("utf-8"),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )
        local = await handler(request)
        body = local.body if isinstance(local, web.Response) else b""
        mine = (local.status, bytes(body) if isinstance(body, bytes | bytearray) else b"")
        if path in probes.READY_PATHS:
            status, text = merge.merge_ready(
                {
                    me: (mine[0], mine[1].decode("utf-8", "replace")),
                    **{
                        w: None if a is None else (a[0], a[1].decode("utf-8", "replace"))
                        for w, a in peers.items()
                    },
                }
            )
            return web.Response(status=status, text=text)
        if path == RECENT_PATH:
            status, doc = merge.merge_recent(
                {me: mine, **peers}, workers=self.partition.workers, me=me
            )
            return web.json_response(doc, status=status)
        limit = merge.parse_limit(request.query, DEFAULT_LIST_LIMIT)
        status, doc = merge.merge_list(path, {me: mine, **peers}, limit=limit)
        return web.json_response(doc, status=status)


def install(
    app: web.Application,
    *,
    partition: Partition,
    fleet_dir: Path,
    registry: CollectorRegistry,
    restarts: int = 0,
) -> Fleet:
    """Make the built app worker ``partition.index`` of ``partition.workers``. Call before
    the app starts; ``registry`` is the one the app's metrics are in."""
    rt = app[RUNTIME]
    fleet = Fleet(partition=partition, fleet_dir=fleet_dir, registry=registry)
    fleet.metrics.restarts.inc(restarts)
    rt.registry.partition(partition.foreign_owner, partition.workers)
    rt.ingestor.split = splitter(partition.workers)
    rt.writer.forward = fleet.forward

    @web.middleware
    async def fan_out(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if _via_unix(request):
            return await handler(request)
        if request.method == "POST" and request.path == RELOAD_PATH:
            return await fleet.reload_all(request, handler)
        path = request.path
        if request.method == "GET" and path.startswith(HISTORY_PREFIX):
            if path.endswith(HISTORY_SUFFIX):
                return await fleet.history(request, handler)
        if request.method != "GET" or path not in FAN_OUT_PATHS:
            return await handler(request)
        return await fleet.answer(request, handler)

    app.middlewares.append(fan_out)

    async def links_ctx(app: web.Application) -> AsyncIterator[None]:
        """After the state is restored and the detector runs: take shares, reach peers."""
        path = share_socket(fleet_dir, partition.index)
        await asyncio.to_thread(path.unlink, missing_ok=True)  # left by a worker that died
        limits = rt.cfg.limits

        async def accept(body: bytearray, version: int) -> Outcome:
            return await rt.writer.accept(body, version, compressed=False, forwarded=True)

        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: peer.ShareServer(accept, max_payload=limits.max_decompressed_bytes),
            str(path),
        )
        timeout = aiohttp.ClientTimeout(total=PEER_READ_TIMEOUT_S)
        for w in range(partition.workers):  # itself too: a chart it holds (Fleet.history)
            fleet.sessions[w] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(http_socket(fleet_dir, w))),
                timeout=timeout,
            )
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()
            for client in fleet.clients.values():
                client.close()
            for session in fleet.sessions.values():
                await session.close()
            await asyncio.to_thread(path.unlink, missing_ok=True)

    app.cleanup_ctx.append(links_ctx)
    return fleet


def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    http_path: Path,
    ssl_context: ssl.SSLContext | None,
    loop: asyncio.AbstractEventLoop,
    on_listening: Callable[[], None],
    lifeline: int | None = None,
) -> None:
    """Run ``app`` until SIGTERM or SIGINT, or until the pipe ``lifeline`` (from the
    supervisor) closes: on ``host:port`` with SO_REUSEPORT (every worker binds it) and on
    the Unix socket ``http_path`` for the peers."""

    async def main() -> None:
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=False, auto_decompress=False
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=True).start()
            await web.UnixSite(runner, str(http_path)).start()
            on_listening()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if lifeline is not None:
                # the supervisor holds the pipe's other end: end of file means it is gone
                # (even killed with SIGKILL), and nothing would restart or stop us any more
                def orphaned() -> None:
                    log.error("the supervisor is gone; this worker stops")
                    loop.remove_reader(lifeline)
                    stop.set()

                loop.add_reader(lifeline, orphaned)
            await stop.wait()
        finally:
            await runner.cleanup()

    http_path.unlink(missing_ok=True)  # left by a worker that died
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        with contextlib.suppress(OSError):
            http_path.unlink(missing_ok=True)
