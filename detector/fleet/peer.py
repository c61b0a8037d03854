"""The link that carries a request's shares between workers: frames over a Unix socket.

A share is the raw (uncompressed) protobuf of the series one worker owns, cut out of a
request another worker received (``remote_write.split``). One frame per share, one
answer per frame, many frames in flight on one connection:

    request:  u32 payload length, u32 id, u8 protocol version (1 or 2), payload
    answer:   u32 id, u16 status, u64 samples, u64 histograms, u64 exemplars written,
              u16 reason length, reason (UTF-8)

little-endian. The socket lives in a directory only the service's user can enter, and is
not a network endpoint: the peer is trusted to frame correctly, but a frame that is not
(a length over the limit, an unknown version) still only closes that connection. A share
that cannot be delivered — the owner is down, restarting, or gives no answer in time —
is answered 503 here, so the sender (Prometheus) retries the whole request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from detector.remote_write.handler import RETRY, Outcome

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("<IIB")
_ANSWER = struct.Struct("<IHQQQH")
ANSWER_TIMEOUT_S = 30.0

Accept = Callable[[bytearray, int], Awaitable[Outcome]]
SEND_BUFFER_BYTES = 4 << 20  # a share (a few hundred KB) goes out in one write


def encode_answer(ident: int, outcome: Outcome) -> bytes:
    reason = outcome.reason.encode("utf-8")[:4096]
    return _ANSWER.pack(ident, outcome.status, *outcome.written, len(reason)) + reason


class ShareServer(asyncio.BufferedProtocol):
    """One connection from a peer; each share goes to ``accept`` in a task of its own.

    A buffered protocol: the socket is read straight into the share's own buffer (the
    header first, then exactly its payload), so a share is never copied on the way in.
    """

    def __init__(self, accept: Accept, *, max_payload: int) -> None:
        self.accept = accept
        self.max_payload = max_payload
        self.header = bytearray(_REQUEST.size)
        self.header_got = 0
        self.payload: bytearray | None = None
        self.payload_got = 0
        self.ident = 0
        self.version = 0
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.payload is None:
            return memoryview(self.header)[self.header_got :]
        return memoryview(self.payload)[self.payload_got :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.payload is None:
            self.header_got += nbytes
            if self.header_got < _REQUEST.size:
                return
            length, self.ident, self.version = _REQUEST.unpack(self.header)
            self.header_got = 0
            if length > self.max_payload or self.version not in (1, 2):
                log.error(
                    "bad frame from a peer worker (length %d, version %d); closing the link",
                    length,
                    self.version,
                )
                if self.transport is not None:
                    self.transport.close()
                return
            self.payload = bytearray(length)
            self.payload_got = 0
            if length:
                return
        else:
            self.payload_got += nbytes
            if self.payload_got < len(self.payload):
                return
        payload, self.payload = self.payload, None
        task = asyncio.ensure_future(self._serve(self.ident, payload, self.version))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, ident: int, payload: bytearray, version: int) -> None:
        try:
            outcome = await self.accept(payload, version)
        except Exception:  # a bug: the share is refused with 503, the link stays up
            log.exception("a share from a peer worker failed")
            outcome = Outcome(503, "the owning worker failed on its share; retry later", RETRY)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_answer(ident, outcome))


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, on_lost: Callable[[], None]) -> None:
        self.buf = bytearray()
        self.pending: dict[int, asyncio.Future[Outcome]] = {}
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= _ANSWER.size:
            ident, status, samples, hist, ex, n = _ANSWER.unpack_from(self.buf)
            end = _ANSWER.size + n
            if len(self.buf) < end:
                return
            reason = bytes(self.buf[_ANSWER.size : end]).decode("utf-8", "replace")
            del self.buf[:end]
            future = self.pending.pop(ident, None)
            if future is not None and not future.done():
                headers = RETRY if status == 503 else None
                future.set_result(Outcome(status, reason, headers, (samples, hist, ex)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for future in self.pending.values():
            if not future.done():
                future.set_result(_down("its link closed"))
        self.pending.clear()
        self.on_lost()


def _expire(future: asyncio.Future[Outcome], timeout_s: float) -> None:
    if not future.done():
        future.set_result(_down(f"no answer in {timeout_s:g} s"))


def _down(why: str) -> Outcome:
    return Outcome(503, f"a worker that owns some of these series is down ({why}); retry", RETRY)


class ShareClient:
    """Sends shares to one peer over one connection, opened on first use and again after
    it is lost. Never raises for the peer's state: an undeliverable share is a 503."""

    def __init__(self, path: Path, *, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._protocol: _ClientProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._next_id = 0

    def _lost(self) -> None:
        self._protocol = None

    async def _connect(self) -> _ClientProtocol | None:
        if self._protocol is not None and self._protocol.transport is not None:
            return self._protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                _, protocol = await loop.create_unix_connection(
                    lambda: _ClientProtocol(self._lost), str(self.path)
                )
            except OSError as exc:
                log.debug("peer worker at %s unreachable: %s", self.path, exc)
                return None
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is not None:
                with contextlib.suppress(OSError):  # the kernel caps it (wmem_max)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            self._protocol = protocol
            return protocol

    async def send(self, version: int, body: memoryview) -> Outcome:
        protocol = await self._connect()
        if protocol is None or protocol.transport is None:
            return _down("not listening")
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        ident = self._next_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        protocol.pending[ident] = future
        protocol.transport.writelines([_REQUEST.pack(len(body), ident, version), body])
        timer = loop.call_later(self.timeout_s, _expire, future, self.timeout_s)
        try:
            return await future
        finally:
            timer.cancel()
            protocol.pending.pop(ident, None)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
