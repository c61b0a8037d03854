"""detector.fleet.peer: shares and their answers over a Unix socket."""

import asyncio

from detector.fleet import peer
from detector.remote_write.handler import Outcome


async def test_shares_go_round_trip_with_their_answers(tmp_path):
    got: list[tuple[bytearray, int]] = []
    release = asyncio.Event()

    async def accept(body: bytearray, version: int) -> Outcome:
        got.append((body, version))
        if body == b"slow":
            await release.wait()
        return Outcome(
            204 if body != b"bad" else 400,
            "" if body != b"bad" else "nope",
            None,
            (len(body), 1, 2),
        )

    path = tmp_path / "w.sock"
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(
        lambda: peer.ShareServer(accept, max_payload=1 << 20), str(path)
    )
    client = peer.ShareClient(path)
    try:
        slow = asyncio.ensure_future(client.send(1, memoryview(b"slow")))
        fast = await client.send(2, memoryview(b"abc" * 1000))
        assert fast.status == 204 and fast.written == (3000, 1, 2)  # not behind the slow one
        bad = await client.send(1, memoryview(b"bad"))
        assert (bad.status, bad.reason) == (400, "nope")
        release.set()
        assert (await slow).status == 204
        assert sorted(v for _, v in got) == [1, 1, 2]
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def test_a_peer_that_is_not_listening_is_a_503(tmp_path):
    out = await peer.ShareClient(tmp_path / "nobody.sock").send(1, memoryview(b"x"))
    assert out.status == 503 and "down" in out.reason and out.headers == {"Retry-After": "1"}


async def test_a_peer_that_does_not_answer_in_time_is_a_503(tmp_path):
    release = asyncio.Event()

    async def late(body: bytearray, version: int) -> Outcome:
        await release.wait()
        return Outcome(204)

    servers: list[peer.ShareServer] = []

    def factory() -> peer.ShareServer:
        servers.append(peer.ShareServer(late, max_payload=100))
        return servers[-1]

    path = tmp_path / "w.sock"
    server = await asyncio.get_running_loop().create_unix_server(factory, str(path))
    client = peer.ShareClient(path, timeout_s=0.05)
    try:
        out = await client.send(1, memoryview(b"x"))
        assert out.status == 503 and "no answer" in out.reason
    finally:
        release.set()
        await asyncio.gather(*(t for s in servers for t in s.tasks))
        client.close()
        server.close()
        await server.wait_closed()


async def test_an_oversized_frame_closes_the_link_and_the_pending_shares_get_503(tmp_path):
    async def accept(body: bytearray, version: int) -> Outcome:
        return Outcome(204)

    path = tmp_path / "w.sock"
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(
        lambda: peer.ShareServer(accept, max_payload=10), str(path)
    )
    client = peer.ShareClient(path)
    try:
        out = await client.send(1, memoryview(b"x" * 11))
        assert out.status == 503 and "link closed" in out.reason
        assert (await client.send(1, memoryview(b"ok"))).status == 204  # reconnects
    finally:
        client.close()
        server.close()
        await server.wait_closed()
