"""``vigil-remediator rbac`` is least-scope as well as least-verb: Roles in the namespaces
a playbook may act in, a ClusterRole only for nodes (and drain's cross-namespace pod
list), verbs only on the kinds a step can reach, and no cluster-wide write because a
playbook lacks an allow-list. docs/rbac.md's table is the generator's output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from remediator import rbac
from remediator.__main__ import main
from remediator.app import build_registry
from remediator.catalog.loader import load_catalog
from remediator.cluster.state import ClusterState
from remediator.errors import ConfigError
from tests.conftest import ROOT

REGISTRY = build_registry()
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def book(
    tmp_path: Path,
    *,
    guards: str = "",
    steps: str,
    undo: str = "none",
    match: str = "labels: {alertname: Test}",
    name: str = "test",
) -> Path:
    folder = tmp_path / "book"
    folder.mkdir(exist_ok=True)
    text = (
        f"apiVersion: vigil/v1\nkind: Playbook\nmetadata: {{name: {name}}}\nspec:\n"
        f"  match: {{{match}}}\n  guards: {{{guards}}}\n  undo: {undo}\n  steps:\n"
        + textwrap.indent(textwrap.dedent(steps), "    ")
    )
    (folder / f"{name}.yaml").write_text(text)
    return folder


def render(folder: Path, **kwargs):
    catalog = load_catalog([folder], REGISTRY)
    assert catalog.ok, catalog.problems
    return rbac.render(catalog, REGISTRY, namespace="vigil", **kwargs)


def shipped(**kwargs):
    return rbac.render(
        load_catalog([ROOT / "playbooks"], REGISTRY), REGISTRY, namespace="vigil", **kwargs
    )


def grants(objects, kind=None, namespace=None):
    """{(namespace or None, group, resource, verb)} of the Roles/ClusterRoles rendered."""
    out = set()
    for obj in objects:
        if obj["kind"] not in ("Role", "ClusterRole") or kind not in (None, obj["kind"]):
            continue
        ns = obj["metadata"].get("namespace")
        if namespace is not None and ns != namespace:
            continue
        for rule in obj["rules"]:
            out |= {
                (ns, g, r, v)
                for g in rule["apiGroups"]
                for r in rule["resources"]
                for v in rule["verbs"]
            }
    return out


DELETE_POD = """\
- name: delete
  action: kubernetes.delete_pod
  params: {namespace: '{{ labels.namespace }}', name: '{{ labels.pod }}'}
