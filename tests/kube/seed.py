"""Objects a cluster's controllers would have made, seeded on demand (the double runs no
controllers). Every seeded object goes through the same create/validate path as an API
request, then its status is written as a controller would, so it has real uids,
resourceVersions and history; none of it appears in the request log.

* :meth:`Seeder.seed_deployment`: a Deployment with one ReplicaSet per revision
  (``deployment.kubernetes.io/revision`` annotations, ``pod-template-hash`` labels computed
  like the deployment controller's: FNV-32a of the template, safe-encoded) and Running,
  Ready pods owned by the newest ReplicaSet (ownerReferences with controller=true);
* :meth:`Seeder.seed_node`, :meth:`Seeder.seed_pdb`, :meth:`Seeder.seed_namespace`,
  :meth:`Seeder.seed_pod`; :meth:`Seeder.set_pod_ready`; :meth:`Seeder.sync_pdb_status`
  (one pass of the disruption controller).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.kube import eviction
from tests.kube.resources import BY_KIND
from tests.kube.rest import Rest, timestamp
from tests.kube.store import Obj

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def pod_template_hash(template: Obj) -> str:
    """``controller.ComputeHash``: FNV-32a over the template, ``rand.SafeEncodeString``."""
    h = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def _owner(obj: Obj) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass
class SeededDeployment:
    deployment: Obj
    replicasets: list[Obj] = field(default_factory=list)  # oldest revision first
    pods: list[Obj] = field(default_factory=list)


class Seeder:
    rest: Rest
    clock: Callable[[], datetime]

    def create(self, obj: Obj) -> Obj:
        """Create any object as a request would (validated, defaulted), unlogged."""
        rt = BY_KIND[obj["kind"]]
        ns = obj.get("metadata", {}).get("namespace", "default") if rt.namespaced else ""
        created, _ = self.rest.create(rt, ns, copy.deepcopy(obj))
        return created

    def set_status(self, obj: Obj, status: dict[str, Any]) -> Obj:
        """Write ``status`` through the status subresource, as a controller would."""
        rt = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        current = self.rest.get(rt, meta.get("namespace", ""), meta["name"])
        current["status"] = status
        out, _ = self.rest.update(
            rt,
            meta.get("namespace", ""),
            meta["name"],
            current,
            subresource="status" if "status" in rt.subresources else None,
        )
        return out

    def seed_namespace(self, name: str) -> Obj:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def seed_node(
        self,
        name: str,
        *,
        ready: bool = True,
        unschedulable: bool = False,
        labels: dict[str, str] | None = None,
    ) -> Obj:
        now = timestamp(self.clock())
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    **(labels or {}),
                },
            },
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": str(ready),
                        "reason": "KubeletReady" if ready else "NodeNotReady",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [{"type": "Hostname", "address": name}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            },
        }
        return self.create(node)

    def seed_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        labels: dict[str, str] | None = None,
        node: str = "node-1",
        containers: list[dict[str, Any]] | None = None,
        ready: bool = True,
        owner: Obj | None = None,
    ) -> Obj:
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
        if owner is not None:
            meta["ownerReferences"] = [_owner(owner)]
        pod = self.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {
                    "nodeName": node,
                    "containers": containers
                    or [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                },
            }
        )
        return self.set_pod_ready(pod, ready)

    def set_pod_ready(self, pod: Obj, ready: bool = True) -> Obj:
        """Running with Ready/ContainersReady conditions as a kubelet reports them."""
        now = timestamp(self.clock())
        flag = "True" if ready else "False"
        statuses = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "containerID": f"containerd://{pod['metadata']['uid'][:8]}",
                "state": {"running": {"startedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        status = {
            **pod.get("status", {}),
            "phase": "Running",
            "startTime": now,
            "podIP": "10.244.0.10",
            "hostIP": "172.18.0.2",
            "conditions": [
                {"type": t, "status": s, "lastTransitionTime": now}
                for t, s in (
                    ("PodScheduled", "True"),
                    ("Initialized", "True"),
                    ("ContainersReady", flag),
                    ("Ready", flag),
                )
            ],
            "containerStatuses": statuses,
        }
        return self.set_status(pod, status)

    def seed_deployment(
        self,
        name: str,
        namespace: str = "default",
        *,
        replicas: int = 2,
        images: list[str] | tuple[str, ...] = ("nginx:1.27",),
        sidecar: str | None = None,
        node: str = "node-1",
        labels: dict[str, str] | None = None,
        ready: bool = True,
    ) -> SeededDeployment:
        """One ReplicaSet per image in ``images`` (revision 1 first); pods of the last."""
        sel = labels or {"app": name}
        templates: list[Obj] = []
        for image in images:
            containers = [{"name": "app", "image": image}]
            if sidecar:
                containers.append({"name": "sidecar", "image": sidecar})
            templates.append(
                {"metadata": {"labels": dict(sel)}, "spec": {"containers": containers}}
            )
        rev = str(len(templates))
        dep = self.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": dict(sel),
                    "annotations": {"deployment.kubernetes.io/revision": rev},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(sel)},
                    "template": templates[-1],
                },
            }
        )
        out = SeededDeployment(dep)
        for i, tmpl in enumerate(templates, start=1):
            current = i == len(templates)
            h = pod_template_hash(tmpl)
            tmpl = copy.deepcopy(tmpl)
            tmpl["metadata"]["labels"]["pod-template-hash"] = h
            n = replicas if current else 0
            rs = self.create(
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{name}-{h}",
                        "namespace": namespace,
                        "labels": dict(tmpl["metadata"]["labels"]),
                        "annotations": {
                            "deployment.kubernetes.io/revision": str(i),
                            "deployment.kubernetes.io/desired-replicas": str(replicas),
                            "deployment.kubernetes.io/max-replicas": str(
                                replicas + max(1, -(-replicas // 4))
                            ),
                        },
                        "ownerReferences": [_owner(dep)],
                    },
                    "spec": {
                        "replicas": n,
                        "selector": {"matchLabels": dict(tmpl["metadata"]["labels"])},
                        "template": tmpl,
                    },
                }
            )
            rs = self.set_status(
                rs,
                {
                    "replicas": n,
                    "fullyLabeledReplicas": n,
                    "readyReplicas": n if ready else 0,
                    "availableReplicas": n if ready else 0,
                    "observedGeneration": 1,
                },
            )
            out.replicasets.append(rs)
            for _ in range(n if current else 0):
                suffix = "".join(random.choices(_SAFE, k=5))
                out.pods.append(
                    self.seed_pod(
                        f"{rs['metadata']['name']}-{suffix}",
                        namespace,
                        labels=dict(tmpl["metadata"]["labels"]),
                        node=node,
                        containers=tmpl["spec"]["containers"],
                        ready=ready,
                        owner=rs,
                    )
                )
        now = timestamp(self.clock())
        n_ready = replicas if ready else 0
        out.deployment = self.set_status(
            dep,
            {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": n_ready,
                "availableReplicas": n_ready,
                "unavailableReplicas": replicas - n_ready,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if ready else "False",
                        "reason": "MinimumReplicasAvailable",
                        "lastUpdateTime": now,
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "lastUpdateTime": now,
                        "lastTransitionTime": now,
                    },
                ],
            },
        )
        return out

    def seed_pdb(
        self,
        name: str,
        namespace: str = "default",
        *,
        match_labels: dict[str, str],
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
    ) -> Obj:
        spec: dict[str, Any] = {"selector": {"matchLabels": match_labels}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        pdb = self.create(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
        )
        return self.set_status(pdb, eviction.pdb_status(self.rest, pdb))

    def sync_pdb_status(self, namespace: str | None = None) -> None:
        """Write every budget's status as the disruption controller would."""
        for pdb in self.rest.store.select(eviction.PDBS, namespace):
            status = eviction.pdb_status(self.rest, pdb)
            if {k: pdb.get("status", {}).get(k) for k in status} != status:
                self.set_status(pdb, {**pdb.get("status", {}), **status})
