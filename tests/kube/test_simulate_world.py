"""``simulate --kubeconfig``: the target is resolved through the API as a run resolves it
(pod → ReplicaSet → Deployment), only by reading; the plan is bound to that object; an
alert naming nothing that exists is reported as a run would end (no action). Without a
kubeconfig the report says the target was not looked up."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from remediator.__main__ import main
from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from remediator.cluster.kube import Kube
from remediator.config import RemediatorConfig
from remediator.simulate import observe, simulate
from remediator.webhook import alert_from_json
from tests.kube.test_dry_run_sends_nothing import KUBE_READS

pytestmark = pytest.mark.kube
ROOT = Path(__file__).resolve().parents[2]
NS = "shop"
REGISTRY = build_registry()


def _alert(**labels: str):
    return alert_from_json(
        {
            "status": "firing",
            "labels": {"alertname": "ContainerMemoryNearLimit", "namespace": NS, **labels},
            "annotations": {},
            "startsAt": "2026-11-25T10:00:00Z",
            "fingerprint": "f1",
        }
    )


@pytest.fixture
def catalog(tmp_path: Path):
    book = tmp_path / "playbooks"
    book.mkdir()
    shutil.copy(ROOT / "playbooks" / "memory-growth-restart.yaml", book)
    loaded = load_catalog([book], REGISTRY)
    assert loaded.ok, loaded.problems
    return loaded


async def test_the_target_is_resolved_by_reading_only(kube_double, catalog):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_node("node-1")
    seeded = d.seed_deployment("web", NS, replicas=3)
    pod = seeded.pods[0]["metadata"]["name"]
    kube = Kube(await kube_double.api_client())
    d.requests.clear()
    alert = _alert(pod=pod, container="app")
    seen = await observe(
        alert, catalog, REGISTRY, services=None, prometheus=False, alertmanager=False, kube=kube
    )
    assert {r.verb for r in d.requests} <= KUBE_READS and d.requests
    report = simulate(alert, catalog, REGISTRY, RemediatorConfig(), now_ms=0, seen=seen)
    [match] = report["matches"]
    dep = seeded.deployment["metadata"]
    assert match["target"] == f"deployment/{NS}/web"
    assert match["resolved_target"] == {
        "kind": "deployment",
        "namespace": NS,
        "name": "web",
        "uid": dep["uid"],
        "generation": dep.get("generation", 0),
        "chain": [
            f"pod/{pod}",
            f"replicaset/{seeded.replicasets[-1]['metadata']['name']}",
            "deployment/web",
        ],
    }
    [restart] = match["plan"]
    assert restart["params"] == {"kind": "deployment", "namespace": NS, "name": "web"}
    assert not any("target" in n for n in match["not_evaluated"])
    assert match["decision"]["act"] is True


async def test_an_alert_naming_nothing_that_exists_would_not_act(kube_double, catalog):
    kube_double.double.seed_namespace(NS)
    kube = Kube(await kube_double.api_client())
    alert = _alert(pod="gone-7d4f9-abcde")
    seen = await observe(
        alert, catalog, REGISTRY, services=None, prometheus=False, alertmanager=False, kube=kube
    )
    [match] = simulate(alert, catalog, REGISTRY, RemediatorConfig(), now_ms=0, seen=seen)["matches"]
    assert match["target_error"] == "the alert's labels name no object that exists in the cluster"
    assert match["guards"][0] == {
        "guard": "target",
        "allow": False,
        "reason": match["target_error"],
    }
    assert match["decision"]["act"] is False


async def test_the_cli_takes_a_kubeconfig_and_says_what_it_did_not_see(
    kube_double, catalog, tmp_path
):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_node("node-1")
    d.seed_deployment("web", NS)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "double",
                "clusters": [{"name": "double", "cluster": {"server": kube_double.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u"}}],
            }
        )
    )
    alert = tmp_path / "alert.json"
    alert.write_text(
        json.dumps(
            {
                "status": "firing",
                "labels": {
                    "alertname": "ContainerMemoryNearLimit",
                    "namespace": NS,
                    "deployment": "web",
                },
                "startsAt": "2026-11-25T10:00:00Z",
                "fingerprint": "f1",
            }
        )
    )

    def run(*extra: str) -> dict:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert (
                main(
                    [
                        "simulate",
                        "--alert",
                        str(alert),
                        "--playbooks",
                        str(tmp_path / "playbooks"),
                        *extra,
                    ]
                )
                == 0
            )
        return json.loads(buf.getvalue())

    d.requests.clear()
    seen = await asyncio.to_thread(run, "--kubeconfig", str(kubeconfig))
    assert {r.verb for r in d.requests} <= KUBE_READS and d.requests
    [match] = seen["matches"]
    assert match["resolved_target"]["name"] == "web"
    assert match["not_evaluated"] == [
        "precondition 'kube_deployment_status_replicas_available{namespace=\"{{ labels."
        'namespace }}"} / kube_deployment_spec_replicas{namespace="{{ labels.namespace }}'
        "\"} >= 0.8': not evaluated (give --prometheus URL)",
        "silence: Alertmanager's silences not read (give --alertmanager URL)",
    ]
    blind = await asyncio.to_thread(run)
    assert "resolved_target" not in blind["matches"][0]
    assert blind["matches"][0]["not_evaluated"][-1].startswith(
        "target: named from the alert's labels only, not looked up in the cluster "
        "(give --kubeconfig FILE)"
    )
