"""detector.fleet.peer (shares over a Unix socket), detector.fleet.merge (one answer from
every worker's) and the supervisor's restart policy and process handling."""

import asyncio
import json
import signal
import sys

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from detector.fleet import merge, peer
from detector.fleet.supervisor import Backoff, Supervisor, describe_exit
from detector.remote_write.handler import Outcome
from tests.integration.procs import wait_until


async def test_shares_go_round_trip_with_their_answers(tmp_path):
    got: list[tuple[bytes, int]] = []
    release = asyncio.Event()

    async def accept(body: bytes, version: int) -> Outcome:
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

    async def late(body: bytes, version: int) -> Outcome:
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
    async def accept(body: bytes, version: int) -> Outcome:
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


def _exposition(value: float) -> str:
    registry = CollectorRegistry()
    c = Counter("vigil_samples_accepted", "Samples.", ["reason"], registry=registry)
    c.labels("x").inc(value)
    return generate_latest(registry).decode()


def test_metrics_of_every_worker_keep_a_worker_label():
    text = merge.merge_metrics({0: _exposition(3), 1: _exposition(4), 2: None})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("vigil_samples_accepted_total", (("reason", "x"), ("worker", "0")))] == 3
    assert samples[("vigil_samples_accepted_total", (("reason", "x"), ("worker", "1")))] == 4
    assert samples[("vigil_fleet_worker_up", (("worker", "2"),))] == 0
    assert text.count("# TYPE vigil_samples_accepted_total counter") == 1


def test_ready_only_when_every_worker_is():
    assert merge.merge_ready({0: (200, "ready\n"), 1: (200, "ready\n")}) == (200, "ready\n")
    status, text = merge.merge_ready({0: (200, "ready\n"), 1: (503, "warming up\n"), 2: None})
    assert status == 503
    assert text == "worker 1: warming up\nworker 2: not answering (starting or restarting)\n"


def test_series_lists_are_joined_cut_to_the_limit_and_say_their_worker():
    a = json.dumps(
        {"status": "success", "total": 2, "data": [{"labels": {"pod": p}} for p in "ab"]}
    ).encode()
    b = json.dumps({"status": "success", "total": 1, "data": [{"labels": {"pod": "c"}}]}).encode()
    status, doc = merge.merge_list("/api/v1/series", {0: (200, a), 1: (200, b)}, limit=2)
    assert status == 200 and doc["total"] == 3 and doc["truncated"] is True
    assert [(d["labels"]["pod"], d["worker"]) for d in doc["data"]] == [("a", 0), ("b", 0)]
    err = b'{"status": "error", "error": "bad selector"}'
    assert merge.merge_list("/api/v1/series", {0: (400, err), 1: (400, err)}, limit=5)[0] == 400
    status, doc = merge.merge_list("/api/v1/series", {0: (200, a), 1: None}, limit=5)
    assert status == 503 and "worker 1" in doc["error"]


def test_entities_sort_by_score_and_anomalies_by_start():
    e0 = b'{"status": "success", "total": 1, "data": [{"score": 0.5}]}'
    e1 = b'{"status": "success", "total": 1, "data": [{"score": 0.9}]}'
    _, doc = merge.merge_list("/api/v1/entities", {0: (200, e0), 1: (200, e1)}, limit=10)
    assert [e["score"] for e in doc["data"]] == [0.9, 0.5] and doc["total"] == 2
    a0 = b'{"status": "success", "data": [{"startsAt": "2026-01-02T00:00:00Z"}]}'
    a1 = b'{"status": "success", "data": [{"startsAt": "2026-01-01T00:00:00Z"}]}'
    _, doc = merge.merge_list("/api/v1/anomalies", {0: (200, a0), 1: (200, a1)}, limit=1)
    assert [a["startsAt"][:10] for a in doc["data"]] == ["2026-01-01", "2026-01-02"]


def test_backoff_doubles_to_a_cap_and_starts_over_after_a_healthy_run():
    b = Backoff(initial_s=0.5, max_s=4.0, healthy_after_s=60.0)
    assert [b.delay_s(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.failures_after(3, ran_s=5.0) == 4
    assert b.failures_after(3, ran_s=61.0) == 1


def test_describe_exit():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with status 3"


async def test_supervisor_restarts_a_dead_worker_and_stops_on_sigterm(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # a worker that records (index, restarts) and then dies at once the first time
    script = (
        "import sys, pathlib, time, signal\n"
        "i, k = sys.argv[1], sys.argv[2]\n"
        "signal.signal(signal.SIGHUP, lambda *a: pathlib.Path(sys.argv[3], f'hup-{i}').touch())\n"
        "pathlib.Path(sys.argv[3], f'{i}-{k}').touch()\n"
        "if k == '0' and i == '1': sys.exit(7)\n"
        "while True: time.sleep(0.05)\n"
    )
    sup = Supervisor(
        workers=2,
        argv=lambda i, k: [sys.executable, "-c", script, str(i), str(k), str(marks)],
        backoff=Backoff(initial_s=0.01),
    )

    async def until(name: str) -> None:
        await asyncio.to_thread(
            wait_until, f"marker {name}", (marks / name).exists, timeout_s=20, interval_s=0.01
        )

    run = asyncio.ensure_future(sup.run())
    await until("1-1")  # restarted, told it was restart 1
    await until("0-0")
    assert sup.restarts == [0, 1]
    # SIGHUP reaches every worker (each sets its handler before writing its marker)
    sup.signal_all(signal.SIGHUP)
    await until("hup-0")
    await until("hup-1")
    sup.stopping.set()
    assert await asyncio.wait_for(run, 20) == 0
    assert all(p.returncode is not None for p in sup.procs.values())


async def test_a_worker_usage_error_stops_the_service_with_2():
    sup = Supervisor(
        workers=2,
        argv=lambda i, k: [
            sys.executable,
            "-c",
            f"import sys, time; sys.exit(2 if {i} else 0) if {i} else time.sleep(30)",
        ],
    )
    assert await asyncio.wait_for(sup.run(), 30) == 2
