"""Outage: the real Alertmanager is stopped for five minutes while a real vigil-detector
keeps receiving a steady remote-write load and keeps finding anomalies. Do the alerts
queue within the bound (``alerting.max_pending``) and all arrive once it is back?

The chain: this script (remote-write sender: ``--series`` steady series, one sample each
every second) → vigil-detector (``--alertmanager``) → Debian's prometheus-alertmanager →
a webhook receiver in this script. Phases:

1. before: one anomaly is injected; its alert must reach the webhook (the chain works);
2. outage (``--outage-s``, default 300): Alertmanager is stopped; the steady load goes on
   and a new anomaly (a level shift on a new series) is injected every
   ``--anomaly-every-s``; the script samples ``vigil_alerts_pending``,
   ``vigil_alerts_dropped_total``, ``vigil_alert_send_failures_total`` and checks the
   detector stays ready and keeps accepting writes;
3. return: Alertmanager starts again on the same port (empty: its alerts lived in memory);
   the script waits until every injected anomaly's alert has reached the webhook, and
   reports how long that took.

Prints the figures and, last, one JSON object with all of them.
Usage: python bench/outage.py [--outage-s 300] [--series 500] [--anomaly-every-s 20]
       [--max-pending 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.remote_write import encode  # noqa: E402
from tests.integration.procs import (  # noqa: E402
    free_port,
    http_ok,
    process,
    vigil_detector_argv,
    wait_until,
)
from tests.integration.stack import Webhook, alertmanager, am_config, shifted, write  # noqa: E402

VIGIL_CONFIG = """
alerting:
  resend_s: 10
  retry_initial_s: 0.5
  retry_max_s: 5
  timeout_s: 2
  max_pending: {max_pending}
  stale_min_s: 3600  # injected series send no samples after their shift; that is not silence
alerts:  # shifted() samples every second: the rule at that cadence (ONE_SECOND_RULE)
  - name: VigilAnomaly
    match: '{{__name__=~"outage_anomaly_.*"}}'
    for_s: 3
    resolve_s: 5
  - name: VigilSteady  # the steady series may page too; counted, not required
    for_s: 3
    resolve_s: 5
"""


def metric_sum(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


class SteadyLoad:
    """``n`` series, one sample each per second (seeded noise around fixed levels)."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.sent = self.failed = 0
        self.rng = np.random.default_rng(11)
        self.levels = 10.0 + 90.0 * self.rng.random(n)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            tick = time.monotonic()
            now = int(time.time() * 1000)
            values = self.levels * (1.0 + 0.01 * self.rng.standard_normal(self.n))
            batch = [
                encode.Series(
                    labels=(("__name__", "outage_steady"), ("i", str(i))), samples=[(now, float(v))]
                )
                for i, v in enumerate(values)
            ]
            try:
                write(self.port, batch)
                self.sent += self.n
            except Exception:  # counted: a refused write is a finding of this bench
                self.failed += 1
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


