"""``vigil-remediator rbac`` grants what the loaded playbooks' actions use and nothing
more, and only where they use it: checked against the API double's request log of whole
runs (each request's namespace against the Role that grants it), and against catalogs
without cluster actions."""

from __future__ import annotations

import pytest

from remediator import rbac
from remediator.app import build_registry
from remediator.audit.store import RunState
from remediator.catalog.loader import load_catalog
from tests.conftest import ROOT
from tests.kube.test_remediation import CORDON_PLAYBOOK, SCALE_PLAYBOOK, _start
from tests.unit.remediator.test_app import notification, settle

pytestmark = pytest.mark.kube
NS = "shop"
RESOLVE = {(NS, g, r, v) for g, r, verbs in rbac.RESOLVE for v in verbs}


def _granted(objects, kind=None):
    """{(namespace, group, resource, verb)}; namespace None for a ClusterRole's."""
    return {
        (obj["metadata"].get("namespace"), g, r, v)
        for obj in objects
        if obj["kind"] in ("Role", "ClusterRole") and kind in (None, obj["kind"])
        for rule in obj["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _used(double):
    """{(namespace, group, resource, verb)} of the requests; None for cluster-wide ones."""
    return {
        (
            r.namespace or None,
            r.group,
            f"{r.resource}/{r.subresource}" if r.subresource else r.resource,
            r.verb,
        )
        for r in double.requests
    }


def _render(tmp_path, playbooks):
    book = tmp_path / "rbac-book"
    book.mkdir(exist_ok=True)
    for name, text in playbooks.items():
        (book / name).write_text(text)
    registry = build_registry()
    catalog = load_catalog([book], registry)
    assert catalog.ok, catalog.problems
    return rbac.render(catalog, registry, namespace="vigil", namespaces=(NS,), replicas=False)


@pytest.mark.parametrize(
    ("file", "playbook", "alert"),
    [
        # scale's `kind` param is left at its default (deployment): no StatefulSet or
        # ReplicaSet scale is granted
        ("scale-up.yaml", SCALE_PLAYBOOK, "QueueBacklog"),
        ("cordon-node.yaml", CORDON_PLAYBOOK, "NodeFlaky"),
    ],
    ids=["scale", "cordon"],
)
async def test_the_grants_are_exactly_what_a_run_and_its_undo_use(
    aiohttp_client, tmp_path, kube_double, file, playbook, alert
):
    d = kube_double.double
    d.seed_namespace(NS)
    d.seed_node("node-4")
    pod = d.seed_deployment("worker", NS, replicas=3, node="node-4").pods[0]["metadata"]["name"]
    objects = _render(tmp_path, {file: playbook})
    client, st, _fake, _clock = await _start(
        aiohttp_client, tmp_path, kube_double, {file: playbook}
    )
    d.clear_requests()
    await client.post("/webhook", json=notification(alert, namespace=NS, pod=pod, node="node-4"))
    await settle(st, lambda runs: runs and runs[0].state == RunState.UNDONE)  # acted, undone
    used, granted = _used(d), _granted(objects)
    assert used <= granted, f"used but not granted (or not there): {used - granted}"
    assert granted - used - RESOLVE == set()
    assert {t[0] for t in granted} <= {NS, None}


def test_playbooks_without_cluster_actions_get_no_cluster_role(tmp_path):
    silence = (
        ROOT / "tests" / "unit" / "remediator" / "playbooks" / "silence-noisy-disk.yaml"
    ).read_text()
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "silence-noisy-disk.yaml").write_text(silence)
    registry = build_registry()
    catalog = load_catalog([tmp_path / "book"], registry)
    objects = rbac.render(catalog, registry, namespace="vigil")  # no --namespaces needed
    assert _granted(objects, "ClusterRole") == set()
    # only the replicas' coordination objects, in their own namespace
    assert {o["kind"] for o in objects} == {"Role", "RoleBinding"}
    assert all(o["metadata"]["namespace"] == "vigil" for o in objects)


def test_the_shipped_playbooks_never_get_wildcards_secrets_or_rbac_verbs():
    registry = build_registry()
    objects = rbac.render(
        load_catalog([ROOT / "playbooks"], registry),
        registry,
        namespace="vigil",
        namespaces=(NS,),
        cluster_wide_evictions=True,
    )
    granted = {t[1:] for t in _granted(objects)}
    assert granted
    assert not {t for t in granted if "*" in t}
    assert not {
        t
        for t in granted
        if t[1].split("/")[0]
        in ("secrets", "roles", "rolebindings", "clusterroles", "serviceaccounts")
    }
    assert not {
        t for t in granted if t[2] in ("escalate", "bind", "impersonate", "deletecollection")
    }
