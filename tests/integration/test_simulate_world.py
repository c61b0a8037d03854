"""``simulate --prometheus --alertmanager`` against the real processes: pre-conditions are
evaluated (one holds, one does not, and the guard says which), a matching Alertmanager
silence refuses the run; without the URLs the report names what it could not evaluate."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediator.__main__ import main
from tests.integration.procs import free_port, process, require, wait_until
from tests.integration.stack import alertmanager, am_config, get_json

pytestmark = pytest.mark.integration

PLAYBOOK = """apiVersion: vigil/v1
kind: Playbook
metadata: {name: silence-flapping-target}
spec:
  match:
    labels: {alertname: TargetFlapping}
  mode: auto
  guards:
    preconditions:
      - query: 'up{job="{{ labels.job }}"} == 1'
        description: the target is scraped
      - query: 'up{job="{{ labels.job }}"} == 0'
        description: the target is down
  steps:
    - name: silence
      action: alertmanager.silence
      params: {matchers: ['alertname="TargetFlapping"', 'job="{{ labels.job }}"']}
"""


def _simulate(tmp_path: Path, *extra: str) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert (
            main(
                [
                    "simulate",
                    "--alert",
                    str(tmp_path / "alert.json"),
                    "--playbooks",
                    str(tmp_path / "playbooks"),
                    *extra,
                ]
            )
            == 0
        )
    [match] = json.loads(buf.getvalue())["matches"]
    return dict(match)


def _silence(am: str, job: str) -> None:
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "job", "value": job, "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "test",
        "comment": "maintenance",
    }
    req = urllib.request.Request(
        f"{am}/api/v2/silences",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_simulate_evaluates_preconditions_and_silences_in_the_real_world(tmp_path):
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "silence-flapping-target.yaml").write_text(PLAYBOOK)
    (tmp_path / "alert.json").write_text(
        json.dumps(
            {
                "status": "firing",
                "labels": {"alertname": "TargetFlapping", "job": "prometheus"},
                "startsAt": "2026-11-25T10:00:00Z",
                "fingerprint": "f1",
            }
        )
    )
    port = free_port()
    prom = f"http://127.0.0.1:{port}"
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: prometheus\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    with (
        process(
            "prometheus",
            [
                require("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            tmp_path,
            ready_url=f"{prom}/-/ready",
        ),
        alertmanager("am", tmp_path, am_config(tmp_path / "am.yml", "http://127.0.0.1:9/hook")) as (
            am,
            _,
        ),
    ):
        wait_until(
            "Prometheus scrapes itself",
            lambda: bool(get_json(f"{prom}/api/v1/query?query=up")["data"]["result"]),
            timeout_s=30,
        )

        blind = _simulate(tmp_path)
        assert blind["not_evaluated"] == [
            "precondition 'up{job=\"{{ labels.job }}\"} == 1': not evaluated "
            "(give --prometheus URL)",
            "precondition 'up{job=\"{{ labels.job }}\"} == 0': not evaluated "
            "(give --prometheus URL)",
            "silence: Alertmanager's silences not read (give --alertmanager URL)",
        ]
        assert "preconditions" not in blind

        seen = _simulate(tmp_path, "--prometheus", prom, "--alertmanager", am)
        assert seen["not_evaluated"] == []
        assert seen["preconditions"] == [
            {"what": "the target is scraped", "holds": True, "detail": "1 series"},
            {"what": "the target is down", "holds": False, "detail": "0 series"},
        ]
        guards = {g["guard"]: g for g in seen["guards"]}
        assert guards["precondition"]["allow"] is False
        assert "the target is down" in guards["precondition"]["reason"]
        assert guards["silence"]["allow"] is True
        assert seen["decision"]["act"] is False

        _silence(am, "prometheus")
        silenced = _simulate(tmp_path, "--prometheus", prom, "--alertmanager", am)
        guards = {g["guard"]: g for g in silenced["guards"]}
        assert guards["silence"]["allow"] is False
        assert guards["silence"]["reason"].startswith("silenced by ")
