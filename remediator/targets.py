"""What a run acts on, resolved from the alert's labels through the Kubernetes API.

``pod`` → its owning ReplicaSet → that ReplicaSet's Deployment (or the pod's StatefulSet,
DaemonSet or Job); a ``deployment``/``statefulset``/``daemonset`` label names the workload
directly; ``node`` names a node. The chain followed is recorded with the run, so the audit
says why this object was chosen. Labels are only a hint: the objects must exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from remediator.kube import Kube, NotFound, Obj

WORKLOAD_KINDS = {"Deployment": "deployment", "StatefulSet": "statefulset",
                  "DaemonSet": "daemonset", "Job": "job", "ReplicaSet": "replicaset"}


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
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "uid": self.uid, "generation": self.generation, "chain": list(self.chain)}

    def scope(self) -> dict[str, str]:
        """What templates may name: ``{{ target.kind }}``, ``{{ target.name }}``, ..."""
        return {"kind": self.kind, "namespace": self.namespace or "", "name": self.name,
                "pod": self.pod or "", "node": self.node or ""}


def _controller(obj: Obj) -> tuple[str, str] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in WORKLOAD_KINDS:
            return WORKLOAD_KINDS[ref["kind"]], str(ref.get("name", ""))
    return None


def _target(kind: str, obj: Obj, chain: list[str], *, pod: str | None = None,
            node: str | None = None) -> Target:
    meta = obj.get("metadata", {})
    replicas = obj.get("spec", {}).get("replicas")
    return Target(kind=kind, namespace=meta.get("namespace"), name=str(meta.get("name", "")),
                  uid=str(meta.get("uid", "")),
                  resource_version=str(meta.get("resourceVersion", "")),
                  generation=int(meta.get("generation") or 0), pod=pod, node=node,
                  replicas=int(replicas) if isinstance(replicas, int) else None,
                  chain=tuple(chain))


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
