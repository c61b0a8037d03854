"""SIGHUP reloads a running remediator process: a bad config is refused and counted, the
last good playbooks stay; a good one loads config and playbooks together."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.procs import free_port, process, wait_until
from tests.integration.stack import get_json

pytestmark = pytest.mark.integration
PLAYBOOKS = Path(__file__).parent / "playbooks"


def _metric(url: str, name: str) -> float | None:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_sighup_reloads_config_and_playbooks_or_keeps_the_last_good(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    book = tmp_path / "playbooks"
    book.mkdir()
    shutil.copy(PLAYBOOKS / "silence-disk-flapping.yaml", book)
    config = tmp_path / "remediator.yaml"
    config.write_text("guards: {max_concurrent: 5}\n")
    argv = [
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--playbooks",
        str(book),
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    with process("remediator", argv, tmp_path, ready_url=f"{url}/readyz") as proc:
        assert _metric(url, "vigil_config_last_reload_successful") == 1
        first = _metric(url, "vigil_config_last_reload_success_timestamp_seconds")
        names = [p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]]

        config.write_text("guards: {max_concurrent: 0}\n")  # below the minimum of 1
        shutil.copy(PLAYBOOKS / "check-noisy.yaml", book)
        proc.send_signal(signal.SIGHUP)
        wait_until(
            "the bad reload is counted",
            lambda: _metric(url, "vigil_config_last_reload_successful") == 0,
            timeout_s=20,
        )
        log = (tmp_path / "remediator.log").read_text()
        assert (
            f"reload: {config}:1: guards.max_concurrent: Input should be greater than "
            "or equal to 1" in log
        )
        assert [p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]] == names

        config.write_text("guards: {max_concurrent: 3}\n")
        proc.send_signal(signal.SIGHUP)
        wait_until(
            "the good reload",
            lambda: _metric(url, "vigil_config_last_reload_successful") == 1,
            timeout_s=20,
        )
        again = _metric(url, "vigil_config_last_reload_success_timestamp_seconds")
        assert first is not None and again is not None and again >= first
        loaded = {p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]}
        assert loaded == {*names, "check-noisy"}
        assert proc.poll() is None  # SIGHUP did not stop it


LOAD_PLAYBOOK = """apiVersion: vigil/v1
kind: Playbook
metadata: {name: silence-under-load}
spec:
  match:
    labels: {alertname: UnderLoad}
  mode: dryRun
  guards:
    respect_silences: false
    cooldown_s: 0
    max_concurrent: 100
    rate: {max_runs: 10000, window_s: 1h}
  steps:
    - name: silence
      action: alertmanager.silence
      params: {matchers: ['alertname="UnderLoad"', 'instance="{{ labels.instance }}"']}
"""


def _post_webhook(url: str, i: int) -> int:
    alert = {
        "status": "firing",
        "labels": {"alertname": "UnderLoad", "instance": f"h-{i}"},
        "annotations": {},
        "startsAt": "2026-11-27T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": f"{i:016x}",
    }
    body = {
        "version": "4",
        "receiver": "vigil",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "groupKey": str(i),
        "truncatedAlerts": 0,
    }
    req = urllib.request.Request(
        f"{url}/webhook",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def test_bad_and_good_reloads_under_webhook_load_drop_nothing(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    book = tmp_path / "playbooks"
    book.mkdir()
    (book / "silence-under-load.yaml").write_text(LOAD_PLAYBOOK)
    config = tmp_path / "remediator.yaml"
    good = "guards: {max_concurrent: 200, rate: {max_runs: 10000, window_s: 1h}}\n"
    config.write_text(good)
    argv = [
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--playbooks",
        str(book),
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    n = 150
    with process("remediator", argv, tmp_path, ready_url=f"{url}/readyz") as proc:
        with ThreadPoolExecutor(4) as pool:
            posted = [pool.submit(_post_webhook, url, i) for i in range(n)]
            reloads = 0
            while not all(f.done() for f in posted):
                bad = reloads % 2 == 0
                config.write_text("guards: {max_concurrent: -1}\n" if bad else good)
                proc.send_signal(signal.SIGHUP)
                reloads += 1
                want = 0 if bad else 1

                def counted(w: int = want) -> bool:
                    return _metric(url, "vigil_config_last_reload_successful") == w

                wait_until(f"reload {reloads} counted", counted, timeout_s=20)
            statuses = [f.result() for f in posted]
        assert statuses == [200] * n
        assert reloads >= 2, "the webhooks were done before two reloads"

        def runs() -> list[dict]:
            return get_json(f"{url}/api/v1/runs?limit=1000")["data"]

        wait_until(
            "every notification ran",
            lambda: len(runs()) == n and all(r["state"] == "dry_run" for r in runs()),
            timeout_s=60,
        )
        assert proc.poll() is None
