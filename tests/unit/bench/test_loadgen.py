"""bench/loadgen.py: the requests it frames, the responses it reads, its retries.

Driven over ``socket.socketpair`` with a scripted HTTP server in a thread: no network.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from bench import loadgen

TARGET = loadgen.Target("127.0.0.1", 9, "/api/v1/write")
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 6\r\nRetry-After: 1\r\n\r\nbusy\r\n"


class Server:
    """Reads requests from one end of a socket pair; answers each from ``script`` (a
    function of the request's index and body), then closes when it says so."""

    def __init__(self, sock: socket.socket, script) -> None:
        self.sock = sock
        self.script = script
        self.requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, buf: bytearray) -> tuple[bytes, dict[bytes, bytes], bytes] | None:
        while b"\r\n\r\n" not in buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers[b"content-length"])
        body = bytearray(rest)
        while len(body) < n:
            data = self.sock.recv(65536)
            assert data, "the client closed mid-body"
            body += data
        buf[:] = body[n:]
        return lines[0], headers, bytes(body[:n])

    def _serve(self) -> None:
        buf = bytearray()
        try:
            while True:
                req = self._read_request(buf)
                if req is None:
                    return
                self.requests.append(req)
                answer, close = self.script(len(self.requests) - 1, req[2])
                self.sock.sendall(answer)
                if close:
                    return
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.sock.close()

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the scripted server did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_request_is_one_complete_post_with_the_remote_write_headers():
    raw = loadgen.build_request(TARGET, b"\x00body")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/v1/write HTTP/1.1"
    assert "Content-Encoding: snappy" in lines
    assert "Content-Type: application/x-protobuf" in lines
    assert "X-Prometheus-Remote-Write-Version: 0.1.0" in lines
    assert "Content-Length: 5" in lines
    assert body == b"\x00body"


def test_bodies_arrive_whole_and_in_order(pair):
    client, server_end = pair
    # bodies far larger than a socket buffer: sent in pieces, reassembled in order
    bodies = [bytes([i]) * (300_000 + i) for i in range(6)]
    server = Server(server_end, lambda i, body: (NO_CONTENT, False))
    result = loadgen.run([client], [[loadgen.build_request(TARGET, b) for b in bodies]])
    server.join()
    assert [r[2] for r in server.requests] == bodies
    assert result.codes == {204: 6}
    assert result.requests == 6
    assert result.wall_s > 0 and result.cpu_s >= 0


def test_busy_answers_are_counted_and_the_same_request_is_sent_again(pair):
    client, server_end = pair
    busy_first = {0, 1, 3}  # the first body twice, the second once

    def script(i, body):
        return (BUSY if i in busy_first else NO_CONTENT), False

    server = Server(server_end, script)
    reqs = [loadgen.build_request(TARGET, b) for b in (b"one", b"two")]
    result = loadgen.run([client], [reqs], retry_after_s=0.0)
    server.join()
    assert [r[2] for r in server.requests] == [b"one", b"one", b"one", b"two", b"two"]
    assert result.codes == {503: 3, 204: 2}


def test_a_client_error_is_counted_and_not_retried(pair):
    client, server_end = pair
    bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nmalformed"
    server = Server(server_end, lambda i, body: (bad if i == 0 else NO_CONTENT, False))
    reqs = [loadgen.build_request(TARGET, b) for b in (b"one", b"two")]
    result = loadgen.run([client], [reqs])
    server.join()
    assert [r[2] for r in server.requests] == [b"one", b"two"]
    assert result.codes == {400: 1, 204: 1}


def test_connection_close_reopens_a_connection_for_the_next_request(pair):
    client, server_end = pair
    servers = [
        Server(server_end, lambda i, body: (NO_CONTENT[:-2] + b"Connection: close\r\n\r\n", True))
    ]

    def connect() -> socket.socket:
        a, b = socket.socketpair()
        servers.append(Server(b, lambda i, body: (NO_CONTENT, False)))
        return a

    reqs = [loadgen.build_request(TARGET, b) for b in (b"one", b"two", b"three")]
    result = loadgen.run([client], [reqs], connect=connect)
    for s in servers:
        s.join()
    assert [r[2] for s in servers for r in s.requests] == [b"one", b"two", b"three"]
    assert len(servers) == 2
    assert result.codes == {204: 3}


def test_several_connections_each_send_their_own_list():
    pairs = [socket.socketpair() for _ in range(3)]
    servers = [Server(b, lambda i, body: (NO_CONTENT, False)) for _, b in pairs]
    lists = [[f"c{c}r{r}".encode() for r in range(5)] for c in range(3)]
    result = loadgen.run(
        [a for a, _ in pairs], [[loadgen.build_request(TARGET, b) for b in x] for x in lists]
    )
    for s in servers:
        s.join()
    assert [[r[2] for r in s.requests] for s in servers] == lists
    assert result.codes == {204: 15}


def test_a_close_before_the_answer_is_an_error(pair):
    client, server_end = pair
    server = Server(server_end, lambda i, body: (b"", True))
    with pytest.raises(loadgen.LoadError, match="closed the connection before answering"):
        loadgen.run([client], [[loadgen.build_request(TARGET, b"x")]])
    server.join()


def test_groups_keep_each_chunk_on_one_connection_in_round_order():
    chunks = [[f"k{k}r{r}".encode() for r in range(4)] for k in range(5)]
    groups = loadgen.groups_of(chunks, range(1, 3), 2)
    assert groups == [
        [b"k0r1", b"k2r1", b"k4r1", b"k0r2", b"k2r2", b"k4r2"],
        [b"k1r1", b"k3r1", b"k1r2", b"k3r2"],
    ]
    assert len(loadgen.groups_of(chunks, range(4), 8)) == 5  # never more than the chunks


@pytest.mark.parametrize("step", [1, 7, 1 << 16])
def test_reader_parses_framings_fed_in_any_pieces(step):
    stream = (
        NO_CONTENT
        + BUSY
        + b"HTTP/1.1 100 Continue\r\n\r\n"
        + b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: y\r\n\r\n"
        + b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    )
    reader = loadgen.ResponseReader()
    got = []
    for k in range(0, len(stream), step):
        got += reader.feed(stream[k : k + step])
    assert [(r.status, r.close) for r in got] == [
        (204, False),
        (503, False),
        (400, False),
        (204, True),
    ]
    assert reader.eof() is None


def test_reader_reads_a_body_without_length_until_the_close():
    reader = loadgen.ResponseReader()
    assert reader.feed(b"HTTP/1.0 500 Oops\r\n\r\nsomething broke") == []
    last = reader.eof()
    assert last is not None and (last.status, last.close) == (500, True)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_reader_refuses_what_is_not_http(stream, message):
    with pytest.raises(loadgen.LoadError, match=message):
        loadgen.ResponseReader().feed(stream)


def test_target_takes_plain_http_urls_only():
    assert loadgen.Target.parse("http://127.0.0.1:8428/api/v1/write") == loadgen.Target(
        "127.0.0.1", 8428, "/api/v1/write"
    )
    with pytest.raises(ValueError, match="plain http"):
        loadgen.Target.parse("https://127.0.0.1/api/v1/write")
