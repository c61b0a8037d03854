"""``vigil-remediator rbac``: the least-privilege RBAC for the playbooks loaded.

Each action declares the Kubernetes permissions it needs (``ActionSpec.rbac``). This
module unions them over every step, explicit undo step and automatic inverse of the loaded
playbooks, adds what target resolution reads, and what several replicas need (Leases and
the state ConfigMap, only in their own namespace), and renders Role/ClusterRole objects
with their bindings. Pure: it prints, it applies nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from remediator.actions.registry import ActionRegistry, RbacRule
from remediator.catalog import Catalog

# what targets.resolve reads: pod -> ReplicaSet -> Deployment, StatefulSet, DaemonSet, Job, node
RESOLVE: tuple[RbacRule, ...] = (
    ("", "pods", ("get",)), ("apps", "replicasets", ("get",)),
    ("apps", "deployments", ("get",)), ("apps", "statefulsets", ("get",)),
    ("apps", "daemonsets", ("get",)), ("batch", "jobs", ("get",)), ("", "nodes", ("get",)),
)
REPLICAS: tuple[RbacRule, ...] = (
    ("coordination.k8s.io", "leases", ("get", "create", "update")),
    ("", "configmaps", ("get", "create", "update")),
)
CLUSTER_SCOPED = {"nodes"}


def _rules_of(catalog: Catalog, registry: ActionRegistry) -> list[RbacRule]:
    rules: list[RbacRule] = []
    seen_actions: set[str] = set()
    for entry in catalog.entries:
        spec = entry.playbook.spec
        steps = list(spec.steps) + (list(spec.undo) if isinstance(spec.undo, tuple) else [])
        todo = [s.action for s in steps]
        while todo:
            name = todo.pop()
            if name in seen_actions:
                continue
            seen_actions.add(name)
            action = registry.get(name)
            if action is None:
                continue
            rules += action.rbac
            if action.inverse is not None and spec.undo == "auto":
                todo.append(action.inverse)
    if any((a := registry.get(n)) is not None and a.needs_cluster for n in seen_actions):
        rules += RESOLVE
    return rules


def _merge(rules: Iterable[RbacRule]) -> list[dict[str, Any]]:
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for group, resource, granted in rules:
        verbs[(group, resource)].update(granted)
    by_verbs: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for (group, resource), names in sorted(verbs.items()):
        by_verbs[(group, tuple(sorted(names)))].append(resource)
    return [{"apiGroups": [group], "resources": sorted(resources), "verbs": list(vs)}
            for (group, vs), resources in sorted(by_verbs.items())]


def render(catalog: Catalog, registry: ActionRegistry, *, namespace: str,
           service_account: str = "vigil-remediator",
           replicas: bool = True) -> list[dict[str, Any]]:
    """The RBAC objects, as dicts ready for YAML."""
    rules = _rules_of(catalog, registry)
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    labels = {"app.kubernetes.io/name": "vigil-remediator"}
    out: list[dict[str, Any]] = []
    if rules:
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": service_account, "labels": labels},
             "rules": _merge(rules)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": service_account, "labels": labels},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": service_account},
             "subjects": subject},
        ]
    if replicas:
        name = f"{service_account}-coordination"
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": name, "namespace": namespace, "labels": labels},
             "rules": _merge(REPLICAS)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name, "namespace": namespace, "labels": labels},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": name},
             "subjects": subject},
        ]
    return out


def allows(objects: list[dict[str, Any]], *, group: str, resource: str, verb: str,
           namespace: str | None) -> bool:
    """Whether the rendered RBAC grants ``verb`` on ``group/resource`` (tests check the API
    double's request log against it)."""
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        if obj["kind"] == "Role" and obj["metadata"]["namespace"] != namespace:
            continue
        for rule in obj["rules"]:
            if group in rule["apiGroups"] and resource in rule["resources"] \
                    and verb in rule["verbs"]:
                return True
    return False
