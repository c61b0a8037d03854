"""The remote-write load generator of bench/ingest.py: cheap enough not to be measured.

A benchmark of a receiver on a 2-core machine is only as honest as its client is cheap:
an aiohttp client took 0.34-0.50 CPU-seconds per 1M samples, about half of what Vigil
itself took, on the same cores. This one sends pre-built HTTP/1.1 requests (the headers
and the snappy body in one buffer, built before the clock starts) over a few keep-alive
sockets, from one thread with one epoll selector, and reads of each response only the
status line and the headers that say how long it is (``Content-Length``, ``chunked``, or
until the server closes). One request is in flight per connection, as with the old
client; a 429 or 503 is counted and the same request is sent again after 50 ms (the
receiver's backpressure), any other status is counted and the next request follows.

``run`` takes connected sockets, so the tests drive it over ``socket.socketpair``;
``load`` connects to a URL. Standard library only.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RETRY_STATUSES = frozenset((429, 503))
RETRY_AFTER_S = 0.05
SEND_BUFFER_BYTES = 4 << 20  # a body (~77 KB) leaves in one send() (the kernel caps it)
RECV_BYTES = 1 << 16
MAX_HEAD_BYTES = 64 << 10
HEADERS = (
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
)


class LoadError(Exception):
    """The receiver broke the protocol or the connection mid-request."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"{url!r}: the load generator speaks plain http://host:port/path")
        return cls(parts.hostname, parts.port or 80, parts.path or "/")


def build_request(target: Target, body: bytes) -> bytes:
    """One complete POST: request line, headers and body, ready for ``send``."""
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        *(f"{k}: {v}" for k, v in HEADERS),
        "User-Agent: vigil-bench-loadgen",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


@dataclass(slots=True)
class Response:
    status: int
    close: bool  # the server closes the connection after it


