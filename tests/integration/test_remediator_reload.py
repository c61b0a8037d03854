"""SIGHUP reloads a running remediator process: a bad config is refused and counted, the
last good playbooks stay; a good one loads config and playbooks together."""

from __future__ import annotations

import shutil
import signal
import sys
import urllib.request
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
    argv = [sys.executable, "-m", "remediator", "serve", "--listen", f"127.0.0.1:{port}",
            "--playbooks", str(book), "--config", str(config),
            "--state-dir", str(tmp_path / "state")]
    with process("remediator", argv, tmp_path, ready_url=f"{url}/readyz") as proc:
        assert _metric(url, "vigil_config_last_reload_successful") == 1
        first = _metric(url, "vigil_config_last_reload_success_timestamp_seconds")
        names = [p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]]

        config.write_text("guards: {max_concurrent: 0}\n")  # below the minimum of 1
        shutil.copy(PLAYBOOKS / "check-noisy.yaml", book)
        proc.send_signal(signal.SIGHUP)
        wait_until("the bad reload is counted", lambda: _metric(
            url, "vigil_config_last_reload_successful") == 0, timeout_s=20)
        log = (tmp_path / "remediator.log").read_text()
        assert f"reload: {config}:1: guards.max_concurrent: Input should be greater than " \
               "or equal to 1" in log
        assert [p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]] == names

        config.write_text("guards: {max_concurrent: 3}\n")
        proc.send_signal(signal.SIGHUP)
        wait_until("the good reload", lambda: _metric(
            url, "vigil_config_last_reload_successful") == 1, timeout_s=20)
        assert _metric(url, "vigil_config_last_reload_success_timestamp_seconds") >= first
        loaded = {p["name"] for p in get_json(f"{url}/api/v1/playbooks")["loaded"]}
        assert loaded == {*names, "check-noisy"}
        assert proc.poll() is None  # SIGHUP did not stop it
