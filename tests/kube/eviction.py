"""``pods/eviction`` and the PodDisruptionBudget arithmetic behind it.

There is no disruption controller, so the double works out a budget's status when it is
needed (:func:`pdb_status`), the way pkg/controller/disruption does:

* expected pods: the sum of ``spec.replicas`` of the distinct controllers (ReplicaSet,
  StatefulSet, ReplicationController found in the store) of the pods the budget selects;
  the number of selected pods when a pod has no such controller;
* desired healthy: ``minAvailable`` (a percentage is of the expected pods, rounded up), or
  expected minus ``maxUnavailable`` (percentage rounded up), floored at 0; 0 if neither set;
* currently healthy: selected pods that are Ready (condition Ready=True) and not being
  deleted; disruptions allowed = healthy - desired, floored at 0.

Eviction then follows pkg/registry/core/pod/storage/eviction.go: pods Pending, Succeeded,
Failed or already being deleted are deleted without looking at budgets; more than one
budget is a 500; an unready pod goes when the budget is already met
(``unhealthyPodEvictionPolicy`` IfHealthyBudget, or always with AlwaysAllow); otherwise no
disruption allowed is the 429 with upstream's message and DisruptionBudget cause. A
successful eviction deletes the pod and answers 201 with a Success Status.
:meth:`ApiServerDouble.sync_pdb_status` writes these numbers into the stored budgets.
"""

from __future__ import annotations

import math
from typing import Any

from tests.kube.resources import BY_KEY
from tests.kube.rest import PODS, Rest
from tests.kube.selectors import selector_matches
from tests.kube.status import bad_request, internal, success, too_many_requests
from tests.kube.store import Obj

PDBS = BY_KEY[("policy", "poddisruptionbudgets")]
_CONTROLLERS = {
    "ReplicaSet": BY_KEY[("apps", "replicasets")],
    "StatefulSet": BY_KEY[("apps", "statefulsets")],
}


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def is_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def pdb_status(rest: Rest, pdb: Obj) -> dict[str, Any]:
    ns = pdb["metadata"]["namespace"]
    selector = (pdb.get("spec") or {}).get("selector")
    pods = [p for p in rest.store.select(PODS, ns) if selector_matches(selector, _labels(p))]
    expected, seen, uncontrolled = 0, set(), 0
    for pod in pods:
        ref = next(
            (r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None
        )
        rt = _CONTROLLERS.get(ref["kind"]) if ref else None
        owner = rest.store.get(rt, ns, ref["name"]) if rt and ref else None
        if owner is None or owner["metadata"]["uid"] != ref["uid"]:  # type: ignore[index]
            uncontrolled += 1
        elif owner["metadata"]["uid"] not in seen:
            seen.add(owner["metadata"]["uid"])
            expected += int((owner.get("spec") or {}).get("replicas", 1))
    expected += uncontrolled
    spec = pdb.get("spec") or {}
    if spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = expected - _scaled(spec["maxUnavailable"], expected)
    else:
        desired = 0
    desired = max(0, desired)
    healthy = sum(1 for p in pods if is_ready(p) and not p["metadata"].get("deletionTimestamp"))
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "disruptionsAllowed": max(0, healthy - desired),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }


def evict(
    rest: Rest, ns: str, name: str, body: Any, *, dry_run: bool, field_validation: str
) -> Obj:
    eviction, _ = rest.admission.decode("Eviction", "policy/v1", body, field_validation)
    if (eviction.get("metadata") or {}).get("name") not in (None, name):
        raise bad_request("name in URL does not match name in Eviction object")
    options = dict(eviction.get("deleteOptions") or {})
    dry_run = dry_run or "All" in (options.get("dryRun") or [])
    pod = rest.get(PODS, ns, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Pending", "Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
        return _delete(rest, ns, name, options, dry_run)
    pdbs = [
        b
        for b in rest.store.select(PDBS, ns)
        if selector_matches((b.get("spec") or {}).get("selector"), _labels(pod))
    ]
    if not pdbs:
        return _delete(rest, ns, name, options, dry_run)
    if len(pdbs) > 1:
        raise internal(
            "This pod has more than one PodDisruptionBudget, which the eviction "
            "subresource does not support."
        )
    pdb = pdbs[0]
    status = pdb_status(rest, pdb)
    policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
    if not is_ready(pod) and (
        policy == "AlwaysAllow" or (status["currentHealthy"] >= status["desiredHealthy"] > 0)
    ):
        return _delete(rest, ns, name, options, dry_run)
    if status["disruptionsAllowed"] <= 0:
        raise too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {pdb['metadata']['name']} needs "
                    f"{status['desiredHealthy']} healthy pods and has "
                    f"{status['currentHealthy']} currently",
                }
            ],
        )
    return _delete(rest, ns, name, options, dry_run)


def _delete(rest: Rest, ns: str, name: str, options: dict[str, Any], dry_run: bool) -> Obj:
    rest.delete(PODS, ns, name, options, dry_run=dry_run)
    return success(201)
