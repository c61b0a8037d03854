"""Pieces of a real alerting chain for integration tests: Alertmanager processes, a webhook
receiver that records notifications, and remote-write posts built from samples."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from detector.remote_write import encode
from tests.integration.procs import free_port, process, require

V1 = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


class Webhook:
    """An HTTP receiver for Alertmanager's webhook notifications (version 4)."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._cond:
                    outer.notifications.append(json.loads(body))
                    outer._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate: Callable[[dict], bool], timeout_s: float) -> list[dict]:
        """Notifications matching ``predicate`` once there is one; [] after the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [n for n in self.notifications if predicate(n)]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    return found
                self._cond.wait(left)


def am_config(path: Path, webhook_url: str) -> Path:
    path.write_text(f"""
route:
  receiver: hook
  group_by: [alertname, metric_name]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
""")
    return path


@contextlib.contextmanager
def alertmanager(
    name: str,
    workdir: Path,
    config: Path,
    *,
    port: int | None = None,
    cluster_port: int | None = None,
    peers: tuple[int, ...] = (),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Alertmanager on loopback; gossip off unless ``cluster_port`` is given."""
    port = port or free_port()
    data = workdir / name
    data.mkdir(exist_ok=True)
    argv = [
        require("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url=http://127.0.0.1:{port}/",
    ]
    if cluster_port is None:
        argv.append("--cluster.listen-address=")
    else:
        argv += [
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
            "--cluster.settle-timeout=2s",
            "--cluster.peer-timeout=3s",
            "--cluster.gossip-interval=100ms",
            "--cluster.pushpull-interval=1s",
        ]
        argv += [f"--cluster.peer=127.0.0.1:{p}" for p in peers]
    url = f"http://127.0.0.1:{port}"
    with process(name, argv, workdir, ready_url=f"{url}/-/ready") as proc:
        yield url, proc


def am_alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as resp:
        return list(json.load(resp))


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.load(resp))


def write(vigil_port: int, series: list[encode.Series]) -> None:
    """POST one remote-write 1.0 request; raise unless it was accepted."""
    body = encode.compress(encode.encode_v1(series))
    req = urllib.request.Request(
        f"http://127.0.0.1:{vigil_port}/api/v1/write", data=body, headers=V1, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204, resp.status


# ``shifted`` series are sampled every second; the default alert rule counts time as
# Prometheus's ``for:`` does (fires after 60 s, resolves after 120 s), so the stacks here use
# the same rule scaled to that cadence: 3 anomalous seconds, 5 normal ones.
ONE_SECOND_RULE = """alerts:
  - name: VigilAnomaly
    for_s: 3
    resolve_s: 5
"""


def shifted(
    name: str,
    *,
    end_ms: int,
    n_normal: int = 300,
    n_shift: int = 8,
    n_after: int = 0,
    seed: int = 7,
    step_ms: int = 1000,
    **labels: str,
) -> encode.Series:
    """Noise around 1.0, a shift of 10 sigmas for ``n_shift`` samples, noise again;
    the last sample at ``end_ms``."""
    rng = np.random.default_rng(seed)
    n = n_normal + n_shift + n_after
    values = 1.0 + 0.1 * rng.standard_normal(n)
    values[n_normal : n_normal + n_shift] += 1.0
    start = end_ms - (n - 1) * step_ms
    return encode.Series(
        labels=tuple(sorted([("__name__", name), *labels.items()])),
        samples=[(start + i * step_ms, float(v)) for i, v in enumerate(values)],
    )


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
