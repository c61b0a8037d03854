"""Remediator latency: webhook received → first action issued, at a steady notification rate.

A real ``vigil-remediator serve`` (its own process, audit log on disk with
synchronous=FULL) gets Alertmanager-style notifications at ``--rate`` per second, each a
new alert (new fingerprint, new target) matched by an ``auto`` playbook whose first step is
an ``http.request`` to a sink in this process. For each notification: t0 just before the
POST is sent, t1 when the sink receives the action's request; latency = t1 - t0. The
reference in the same run: the same client posting straight to the sink (loopback HTTP
round trip). Target: p99 under 100 ms at 50 notifications/s.

Usage: python bench/webhook_latency.py [--rate 50] [--seconds 30] [--quick]
Prints a summary and, as its last line, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.procs import free_port, process  # noqa: E402

PLAYBOOK = """
apiVersion: vigil/v1
kind: Playbook
metadata:
  name: bench-hook
spec:
  match:
    labels: {alertname: BenchAlert}
  mode: auto
  guards:
    respect_silences: false
    cooldown_s: 0
    rate: {max_runs: 10000, window_s: 60}
    max_concurrent: 100
  steps:
    - name: call
      action: http.request
      params:
        method: POST
        url: '{sink}/hook'
        json: {fingerprint: '{{ alert.fingerprint }}'}
"""

CONFIG = """
http:
  allowed_urls: ['{sink}/']
guards:
  rate: {max_runs: 10000, window_s: 60}
  max_concurrent: 1000
"""


def _notification(i: int) -> dict:
    fp = f"{i:016x}"
    alert = {
        "status": "firing",
        "labels": {"alertname": "BenchAlert", "instance": f"h-{i}"},
        "annotations": {},
        "startsAt": "2026-11-27T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fp,
    }
    return {
        "version": "4",
        "receiver": "bench",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "groupKey": fp,
        "truncatedAlerts": 0,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0 if ordered else 0.0


async def _run(rate: float, seconds: float, warmup: int) -> dict[str, float]:
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        doc = await request.json()
        arrived[str(doc.get("fingerprint", doc.get("ref")))] = time.perf_counter()
        got.set()
        return web.Response(status=204)

    sink_app = web.Application()
    sink_app.router.add_post("/hook", hook)
    runner = web.AppRunner(sink_app, access_log=None)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()
    sink = f"http://127.0.0.1:{sink_port}"
    port = free_port()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        work = Path(tmp)
        (work / "playbooks").mkdir()
        (work / "playbooks" / "bench-hook.yaml").write_text(PLAYBOOK.replace("{sink}", sink))
        (work / "config.yaml").write_text(CONFIG.replace("{sink}", sink))
        argv = [
            sys.executable,
            "-m",
            "remediator",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--playbooks",
            str(work / "playbooks"),
            "--config",
            str(work / "config.yaml"),
            "--state-dir",
            str(work / "state"),
            "--log-level",
            "WARNING",
        ]
        with process("remediator", argv, work, ready_url=f"http://127.0.0.1:{port}/readyz"):
            async with aiohttp.ClientSession() as session:
                # reference: the same client straight to the sink
                ref = []
                for i in range(200):
                    t0 = time.perf_counter()
                    async with session.post(f"{sink}/hook", json={"ref": f"r{i}"}) as resp:
                        await resp.read()
                    ref.append(arrived[f"r{i}"] - t0)
                sent: dict[str, float] = {}
                total = warmup + int(rate * seconds)
                start = time.perf_counter()
                statuses: dict[int, int] = {}

                async def post(i: int) -> None:
                    body = _notification(i)
                    fp = body["alerts"][0]["fingerprint"]
                    sent[fp] = time.perf_counter()
                    async with session.post(f"http://127.0.0.1:{port}/webhook", json=body) as resp:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        await resp.read()

                tasks = []
                for i in range(total):
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)  # pacing the load, not waiting for a result
                    tasks.append(asyncio.create_task(post(i)))
                await asyncio.gather(*tasks)
                achieved = total / (time.perf_counter() - start)
                deadline = time.perf_counter() + 30
                while (
                    len([k for k in sent if k in arrived]) < total
                    and time.perf_counter() < deadline
                ):
                    got.clear()
                    try:
                        async with asyncio.timeout(max(0.01, deadline - time.perf_counter())):
                            await got.wait()
                    except TimeoutError:
                        break
                lat = [
                    arrived[fp] - sent[fp]
                    for i, fp in enumerate(sent)
                    if fp in arrived and i >= warmup
                ]
                missed = sum(1 for fp in sent if fp not in arrived)
    await runner.cleanup()
    figures.update(
        {
            "rate_target_per_s": rate,
            "rate_achieved_per_s": round(achieved, 1),
            "notifications": total - warmup,
            "missed": missed,
            "http_200": statuses.get(200, 0),
            "http_other": sum(v for k, v in statuses.items() if k != 200),
            "p50_ms": round(_pct(lat, 0.50), 2),
            "p90_ms": round(_pct(lat, 0.90), 2),
            "p99_ms": round(_pct(lat, 0.99), 2),
            "max_ms": round(_pct(lat, 1.0), 2),
            "reference_p50_ms": round(_pct(ref, 0.50), 3),
            "reference_p99_ms": round(_pct(ref, 0.99), 3),
        }
    )
    figures["p99_over_reference_p99"] = round(
        figures["p99_ms"] / max(1e-6, figures["reference_p99_ms"]), 1
    )
    figures["target_p99_ms"] = 100.0
    figures["target_met"] = float(figures["p99_ms"] < 100.0 and missed == 0)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 s instead of 30")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    figures = asyncio.run(_run(args.rate, seconds, warmup=20))
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python "
        f"{platform.python_version()}"
    )
    print(
        f"{figures['notifications']} notifications at {figures['rate_achieved_per_s']}/s "
        f"(target {args.rate}/s); missed {figures['missed']}; "
        f"HTTP 200: {figures['http_200']}, other: {figures['http_other']}"
    )
    print(
        f"webhook -> first action: p50 {figures['p50_ms']} ms, p90 {figures['p90_ms']} ms, "
        f"p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms "
        f"(target p99 < 100 ms: {'met' if figures['target_met'] else 'NOT met'})"
    )
    print(
        f"reference (client -> sink, loopback): p50 {figures['reference_p50_ms']} ms, "
        f"p99 {figures['reference_p99_ms']} ms"
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
