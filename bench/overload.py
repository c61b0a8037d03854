"""Overload: a real Prometheus remote-writes three times the detector's capacity into a real
vigil-detector for a minute; does Vigil push back, stay small and lose nothing?

The chain: an exporter (a child of this script, serving N gauges whose values change every
scrape) → Debian's Prometheus (scrape every 100 ms, pinned to CPU 1) → vigil-detector
(pinned to CPU 0). The detector's capacity is made small, so that a 2-core machine can
offer three times it: its process gets a CPU quota (cgroup v1 ``cpu.cfs_quota_us``, a
``--cpu-share`` of one core; plain taskset if the cgroup cannot be written, which is then
reported). Phases:

1. calibration: a direct load generator (bench/ingest.py's, CPU 1) sends known-series
   requests as fast as the detector accepts them; capacity = samples accepted per second;
2. overload (``--seconds``, default 60): the exporter exposes 3 × capacity × 0.1 s series;
   this script polls ``/healthz`` every 50 ms (latency), the detector's RSS and its
   metrics;
3. drain: the exporter stops (Prometheus then sends staleness markers), the CPU quota is
   lifted, and the script waits until Prometheus has nothing pending, then compares
   Prometheus's own counters of samples sent with what Vigil accepted.

Prints the figures and, last, one JSON object with all of them.
Usage: python bench/overload.py [--seconds 60] [--cpu-share 0.05] [--factor 3]
       [--queue-max-samples 200000] [--rss-bound-mb 2048] [--max-loop-lag-s 0.25]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import _tree, build_bodies, run_loader  # noqa: E402
from tests.integration.procs import free_port, process, require, wait_until  # noqa: E402

SCRAPE_INTERVAL_S = 0.1
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 10_000  # short periods: a throttled process stalls at most this long


# ---------------------------------------------------------------------------- exporter


def serve_exporter(port: int, n_series: int, pods: bool = False) -> None:
    """Serve ``n_series`` gauges whose values change on every scrape (child process).
    ``pods``: each series also gets ``namespace`` and ``pod`` labels, 7 namespaces and 16
    series a pod, so that ``--workers`` spreads them (its hashmod of namespace;pod)."""

    def extra(i: int) -> str:
        return f',namespace="ns-{i % 7}",pod="pod-{i // 16}"' if pods else ""

    names = [
        f'vigil_bench_load{{job_slot="{i % 97}",instance_slot="{i}"{extra(i)}}} '
        for i in range(n_series)
    ]
    state = {"scrape": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            state["scrape"] += 1
            k = state["scrape"]
            body = "".join(f"{name}{(k + i) % 13}\n" for i, name in enumerate(names)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# ---------------------------------------------------------------------------- probes


def metrics(url: str) -> dict[str, float]:
    """A Prometheus text exposition as {'name{labels}': value}; '' on failure."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def total(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's series whose labels include ``labels``."""
    got = 0.0
    for key, value in m.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            got += value
    return got


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class HealthProbe:
    """Polls /healthz every ``interval_s`` in a thread; keeps latencies and failures."""

    def __init__(self, url: str, interval_s: float = 0.05) -> None:
        self.url, self.interval_s = url, interval_s
        self.latencies_s: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                    ok = resp.status == 200
            except OSError:
                ok = False
            took = time.perf_counter() - t0
            if ok:
                self.latencies_s.append(took)
            else:
                self.failures += 1
            self._stop.wait(max(0.0, self.interval_s - took))

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- cpu quota