def arrived(hook: Webhook) -> set[str]:
    """The injected anomalies whose firing alert reached the webhook."""
    return {
        a["labels"].get("metric_name", "")
        for n in hook.notifications
        for a in n["alerts"]
        if a["status"] == "firing" and a["labels"].get("alertname") == "VigilAnomaly"
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--outage-s", type=float, default=300.0)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--anomaly-every-s", type=float, default=20.0)
    ap.add_argument("--max-pending", type=int, default=10_000)
    ap.add_argument("--return-timeout-s", type=float, default=120.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-outage-"))
    vigil_port, am_port = free_port(), free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    cfg = work / "vigil.yaml"
    cfg.write_text(VIGIL_CONFIG.format(max_pending=args.max_pending))
    injected: list[str] = []

    def inject() -> None:
        name = f"outage_anomaly_{len(injected)}"
        write(
            vigil_port, [shifted(name, end_ms=int(time.time() * 1000) - 1000, seed=len(injected))]
        )
        injected.append(name)

    result: dict[str, Any] = {
        "bench": "outage",
        "outage_s": args.outage_s,
        "steady_series": args.series,
        "max_pending": args.max_pending,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    with Webhook() as hook:
        am_cfg = am_config(work / "am.yml", hook.url)
        with process(
            "vigil",
            vigil_detector_argv(vigil_port, "--config", str(cfg), "--alertmanager", am_url),
            work,
            ready_url=f"http://127.0.0.1:{vigil_port}/readyz",
            timeout_s=180,
        ):
            load = SteadyLoad(vigil_port, args.series)
            load.thread.start()
            try:
                with alertmanager("am1", work, am_cfg, port=am_port):
                    inject()
                    wait_until(
                        "the first alert at the webhook",
                        lambda: set(injected) <= arrived(hook),
                        timeout_s=60,
                    )
                print(f"before: alert delivered; Alertmanager stopped for {args.outage_s:.0f} s")
                failures0 = metric_sum(vigil_port, "vigil_alert_send_failures_total")
                start = time.monotonic()
                next_anomaly = start
                max_pending = 0.0
                not_ready = 0
                next_print = start
                while (elapsed := time.monotonic() - start) < args.outage_s:
                    if time.monotonic() >= next_anomaly:
                        inject()
                        next_anomaly += args.anomaly_every_s
                    pending = metric_sum(vigil_port, "vigil_alerts_pending")
                    max_pending = max(max_pending, pending)
                    if not http_ok(f"http://127.0.0.1:{vigil_port}/readyz"):
                        not_ready += 1
                    if time.monotonic() >= next_print:
                        next_print += 30.0
                        print(
                            f"  t={elapsed:5.0f} s pending={pending:.0f} "
                            f"injected={len(injected)} writes_failed={load.failed}"
                        )
                    time.sleep(1.0)  # sampling interval of the figures
                pending_at_return = metric_sum(vigil_port, "vigil_alerts_pending")
                dropped = metric_sum(vigil_port, "vigil_alerts_dropped_total")
                failures = metric_sum(vigil_port, "vigil_alert_send_failures_total") - failures0
                during = set(injected[1:])
                lost_before_return = during & arrived(hook)
                with alertmanager("am2", work, am_cfg, port=am_port):
                    back = time.monotonic()
                    wait_until(
                        "every injected anomaly's alert at the webhook",
                        lambda: set(injected) <= arrived(hook),
                        timeout_s=args.return_timeout_s,
                        interval_s=0.5,
                    )
                    all_in_s = time.monotonic() - back
                    pending_after = metric_sum(vigil_port, "vigil_alerts_pending")
            finally:
                load.stop.set()
                load.thread.join()
            log_text = (work / "vigil.log").read_text(errors="replace")
            steady = {
                a["labels"].get("i")
                for n in hook.notifications
                for a in n["alerts"]
                if a["labels"].get("alertname") == "VigilSteady"
            }
    result.update(
        {
            "anomalies_injected": len(injected),
            "anomalies_during_outage": len(during),
            "delivered_during_outage": len(lost_before_return),  # must be 0: nothing to reach
            "max_pending": max_pending,
            "pending_at_return": pending_at_return,
            "pending_after_return": pending_after,
            "dropped": dropped,
            "failed_posts_during_outage": failures,
            "all_arrived": set(injected) <= arrived(hook),
            "seconds_to_all_delivered_after_return": round(all_in_s, 2),
            "steady_samples_sent": load.sent,
            "steady_writes_failed": load.failed,
            "detector_not_ready_samples": not_ready,
            "steady_series_alerts": len(steady),
            "detector_log_errors": len(re.findall(r'"level": "ERROR"', log_text)),
        }
    )
    print(
        f"injected {len(injected)} anomalies ({len(during)} during the outage); "
        f"queued at most {max_pending:.0f} alert updates (bound {args.max_pending}); "
        f"dropped {dropped:.0f}; {failures:.0f} failed POSTs during the outage"
    )
    print(
        f"after the return: every alert arrived in {all_in_s:.1f} s "
        f"(pending now {pending_after:.0f}); steady writes failed: {load.failed}"
    )
    print(json.dumps(result))
    ok = result["all_arrived"] and dropped == 0 and max_pending <= args.max_pending
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
