"""Soak: the local chain (exporter → Debian's Prometheus → vigil-detector) under a steady
load for a long time; does anything drift?

The exporter (bench/overload.py's, in a child process) serves ``--series`` gauges whose
values change on every scrape; Prometheus scrapes them every ``--scrape-interval`` and
remote-writes to the detector (pinned to CPU 0; Prometheus and the exporter to CPU 1).
Every ``--interval`` seconds this script records the detector's RSS, its request latency
over the interval (mean and p99 from ``vigil_remote_write_request_seconds``), /healthz
latency (polled every 200 ms), non-2xx answers, worker errors and Prometheus's pending
and failed samples. At the end: per figure, the mean of the first and of the last quarter
of the intervals, their change, and a least-squares slope per hour; a figure *drifts* when
the last quarter is above the first by more than the noise (3 standard deviations of the
first quarter) and by more than ``--tolerance`` (default 10%).

Prints one row per interval, the drift table and, last, one JSON object.
Usage: python bench/soak.py [--minutes 30] [--interval 10] [--series 5000]
       [--scrape-interval 1]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.overload import HealthProbe, metrics, percentile, prom_sent, rss_mb, total  # noqa: E402
from tests.integration.procs import free_port, process, require, wait_until  # noqa: E402

REQUEST_HIST = "vigil_remote_write_request_seconds"


def _buckets(m: dict[str, float]) -> dict[float, float]:
    out = {}
    for key, value in m.items():
        if key.startswith(REQUEST_HIST + "_bucket{"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = value
    return out


def _p99(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound of the bucket holding the 99th percentile of the interval."""
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    count = deltas[-1][1] if deltas else 0.0
    if count <= 0:
        return float("nan")
    for le, cumulative in deltas:
        if cumulative >= 0.99 * count:
            return le
    return float("inf")


def _errors(m: dict[str, float]) -> float:
    return sum(
        v
        for k, v in m.items()
        if k.startswith("vigil_remote_write_requests_total{") and 'code="204"' not in k
    )