"""


# --- the shipped playbooks ---------------------------------------------------------------


def test_the_shipped_playbooks_need_namespaces_and_say_which_playbooks():
    with pytest.raises(ConfigError) as err:
        shipped()
    message = str(err.value)
    assert "cluster-wide write" in message and "--namespaces" in message
    for name in (
        "crashloop-delete-pod",
        "evicted-pods-cleanup",
        "hpa-maxed-scale-up",
        "memory-growth-restart",
        "node-drain",
        "rollback-bad-rollout",
    ):
        assert name in message
    assert "cert-expiry-escalate" not in message  # it acts on nothing in the cluster


def test_the_shipped_playbooks_give_no_cluster_wide_write_but_on_nodes():
    objects = shipped(namespaces=("shop",))
    cluster = grants(objects, "ClusterRole")
    assert {(g, r, v) for _, g, r, v in cluster} == {
        ("", "nodes", "get"),
        ("", "nodes", "patch"),  # node-drain: cordon, uncordon
        ("", "pods", "list"),  # node-drain: the node's pods, in every namespace
    }
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] == "Role"} == {
        "shop",
        "vigil",
    }


def test_the_shipped_playbooks_deny_lists_are_rbac_too():
    objects = shipped(namespaces=("shop", "kube-system", "monitoring"))
    kube_system = {(g, r, v) for _, g, r, v in grants(objects, "Role", "kube-system")}
    monitoring = {(g, r, v) for _, g, r, v in grants(objects, "Role", "monitoring")}
    shop = {(g, r, v) for _, g, r, v in grants(objects, "Role", "shop")}
    # crashloop-delete-pod and evicted-pods-cleanup deny kube-system: no pod delete there
    assert ("", "pods", "delete") in shop
    assert ("", "pods", "delete") not in kube_system
    # crashloop-delete-pod denies monitoring, evicted-pods-cleanup does not
    assert ("", "pods", "delete") in monitoring
    assert ("", "pods", "patch") not in monitoring
    # rollback-bad-rollout's match excludes kube-system|monitoring: no rollback there
    assert ("apps", "replicasets", "list") in shop
    assert ("apps", "replicasets", "list") not in kube_system | monitoring
    # memory-growth-restart denies both: no restart (patch) of StatefulSets there
    assert ("apps", "statefulsets", "patch") not in kube_system | monitoring


def test_the_shipped_playbooks_never_get_wildcards_secrets_or_rbac_verbs():
    granted = grants(shipped(namespaces=("shop",), cluster_wide_evictions=True))
    assert granted
    assert not {t for t in granted if "*" in t[1:]}
    assert not {
        t
        for t in granted
        if t[2].split("/")[0]
        in (
            "secrets",
            "roles",
            "rolebindings",
            "clusterroles",
            "clusterrolebindings",
            "serviceaccounts",
        )
    }
    assert not {
        t
        for t in granted
        if t[3] in ("escalate", "bind", "impersonate", "deletecollection", "watch")
    }


def test_annotate_gets_only_the_kinds_its_target_can_be():
    # crashloop-delete-pod annotates '{{ target.kind }}' in '{{ target.namespace }}': a
    # workload or a bare pod, never a node (a node has no namespace) nor a Job
    objects = shipped(namespaces=("shop",))
    patch = {r for _, _, r, v in grants(objects) if v == "patch"}
    assert patch == {
        "nodes",
        "pods",
        "deployments",
        "statefulsets",
        "daemonsets",
        "deployments/scale",
    }
    assert ("", "nodes", "patch") not in {(g, r, v) for _, g, r, v in grants(objects, "Role")}
    assert not {r for _, _, r, _ in grants(objects) if r.startswith(("jobs/", "replicasets/"))}


# --- kinds ----------------------------------------------------------------------------


def test_scale_of_a_deployment_gets_no_statefulset_or_replicaset_scale(tmp_path):
    folder = book(
        tmp_path,
        guards="namespaces: {allow: [shop]}",
        undo="auto",
        steps="""\
        - name: scale
          action: kubernetes.scale
          params: {namespace: '{{ labels.namespace }}', name: '{{ labels.deployment }}', delta: 1}
        """,
    )
    scale = {r for _, _, r, _ in grants(render(folder)) if r.endswith("/scale")}
    assert scale == {"deployments/scale"}


def test_the_automatic_undo_acts_on_the_kind_of_its_step(tmp_path):
    folder = book(
        tmp_path,
        guards="namespaces: {allow: [shop]}",
        undo="auto",
        steps="""\
        - name: scale
          action: kubernetes.scale
          params: {kind: statefulset, namespace: shop, name: db, replicas: 2}
        """,
    )
    resolve = {
        ("shop", r, "get")
        for r in ("pods", "replicasets", "deployments", "statefulsets", "daemonsets", "jobs")
    }
    assert {(ns, r, v) for ns, _, r, v in grants(render(folder, replicas=False))} == {
        ("shop", "statefulsets/scale", "get"),
        ("shop", "statefulsets/scale", "patch"),
    } | resolve


def test_annotating_a_node_gets_the_node_rule_and_nothing_namespaced(tmp_path):
    folder = book(
        tmp_path,
        steps="""\
        - name: mark
          action: kubernetes.annotate
          params: {kind: node, name: '{{ labels.node }}', annotations: {a: b}}
        """,
    )
    objects = render(folder, namespaces=("shop",), replicas=False)
    cluster = {(r, v) for _, _, r, v in grants(objects, "ClusterRole")}
    assert cluster == {("nodes", "get"), ("nodes", "patch")}
    # target resolution reads in the alert's namespace (--namespaces bounds it); no writes
    assert {v for _, _, _, v in grants(objects, "Role")} == {"get"}


def test_kinds_not_used_get_nothing(tmp_path):
    folder = book(
        tmp_path,
        guards="namespaces: {allow: [shop]}",
        steps="""\
        - name: restart
          action: kubernetes.rollout_restart
          params: {kind: daemonset, namespace: '{{ labels.namespace }}', name: agent}
        """,
    )
    writes = {(ns, r, v) for ns, _, r, v in grants(render(folder)) if v in WRITES}
    assert writes - {w for w in writes if w[0] == "vigil"} == {("shop", "daemonsets", "patch")}


# --- namespaces -----------------------------------------------------------------------


def test_a_playbook_restricted_to_shop_gets_a_role_in_shop_only(tmp_path):
    folder = book(tmp_path, guards="namespaces: {allow: [shop]}", steps=DELETE_POD)
    for given in (None, ("payments", "shop")):
        objects = render(folder, namespaces=given)
        assert not [o for o in objects if o["kind"].startswith("Cluster")]
        roles = {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects}
        assert roles == {
            ("Role", "vigil-remediator", "shop"),
            ("RoleBinding", "vigil-remediator", "shop"),
            ("Role", "vigil-remediator-coordination", "vigil"),
            ("RoleBinding", "vigil-remediator-coordination", "vigil"),
        }
        binding = next(
            o
            for o in objects
            if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == "shop"
        )
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "vigil-remediator", "namespace": "vigil"}
        ]
        assert ("shop", "", "pods", "delete") in grants(objects)


def test_a_match_on_the_namespace_bounds_like_an_allow_list(tmp_path):
    match = "labels: {alertname: Test}, matchers: ['namespace=~\"shop|cart\"']"
    folder = book(tmp_path, match=match, steps=DELETE_POD)
    spots = {ns for ns, _, r, v in grants(render(folder, replicas=False))}
    assert spots == {"cart", "shop"}


def test_a_literal_namespace_is_that_namespace(tmp_path):
    folder = book(
        tmp_path,
        guards="namespaces: {allow: [shop]}",
        steps="""\
        - name: job
          action: kubernetes.run_job
          params: {namespace: ops, name_prefix: fix, spec: {template: {spec: {containers: []}}}}
        """,
    )
    jobs = {(ns, v) for ns, _, r, v in grants(render(folder)) if r == "jobs"}
    assert ("ops", "create") in jobs and ("shop", "create") not in jobs


def test_a_namespace_from_another_label_is_not_bounded_by_the_allow_list(tmp_path):
    folder = book(
        tmp_path,
        guards="namespaces: {allow: [shop]}",
        steps="""\
        - name: delete
          action: kubernetes.delete_pod
          params: {namespace: '{{ labels.exported_namespace }}', name: '{{ labels.pod }}'}
        """,
    )
    with pytest.raises(ConfigError, match=r"test \(kubernetes.delete_pod\)"):
        render(folder)
    objects = render(folder, namespaces=("cart",))
    assert ("cart", "", "pods", "delete") in grants(objects)
    assert ("shop", "", "pods", "delete") not in grants(objects)


def test_a_deny_list_that_leaves_nothing_grants_nothing(tmp_path):
    folder = book(tmp_path, guards="namespaces: {deny: [shop]}", steps=DELETE_POD)
    assert grants(render(folder, namespaces=("shop",), replicas=False)) == set()


# --- node drain -------------------------------------------------------------------------

DRAIN = """\
- name: drain
  action: kubernetes.drain
  params: {node: '{{ labels.node }}'}
