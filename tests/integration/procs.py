"""Start real processes (prometheus, node_exporter, vigil-detector, ...) on loopback.

Each gets free ports and a temp dir, is polled for readiness (never a fixed sleep), and is
stopped with SIGTERM (then SIGKILL) at the end. Output goes to a log file that is shown
when a process fails to become ready.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; `make test` installs it with apt-get")
    return path


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout_s: float = 60.0,
    interval_s: float = 0.2,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)  # polling interval between condition checks
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not reached within {timeout_s}s\n{tail}")


@contextlib.contextmanager
def process(
    name: str,
    argv: list[str],
    workdir: Path,
    ready_url: str | None = None,
    timeout_s: float = 90.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, **(env or {})},
        )
    try:
        if ready_url is not None:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}"
                    )
                return http_ok(ready_url)

            wait_until(f"{name} ready at {ready_url}", ready, timeout_s, log=log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def vigil_detector_argv(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "detector", "serve", "--listen", f"127.0.0.1:{port}", *extra]
