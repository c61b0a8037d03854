"""Two remediator processes, one real Alertmanager notifying both, one Kubernetes API
double (its own process): one replica acts, the other records; kill -9 the leader, the
other takes over within the lease duration, and no action runs twice."""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.procs import free_port, process, wait_until
from tests.integration.stack import alertmanager, get_json

pytestmark = [pytest.mark.integration, pytest.mark.kube]

PLAYBOOK = """apiVersion: vigil/v1
kind: Playbook
metadata: {name: scale-workers}
spec:
  match: {labels: {alertname: QueueBacklog}}
  mode: auto
  guards: {respect_silences: false, cooldown_s: 3600}
  steps:
    - name: scale
      action: kubernetes.scale
      params: {namespace: '{{ labels.namespace }}', name: '{{ labels.deployment }}',
               delta: 2, max_replicas: 10}
"""

CONFIG = """cluster:
  namespace: vigil
  identity: {name}
  lease_duration_s: 4
  retry_s: 0.5
"""


def _post_alert(am: str, deployment: str) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": {"alertname": "QueueBacklog", "namespace": "shop", "deployment": deployment},
            "startsAt": now.isoformat().replace("+00:00", "Z"),
            "endsAt": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        }
    ]
    req = urllib.request.Request(
        f"{am}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=5).close()


def _replicas(api: str, name: str) -> int:
    return int(
        get_json(f"{api}/apis/apps/v1/namespaces/shop/deployments/{name}")["spec"]["replicas"]
    )


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def _remediator(tmp_path: Path, name: str, port: int, kubeconfig: Path):
    (tmp_path / name).mkdir()
    (tmp_path / name / "playbooks").mkdir()
    (tmp_path / name / "playbooks" / "scale-workers.yaml").write_text(PLAYBOOK)
    (tmp_path / name / "config.yaml").write_text(CONFIG.format(name=name))
    argv = [
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--config",
        str(tmp_path / name / "config.yaml"),
        "--playbooks",
        str(tmp_path / name / "playbooks"),
        "--state-dir",
        str(tmp_path / name / "state"),
        "--kubeconfig",
        str(kubeconfig),
    ]
    return process(
        f"remediator-{name}",
        argv,
        tmp_path,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        timeout_s=60,
    )


def test_failover_after_kill_9(tmp_path: Path):
    api_port, a_port, b_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    kubeconfig = tmp_path / "kubeconfig"
    (tmp_path / "am.yml").write_text(f"""
route:
  receiver: vigil
  group_by: [alertname, deployment]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: vigil
    webhook_configs:
      - url: http://127.0.0.1:{a_port}/webhook
      - url: http://127.0.0.1:{b_port}/webhook
""")
    double = [
        sys.executable,
        "-m",
        "tests.kube",
        "--port",
        str(api_port),
        "--namespace",
        "vigil",
        "--namespace",
        "shop",
        "--deployment",
        "shop/worker:3",
        "--deployment",
        "shop/mailer:1",
        "--kubeconfig",
        str(kubeconfig),
    ]
    with (
        process(
            "api-double",
            double,
            tmp_path,
            ready_url=f"{api}/version",
            env={"PYTHONPATH": str(ROOT)},
        ),
        alertmanager("am", tmp_path, tmp_path / "am.yml") as (am, _),
        _remediator(tmp_path, "a", a_port, kubeconfig) as proc_a,
    ):
        wait_until("a leads", lambda: _metric(a_port, "vigil_remediator_leader") == 1, timeout_s=20)
        with _remediator(tmp_path, "b", b_port, kubeconfig):
            wait_until(
                "b follows", lambda: _metric(b_port, "vigil_remediator_leader") == 0, timeout_s=20
            )
            _post_alert(am, "worker")
            wait_until("a scaled the workers", lambda: _replicas(api, "worker") == 5, timeout_s=30)
            wait_until(
                "b recorded the notifications",
                lambda: _metric(b_port, 'vigil_webhook_requests_total{code="200"}') >= 2,
                timeout_s=30,
            )
            assert get_json(f"http://127.0.0.1:{b_port}/api/v1/runs")["data"] == []
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait()
            wait_until(
                "b took over within the lease duration",
                lambda: _metric(b_port, "vigil_remediator_leader") == 1,
                timeout_s=4 + 2,
            )
            runs = get_json(f"http://127.0.0.1:{b_port}/api/v1/runs")["data"]
            assert [(r["playbook"], r["state"]) for r in runs] == [("scale-workers", "succeeded")]
            assert "of replica a" in runs[0]["outcome"]
            # Alertmanager keeps repeating the worker alert to b: nothing runs twice
            seen = _metric(b_port, 'vigil_webhook_requests_total{code="200"}')
            wait_until(
                "two more notifications",
                lambda: _metric(b_port, 'vigil_webhook_requests_total{code="200"}') >= seen + 2,
                timeout_s=30,
            )
            assert _replicas(api, "worker") == 5
            # and b acts on a new alert
            _post_alert(am, "mailer")
            wait_until("b scaled the mailer", lambda: _replicas(api, "mailer") == 3, timeout_s=30)
            assert _replicas(api, "worker") == 5