"""


def test_node_drain_gets_the_node_rules_and_evicts_only_where_allowed(tmp_path):
    folder = book(tmp_path, guards="namespaces: {deny: [kube-system]}", undo="auto", steps=DRAIN)
    with pytest.raises(ConfigError, match=r"kubernetes\.drain"):
        render(folder)
    objects = render(folder, namespaces=("shop", "kube-system"), replicas=False)
    assert {(g, r, v) for _, g, r, v in grants(objects, "ClusterRole")} == {
        ("", "nodes", "get"),
        ("", "nodes", "patch"),
        ("", "pods", "list"),
    }
    evictions = {ns for ns, _, r, _ in grants(objects) if r == "pods/eviction"}
    assert evictions == {"shop"}


def test_cluster_wide_evictions_are_asked_for_explicitly(tmp_path):
    folder = book(tmp_path, undo="auto", steps=DRAIN)
    objects = render(folder, namespaces=("shop",), cluster_wide_evictions=True, replicas=False)
    assert (None, "", "pods/eviction", "create") in grants(objects, "ClusterRole")
    assert ("shop", "", "pods/eviction", "create") not in grants(objects)


def test_no_node_rules_without_a_node_step(tmp_path):
    folder = book(tmp_path, guards="namespaces: {allow: [shop]}", steps=DELETE_POD)
    assert not {t for t in grants(render(folder)) if t[2] == "nodes"}


# --- the remediator's own Role -----------------------------------------------------------


def test_the_remediator_updates_only_its_state_configmap():
    objects = shipped(namespaces=("shop",))
    own = next(
        o
        for o in objects
        if o["metadata"]["name"] == "vigil-remediator-coordination" and o["kind"] == "Role"
    )
    assert own["metadata"]["namespace"] == "vigil"
    named = [r for r in own["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [rbac.STATE_CONFIGMAP],
            "verbs": ["get", "update"],
        }
    ]
    assert ClusterState(None, namespace="vigil").name == rbac.STATE_CONFIGMAP  # type: ignore[arg-type]
    assert rbac.allows(
        objects,
        group="",
        resource="configmaps",
        verb="update",
        namespace="vigil",
        name=rbac.STATE_CONFIGMAP,
    )
    assert not rbac.allows(
        objects,
        group="",
        resource="configmaps",
        verb="update",
        namespace="vigil",
        name="vigil-playbooks",
    )


# --- command line ------------------------------------------------------------------------


def test_the_command_refuses_without_namespaces_and_says_what_to_do(capsys):
    assert main(["rbac", "--playbooks", str(ROOT / "playbooks")]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "--namespaces" in out.err and "node-drain" in out.err


def test_the_command_prints_the_scope_it_chose(capsys):
    assert main(["rbac", "--playbooks", str(ROOT / "playbooks"), "--namespaces", "shop,cart"]) == 0
    out = capsys.readouterr().out
    comments = [line for line in out.splitlines() if line.startswith("#")]
    assert any(
        "crashloop-delete-pod" in c and "--namespaces" in c and "shop, cart" in c for c in comments
    )
    assert any("cluster-wide list core/pods" in c for c in comments)
    assert any("--cluster-wide-evictions" in c for c in comments)
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert docs == shipped(namespaces=("shop", "cart"))


@pytest.mark.parametrize("text", ["", "Shop", "a,,b/c"])
def test_bad_namespaces_are_refused(text):
    with pytest.raises(ConfigError, match="--namespaces"):
        rbac.parse_namespaces(text)


def test_namespaces_are_split_and_deduplicated():
    assert rbac.parse_namespaces(" shop, cart,shop ") == ("shop", "cart")


# --- docs/rbac.md -------------------------------------------------------------------------


def test_the_docs_table_is_the_generators():
    catalog = load_catalog([ROOT / "playbooks"], REGISTRY)
    table = rbac.table(rbac.needs(catalog, REGISTRY) + rbac.own_needs())
    text = (ROOT / "docs/rbac.md").read_text(encoding="utf-8")
    begin, end = "<!-- BEGIN rbac table -->\n", "<!-- END rbac table -->"
    assert begin in text and end in text
    assert text.split(begin, 1)[1].split(end, 1)[0] == table, (
        "docs/rbac.md's table is stale: replace it with "
        "rbac.table(rbac.needs(catalog, registry) + rbac.own_needs())"
    )