class CpuQuota:
    """Limit process ``pid`` (every thread, and the threads it starts later) to ``share``
    of one CPU while applied. Without a writable cgroup v1 cpu controller it does nothing
    and says so in ``info``."""

    def __init__(self, pid: int, share: float, pids: list[int] | None = None) -> None:
        self.group = CGROUP_CPU / f"vigil-overload-{os.getpid()}"
        self.quota_us = max(1000, int(share * CFS_PERIOD_US))
        self.info: dict[str, object] = {
            "share": share,
            "period_us": CFS_PERIOD_US,
            "quota_us": self.quota_us,
        }
        try:
            self.group.mkdir()
            (self.group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            for p in pids or [pid]:  # --workers: the supervisor and every worker
                for tid in os.listdir(f"/proc/{p}/task"):
                    (self.group / "tasks").write_text(tid)
            self.info["cgroup"] = True
        except OSError as exc:
            self.info["cgroup"] = False
            self.info["error"] = str(exc)

    def apply(self) -> None:
        if self.info["cgroup"]:
            (self.group / "cpu.cfs_quota_us").write_text(str(self.quota_us))

    def lift(self) -> None:
        if self.info["cgroup"]:
            (self.group / "cpu.cfs_quota_us").write_text("-1")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            for tid in (self.group / "tasks").read_text().split():
                (CGROUP_CPU / "tasks").write_text(tid)
        with contextlib.suppress(OSError):
            self.group.rmdir()


# ---------------------------------------------------------------------------- phases


def calibrate(write_url: str, workdir: Path, seconds: float) -> dict[str, float]:
    """Samples per second the detector accepts from a load generator that sends as fast
    as it is let (bench/ingest.py's, retrying 503 after 50 ms)."""
    n_series, n_rounds = 4000, 300
    start_ms = int(time.time() * 1000) - 3_600_000  # older than anything Prometheus sends
    path = workdir / "bodies.pkl"
    path.write_bytes(pickle.dumps(build_bodies(n_series, n_rounds, start_ms)))
    run_loader(write_url, path, 0, 2)  # series creation
    probe = run_loader(write_url, path, 2, 6)  # a first estimate, to size the timed run
    rate = 4 * n_series / probe["wall_s"]
    last = min(n_rounds, 6 + max(3, int(rate * seconds / n_series)))
    timed = run_loader(write_url, path, 6, last)
    sent = (last - 6) * n_series
    return {
        "samples": sent,
        "wall_s": timed["wall_s"],
        "samples_per_s": sent / timed["wall_s"],
        "codes": timed["codes"],
    }


def prometheus_config(path: Path, exporter_port: int | None, write_url: str) -> None:
    """Scrape the exporter (None: scrape nothing, so the counters come to rest)."""
    scrape = (
        ""
        if exporter_port is None
        else f"""
  - job_name: load
    static_configs:
      - targets: ['127.0.0.1:{exporter_port}']"""
    )
    path.write_text(f"""
global:
  scrape_interval: {int(SCRAPE_INTERVAL_S * 1000)}ms
  scrape_timeout: {int(SCRAPE_INTERVAL_S * 1000)}ms
scrape_configs:{scrape or " []"}
remote_write:
  - url: {write_url}
    queue_config:
      capacity: 10000
      max_shards: 8
      max_samples_per_send: 2000
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 2s
""")


def prom_sent(m: dict[str, float]) -> dict[str, float]:
    """Prometheus 2.42's remote-write counters (names checked against its /metrics)."""
    return {
        "in": total(m, "prometheus_remote_storage_samples_in_total"),
        "sent": total(m, "prometheus_remote_storage_samples_total"),
        "failed": total(m, "prometheus_remote_storage_samples_failed_total"),
        "retried": total(m, "prometheus_remote_storage_samples_retried_total"),
        "dropped": total(m, "prometheus_remote_storage_samples_dropped_total"),
        "pending": total(m, "prometheus_remote_storage_samples_pending"),
        # how far sending is behind scraping: the backlog Prometheus keeps in its WAL
        "lag_s": total(m, "prometheus_remote_storage_highest_timestamp_in_seconds")
        - total(m, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"),
    }


def vigil_counts(m: dict[str, float]) -> dict[str, float]:
    return {
        "received": total(m, "vigil_samples_received_total"),
        "accepted": total(m, "vigil_samples_accepted_total"),
        "dropped_queue_full": total(m, "vigil_samples_dropped_total", reason="queue_full"),
        "dropped_out_of_order": total(m, "vigil_samples_dropped_total", reason="out_of_order"),
        "dropped_untracked": total(m, "vigil_samples_dropped_total", reason="untracked"),
        "dropped_series_limit": total(m, "vigil_samples_dropped_total", reason="series_limit"),
        "requests": total(m, "vigil_remote_write_requests_total"),
        "requests_2xx": total(m, "vigil_remote_write_requests_total", code="204"),
        "requests_503": total(m, "vigil_remote_write_requests_total", code="503"),
        "requests_429": total(m, "vigil_remote_write_requests_total", code="429"),
        "requests_4xx": sum(
            total(m, "vigil_remote_write_requests_total", code=str(c)) for c in (400, 401, 413, 415)
        ),
        "requests_5xx_other": sum(
            v
            for k, v in m.items()
            if k.startswith("vigil_remote_write_requests_total{") and re.search(r'code="5(?!03)', k)
        ),
        "worker_errors": total(m, "vigil_worker_errors_total"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="overload duration")
    ap.add_argument("--factor", type=float, default=3.0, help="offered load / capacity")
    ap.add_argument(
        "--cpu-share",
        type=float,
        default=0.05,
        help="share of one CPU the detector gets (cgroup quota)",
    )
    ap.add_argument("--calibrate-seconds", type=float, default=15.0)
    ap.add_argument(
        "--queue-max-samples",
        type=int,
        default=10_000,
        help="small, so that the detector worker, not HTTP, sets the pace",
    )
    ap.add_argument(
        "--rss-bound-mb",
        type=float,
        default=2048.0,
        help="the bound to compare RSS with (the pod limit in deploy/)",
    )
    ap.add_argument("--drain-timeout", type=float, default=300.0)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve --workers N (all on CPU 0); the exporter's series then get namespace "
        "and pod labels, so the workers share them",
    )
    ap.add_argument(
        "--max-loop-lag-s",
        type=float,
        default=None,
        help="the detector's load-shedding limit (default: its config default)",
    )
    args = ap.parse_args()

    prom_bin = require("prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="vigil-overload-"))
    vigil_port, prom_port, exp_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{vigil_port}"
    cfg = workdir / "vigil.yaml"
    cfg.write_text(
        f"limits:\n  queue_max_samples: {args.queue_max_samples}\n"
        + (f"  max_loop_lag_s: {args.max_loop_lag_s}\n" if args.max_loop_lag_s is not None else "")
    )
    vigil_argv = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        "-m",
        "detector",
        "serve",
        "--listen",
        f"127.0.0.1:{vigil_port}",
        "--config",
        str(cfg),
        "--log-level",
        "WARNING",
        *(["--workers", str(args.workers)] if args.workers > 1 else []),
    ]
    result: dict[str, object] = {
        "workers": args.workers,
        "bench": "overload",
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "prometheus": subprocess.run(
            [prom_bin, "--version"], capture_output=True, text=True
        ).stdout.split("\n")[0],
    }
    with process("vigil", vigil_argv, workdir, ready_url=f"{base}/readyz", timeout_s=180) as vigil:
        # taskset execs the detector: same pid; with --workers, its workers too
        quota = CpuQuota(vigil.pid, args.cpu_share, _tree(vigil.pid))
        exporter: subprocess.Popen[bytes] | None = None
        try:
            result["cpu_quota"] = quota.info
            quota.apply()
            cal = calibrate(f"{base}/api/v1/write", workdir, args.calibrate_seconds)
            quota.lift()
            capacity = cal["samples_per_s"]
            n_series = max(100, int(args.factor * capacity * SCRAPE_INTERVAL_S))
            print(
                f"capacity {capacity:,.0f} samples/s (calibration: {cal['samples']:,} in "
                f"{cal['wall_s']:.1f} s); exporter: {n_series:,} series every "
                f"{SCRAPE_INTERVAL_S} s = {n_series / SCRAPE_INTERVAL_S:,.0f} samples/s",
                flush=True,
            )
            result["capacity_samples_per_s"] = round(capacity)
            result["offered_samples_per_s"] = round(n_series / SCRAPE_INTERVAL_S)
            exporter = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    sys.executable,
                    __file__,
                    "--exporter-port",
                    str(exp_port),
                    "--exporter-series",
                    str(n_series),
                    *(["--exporter-pods"] if args.workers > 1 else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(
                "exporter", lambda: bool(metrics(f"http://127.0.0.1:{exp_port}/metrics")), 30
            )
            prometheus_config(workdir / "prometheus.yml", exp_port, f"{base}/api/v1/write")
            prom_argv = [
                "taskset",
                "-c",
                "1",
                prom_bin,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            before_prom = vigil_counts(metrics(f"{base}/metrics"))
            with process(
                "prometheus", prom_argv, workdir, ready_url=f"http://127.0.0.1:{prom_port}/-/ready"
            ) as prom:
                prom_url = f"http://127.0.0.1:{prom_port}/metrics"
                # the exporter's series are created at full speed first: the overload is
                # about the steady state, not about a burst of new series
                wait_until(
                    "the exporter's series tracked",
                    lambda: (
                        total(metrics(f"{base}/metrics"), "vigil_active_series") >= 4000 + n_series
                    ),
                    120,
                    interval_s=0.5,
                )
                before = vigil_counts(metrics(f"{base}/metrics"))
                quota.apply()
                overload = _overload(base, vigil.pid, prom_url, args.seconds)
                after_overload = vigil_counts(metrics(f"{base}/metrics"))
                # stop scraping (a dead target would still give up/scrape_* samples), then
                # let everything Prometheus holds reach Vigil at full speed
                prometheus_config(workdir / "prometheus.yml", None, f"{base}/api/v1/write")
                prom.send_signal(signal.SIGHUP)
                quota.lift()
                drain = _drain(base, prom_url, args.drain_timeout)
                after = vigil_counts(metrics(f"{base}/metrics"))
        finally:
            if exporter is not None and exporter.poll() is None:
                exporter.terminate()
                exporter.wait()
            quota.close()
    shutil.rmtree(workdir, ignore_errors=True)

    delta = {k: after_overload[k] - before[k] for k in after}
    since_prom = {k: after[k] - before_prom[k] for k in after}  # Prometheus started fresh
    p = drain["prometheus"]
    # --workers: a request one worker refused with 503 (its share did not fit) had the
    # other worker's share accepted; Prometheus's retry sends that share again, and its
    # owner drops the repeats as out of order (and Prometheus sends in order: no others)
    vigil_took = (
        since_prom["received"]
        - since_prom["dropped_queue_full"]
        - since_prom["dropped_out_of_order"]
    )
    result.update(
        {
            "overload_s": args.seconds,
            "requests": delta["requests"],
            "share_503": delta["requests_503"] / max(1.0, delta["requests"]),
            "share_429": delta["requests_429"] / max(1.0, delta["requests"]),
            "requests_4xx": delta["requests_4xx"],
            "requests_5xx_not_503": delta["requests_5xx_other"],
            "rss_peak_mb": overload["rss_peak_mb"],
            "rss_bound_mb": args.rss_bound_mb,
            "rss_under_bound": overload["rss_peak_mb"] < args.rss_bound_mb,
            **{
                k: overload[k]
                for k in (
                    "healthz_p50_ms",
                    "healthz_p99_ms",
                    "healthz_max_ms",
                    "healthz_failures",
                    "healthz_probes",
                )
            },
            "accepted_samples_per_s_during_overload": overload["accepted_per_s"],
            "prometheus_lag_s_at_end_of_overload": overload["prometheus_lag_s"],
            "requests_503_in_drain": after["requests_503"] - after_overload["requests_503"],
            "drained": drain["drained"],
            "drain_s": drain["drain_s"],
            "prometheus_samples_sent": p["sent"],
            "prometheus_samples_in": p["in"],
            "prometheus_samples_failed": p["failed"],
            "prometheus_samples_dropped": p["dropped"],
            "prometheus_samples_retried": p["retried"],
            "prometheus_samples_pending": p["pending"],
            "vigil_samples_received_minus_503": vigil_took,
            "vigil_samples_accepted": since_prom["accepted"],
            "vigil_dropped": {k: since_prom[k] for k in since_prom if k.startswith("dropped_")},
            "worker_errors": since_prom["worker_errors"],
            # samples_in: what Prometheus read from its WAL for this queue; every one of them
            # must have reached Vigil (dropped ones excepted, which Prometheus counts)
            "lost_samples": p["in"] - p["dropped"] - vigil_took,
        }
    )
    for key, value in result.items():
        if key != "bench":
            print(f"{key:40} {value}")
    print(json.dumps(result))


def _overload(base: str, pid: int, prom_url: str, seconds: float) -> dict[str, Any]:
    rss: list[float] = []
    accepted: list[tuple[float, float]] = []
    lag_s = 0.0
    with HealthProbe(f"{base}/healthz") as probe:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            rss.append(rss_mb(pid))
            m = metrics(f"{base}/metrics")
            accepted.append((time.monotonic(), total(m, "vigil_samples_accepted_total")))
            p = prom_sent(metrics(prom_url))
            lag_s = p["lag_s"]
            print(
                f"  t={time.monotonic() - t0:5.1f}s rss {rss[-1]:6.0f} MB  accepted "
                f"{accepted[-1][1]:>12,.0f}  503s "
                f"{total(m, 'vigil_remote_write_requests_total', code='503'):>5,.0f}  "
                f"prometheus pending {p['pending']:>7,.0f}  lag {lag_s:5.1f} s",
                flush=True,
            )
            time.sleep(1.0)  # the sampling interval of this report, not a wait for a state
    lat = [x * 1000 for x in probe.latencies_s]
    (ta, a0), (tb, a1) = accepted[0], accepted[-1]
    return {
        "rss_peak_mb": max(rss),
        "healthz_p50_ms": percentile(lat, 0.5),
        "healthz_p99_ms": percentile(lat, 0.99),
        "healthz_max_ms": max(lat or [0.0]),
        "healthz_failures": probe.failures,
        "healthz_probes": len(lat),
        "accepted_per_s": (a1 - a0) / max(1e-9, tb - ta),
        "prometheus_lag_s": lag_s,
    }


def _drain(base: str, prom_url: str, timeout_s: float) -> dict[str, Any]:
    """Wait until Prometheus's counters and Vigil's stand still for 5 s with nothing
    pending (2.42's pending gauge can stay a few dozen samples above zero after
    everything was sent; then what Vigil received settles it)."""
    t0 = time.monotonic()
    last: tuple[dict[str, float], float] | None = None
    still = 0
    while time.monotonic() - t0 < timeout_s:
        p = prom_sent(metrics(prom_url))
        received = total(metrics(f"{base}/metrics"), "vigil_samples_received_total")
        now = (p, received)
        still = still + 1 if now == last and p["pending"] < 100 else 0
        if still >= 5:
            return {"drained": True, "drain_s": time.monotonic() - t0, "prometheus": p}
        last = now
        time.sleep(1.0)  # polling interval
    return {
        "drained": False,
        "drain_s": time.monotonic() - t0,
        "prometheus": prom_sent(metrics(prom_url)),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--exporter-port":
        serve_exporter(int(sys.argv[2]), int(sys.argv[4]), "--exporter-pods" in sys.argv)
    else:
        main()
