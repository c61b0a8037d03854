"""kill -9 of a real vigil-detector under load, then a restart on the same --state-dir:
the state comes back from the last periodic checkpoint, the alert that was firing is still
active in a real Alertmanager with its original startsAt, and no other alert appears
while the load goes on (no alert storm)."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from detector.remote_write import encode
from tests.integration.procs import free_port, process, vigil_detector_argv, wait_until
from tests.integration.stack import (
    ONE_SECOND_RULE,
    alertmanager,
    am_alerts,
    am_config,
    ms,
    shifted,
    write,
)

pytestmark = pytest.mark.integration

N_CALM = 200
ROUNDS_AFTER = 30
CONFIG = (
    """
checkpoint:
  interval_s: 0.5
alerting:
  resend_s: 5          # Alertmanager keeps the alert 20 s without news: longer than a restart
  retry_initial_s: 0.2
  retry_max_s: 1
  timeout_s: 2
  stale_min_s: 600     # the alerting series gets no samples after its shift
"""
    + ONE_SECOND_RULE
)


def _vigil(tmp_path: Path, name: str, port: int, am: str, state: Path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(CONFIG)
    argv = vigil_detector_argv(
        port, "--config", str(cfg), "--state-dir", str(state), "--alertmanager", am
    )
    return process(name, argv, tmp_path, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=180)


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _ours(alert: dict) -> bool:
    return alert["labels"].get("metric_name") == "checkout_latency_seconds"


def _calm(ts_ms: int, step: int) -> list[encode.Series]:
    """One sample of every calm series at ``ts_ms`` (noise around 1.0, no shift)."""
    return [
        encode.Series(
            labels=(("__name__", "queue_depth"), ("instance", f"i{i:03}")),
            samples=[(ts_ms, 1.0 + 0.05 * (((i * 7919 + step * 104729) % 13) - 6) / 6)],
        )
        for i in range(N_CALM)
    ]


class Load(threading.Thread):
    """Posts a round of calm samples after another until the detector stops answering."""

    def __init__(self, port: int, first_ts_ms: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.next_ts_ms = first_ts_ms
        self.rounds = 0
        self.progress = threading.Event()

    def run(self) -> None:
        while True:
            try:
                write(self.port, _calm(self.next_ts_ms, self.rounds))
            except (OSError, http.client.HTTPException, urllib.error.URLError):
                return  # killed
            self.next_ts_ms += 1000
            self.rounds += 1
            self.progress.set()


def test_kill_9_restarts_from_the_periodic_checkpoint_without_an_alert_storm(tmp_path):
    t0 = time.monotonic()
    state = tmp_path / "state"
    now = int(time.time() * 1000)
    history_end = now - 60_000
    history = [
        shifted("queue_depth", end_ms=history_end, n_shift=0, seed=i, instance=f"i{i:03}")
        for i in range(N_CALM)
    ]
    with alertmanager(
        "am", tmp_path, am_config(tmp_path / "am.yml", "http://127.0.0.1:1/unused")
    ) as (am, _):
        port = free_port()
        with _vigil(tmp_path, "vigil-1", port, am, state) as proc:
            for start in range(0, N_CALM, 50):
                write(port, history[start : start + 50])
            write(
                port, [shifted("checkout_latency_seconds", end_ms=history_end, service="checkout")]
            )
            wait_until(
                "the alert in Alertmanager", lambda: any(map(_ours, am_alerts(am))), timeout_s=30
            )
            fired_s = time.time()
            wait_until(
                "a periodic checkpoint taken after the alert fired",
                lambda: _metrics(port)["vigil_checkpoint_last_success_timestamp_seconds"] > fired_s,
                timeout_s=30,
            )
            load = Load(port, history_end + 1000)
            load.start()
            for _ in range(3):  # a few rounds in: kill it while it is being written to
                load.progress.clear()
                assert load.progress.wait(30), "the load stopped before the kill"
            [before] = [a for a in am_alerts(am) if _ours(a)]
            proc.kill()  # SIGKILL: no shutdown checkpoint, no flush
            proc.wait()
            load.join(30)
        assert proc.returncode == -9

        port = free_port()
        with _vigil(tmp_path, "vigil-2", port, am, state):
            m = _metrics(port)
            assert m["vigil_active_series"] == N_CALM + 1
            assert m["vigil_checkpoint_series"] == N_CALM + 1
            assert m["vigil_checkpoint_last_success_timestamp_seconds"] > fired_s
            assert not any(
                v for k, v in m.items() if k.startswith("vigil_checkpoints_skipped_total")
            )
            assert m['vigil_alert_events_total{kind="restored"}'] == 1

            def resent() -> bool:
                return any(
                    v > 0
                    for k, v in _metrics(port).items()
                    if k.startswith("vigil_alerts_sent_total{")
                )

            wait_until("the firing alert announced again", resent, timeout_s=30)
            [after] = [a for a in am_alerts(am) if _ours(a)]
            assert after["status"]["state"] == "active"
            assert after["startsAt"] == before["startsAt"]  # the same alert, not a new one
            assert ms(after["endsAt"]) > ms(before["endsAt"])  # and it came from vigil-2

            accepted = _metrics(port).get("vigil_samples_accepted_total", 0.0)
            ts = load.next_ts_ms
            for step in range(ROUNDS_AFTER):  # the load goes on, now on the restored state
                write(port, _calm(ts + step * 1000, load.rounds + step))
            wait_until(
                "the load after the restart applied",
                lambda: (
                    _metrics(port)["vigil_samples_accepted_total"]
                    >= accepted + ROUNDS_AFTER * N_CALM
                ),
                timeout_s=30,
            )
            m = _metrics(port)
            assert not any(k.startswith('vigil_alert_events_total{kind="fire"}') for k in m)
            assert m.get("vigil_alerts_firing") == 1
            alerts = am_alerts(am)
            assert [a["labels"]["alertname"] for a in alerts if not _ours(a)] == []
            assert [a["startsAt"] for a in alerts if _ours(a)] == [before["startsAt"]]
    assert time.monotonic() - t0 < 60
