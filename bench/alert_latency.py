"""Alert latency: from the arrival of the decisive sample to Alertmanager receiving the
alert (the rule's ``for`` excluded), idle and under the ingest benchmark's load.

A real Alertmanager 0.25 (gossip off, a receiver with no integrations) sits behind a
recording proxy in this process: on every POST /api/v2/alerts the proxy takes
``time.perf_counter()`` on arrival, notes which probe series each alert is for, and
forwards the body to Alertmanager. Vigil (``vigil-detector serve``, pinned to CPU 0)
sends its alerts to the proxy. Its alert rules cover only the probe series
(``latency_probe``, ``for_samples: 1``), so the decisive sample is the first anomalous one.

Each probe series (labels: name, phase, probe; none that relates alerts, such as job or
namespace) first gets 300 samples of noise, untimed; alerts that noise raises right after
the detector's warm-up are let fire and resolve before the first probe. Then, one probe at
a time, ONE remote-write request carries its decisive sample (10 sigmas up, timestamped
1 s after its history, so in the same seasonal bin; see history_end()): t0 is taken just
before the request is sent on a kept-alive connection, t1 when the proxy receives the
first POST after t0 holding that probe's alert as firing; the latency is t1 - t0. The
next probe goes after the alert (or after a timeout, counted as a miss) and a random
pause of 10-50 ms. A few untimed probes open each phase. The same is measured twice:
idle (no other traffic), then while a separate process pinned to CPU 1 sends the ingest
benchmark's bodies (bench/ingest.py: 10k series x 10 labels, 2,000 series per request,
timestamps rewritten each round) as a steady stream at a fixed rate, after the detectors'
warm-up rounds; it frames them as bench/loadgen.py does (raw keep-alive sockets, one
selector: ~0.6 ms of CPU a request, 0.37 of it the re-compression, 15% of a core at
500k samples/s, where the aiohttp client it replaced took ~0.85 ms, 21%). This process,
the proxy and Alertmanager run on CPU 1 too, so only Vigil is on CPU 0. A paced stream
of 2,000-sample requests costs Vigil more per sample than bench/ingest.py's flood (which
lets the worker take many requests per pass): on the 2-core machine it saturates near
800k samples/s, so the default 500k/s is ~60% of that.

``--workers N`` (N > 1) measures ``vigil-detector serve --workers N`` instead, placed as
``bench/ingest.py --workers`` places it: Vigil on every core (worker i pinned to CPU i by
the service), and this process, the proxy, Alertmanager and the load generator on every
core beside it. Each probe series gets a ``namespace`` and ``pod`` of its own (so no two
probes' alerts relate), chosen so probe i is owned by worker i mod N (the fleet's hashmod
of ``namespace;pod``, detector/fleet/partition.py), and its decisive request goes over a
connection the kernel gave to worker (i div N) mod N: a kept-alive connection per worker,
each found out by looking up which worker's process holds the accepted socket
(/proc/net/tcp, /proc/<pid>/fd). So every owner receives its probes both directly
("local") and forwarded by the other worker over the share socket ("forwarded", one more
hop), and the figures say so: overall, per owner, per route and per (receiver, owner).
The alert is timed when it reaches the proxy, whichever worker sends it (each posts its
own). The probe labels are the same with one worker (every probe owned and received by 0).

Prints a summary (and Vigil's own histograms per phase: delivery, detector batch,
event-loop lag) and, as its last line, one JSON object with every figure.
Usage: python bench/alert_latency.py [--quick] [--probes 1000] [--series 10000]
       [--load-rate 500000] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import random
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

import cramjam
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen  # noqa: E402
from bench.ingest import (  # noqa: E402
    CONNECTIONS,
    HEADERS,
    WARMUP_ROUNDS,
    _cpu_s,
    _tree,
    build_bodies,
)
from detector.config import EnsembleParams  # noqa: E402
from detector.fleet.partition import hashmod, shard_key  # noqa: E402
from detector.remote_write import encode  # noqa: E402
from tests.integration.procs import (  # noqa: E402
    free_port,
    process,
    vigil_detector_argv,
    wait_until,
)
from tests.integration.stack import alertmanager, write  # noqa: E402

TARGET_P99_MS = 50.0
PROBE_METRIC = "latency_probe"
HISTORY_SAMPLES = 300  # noise each probe series learns before its decisive sample
HISTORY_SERIES_PER_REQUEST = 50
WARM_PROBES = 5  # untimed probes before each phase (first connections, first alert)
MAX_MISSES_IN_A_ROW = 10
TEMPLATE_ROUNDS = 11  # the ingest bodies' values repeat every 11 rounds
SETTLE_S = 2.0  # paced load before the first loaded probe

VIGIL_CONFIG = f"""
limits:
  max_series: 2000000
alerting:
  resend_s: 3600  # no re-sends mixed into the measurement
  stale_min_s: 3600  # probe series go silent after firing; they must not resolve
alerts:
  - name: VigilLatencyProbe
    match: '{{__name__="{PROBE_METRIC}"}}'
    for_samples: 1
    resolve_samples: 1
    for_s: 0      # the decisive sample is the first anomalous one (no duration to wait)
    resolve_s: 0
"""

AM_CONFIG = """
route:
  receiver: blackhole
  group_by: [alertname]
receivers:
  - name: blackhole
