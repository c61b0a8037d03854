"""Reloads of a real ``vigil-detector serve`` under load: a sender streams remote-write
while the config file is swapped between good and bad versions and the process gets
SIGHUP after each. Every request gets a 2xx, every sample is counted and applied, bad
configs are refused with their file:line problems, and series whose detector did not
change keep what they learned."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from detector.remote_write import encode
from tests.integration.procs import free_port, process, vigil_detector_argv, wait_until
from tests.integration.stack import V1

pytestmark = pytest.mark.integration

N_SERIES = 20  # per job and sender
N_SENDERS = 3  # requests in flight at once while the reloads happen
GOOD = """\
series:
  - name: api
    match: '{job="api"}'
    detector: {kind: robust, alpha: 0.02}
  - name: db
    match: '{job="db"}'
    detector: {kind: robust, alpha: ALPHA}
alerts: []
"""
# (file text, accepted?): good, bad YAML, good with db's detector changed, bad schema, good
VERSIONS = [
    (GOOD.replace("ALPHA", "0.05"), True),
    (GOOD.replace("ALPHA", "0.05") + "  - [unclosed\n", False),
    (GOOD.replace("ALPHA", "0.1"), True),
    (GOOD.replace("ALPHA", "7") + "extra: 1\n", False),
    (GOOD.replace("ALPHA", "0.1").replace("alerts: []", "alerts: [{name: Quiet}]"), True),
]


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


class Sender(threading.Thread):
    """Posts one request per round (every series, one sample each) until stopped."""

    def __init__(self, port: int, t0_ms: int, first: int) -> None:
        super().__init__(daemon=True)
        self.port, self.t0_ms, self.first = port, t0_ms, first
        self.stop = threading.Event()
        self.rounds = 0
        self.statuses: list[int] = []

    def run(self) -> None:
        while not self.stop.is_set():
            ts = self.t0_ms + self.rounds * 1000
            series = [
                encode.Series(
                    labels=(("__name__", "x"), ("i", str(i)), ("job", job)),
                    samples=[(ts, 1.0 + (self.rounds % 7) * 0.01)],
                )
                for job in ("api", "db")
                for i in range(self.first, self.first + N_SERIES)
            ]
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/api/v1/write",
                method="POST",
                headers=V1,
                data=encode.compress(encode.encode_v1(series)),
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    self.statuses.append(resp.status)
            except urllib.error.HTTPError as exc:
                self.statuses.append(exc.code)
            self.rounds += 1


def test_reloads_under_load_drop_nothing(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "detector.yaml"
    cfg.write_text(VERSIONS[0][0])
    argv = vigil_detector_argv(port, "--config", str(cfg))
    with process(
        "vigil", argv, tmp_path, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=180
    ) as proc:
        log = tmp_path / "vigil.log"
        wait_until(
            "the ready line", lambda: "ready on http://127.0.0.1" in log.read_text(), log=log
        )
        t0_ms = int(time.time() * 1000) - 3_600_000
        senders = [Sender(port, t0_ms, k * N_SERIES) for k in range(N_SENDERS)]
        for sender in senders:
            sender.start()
        wait_until("load", lambda: min(s.rounds for s in senders) >= 20, log=log)
        done = {"success": 0.0, "failure": 0.0}
        for text, accepted in VERSIONS[1:]:
            cfg.write_text(text)
            rounds_before = min(s.rounds for s in senders)
            proc.send_signal(signal.SIGHUP)
            result = "success" if accepted else "failure"
            done[result] += 1

            def counted(r: str = result) -> bool:
                return _metrics(port).get(f'vigil_config_reloads_total{{result="{r}"}}') == done[r]

            wait_until(f"reload {result} #{int(done[result])}", counted, log=log)
            assert _metrics(port)["vigil_config_last_reload_successful"] == float(accepted)

            def sent_more(b: int = rounds_before) -> bool:
                return min(s.rounds for s in senders) >= b + 10

            wait_until("load after the reload", sent_more, log=log)
        for sender in senders:
            sender.stop.set()
            sender.join(timeout=30)
            assert set(sender.statuses) == {204}, sorted(set(sender.statuses))
        sent = sum(s.rounds for s in senders) * 2 * N_SERIES
        m = _metrics(port)
        assert m["vigil_samples_received_total"] == sent
        wait_until(
            "every sample applied",
            lambda: _metrics(port)["vigil_samples_accepted_total"] == sent,
            log=log,
        )
        # api's detector never changed: it learned every round; db's changed once
        assert m['vigil_series_state_reset_total{reason="config_changed"}'] == N_SENDERS * N_SERIES
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/series?limit=1000", timeout=5
        ) as resp:
            data = json.load(resp)["data"]
        rounds = {str(i): s.rounds for s in senders for i in range(s.first, s.first + N_SERIES)}
        api = {x["labels"]["i"]: x["samples"] for x in data if x["labels"]["job"] == "api"}
        db = {x["labels"]["i"]: x["samples"] for x in data if x["labels"]["job"] == "db"}
        assert api == rounds
        assert all(0 < n < rounds[i] for i, n in db.items()) and len(db) == len(rounds)
        text = log.read_text()
        assert f"{cfg}:9: (root): invalid YAML" in text
        assert f"{cfg}:7: series[1].detector.alpha: Input should be less than 1" in text
        assert f"{cfg}:9: extra: Extra inputs are not permitted" in text
        assert text.count("config reloaded from") == 2
        # the start said what it compiled and when it was ready
        assert "numba kernels 1/" in text and "numba kernels loaded in" in text
        assert text.index("numba kernels loaded in") < text.index("ready on http://127.0.0.1")
