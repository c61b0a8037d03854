"""detector.fleet.supervisor: restart policy, restarts, signals, stop."""

import asyncio
import os
import signal
import sys

from detector.fleet.supervisor import Backoff, Supervisor, describe_exit
from tests.integration.procs import wait_until


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
        "import sys, pathlib, signal\n"
        "i, k = sys.argv[1], sys.argv[2]\n"
        "signal.signal(signal.SIGHUP, lambda *a: pathlib.Path(sys.argv[3], f'hup-{i}').touch())\n"
        "pathlib.Path(sys.argv[3], f'{i}-{k}').touch()\n"
        "if k == '0' and i == '1': sys.exit(7)\n"
        "while True: signal.pause()\n"
    )
    sup = Supervisor(
        workers=2,
        argv=lambda i, k, fd: [sys.executable, "-c", script, str(i), str(k), str(marks)],
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
        argv=lambda i, k, fd: [
            sys.executable,
            "-c",
            f"import sys, signal; sys.exit(2 if {i} else 0) if {i} else signal.pause()",
        ],
    )
    assert await asyncio.wait_for(sup.run(), 30) == 2


async def test_workers_get_a_lifeline_that_ends_when_the_supervisor_closes_it(tmp_path):
    out = tmp_path / "eof"
    # the worker blocks reading the pipe and records when it sees end of file
    script = (
        "import os, sys, pathlib\n"
        "fd = int(sys.argv[1])\n"
        "pathlib.Path(sys.argv[2] + '.started').touch()\n"
        "while os.read(fd, 1): pass\n"
        "pathlib.Path(sys.argv[2]).touch()\n"
    )
    sup = Supervisor(
        workers=1, argv=lambda i, k, fd: [sys.executable, "-c", script, str(fd), str(out)]
    )
    run = asyncio.ensure_future(sup.run())
    await asyncio.to_thread(
        wait_until,
        "worker started",
        (tmp_path / "eof.started").exists,
        timeout_s=20,
        interval_s=0.01,
    )
    assert not out.exists()
    assert sup.lifeline is not None
    os.close(sup.lifeline[1])  # what the kernel does when the supervisor dies
    await asyncio.to_thread(wait_until, "worker saw EOF", out.exists, timeout_s=20, interval_s=0.01)
    sup.lifeline = (sup.lifeline[0], os.open(os.devnull, os.O_RDONLY))  # run() closes both
    sup.stopping.set()
    assert await asyncio.wait_for(run, 20) == 0