"""


# ------------------------------------------------------------ load generator process


class _Bodies:
    """bench/ingest.py's bodies, kept uncompressed; each round rewrites the timestamps
    (strictly increasing, near now) and compresses again."""

    def __init__(self, n_series: int) -> None:
        base = int(time.time() * 1000)
        self.raw: list[list[np.ndarray]] = []
        self.where: list[list[np.ndarray]] = []
        self.samples: list[int] = []
        self.ts_bytes = len(encode.varint(base))
        for chunk in build_bodies(n_series, TEMPLATE_ROUNDS, base):
            raws, wheres = [], []
            for r, body in enumerate(chunk):
                raw = bytes(cramjam.snappy.decompress_raw(body))
                ts = encode.varint(base + r * 1000)
                assert len(ts) == self.ts_bytes
                needle = b"\x10" + ts  # field 2 (timestamp) of the Sample message
                found, at = [], raw.find(needle)
                while at >= 0:
                    found.append(at + 1)
                    at = raw.find(needle, at + len(needle))
                raws.append(np.frombuffer(raw, dtype=np.uint8).copy())
                wheres.append((np.array(found)[:, None] + np.arange(self.ts_bytes)).ravel())
            n = wheres[0].shape[0] // self.ts_bytes
            if any(w.shape[0] != n * self.ts_bytes for w in wheres):
                raise RuntimeError("could not locate every timestamp in the ingest bodies")
            self.raw.append(raws)
            self.where.append(wheres)
            self.samples.append(n)
        if sum(self.samples) != n_series:
            raise RuntimeError(f"found {sum(self.samples)} timestamps for {n_series} series")

    def body(self, chunk: int, round_: int, ts_ms: int) -> bytes:
        raw = self.raw[chunk][round_ % TEMPLATE_ROUNDS]
        where = self.where[chunk][round_ % TEMPLATE_ROUNDS]
        ts = np.frombuffer(encode.varint(ts_ms), dtype=np.uint8)
        if ts.shape[0] != self.ts_bytes:
            raise RuntimeError("timestamp varint changed length")
        raw[where] = np.tile(ts, where.shape[0] // self.ts_bytes)
        # an ndarray is a buffer; numpy's stubs do not declare __buffer__
        return bytes(cramjam.snappy.compress_raw(raw))  # type: ignore[arg-type]


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class _Stream:
    """One keep-alive connection of the loader and the chunks it sends, in turn."""

    chunks: list[int]
    sock: socket.socket | None = None
    reader: loadgen.ResponseReader = field(default_factory=loadgen.ResponseReader)
    view: memoryview | None = None  # what is left to send of the request in flight
    request: bytes = b""  # the request in flight (sent again after a 429/503)
    in_flight: bool = False
    retry_at: float | None = None
    k: int = 0  # the chunk in turn: chunks[k % len(chunks)], round k // len(chunks)
    shift: float = 0.0  # the schedule's delay after falling a round behind


class _PacedLoader:
    """bench/loadgen.py's cheap client (pre-framed HTTP/1.1 over raw keep-alive sockets,
    one thread, one selector, only the status line and framing read), paced: one request
    in flight per connection; each connection's chunks are due evenly over a round; a
    connection a whole round behind drops the debt rather than burst. A 429/503 is sent
    again after 50 ms (the receiver's backpressure). Each request's timestamps are
    rewritten to about now (strictly increasing per chunk) and the body compressed again."""

    def __init__(self, url: str, n_series: int, rate: float) -> None:
        self.target = loadgen.Target.parse(url)
        self.bodies = _Bodies(n_series)
        self.n_chunks = len(self.bodies.samples)
        self.interval = n_series / rate  # one round: every series once
        n_conns = min(CONNECTIONS, self.n_chunks)
        self.streams = [_Stream(list(range(k, self.n_chunks, n_conns))) for k in range(n_conns)]
        self.last_ts = [0] * self.n_chunks
        self.stop = False
        self.stats = {"samples": 0, "requests": 0, "retries": 0, "late_s": 0.0}
        self.codes: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self.warm_rounds = 1 + WARMUP_ROUNDS

    def connect(self, st: _Stream) -> None:
        st.sock = socket.create_connection((self.target.host, self.target.port))
        st.sock.setblocking(False)
        st.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, loadgen.SEND_BUFFER_BYTES)
        st.reader = loadgen.ResponseReader()
        self.sel.register(st.sock, selectors.EVENT_READ, st)

    def close(self, st: _Stream) -> None:
        if st.sock is not None:
            self.sel.unregister(st.sock)
            st.sock.close()
            st.sock = None

    def push(self, st: _Stream) -> None:
        assert st.sock is not None and st.view is not None
        with contextlib.suppress(BlockingIOError):
            sent = st.sock.send(st.view)
            st.view = st.view[sent:] if sent < len(st.view) else None
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if st.view is not None else 0)
        self.sel.modify(st.sock, events, st)

    def send(self, st: _Stream, request: bytes) -> None:
        if st.sock is None:
            self.connect(st)
        st.request, st.view, st.in_flight = request, memoryview(request), True
        self.push(st)

    def send_next(self, st: _Stream) -> None:
        chunk = st.chunks[st.k % len(st.chunks)]
        self.last_ts[chunk] = ts = max(self.last_ts[chunk] + 1, int(time.time() * 1000))
        body = self.bodies.body(chunk, st.k // len(st.chunks), ts)
        self.send(st, loadgen.build_request(self.target, body))

    def answered(self, st: _Stream, resp: loadgen.Response) -> None:
        self.codes[str(resp.status)] = self.codes.get(str(resp.status), 0) + 1
        st.in_flight = False
        if resp.close:
            self.close(st)
        if resp.status in loadgen.RETRY_STATUSES:
            self.stats["retries"] += 1
            st.retry_at = time.perf_counter() + loadgen.RETRY_AFTER_S
            return
        self.stats["samples"] += self.bodies.samples[st.chunks[st.k % len(st.chunks)]]
        self.stats["requests"] += 1
        st.k += 1

    def readable(self, st: _Stream) -> None:
        assert st.sock is not None
        try:
            data = st.sock.recv(loadgen.RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            for resp in st.reader.feed(data):
                self.answered(st, resp)
            return
        last = st.reader.eof()
        self.close(st)
        if last is None:
            raise loadgen.LoadError("the receiver closed the connection before answering")
        self.answered(st, last)

    def step(self, st: _Stream, paced: bool, t_start: float, now: float) -> float | None:
        """Send what ``st`` has due; the time it next has something due, if it waits."""
        if st.in_flight:
            return None
        if st.retry_at is not None:
            if now < st.retry_at:
                return st.retry_at
            st.retry_at = None
            self.send(st, st.request)
            return None
        if not paced:
            if st.k < self.warm_rounds * len(st.chunks):
                self.send_next(st)
            return None
        if self.stop:
            return None
        r, i = divmod(st.k, len(st.chunks))
        due = (
            t_start
            + st.shift
            + (r - self.warm_rounds + st.chunks[i] / self.n_chunks) * (self.interval)
        )
        if due > now:
            return due
        if due < now - self.interval:  # behind by a round: drop the debt, never burst
            st.shift += now - due
            self.stats["late_s"] += now - due
        self.send_next(st)
        return None

    def done(self, paced: bool) -> bool:
        if paced:
            return self.stop and not any(st.in_flight for st in self.streams)
        return all(
            not st.in_flight and st.retry_at is None and st.k >= self.warm_rounds * len(st.chunks)
            for st in self.streams
        )

    def run(self, paced: bool, t_start: float) -> None:
        """Unpaced: until every stream sent its chunks for the warm-up rounds. Paced (from
        ``t_start``, round ``warm_rounds`` on): until SIGTERM and the requests in flight
        are answered."""
        while True:
            now = time.perf_counter()
            waits = [self.step(st, paced, t_start, now) for st in self.streams]
            if self.done(paced):
                return
            # bounded, so a SIGTERM (its handler only sets the flag) is seen soon
            timeout = min([0.02, *(w - time.perf_counter() for w in waits if w is not None)])
            for key, events in self.sel.select(max(0.0, timeout)):
                st = key.data
                if events & selectors.EVENT_WRITE and st.view is not None:
                    self.push(st)
                if events & selectors.EVENT_READ and st.sock is not None:
                    self.readable(st)


def _paced_load(url: str, n_series: int, rate: float) -> None:
    """Warm-up rounds as fast as accepted (prints one JSON line), then ``rate`` samples/s
    until SIGTERM (prints one JSON line of what was sent); see ``_PacedLoader``."""
    lg = _PacedLoader(url, n_series, rate)

    def on_term(*_: object) -> None:
        lg.stop = True

    signal.signal(signal.SIGTERM, on_term)
    for st in lg.streams:
        lg.connect(st)
    t0 = time.perf_counter()
    lg.run(False, t0)
    print(
        json.dumps(
            {
                "warm": {
                    "rounds": lg.warm_rounds,
                    "samples": lg.stats["samples"],
                    "wall_s": time.perf_counter() - t0,
                    "codes": dict(lg.codes),
                }
            }
        ),
        flush=True,
    )
    lg.stats.update(samples=0, requests=0, retries=0)
    lg.codes.clear()
    cpu0, t0 = _cpu_self(), time.perf_counter()
    lg.run(True, t0)
    wall = time.perf_counter() - t0
    for st in lg.streams:
        lg.close(st)
    lg.sel.close()
    print(
        json.dumps(
            {
                "load": {
                    **lg.stats,
                    "wall_s": wall,
                    "samples_per_s": lg.stats["samples"] / wall,
                    "target_samples_per_s": rate,
                    "codes": lg.codes,
                    "loader_cpu_fraction": (_cpu_self() - cpu0) / wall,
                }
            }
        ),
        flush=True,
    )


# ------------------------------------------------------------------ recording proxy


class RecordingProxy:
    """Alertmanager's POST /api/v2/alerts, recorded on arrival, then forwarded.

    Runs its own event loop in a thread, so the arrival time never waits for the bench."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/api/v2/alerts"
        # (phase, probe) -> arrival times of POSTs holding that probe's alert as firing
        self.firing: dict[tuple[str, str], list[float]] = {}
        self.resolved = 0  # probe alerts received as resolved
        self.posts = 0
        self.alerts = 0
        self.statuses: dict[str, int] = {}
        self.cond = threading.Condition()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="am-proxy", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None or not self.url:
            raise RuntimeError(f"proxy did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        from aiohttp import ClientSession, web

        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            arrived = time.perf_counter()
            body = await request.read()
            with self.cond:
                self.posts += 1
                horizon = time.time() + 60  # firing alerts end resend_s x 4 ahead
                for alert in json.loads(body):
                    self.alerts += 1
                    labels = alert.get("labels", {})
                    if labels.get("metric_name") != PROBE_METRIC:
                        continue
                    ends = datetime.fromisoformat(alert["endsAt"]).timestamp()
                    if ends > horizon:
                        key = (labels.get("phase", ""), labels.get("probe", ""))
                        self.firing.setdefault(key, []).append(arrived)
                    else:
                        self.resolved += 1
                self.cond.notify_all()
            async with session.post(
                self.upstream, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                reply = await resp.read()
                status = resp.status
            with self.cond:
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            return web.Response(
                status=status, body=reply, content_type=resp.content_type or "application/json"
            )

        async def start() -> tuple[web.AppRunner, ClientSession]:
            app = web.Application()
            app.router.add_post("/api/v2/alerts", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            return runner, ClientSession()

        try:
            runner, session = self._loop.run_until_complete(start())
        except BaseException as exc:  # report to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.run_until_complete(session.close())
            self._loop.close()

    def wait_for(self, key: tuple[str, str], since: float, timeout_s: float) -> float | None:
        """The arrival time of the first POST at or after ``since`` holding ``key``'s alert
        as firing; None after the timeout."""

        def arrival() -> float | None:
            return next((t for t in self.firing.get(key, ()) if t >= since), None)

        with self.cond:
            self.cond.wait_for(lambda: arrival() is not None, timeout_s)
            return arrival()

    def n_firing_posts(self) -> int:
        with self.cond:
            return sum(len(v) for v in self.firing.values())


# ------------------------------------------------------------------------- probes


def probe_owner(i: int, workers: int) -> int:
    """The worker that owns probe ``i``'s series: the owners take turns."""
    return i % workers


def probe_receiver(i: int, workers: int) -> int:
    """The worker whose connection carries probe ``i``'s decisive request: with the
    owners taking turns, every (receiver, owner) pair comes round once in N x N probes."""
    return (i // workers) % workers


def probe_shard(phase: str, i: int, workers: int) -> tuple[str, str]:
    """``namespace`` and ``pod`` of probe ``i``: its own (no other probe's alert shares a
    related label), and hashing to worker ``probe_owner(i, workers)``."""
    namespace = f"latency-{phase}-{i}"
    want = probe_owner(i, workers)
    for salt in range(64 * workers):
        pod = f"probe-{phase}-{i}-{salt}"
        if hashmod(shard_key({"namespace": namespace, "pod": pod}), workers) == want:
            return namespace, pod
    raise RuntimeError(f"no pod name of probe {phase}/{i} hashes to worker {want}")


def _probe_labels(phase: str, i: int, workers: int) -> tuple[tuple[str, str], ...]:
    namespace, pod = probe_shard(phase, i, workers)
    return tuple(
        sorted(
            [
                ("__name__", PROBE_METRIC),
                ("phase", phase),
                ("probe", str(i)),
                ("namespace", namespace),
                ("pod", pod),
            ]
        )
    )


def send_history(vigil_port: int, probes: list[tuple[str, int]], end_ms: int, workers: int) -> None:
    """HISTORY_SAMPLES of noise (1.0, sigma 0.1, 1 s apart, the last at ``end_ms``)."""
    for k in range(0, len(probes), HISTORY_SERIES_PER_REQUEST):
        series = []
        for phase, i in probes[k : k + HISTORY_SERIES_PER_REQUEST]:
            rng = np.random.default_rng([zlib.crc32(phase.encode()), i])
            values = 1.0 + 0.1 * rng.standard_normal(HISTORY_SAMPLES)
            start = end_ms - (HISTORY_SAMPLES - 1) * 1000
            series.append(
                encode.Series(
                    labels=_probe_labels(phase, i, workers),
                    samples=[(start + j * 1000, float(v)) for j, v in enumerate(values)],
                )
            )
        write(vigil_port, series)


def settle_history(vigil_port: int, proxy: RecordingProxy, expected: int, n_series: int) -> dict:
    """Wait until the history is processed and its alerts are gone. With ``for_samples:
    1`` noise can fire just after the detector's warm-up; those alerts must have fired and
    resolved before the first probe."""

    def settled() -> bool:
        c = scrape(vigil_port)[1]
        return (
            c.get("vigil_samples_accepted_total", 0) >= expected
            and c.get("vigil_alerts_firing", 0) == 0
            and c.get("vigil_alerts_pending", 0) == 0
        )

    with contextlib.suppress(TimeoutError):
        wait_until("history alerts resolved", settled, timeout_s=30, interval_s=0.1)
    c = scrape(vigil_port)[1]
    return {
        "probe_series": n_series,
        "samples": expected,
        "noise_fire_events": c.get("events_fire", 0),
        "noise_alerts_received": proxy.resolved + proxy.n_firing_posts(),
        "still_firing": c.get("vigil_alerts_firing", 0),
    }


@dataclass
class PhaseResult:
    latencies_ms: list[float] = field(default_factory=list)
    acks_ms: list[float] = field(default_factory=list)  # t0 -> HTTP 204 (queued)
    missed: list[int] = field(default_factory=list)
    # per probe answered: (receiver, owner, latency ms); per probe missed: (receiver, owner)
    routed: list[tuple[int, int, float]] = field(default_factory=list)
    missed_routes: list[tuple[int, int]] = field(default_factory=list)
    wall_s: float = 0.0
    aborted: bool = False


@dataclass
class Fleet:
    """The service's worker processes: ``pids[w]`` is worker w (one process: ``[pid]``)."""

    vigil_port: int
    pids: list[int]

    @classmethod
    def find(cls, vigil_port: int, pid: int, workers: int) -> Fleet:
        if workers == 1:
            return cls(vigil_port, [pid])
        found: dict[int, int] = {}
        for p in _tree(pid):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
                if b"--worker-index" in argv:
                    found[int(argv[argv.index(b"--worker-index") + 1])] = p
        if sorted(found) != list(range(workers)):
            raise RuntimeError(
                f"found workers {sorted(found)} under pid {pid}, not 0..{workers - 1}"
            )
        return cls(vigil_port, [found[w] for w in range(workers)])

    def receiver_of(self, conn: http.client.HTTPConnection) -> int:
        """The worker holding the server end of ``conn`` (after one exchange on it, so the
        worker has accepted it): /proc/net/tcp gives the socket's inode, the workers'
        /proc/<pid>/fd who holds it."""
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        inode = ""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            local, remote = parts[1], parts[2]
            if (
                int(local.split(":")[1], 16) == self.vigil_port
                and int(remote.split(":")[1], 16) == client_port
            ):
                inode = parts[9]
                break
        if not inode or inode == "0":
            raise RuntimeError(f"no accepted socket for client port {client_port}")
        target = f"socket:[{inode}]"
        for w, p in enumerate(self.pids):
            for fd in Path(f"/proc/{p}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return w
        raise RuntimeError(f"no worker holds the socket of client port {client_port}")

    def connections(self) -> dict[int, http.client.HTTPConnection]:
        """A kept-alive connection to each worker (the kernel spreads new connections over
        the workers' SO_REUSEPORT listeners: open until each has one)."""
        out: dict[int, http.client.HTTPConnection] = {}
        spare: list[http.client.HTTPConnection] = []
        try:
            for _ in range(64 * len(self.pids)):
                if len(out) == len(self.pids):
                    return out
                conn = http.client.HTTPConnection("127.0.0.1", self.vigil_port, timeout=30)
                conn.request("GET", "/healthz")  # answered by the worker reached
                resp = conn.getresponse()
                resp.read()
                w = self.receiver_of(conn) if len(self.pids) > 1 else 0
                if w in out:
                    spare.append(conn)
                else:
                    out[w] = conn
        finally:
            for conn in spare:
                conn.close()
        for conn in out.values():
            conn.close()
        raise RuntimeError(f"could not reach every worker: got {sorted(out)}")


def run_probes(
    fleet: Fleet,
    proxy: RecordingProxy,
    phase: str,
    n: int,
    timeout_s: float,
    rng: random.Random,
    ts_ms: int,
    first: int = 0,
) -> PhaseResult:
    """The decisive samples (timestamp ``ts_ms``) of probes ``first`` .. ``first + n - 1``
    of ``phase``, one at a time (see the module docstring). Gives up after
    MAX_MISSES_IN_A_ROW misses in a row: something is broken, not slow."""
    workers = len(fleet.pids)
    conns = fleet.connections()
    out = PhaseResult()
    in_a_row = 0
    t_phase = time.perf_counter()
    try:
        for i in range(first, first + n):
            owner, receiver = probe_owner(i, workers), probe_receiver(i, workers)
            conn = conns[receiver]
            body = encode.compress(
                encode.encode_v1(
                    [encode.Series(labels=_probe_labels(phase, i, workers), samples=[(ts_ms, 2.0)])]
                )
            )  # 10 sigmas up
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/write", body=body, headers=HEADERS)
            resp = conn.getresponse()
            resp.read()
            t_ack = time.perf_counter()
            if resp.status != 204:
                raise RuntimeError(f"probe write answered {resp.status}")
            t1 = proxy.wait_for((phase, str(i)), t0, timeout_s)
            if t1 is None:
                out.missed.append(i)
                out.missed_routes.append((receiver, owner))
                in_a_row += 1
                if in_a_row >= MAX_MISSES_IN_A_ROW:
                    out.aborted = True
                    break
            else:
                in_a_row = 0
                out.latencies_ms.append(1000 * (t1 - t0))
                out.acks_ms.append(1000 * (t_ack - t0))
                out.routed.append((receiver, owner, 1000 * (t1 - t0)))
            time.sleep(rng.uniform(0.01, 0.05))  # not in step with the load's rounds
    finally:
        for conn in conns.values():
            conn.close()
    out.wall_s = time.perf_counter() - t_phase
    return out


def history_end(now_ms: int) -> int:
    """The last history timestamp: about now, but with at least 10 history samples in the
    default detector's seasonal bin of the decisive sample (1 s later). In a bin it has
    seen fewer than ``season_min_visits`` times the ensemble has no seasonal signal, and
    within 300 samples of a series' start its level signal alone can miss a 10-sigma
    sample (its calibration still holds the cold-start residuals)."""
    params = EnsembleParams()
    bin_ms = int(params.season_period_s * 1000) // max(1, params.season_bins)
    end = now_ms - 1000
    into_bin = (end + 1000) % bin_ms
    if into_bin < 10_000:
        end -= into_bin + 1000  # the decisive sample is the last second of the bin before
    return end


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {
        "n": int(a.shape[0]),
        "mean": float(a.mean()),
        **{f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)},
        "max": float(a.max()),
    }


# ------------------------------------------------------------------ Vigil's metrics

HISTOGRAMS = {
    "delivery": "vigil_alert_delivery_seconds",  # lifecycle event -> Alertmanager's 2xx
    "alert_post": "vigil_alert_post_seconds",
    "detect_batch": "vigil_detect_batch_seconds",
    "loop_lag": "vigil_event_loop_lag_seconds",
    "write_request": "vigil_remote_write_request_seconds",
}
Histogram = tuple[dict[float, float], float, float]  # cumulative buckets, sum, count


def scrape(vigil_port: int) -> tuple[dict[str, Histogram], dict[str, float]]:
    """Vigil's histograms (summed over label sets) and a few counters."""
    with urllib.request.urlopen(f"http://127.0.0.1:{vigil_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    hists: dict[str, Histogram] = {k: ({}, 0.0, 0.0) for k in HISTOGRAMS}
    counters: dict[str, float] = {}
    by_metric = {v: k for k, v in HISTOGRAMS.items()}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        for suffix in ("_bucket", "_sum", "_count"):
            base = name.removesuffix(suffix)
            if name.endswith(suffix) and base in by_metric:
                key = by_metric[base]
                buckets, total, count = hists[key]
                if suffix == "_bucket":
                    le = float(name_labels.split('le="')[1].split('"')[0])
                    buckets[le] = buckets.get(le, 0.0) + float(value)
                elif suffix == "_sum":
                    total += float(value)
                else:
                    count += float(value)
                hists[key] = (buckets, total, count)
        if name == "vigil_alert_events_total":
            kind = name_labels.split('kind="')[1].split('"')[0]
            counters[f"events_{kind}"] = counters.get(f"events_{kind}", 0.0) + float(value)
        if name in (
            "vigil_samples_accepted_total",
            "vigil_alerts_firing",
            "vigil_ingest_queue_samples",
            "vigil_alerts_sent_total",
            "vigil_alerts_pending",
        ):
            counters[name] = counters.get(name, 0.0) + float(value)
    return hists, counters


def hist_delta(before: Histogram, after: Histogram) -> dict[str, float]:
    """Observations between two scrapes: count, mean (ms), and the bucket bound (ms) at or
    below which 50 / 99 / 100 % of them fell."""
    count = after[2] - before[2]
    if count <= 0:
        return {"count": 0}
    diff = sorted((le, n - before[0].get(le, 0.0)) for le, n in after[0].items())

    def bound(q: float) -> float:
        return 1000 * next((le for le, n in diff if n >= q * count - 1e-9), float("inf"))

    return {
        "count": count,
        "mean_ms": 1000 * (after[1] - before[1]) / count,
        "p50_le_ms": bound(0.5),
        "p99_le_ms": bound(0.99),
        "max_le_ms": bound(1.0),
    }


# ----------------------------------------------------------------------------- main


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("aiohttp", "numpy", "numba", "cramjam"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(
            ["prometheus-alertmanager", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        out["alertmanager"] = text.split("version ", 1)[1].split()[0] if "version " in text else "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "detector"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out["vigil_commit"] = rev + ("+dirty" if dirty else "")
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _loader_lines(log: Path) -> list[dict]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def _core_times() -> dict[str, tuple[float, float, float]]:
    """Per core: (busy, steal, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *rest = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [float(x) for x in rest[:8]]
            # busy: all but idle and iowait; steal: taken by the hypervisor for others
            out[name] = (sum(ticks) - ticks[3] - ticks[4], ticks[7], sum(ticks))
    return out


@contextlib.contextmanager
def _phase_metrics(vigil_port: int, pid: int, into: dict) -> Iterator[None]:
    """Vigil's histograms, samples accepted and CPU over the block, into ``into``."""
    h0, c0 = scrape(vigil_port)
    cores0 = _core_times()
    cpu0, t0 = _cpu_s(pid), time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    cpu1 = _cpu_s(pid)
    cores1 = _core_times()
    # how busy each core was, whoever ran there: on core 0, anything beyond Vigil's share
    # is another process competing with it (the figures are then not a quiet machine's).
    # /proc/stat is tick-sampled: rough for a phase of a few seconds (--quick)
    into["cores_busy"] = {
        name: (cores1[name][0] - b0) / max(1.0, cores1[name][2] - t)
        for name, (b0, _, t) in cores0.items()
        if name in cores1
    }
    into["cores_steal"] = {
        name: (cores1[name][1] - st) / max(1.0, cores1[name][2] - t)
        for name, (_, st, t) in cores0.items()
        if name in cores1
    }
    h1, c1 = scrape(vigil_port)
    into["vigil"] = {
        "cpu_fraction": (cpu1 - cpu0) / wall,
        "fire_events": c1.get("events_fire", 0.0) - c0.get("events_fire", 0.0),
        "samples_accepted_per_s": (
            c1.get("vigil_samples_accepted_total", 0.0)
            - c0.get("vigil_samples_accepted_total", 0.0)
        )
        / wall,
        "alerts_firing_at_end": c1.get("vigil_alerts_firing", 0.0),
        **{k: hist_delta(h0[k], h1[k]) for k in HISTOGRAMS},
    }


def route_figures(res: PhaseResult) -> dict[str, dict]:
    """The latencies split by owner, by route (``local``: the owner received the request;
    ``forwarded``: another worker did and passed the share on) and by (receiver, owner)."""

    def split(key: Callable[[int, int], str]) -> dict[str, dict[str, float]]:
        groups: dict[str, list[float]] = {}
        misses: dict[str, int] = {}
        for receiver, owner, ms in res.routed:
            groups.setdefault(key(receiver, owner), []).append(ms)
        for receiver, owner in res.missed_routes:
            k = key(receiver, owner)
            groups.setdefault(k, [])
            misses[k] = misses.get(k, 0) + 1
        return {k: {**_dist(v), "missed": misses.get(k, 0)} for k, v in sorted(groups.items())}

    return {
        "by_owner": split(lambda r, o: f"worker-{o}"),
        "by_route": split(lambda r, o: "local" if r == o else "forwarded"),
        "by_receiver_owner": split(lambda r, o: f"received-{r}-owned-{o}"),
    }


def _phase_figures(res: PhaseResult, n: int) -> dict:
    return {
        "probes": n,
        "sent": len(res.latencies_ms) + len(res.missed),
        "aborted_after_misses": res.aborted,
        "missed": len(res.missed),
        "missed_probes": res.missed[:20],
        "wall_s": res.wall_s,
        "latency_ms": _dist(res.latencies_ms),
        "ack_ms": _dist(res.acks_ms),
        **route_figures(res),
    }


def _print_phase(name: str, fig: dict, workers: int) -> None:
    lat, ack, v = fig["latency_ms"], fig["ack_ms"], fig["vigil"]
    if lat["n"]:
        print(
            f"{name:<7} probes {fig['sent']}, missed {fig['missed']}: latency p50 "
            f"{lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  max "
            f"{lat['max']:.2f}  mean {lat['mean']:.2f} ms  (204 after p50 {ack['p50']:.2f}, "
            f"p99 {ack['p99']:.2f} ms)"
        )
    else:
        print(f"{name:<7} probes {fig['sent']}, missed {fig['missed']}: no alert arrived")
    if workers > 1:
        for group in ("by_owner", "by_route", "by_receiver_owner"):
            print(
                f"{'':<7} "
                + "; ".join(
                    f"{k} n={d['n']} p50 {d['p50']:.2f} p99 {d['p99']:.2f} max {d['max']:.2f}"
                    + (f" missed {d['missed']}" if d["missed"] else "")
                    if d["n"]
                    else f"{k} n=0 missed {d['missed']}"
                    for k, d in fig[group].items()
                )
            )
    if fig["aborted_after_misses"]:
        print(
            f"{'':<7} ABORTED after {MAX_MISSES_IN_A_ROW} misses in a row "
            f"({fig['sent']} of {fig['probes']} probes sent)"
        )
    parts = []
    for key in ("delivery", "detect_batch", "loop_lag", "write_request"):
        h = v[key]
        if h.get("count"):
            parts.append(
                f"{key} n={h['count']:.0f} mean {h['mean_ms']:.2f} ms p99<="
                f"{h['p99_le_ms']:g} max<={h['max_le_ms']:g}"
            )
    busy = fig.get("cores_busy", {})
    if "cpu0" in busy and workers == 1:
        others = max(0.0, busy["cpu0"] - v["cpu_fraction"])
        print(
            f"{'':<7} cores busy: "
            + ", ".join(f"{k} {100 * x:.0f}%" for k, x in busy.items())
            + f" (steal {100 * fig['cores_steal'].get('cpu0', 0):.0f}% on cpu0"
            f"; on cpu0, not Vigil: {100 * others:.0f}%"
            + (": another process competed with Vigil)" if others > 0.05 else ")")
        )
    if workers > 1:
        print(f"{'':<7} cores busy: " + ", ".join(f"{k} {100 * x:.0f}%" for k, x in busy.items()))
    print(
        f"{'':<7} Vigil: CPU {100 * v['cpu_fraction']:.0f}% of "
        f"{'core 0' if workers == 1 else 'one core (all workers)'}, "
        f"{v['samples_accepted_per_s']:,.0f} samples/s; " + "; ".join(parts)
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loader":
        url, n_series, rate = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        _paced_load(url, n_series, rate)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000, help="timed probes per phase")
    parser.add_argument("--series", type=int, default=10_000, help="load series")
    parser.add_argument(
        "--load-rate", type=float, default=500_000, help="background load, samples/s"
    )
    parser.add_argument(
        "--timeout-ms",
        type=float,
        default=2000,
        help="a probe whose alert takes longer counts as missed",
    )
    parser.add_argument("--quick", action="store_true", help="50 probes per phase")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve --workers N; N > 1 puts Vigil, the loader and this process on every core",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.probes = min(args.probes, 50)
    if args.workers < 1:
        parser.error("--workers: at least 1")
    n_cpus = os.cpu_count() or 1
    every = f"0-{n_cpus - 1}" if n_cpus > 1 else "0"
    if args.workers > 1:  # as bench/ingest.py --workers: everything on every core
        vigil_cpus, loader_cpus = every, every
    else:
        vigil_cpus, loader_cpus = "0", "1" if n_cpus >= 2 else "0"
        if n_cpus >= 2:
            os.sched_setaffinity(0, {1})  # us, the proxy and Alertmanager (inherited): CPU 1
    rng = random.Random(args.seed)
    figures: dict = {
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), **_versions()},
        "target_p99_ms": TARGET_P99_MS,
        "probes_per_phase": args.probes,
        "timeout_ms": args.timeout_ms,
        "load_series": args.series,
        "load_rate_target": args.load_rate,
        "workers": args.workers,
        "placement": {"vigil_cpus": vigil_cpus, "loader_cpus": loader_cpus},
        "loadavg_at_start": os.getloadavg()[0],
    }
    timeout_s = args.timeout_ms / 1000
    with tempfile.TemporaryDirectory(prefix="bench-alert-latency-") as tmp:
        workdir = Path(tmp)
        (workdir / "am.yml").write_text(AM_CONFIG)
        (workdir / "vigil.yaml").write_text(VIGIL_CONFIG)
        vigil_port = free_port()
        with (
            alertmanager("alertmanager", workdir, workdir / "am.yml") as (am_url, _),
            RecordingProxy(am_url) as proxy,
            process(
                "vigil",
                [
                    "taskset",
                    "-c",
                    vigil_cpus,
                    *vigil_detector_argv(
                        vigil_port,
                        "--config",
                        str(workdir / "vigil.yaml"),
                        "--alertmanager",
                        proxy.url,
                        "--log-level",
                        "WARNING",
                        *(["--workers", str(args.workers)] if args.workers > 1 else []),
                    ),
                ],
                workdir,
                ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
                timeout_s=180,
            ) as vigil,
        ):
            fleet = Fleet.find(vigil_port, vigil.pid, args.workers)
            end_ms = history_end(int(time.time() * 1000))
            decisive_ms = end_ms + 1000
            probes = [
                (phase, i)
                for phase in ("warmup", "idle", "loaded")
                for i in range(2 * WARM_PROBES if phase == "warmup" else args.probes)
            ]
            t = time.perf_counter()
            send_history(vigil_port, probes, end_ms, args.workers)
            figures["history_s"] = time.perf_counter() - t
            figures["history"] = settle_history(
                vigil_port, proxy, len(probes) * HISTORY_SAMPLES, len(probes)
            )
            h = figures["history"]
            print(
                f"history: {h['probe_series']} probe series x {HISTORY_SAMPLES} noise samples "
                f"(untimed); {h['noise_fire_events']:.0f} fired on noise (for_samples 1), "
                f"{h['still_firing']:.0f} still firing at the first probe",
                flush=True,
            )
            # idle: no other traffic
            run_probes(fleet, proxy, "warmup", WARM_PROBES, timeout_s, rng, decisive_ms)
            idle_fig: dict = {}
            with _phase_metrics(vigil_port, vigil.pid, idle_fig):
                idle = run_probes(fleet, proxy, "idle", args.probes, timeout_s, rng, decisive_ms)
            idle_fig.update(_phase_figures(idle, args.probes))
            figures["idle"] = idle_fig
            _print_phase("idle", idle_fig, args.workers)

            # loaded: the ingest benchmark's bodies at a steady rate from CPU 1
            url = f"http://127.0.0.1:{vigil_port}/api/v1/write"
            loader_argv = [
                "taskset",
                "-c",
                loader_cpus,
                sys.executable,
                __file__,
                "--loader",
                url,
                str(args.series),
                str(args.load_rate),
            ]
            loaded_fig: dict = {}
            with process("loader", loader_argv, workdir) as loader:
                log = workdir / "loader.log"
                wait_until(
                    "load warmed up",
                    lambda: any("warm" in x for x in _loader_lines(log)),
                    timeout_s=300,
                    interval_s=0.1,
                    log=log,
                )
                time.sleep(SETTLE_S)
                run_probes(
                    fleet,
                    proxy,
                    "warmup",
                    WARM_PROBES,
                    timeout_s,
                    rng,
                    decisive_ms,
                    first=WARM_PROBES,
                )
                with _phase_metrics(vigil_port, vigil.pid, loaded_fig):
                    loaded = run_probes(
                        fleet, proxy, "loaded", args.probes, timeout_s, rng, decisive_ms
                    )
                if loader.poll() is not None:
                    raise RuntimeError(
                        f"the load generator exited early:\n"
                        f"{log.read_text(errors='replace')[-3000:]}"
                    )
                loader.send_signal(signal.SIGTERM)
                loader.wait(60)
            lines = _loader_lines(workdir / "loader.log")
            warm_info = next(x["warm"] for x in lines if "warm" in x)
            load_info: dict[str, object] = next((x["load"] for x in lines if "load" in x), {})
            loaded_fig.update(_phase_figures(loaded, args.probes))
            loaded_fig["load"] = {**load_info, "warmup": warm_info}
            figures["loaded"] = loaded_fig
            figures["proxy"] = {
                "posts": proxy.posts,
                "alerts": proxy.alerts,
                "statuses": dict(proxy.statuses),
            }
    load = loaded_fig["load"]
    figures["load_rate_achieved"] = load.get("samples_per_s", 0) >= 0.95 * args.load_rate
    print(
        f"{'':<7} load: {load.get('samples_per_s', 0):,.0f} samples/s achieved of "
        f"{args.load_rate:,.0f} target ({args.series:,} series, codes "
        f"{load.get('codes')}, loader CPU {100 * load.get('loader_cpu_fraction', 0):.0f}% "
        f"of a core, fell behind {load.get('late_s', 0):.2f} s)"
    )
    if not figures["load_rate_achieved"]:
        print(
            f"{'':<7} WARNING: the load rate was not reached: Vigil (or the loader) is "
            "saturated; the loaded figures are for the rate achieved"
        )
    _print_phase("loaded", loaded_fig, args.workers)
    i_lat, l_lat = figures["idle"]["latency_ms"], loaded_fig["latency_ms"]
    if i_lat["n"] and l_lat["n"]:
        figures["loaded_vs_idle_p50"] = l_lat["p50"] / i_lat["p50"]
        figures["loaded_vs_idle_p99"] = l_lat["p99"] / i_lat["p99"]
        figures["target_met"] = bool(
            l_lat["p99"] < TARGET_P99_MS
            and not loaded_fig["missed"]
            and figures["load_rate_achieved"]
        )
        print(
            f"loaded / idle: p50 {figures['loaded_vs_idle_p50']:.2f}x, p99 "
            f"{figures['loaded_vs_idle_p99']:.2f}x; loaded p99 {l_lat['p99']:.2f} ms "
            f"{'<' if l_lat['p99'] < TARGET_P99_MS else '>='} {TARGET_P99_MS:g} ms: "
            f"target {'met' if figures['target_met'] else 'NOT met'}"
        )
    else:
        figures["target_met"] = False
    m = figures["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; "
        + ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("cpu", "cores"))
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
