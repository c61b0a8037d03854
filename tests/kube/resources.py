"""The resource types the Kubernetes API double serves, and its discovery documents.

One table row per resource: group/version/plural/kind, whether it is namespaced, its
subresources, whether writes keep ``metadata.generation`` and which field selectors the real
kube-apiserver accepts for it (pkg/registry/*/strategy.go ``*ToSelectableFields``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    generation: bool = False
    fields: frozenset[str] = _META_FIELDS
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` / ``pods``: how the real server names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """``Deployment.apps`` / ``Pod``: how Invalid messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)


def _rt(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kind, singular=kind.lower(), **kw)


_S = frozenset({"status"})
_SS = frozenset({"status", "scale"})

RESOURCES: tuple[ResourceType, ...] = (
    _rt(
        "",
        "v1",
        "pods",
        "Pod",
        subresources=frozenset({"status", "eviction"}),
        fields=_META_FIELDS
        | {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        },
        short_names=("po",),
    ),
    _rt(
        "",
        "v1",
        "nodes",
        "Node",
        namespaced=False,
        subresources=_S,
        fields=frozenset({"metadata.name", "spec.unschedulable"}),
        short_names=("no",),
    ),
    _rt(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        subresources=_S,
        fields=frozenset({"metadata.name", "status.phase"}),
        short_names=("ns",),
    ),
    _rt("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _rt(
        "",
        "v1",
        "events",
        "Event",
        fields=_META_FIELDS
        | {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        },
        short_names=("ev",),
    ),
    _rt(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        subresources=_SS,
        generation=True,
        short_names=("deploy",),
    ),
    _rt(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        subresources=_SS,
        generation=True,
        short_names=("sts",),
    ),
    _rt(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        subresources=_S,
        generation=True,
        short_names=("ds",),
    ),
    _rt(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        subresources=_SS,
        generation=True,
        fields=_META_FIELDS | {"status.replicas"},
        short_names=("rs",),
    ),
    _rt("apps", "v1", "controllerrevisions", "ControllerRevision"),
    _rt(
        "batch",
        "v1",
        "jobs",
        "Job",
        subresources=_S,
        generation=True,
        fields=_META_FIELDS | {"status.successful"},
    ),
    _rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        subresources=_S,
        generation=True,
        short_names=("pdb",),
    ),
    _rt("coordination.k8s.io", "v1", "leases", "Lease"),
    _rt(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        subresources=_S,
        generation=True,
        short_names=("hpa",),
    ),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
BY_KEY: dict[tuple[str, str], ResourceType] = {r.key: r for r in RESOURCES}
BY_KIND: dict[str, ResourceType] = {r.kind: r for r in RESOURCES}

#: kinds whose objects carry a pod template at ``spec.template``
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource_entry(r: ResourceType, sub: str | None = None) -> dict[str, Any]:
    if sub is None:
        return {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": _VERBS,
            "shortNames": list(r.short_names),
        }
    if sub == "scale":
        return {
            "name": f"{r.plural}/scale",
            "singularName": "",
            "namespaced": r.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
    if sub == "eviction":
        return {
            "name": f"{r.plural}/eviction",
            "singularName": "",
            "namespaced": True,
            "group": "policy",
            "version": "v1",
            "kind": "Eviction",
            "verbs": ["create"],
        }
    return {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": ["get", "patch", "update"],
    }


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``APIResourceList`` for ``/api/v1`` or ``/apis/{group}/{version}``; None if unknown."""
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entries.append(_resource_entry(r))
        entries.extend(_resource_entry(r, s) for s in sorted(r.subresources))
    if not entries:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    items = []
    for name, versions in groups.items():
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        items.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def api_group(name: str) -> dict[str, Any] | None:
    for g in api_group_list()["groups"]:
        if g["name"] == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def version_info(kubernetes_version: str) -> dict[str, str]:
    major, minor = kubernetes_version.split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