def drift(values: list[float], hours: list[float], tolerance: float) -> dict[str, Any]:
    """First vs last quarter, and the least-squares slope per hour."""
    clean = [(h, v) for h, v in zip(hours, values, strict=True) if math.isfinite(v)]
    if len(clean) < 4:
        return {"first": None, "last": None, "change": None, "slope_per_h": None, "drifts": False}
    q = max(1, len(clean) // 4)
    first = [v for _, v in clean[:q]]
    last = [v for _, v in clean[-q:]]
    f, la = statistics.fmean(first), statistics.fmean(last)
    noise = 3 * (statistics.stdev(first) if len(first) > 1 else 0.0)
    hs = [h for h, _ in clean]
    vs = [v for _, v in clean]
    hm, vm = statistics.fmean(hs), statistics.fmean(vs)
    den = sum((h - hm) ** 2 for h in hs)
    slope = sum((h - hm) * (v - vm) for h, v in clean) / den if den else 0.0
    change = (la - f) / abs(f) if f else (0.0 if la == f else math.inf)
    return {
        "first": f,
        "last": la,
        "change": change,
        "slope_per_h": slope,
        "drifts": la - f > noise and change > tolerance,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds per sample row")
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--scrape-interval", type=float, default=1.0)
    ap.add_argument("--tolerance", type=float, default=0.10)
    args = ap.parse_args()

    prom_bin = require("prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    vigil_port, prom_port, exp_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{vigil_port}"
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
        "--log-level",
        "WARNING",
    ]
    (workdir / "prometheus.yml").write_text(f"""
global:
  scrape_interval: {int(args.scrape_interval * 1000)}ms
scrape_configs:
  - job_name: soak
    static_configs:
      - targets: ['127.0.0.1:{exp_port}']
remote_write:
  - url: {base}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 2s
""")
    prom_argv = [
        "taskset",
        "-c",
        "1",
        prom_bin,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    exporter_argv = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        str(ROOT / "bench" / "overload.py"),
        "--exporter-port",
        str(exp_port),
        "--exporter-series",
        str(args.series),
    ]
    rows: list[dict[str, float]] = []
    with (
        process("vigil", vigil_argv, workdir, ready_url=f"{base}/readyz", timeout_s=180) as vigil,
        process(
            "exporter", exporter_argv, workdir, ready_url=f"http://127.0.0.1:{exp_port}/metrics"
        ),
        process(
            "prometheus", prom_argv, workdir, ready_url=f"http://127.0.0.1:{prom_port}/-/ready"
        ),
    ):
        prom_url = f"http://127.0.0.1:{prom_port}/metrics"
        wait_until(
            "the exporter's series tracked",
            lambda: total(metrics(f"{base}/metrics"), "vigil_active_series") >= args.series,
            180,
            interval_s=0.5,
        )
        print(
            f"steady load: {args.series:,} series every {args.scrape_interval} s "
            f"({args.series / args.scrape_interval:,.0f} samples/s) for {args.minutes} min",
            flush=True,
        )
        t0 = time.monotonic()
        m0 = metrics(f"{base}/metrics")
        p0 = prom_sent(metrics(prom_url))
        while time.monotonic() - t0 < args.minutes * 60:
            with HealthProbe(f"{base}/healthz", interval_s=0.2) as probe:
                time.sleep(args.interval)  # the sampling interval; the probe runs meanwhile
            m1 = metrics(f"{base}/metrics")
            p1 = prom_sent(metrics(prom_url))
            n = total(m1, REQUEST_HIST + "_count") - total(m0, REQUEST_HIST + "_count")
            s = total(m1, REQUEST_HIST + "_sum") - total(m0, REQUEST_HIST + "_sum")
            lat = [x * 1000 for x in probe.latencies_s]
            row = {
                "t_s": time.monotonic() - t0,
                "rss_mb": rss_mb(vigil.pid),
                "requests": n,
                "request_mean_ms": 1000 * s / n if n else float("nan"),
                "request_p99_ms": 1000 * _p99(_buckets(m0), _buckets(m1)),
                "healthz_p99_ms": percentile(lat, 0.99),
                "errors": _errors(m1) - _errors(m0) + probe.failures,
                "worker_errors": total(m1, "vigil_worker_errors_total")
                - total(m0, "vigil_worker_errors_total"),
                "accepted_per_s": (
                    total(m1, "vigil_samples_accepted_total")
                    - total(m0, "vigil_samples_accepted_total")
                )
                / args.interval,
                "prom_pending": p1["pending"],
                "prom_failed": p1["failed"] - p0["failed"],
            }
            rows.append(row)
            print("  " + "  ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
            m0, p0 = m1, p1
        final = prom_sent(metrics(prom_url))
    shutil.rmtree(workdir, ignore_errors=True)

    hours = [r["t_s"] / 3600 for r in rows]
    figures = (
        "rss_mb",
        "request_mean_ms",
        "request_p99_ms",
        "healthz_p99_ms",
        "errors",
        "worker_errors",
        "accepted_per_s",
        "prom_pending",
    )
    table = {name: drift([r[name] for r in rows], hours, args.tolerance) for name in figures}
    print(
        f"{'figure':18} {'first quarter':>14} {'last quarter':>14} {'change':>8} "
        f"{'slope/h':>10}  drifts"
    )
    for name, d in table.items():
        if d["first"] is None:
            continue
        print(
            f"{name:18} {d['first']:14.2f} {d['last']:14.2f} {d['change']:8.1%} "
            f"{d['slope_per_h']:10.2f}  {d['drifts']}"
        )
    drifting = [name for name, d in table.items() if d["drifts"] and name != "accepted_per_s"]
    print(
        json.dumps(
            {
                "bench": "soak",
                "minutes": args.minutes,
                "interval_s": args.interval,
                "series": args.series,
                "scrape_interval_s": args.scrape_interval,
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
                "prometheus": subprocess.run(
                    [prom_bin, "--version"], capture_output=True, text=True
                ).stdout.split("\n")[0],
                "intervals": len(rows),
                "drift": table,
                "drifting": drifting,
                "total_errors": sum(r["errors"] for r in rows),
                "total_worker_errors": sum(r["worker_errors"] for r in rows),
                "prometheus_samples_failed": final["failed"],
                "prometheus_samples_dropped": final["dropped"],
                "rss_max_mb": max((r["rss_mb"] for r in rows), default=None),
            }
        )
    )


if __name__ == "__main__":
    main()
