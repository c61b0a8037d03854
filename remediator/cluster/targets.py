"""What a run acts on, resolved from the alert's labels through the Kubernetes API.

``pod`` → its owning ReplicaSet → that ReplicaSet's Deployment (or the pod's StatefulSet,
DaemonSet or Job); a ``deployment``/``statefulset``/``daemonset`` label names the workload
directly; ``node`` names a node. The chain followed is recorded with the run, so the audit
says why this object was chosen. Labels are only a hint: the objects must exist.
Labels come from whoever writes metrics, so ``label_problems`` (pure) first checks that
every label naming an object holds a Kubernetes name; the runner refuses the run otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from remediator.cluster.kube import Kube, NotFound, Obj

WORKLOAD_KINDS = {
    "Deployment": "deployment",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "Job": "job",
    "ReplicaSet": "replicaset",
}


@dataclass(frozen=True, slots=True)
class NameRule:
    """A Kubernetes name format (apimachinery's ``validation`` package)."""

    name: str
    pattern: re.Pattern[str]
    max_len: int
    hint: str


DNS1123_LABEL = NameRule(
    "DNS-1123 label",
    re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"),
    63,
    "lower-case letters, digits and '-', starting and ending with a letter or digit",
)
DNS1123_SUBDOMAIN = NameRule(
    "DNS-1123 subdomain",
    re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"),
    253,
    "lower-case letters, digits, '-' and '.', each dot-separated part starting and ending "
    "with a letter or digit",
)
DNS1035_LABEL = NameRule(
    "DNS-1035 label",
    re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?"),
    63,
    "lower-case letters, digits and '-', starting with a letter and ending with a letter or digit",
)

# the alert labels that name a Kubernetes object, and the format the API server gives
# that object's name. A label outside it names nothing that can exist: refused at intake
TARGET_LABELS: Mapping[str, NameRule] = {
    "namespace": DNS1123_LABEL,
    "pod": DNS1123_SUBDOMAIN,
    "node": DNS1123_SUBDOMAIN,
    "deployment": DNS1123_SUBDOMAIN,
    "statefulset": DNS1123_SUBDOMAIN,
    "daemonset": DNS1123_SUBDOMAIN,
    "replicaset": DNS1123_SUBDOMAIN,
    "job": DNS1123_SUBDOMAIN,
    "service": DNS1035_LABEL,
    "container": DNS1123_LABEL,
}


def name_problem(value: str, rule: NameRule) -> str | None:
    """Why ``value`` is not a name of the ``rule``'s format; None when it is."""
    if len(value) > rule.max_len:
        return f"is {len(value)} characters long; a {rule.name} has at most {rule.max_len}"
    if not rule.pattern.fullmatch(value):
        return f"is not a {rule.name} ({rule.hint})"
    return None


def label_problems(labels: Mapping[str, str]) -> list[str]:
    """Every target label (``TARGET_LABELS``) whose value is not a Kubernetes name, each
    with why, in a fixed order; empty when all are. An empty value is an absent label
    (as in Prometheus) and is not checked."""
    out = []
    for label, rule in TARGET_LABELS.items():
        value = labels.get(label, "")
        why = name_problem(value, rule) if value else None
        if why is not None:
            shown = value if len(value) <= 80 else value[:80] + "..."
            out.append(f"label {label}={shown!r} is not a Kubernetes name: it {why}")
    return out


def target_of(labels: Mapping[str, str]) -> str | None:
    """What a run acts on, named from the alert's labels alone (``resolve`` refines it
    through the API when the run needs the cluster): ``namespace/kind/name``,
    ``node/name`` or ``instance/address``; None when no label names a target."""
    ns = labels.get("namespace")
    for kind in ("pod", "deployment", "statefulset", "daemonset", "job", "service"):
        if labels.get(kind):
            return f"{ns or '-'}/{kind}/{labels[kind]}"
    if labels.get("node"):
        return f"node/{labels['node']}"
    if labels.get("instance"):
        return f"instance/{labels['instance']}"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # deployment, statefulset, daemonset, job, replicaset, pod, node
    namespace: str | None
    name: str
    uid: str
    resource_version: str
    generation: int = 0  # changes with the spec only (status updates do not move it)
    pod: str | None = None  # the pod the alert named, when there was one
    node: str | None = None
    replicas: int | None = None  # of the workload (blast radius)
    chain: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """The identity cooldowns and locks use: ``kind/namespace/name``."""
        return f"{self.kind}/{self.namespace or '-'}/{self.name}"

    def identity(self) -> dict[str, object]:
        """What a plan records of its target: an approval is bound to this exact object."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "generation": self.generation,
            "chain": list(self.chain),
        }

    def scope(self) -> dict[str, str]:
        """What templates may name: ``{{ target.kind }}``, ``{{ target.name }}``, ..."""
        return {
            "kind": self.kind,
            "namespace": self.namespace or "",
            "name": self.name,
            "pod": self.pod or "",
            "node": self.node or "",
        }


def _controller(obj: Obj) -> tuple[str, str] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in WORKLOAD_KINDS:
            return WORKLOAD_KINDS[ref["kind"]], str(ref.get("name", ""))
    return None


def _target(
    kind: str, obj: Obj, chain: list[str], *, pod: str | None = None, node: str | None = None
) -> Target:
    meta = obj.get("metadata", {})
    replicas = obj.get("spec", {}).get("replicas")
    return Target(
        kind=kind,
        namespace=meta.get("namespace"),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation") or 0),
        pod=pod,
        node=node,
        replicas=int(replicas) if isinstance(replicas, int) else None,
        chain=tuple(chain),
    )


async def resolve(kube: Kube, labels: Mapping[str, str]) -> Target | None:
    """The object the alert is about, or None when its labels name nothing that exists."""
    ns = labels.get("namespace")
    chain: list[str] = []
    try:
        if ns and labels.get("pod"):
            pod = await kube.get("pod", ns, labels["pod"])
            chain.append(f"pod/{labels['pod']}")
            node = pod.get("spec", {}).get("nodeName")
            owner = _controller(pod)
            if owner is None:
                return _target("pod", pod, chain, pod=labels["pod"], node=node)
            kind, name = owner
            obj = await kube.get(kind, ns, name)
            chain.append(f"{kind}/{name}")
            if kind == "replicaset":
                parent = _controller(obj)
                if parent is not None and parent[0] == "deployment":
                    obj = await kube.get("deployment", ns, parent[1])
                    kind = "deployment"
                    chain.append(f"deployment/{parent[1]}")
            return _target(kind, obj, chain, pod=labels["pod"], node=node)
        for kind in ("deployment", "statefulset", "daemonset"):
            if ns and labels.get(kind):
                obj = await kube.get(kind, ns, labels[kind])
                return _target(kind, obj, [f"label {kind}={labels[kind]}"])
        if labels.get("node"):
            obj = await kube.get("node", None, labels["node"])
            return _target("node", obj, [f"label node={labels['node']}"], node=labels["node"])
    except NotFound:
        return None
    return None
