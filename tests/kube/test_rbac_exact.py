"""``vigil-remediator rbac`` grants what the loaded playbooks' actions use and nothing
more: checked against the API double's request log of whole runs, and against catalogs
without cluster actions."""

from __future__ import annotations

import pytest

from remediator import rbac
from remediator.app import build_registry
from remediator.audit import RunState
from remediator.catalog import load_catalog
from tests.conftest import ROOT
from tests.kube.test_remediation import CORDON_PLAYBOOK, SCALE_PLAYBOOK, _start
from tests.unit.remediator.test_app import notification, settle

pytestmark = pytest.mark.kube
NS = "shop"
RESOLVE = {(g, r, v) for g, r, verbs in rbac.RESOLVE for v in verbs}


def _granted(objects, kind="ClusterRole"):
    return {(g, r, v) for obj in objects if obj["kind"] == kind for rule in obj["rules"]
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def _used(double):
    return {(g, r, v) for (g, r), verbs in double.rbac_rules().items() for v in verbs}


def _render(tmp_path, playbooks):
    book = tmp_path / "rbac-book"
    book.mkdir(exist_ok=True)
    for name, text in playbooks.items():
        (book / name).write_text(text)
    registry = build_registry()
    catalog = load_catalog([book], registry)
    assert catalog.ok, catalog.problems
    return rbac.render(catalog, registry, namespace="vigil")


@pytest.mark.parametrize(("file", "playbook", "alert", "other_kinds"), [
    # scale may act on a StatefulSet or ReplicaSet too (its `kind` param): those grants are
    # the only ones this run did not use
    ("scale-up.yaml", SCALE_PLAYBOOK, "QueueBacklog", {("apps", "statefulsets/scale", "get"),
                                      ("apps", "statefulsets/scale", "patch"),
                                      ("apps", "replicasets/scale", "get"),
                                      ("apps", "replicasets/scale", "patch")}),
    ("cordon-node.yaml", CORDON_PLAYBOOK, "NodeFlaky", set()),
], ids=["scale", "cordon"])
async def test_the_grants_are_exactly_what_a_run_and_its_undo_use(
        aiohttp_client, tmp_path, kube_double, file, playbook, alert, other_kinds):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_node("node-4")
    pod = d.seed_deployment("worker", NS, replicas=3, node="node-4").pods[0]["metadata"]["name"]
    objects = _render(tmp_path, {file: playbook})
    client, st, fake, clock = await _start(aiohttp_client, tmp_path, kube_double,
                                           {file: playbook})
    d.clear_requests()
    await client.post("/webhook", json=notification(alert, namespace=NS, pod=pod,
                                                    node="node-4"))
    await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)  # acted, undone
    used, granted = _used(d), _granted(objects)
    assert used <= granted, f"used but not granted: {used - granted}"
    assert granted - used - RESOLVE == other_kinds
    assert {t for t in granted if t[2] not in ("get", "list", "watch")} - used <= other_kinds


def test_playbooks_without_cluster_actions_get_no_cluster_role(tmp_path):
    silence = (ROOT / "tests" / "unit" / "remediator" / "playbooks" /
               "silence-noisy-disk.yaml").read_text()
    objects = _render(tmp_path, {"silence-noisy-disk.yaml": silence})
    assert _granted(objects) == set()
    # only the replicas' coordination objects, in their own namespace
    assert {o["kind"] for o in objects} == {"Role", "RoleBinding"}
    assert all(o["metadata"]["namespace"] == "vigil" for o in objects)


def test_the_shipped_playbooks_never_get_wildcards_secrets_or_rbac_verbs():
    registry = build_registry()
    objects = rbac.render(load_catalog([ROOT / "playbooks"], registry), registry,
                          namespace="vigil")
    granted = _granted(objects) | _granted(objects, "Role")
    assert granted
    assert not {t for t in granted if "*" in t}
    assert not {t for t in granted if t[1].split("/")[0] in ("secrets", "roles", "rolebindings",
                                                            "clusterroles", "serviceaccounts")}
    assert not {t for t in granted if t[2] in ("escalate", "bind", "impersonate",
                                                "deletecollection")}