class ResponseReader:
    """Incremental HTTP/1.1 response parser: ``feed`` bytes, get complete responses.

    Reads the status and the framing headers; skips bodies. A response without
    Content-Length or chunked encoding (and not 1xx/204/304) ends when the server
    closes: ``eof`` then completes it.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: Response | None = None
        self.remaining = 0  # body bytes still to skip (Content-Length)
        self.chunked = False
        self.until_close = False

    def feed(self, data: bytes) -> list[Response]:
        self.buf += data
        out: list[Response] = []
        while True:
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD_BYTES:
                        raise LoadError(f"response head over {MAX_HEAD_BYTES} bytes")
                    return out
                self._parse_head(bytes(self.buf[:end]))
                del self.buf[: end + 4]
                if self.head is None:  # an interim 1xx
                    continue
            if self.until_close:
                self.buf.clear()
                return out
            if self.chunked:
                if not self._skip_chunks():
                    return out
            else:
                take = min(self.remaining, len(self.buf))
                del self.buf[:take]
                self.remaining -= take
                if self.remaining:
                    return out
            out.append(self.head)
            self.head = None

    def eof(self) -> Response | None:
        """The server closed: the response it ended, if one was being read to the close."""
        if self.head is not None and self.until_close:
            head, self.head = self.head, None
            return head
        if self.head is not None or self.buf:
            raise LoadError("the receiver closed the connection in the middle of a response")
        return None

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise LoadError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                if not value.isdigit():
                    raise LoadError(f"bad Content-Length {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"connection":
                close = value == b"close" or (close and value != b"keep-alive")
        self.head = Response(status, close)
        self.chunked = chunked
        no_body = status < 200 or status in (204, 304)
        self.remaining = 0 if no_body or chunked else (length or 0)
        self.until_close = not no_body and not chunked and length is None
        if self.until_close:
            self.head.close = True
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.head = None
            self.until_close = False

    def _skip_chunks(self) -> bool:
        """Skip whole chunks; True once the last chunk and the trailers are gone."""
        while True:
            if self.remaining:
                take = min(self.remaining, len(self.buf))
                del self.buf[:take]
                self.remaining -= take
                if self.remaining:
                    return False
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                return False
            size_text = bytes(self.buf[:eol]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise LoadError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                end = self.buf.find(b"\r\n\r\n", eol)
                if end < 0:
                    return False
                del self.buf[: end + 4]
                self.chunked = False
                return True
            del self.buf[: eol + 2]
            self.remaining = size + 2  # the chunk and its CRLF


@dataclass(slots=True)
class _Conn:
    sock: socket.socket | None  # None: closed by the server, reopened for the next send
    requests: Sequence[bytes]
    next: int = 0  # index of the request in flight (or waiting to be retried)
    view: memoryview | None = None  # what is left to send of it
    reader: ResponseReader = field(default_factory=ResponseReader)
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    wall_s: float
    cpu_s: float  # this process's CPU time during the run (user + system)
    codes: dict[int, int]
    requests: int


Connect = Callable[[], socket.socket]


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class _Loop:
    """One thread, one selector, every connection."""

    def __init__(self, connect: Connect | None, retry_after_s: float) -> None:
        self.sel = selectors.DefaultSelector()
        self.connect = connect
        self.retry_after_s = retry_after_s
        self.codes: dict[int, int] = {}
        self.waiting: list[_Conn] = []  # retries due later
        self.active = 0
        self.n_requests = 0

    def start(self, conn: _Conn) -> None:
        """Send the request ``conn.next`` (again, after a retry status)."""
        if conn.sock is None:
            if self.connect is None:
                raise LoadError("the receiver closed a keep-alive connection")
            conn.sock = self.connect()
            _tune(conn.sock)
            conn.reader = ResponseReader()
            self.sel.register(conn.sock, selectors.EVENT_READ, conn)
        conn.view = memoryview(conn.requests[conn.next])
        self.push(conn)

    def push(self, conn: _Conn) -> None:
        assert conn.view is not None and conn.sock is not None
        try:
            sent = conn.sock.send(conn.view)
        except BlockingIOError:
            sent = 0
        conn.view = conn.view[sent:] if sent < len(conn.view) else None
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.view is not None else 0)
        self.sel.modify(conn.sock, events, conn)

    def drop(self, conn: _Conn) -> None:
        if conn.sock is not None:
            self.sel.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None

    def answered(self, conn: _Conn, resp: Response) -> None:
        """Count a response; send what follows (or wait to retry, or finish)."""
        self.codes[resp.status] = self.codes.get(resp.status, 0) + 1
        self.n_requests += 1
        if conn.view is not None:
            raise LoadError(f"status {resp.status} before the request was sent whole")
        if resp.close:
            self.drop(conn)
        if resp.status in RETRY_STATUSES:
            conn.retry_at = time.perf_counter() + self.retry_after_s
            self.waiting.append(conn)
            return
        conn.next += 1
        if conn.next < len(conn.requests):
            self.start(conn)
            return
        self.drop(conn)
        self.active -= 1

    def readable(self, conn: _Conn) -> None:
        assert conn.sock is not None
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            for resp in conn.reader.feed(data):
                self.answered(conn, resp)
                if conn.sock is None:  # closed after it: the rest is not ours
                    break
            return
        last = conn.reader.eof()
        in_flight = conn not in self.waiting
        self.drop(conn)
        if last is not None:
            self.answered(conn, last)
        elif in_flight:
            raise LoadError("the receiver closed the connection before answering")

    def retry_due(self) -> None:
        now = time.perf_counter()
        for conn in [c for c in self.waiting if c.retry_at <= now]:
            self.waiting.remove(conn)
            self.start(conn)

    def run(self, conns: list[_Conn]) -> None:
        for conn in conns:
            if conn.requests:
                assert conn.sock is not None
                _tune(conn.sock)
                self.sel.register(conn.sock, selectors.EVENT_READ, conn)
                self.active += 1
                self.start(conn)
            elif conn.sock is not None:
                conn.sock.close()
        while self.active:
            timeout = None
            if self.waiting:
                timeout = max(0.0, min(c.retry_at for c in self.waiting) - time.perf_counter())
            for key, events in self.sel.select(timeout):
                conn = key.data
                if conn.sock is None or key.fileobj is not conn.sock:
                    continue  # dropped earlier in this round of events
                if events & selectors.EVENT_WRITE and conn.view is not None:
                    self.push(conn)
                if events & selectors.EVENT_READ:
                    self.readable(conn)
            if self.waiting:
                self.retry_due()
        self.sel.close()


def run(
    socks: Sequence[socket.socket],
    requests: Sequence[Sequence[bytes]],
    *,
    connect: Connect | None = None,
    retry_after_s: float = RETRY_AFTER_S,
) -> LoadResult:
    """Send ``requests[i]`` in order over ``socks[i]``, one in flight per socket, and
    close the sockets.

    ``connect`` opens a fresh socket when the server closed one (``Connection: close``);
    without it such a close is a LoadError. Returns the wall and CPU seconds from the
    first send to the last response, and the count of every status seen.
    """
    if len(socks) != len(requests):
        raise ValueError(f"{len(socks)} sockets for {len(requests)} request lists")
    loop = _Loop(connect, retry_after_s)
    conns = [_Conn(s, r) for s, r in zip(socks, requests, strict=True)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        loop.run(conns)
    finally:
        for conn in conns:
            if conn.sock is not None:
                conn.sock.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return LoadResult(wall_s=wall, cpu_s=cpu, codes=loop.codes, requests=loop.n_requests)


def groups_of(
    chunks: Sequence[Sequence[bytes]], rounds: range, connections: int
) -> list[list[bytes]]:
    """The bodies each connection sends, in order: chunk k goes over connection
    k mod ``connections``, and round by round, so each series' samples arrive in time
    order (every chunk holds its own series)."""
    n = min(connections, len(chunks))
    groups: list[list[Sequence[bytes]]] = [[] for _ in range(n)]
    for k, chunk in enumerate(chunks):
        groups[k % n].append(chunk)
    return [[chunk[r] for r in rounds for chunk in group] for group in groups]


def load(
    url: str, chunks: Sequence[Sequence[bytes]], rounds: range, connections: int
) -> LoadResult:
    """bench/ingest.py's load: ``chunks[k][r]`` for every round in ``rounds``, over
    ``connections`` keep-alive connections to ``url``. Requests are built and connections
    opened before the clock starts."""
    target = Target.parse(url)
    per_conn = [
        [build_request(target, body) for body in g] for g in groups_of(chunks, rounds, connections)
    ]

    def connect() -> socket.socket:
        return socket.create_connection((target.host, target.port))

    return run([connect() for _ in per_conn], per_conn, connect=connect)
