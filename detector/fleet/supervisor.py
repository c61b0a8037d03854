"""The process that runs ``serve --workers N`` (N > 1): starts the workers, restarts the
one that dies, passes signals on, and stops them all.

It binds nothing and loads no kernel: every worker binds the public address itself
(SO_REUSEPORT). A worker that exits on its own is restarted after a backoff (0.5 s,
doubling to 30 s; back to 0.5 s once it has run for a minute), logged as an ERROR with
its exit status, and counted: the restarted worker exports the count as
``vigil_fleet_worker_restarts_total``. A worker that exits with status 2 (a usage or
configuration error, which a restart cannot fix) stops the service with status 2.
SIGHUP goes to every worker (each reloads its config); SIGTERM or SIGINT stops them all
(SIGKILL after ``STOP_TIMEOUT_S``) and the supervisor exits 0. A supervisor that dies
without stopping them (SIGKILL) closes the pipe each worker watches, and they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0
USAGE_EXIT = 2


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restart number ``failures`` in a row of a worker."""

    initial_s: float = 0.5
    max_s: float = 30.0
    healthy_after_s: float = 60.0  # a worker that ran this long starts the count over

    def delay_s(self, failures: int) -> float:
        """>= 1 failures in a row -> seconds to wait.

        Examples
        --------
        >>> [Backoff().delay_s(k) for k in (1, 2, 3, 8, 9)]
        [0.5, 1.0, 2.0, 30.0, 30.0]
        """
        return float(min(self.max_s, self.initial_s * 2.0 ** max(0, failures - 1)))

    def failures_after(self, failures: int, ran_s: float) -> int:
        """The count of failures in a row after a worker that ran ``ran_s`` died."""
        return 1 if ran_s >= self.healthy_after_s else failures + 1


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    """Keeps ``workers`` worker processes running; ``argv(i, restarts, lifeline)`` is
    worker i's command line, ``lifeline`` the file descriptor of a pipe the supervisor
    holds open until it exits: a worker that reads end of file from it is orphaned."""

    def __init__(
        self,
        *,
        workers: int,
        argv: Callable[[int, int, int], Sequence[str]],
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.argv = argv
        self.backoff = backoff
        self.clock = clock
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = [0] * workers
        self.stopping = asyncio.Event()
        self.exit_code = 0
        self.lifeline: tuple[int, int] | None = None  # (read end for workers, write end)

    def signal_all(self, sig: signal.Signals) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def _keep(self, index: int) -> None:
        failures = 0
        while not self.stopping.is_set():
            started = self.clock()
            assert self.lifeline is not None
            read_end = self.lifeline[0]
            proc = await asyncio.create_subprocess_exec(
                *self.argv(index, self.restarts[index], read_end), pass_fds=(read_end,)
            )
            self.procs[index] = proc
            if self.stopping.is_set():  # stopped while it was starting
                proc.send_signal(signal.SIGTERM)
            returncode = await proc.wait()
            if self.stopping.is_set():
                return
            if returncode == USAGE_EXIT:
                log.error(
                    "worker %d exited with status 2 (a usage or configuration error a "
                    "restart cannot fix); stopping the service",
                    index,
                )
                self.exit_code = USAGE_EXIT
                self.stopping.set()
                return
            failures = self.backoff.failures_after(failures, self.clock() - started)
            self.restarts[index] += 1
            delay = self.backoff.delay_s(failures)
            log.error(
                "worker %d (pid %d) %s; restarting it in %.1f s (restart %d; its series "
                "restore from its checkpoint, and requests with its series get 503 meanwhile)",
                index,
                proc.pid,
                describe_exit(returncode),
                delay,
                self.restarts[index],
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def run(self) -> int:
        """Until SIGTERM/SIGINT (exit 0) or a worker's usage error (exit 2)."""
        loop = asyncio.get_running_loop()
        self.lifeline = os.pipe()  # not inheritable: only pass_fds hands the read end on
        loop.add_signal_handler(signal.SIGHUP, self.signal_all, signal.SIGHUP)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        keepers = [asyncio.create_task(self._keep(i)) for i in range(self.workers)]
        log.info("supervisor: starting %d workers", self.workers)
        await self.stopping.wait()
        self.signal_all(signal.SIGTERM)
        _, pending = await asyncio.wait(keepers, timeout=STOP_TIMEOUT_S)
        if pending:
            log.error("workers did not stop within %.0f s; killing them", STOP_TIMEOUT_S)
            self.signal_all(signal.SIGKILL)
            await asyncio.wait(pending)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for fd in self.lifeline:
            os.close(fd)
        return self.exit_code
