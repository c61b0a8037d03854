"""Kubernetes actions: restart, scale, roll back, delete or evict a pod, cordon, uncordon,
drain, run a Job, annotate.

Each declares its params model (names validated as Kubernetes names, counts bounded), that
it mutates, its inverse (for automatic undo) and that it dry-runs on the server
(``dryRun=All``: the API server validates and admits the change, nothing is stored).
A 409 is retried with a fresh read; a disruption budget's 429 on an eviction is reported
as blocked, not retried blindly. The API is reached only through ``ctx.cluster()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediator.actions.registry import (
    ActionContext,
    DryRun,
    DryRunStyle,
    Executed,
    Failed,
    Outcome,
    action,
)
from remediator.cluster.kube import Conflict, Kube, NotFound, Obj, TooManyRequests
from servicekit.durations import Seconds

DNS_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
RUN_LABEL = "vigil.dev/run-id"
CONFLICT_RETRIES = 3
T = TypeVar("T")


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkloadRef(_Params):
    kind: Literal["deployment", "statefulset", "daemonset"] = Field(
        "deployment", description="the workload's kind, e.g. {{ target.kind }}"
    )
    namespace: str = Field(
        pattern=DNS_NAME, max_length=63, description="e.g. {{ target.namespace }}"
    )
    name: str = Field(pattern=DNS_NAME, max_length=253, description="e.g. {{ target.name }}")


def _server(ctx: ActionContext, obj: Obj, what: str) -> Outcome:
    if ctx.dry_run:
        return DryRun(
            {
                "dry_run": "All",
                "what": what,
                "resourceVersion": obj.get("metadata", {}).get("resourceVersion"),
            }
        )
    return Executed({"what": what})


async def _retry_conflicts(fn: Callable[[], Awaitable[T]]) -> T:
    """Call ``fn`` (which reads fresh state itself) again after a 409, a few times."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return await fn()
        except Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            await asyncio.sleep(0)
    raise AssertionError("unreachable")


# --- rollout_restart ----------------------------------------------------------------------
@action(
    "kubernetes.rollout_restart",
    rbac=(
        ("apps", "deployments", ("get", "patch")),
        ("apps", "statefulsets", ("get", "patch")),
        ("apps", "daemonsets", ("get", "patch")),
    ),
    params=WorkloadRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": p.kind,
        "object": f"{p.namespace}/{p.name}",
        "patch": "merge",
        "body": {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "<now>"}}}}},
    },
)
async def rollout_restart(ctx: ActionContext, p: WorkloadRef) -> Outcome:
    now = datetime.fromtimestamp(ctx.clock(), UTC).isoformat(timespec="seconds")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    obj = await ctx.cluster().patch(p.kind, p.namespace, p.name, body, dry_run=ctx.dry_run)
    return _server(ctx, obj, f"restart {p.kind}/{p.name} at {now}")


# --- scale --------------------------------------------------------------------------------
class ScaleParams(_Params):
    kind: Literal["deployment", "statefulset", "replicaset"] = Field(
        "deployment", description="what to scale"
    )
    namespace: str = Field(
        pattern=DNS_NAME, max_length=63, description="e.g. {{ target.namespace }}"
    )
    name: str = Field(pattern=DNS_NAME, max_length=253, description="e.g. {{ target.name }}")
    replicas: int | None = Field(None, ge=0, le=1000, description="the new count")
    delta: int | None = Field(None, ge=-100, le=100, description="or a change of the count")
    min_replicas: int = Field(0, ge=0, le=1000, description="the playbook's lower bound")
    max_replicas: int = Field(10, ge=0, le=1000, description="the playbook's bound")

    @model_validator(mode="after")
    def _one(self) -> ScaleParams:
        if (self.replicas is None) == (self.delta is None):
            raise ValueError("give exactly one of replicas or delta")
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        if (
            self.replicas is not None
            and not self.min_replicas <= self.replicas <= self.max_replicas
        ):
            raise ValueError(
                f"replicas {self.replicas} is outside [{self.min_replicas}, {self.max_replicas}]"
            )
        return self


def scale_to(current: int, p: ScaleParams) -> int | str:
    """The count to set from ``current``, clamped to ``[min_replicas, max_replicas]``; or,
    for a ``delta``, why no step exists: the bounds would move the count the other way
    than asked, or not at all (a scale-up already at or above ``max_replicas``)."""
    if p.replicas is not None:
        return p.replicas  # within the bounds (checked at load)
    delta = p.delta or 0
    want = max(p.min_replicas, min(p.max_replicas, current + delta))
    if delta > 0 and want <= current:
        return (
            f"{current} replicas is at or above max_replicas {p.max_replicas}: no step "
            f"up by {delta} within the bound"
        )
    if delta < 0 and want >= current:
        return (
            f"{current} replicas is at or below min_replicas {p.min_replicas}: no step "
            f"down by {-delta} within the bound"
        )
    if delta == 0 and want != current:
        return (
            f"{current} replicas is outside [{p.min_replicas}, {p.max_replicas}] and "
            "a delta of 0 asks for no change"
        )
    return want


@action(
    "kubernetes.scale",
    rbac=(
        ("apps", "deployments/scale", ("get", "patch")),
        ("apps", "statefulsets/scale", ("get", "patch")),
        ("apps", "replicasets/scale", ("get", "patch")),
    ),
    params=ScaleParams,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.scale",
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": p.kind,
        "subresource": "scale",
        "object": f"{p.namespace}/{p.name}",
        "replicas": p.replicas if p.replicas is not None else f"current{p.delta:+d}",
        "bounds": [p.min_replicas, p.max_replicas],
    },
)
async def scale(ctx: ActionContext, p: ScaleParams) -> Outcome:
    kube = ctx.cluster()

    async def once() -> tuple[int, int | str]:
        current = await kube.get(p.kind, p.namespace, p.name, subresource="scale")
        old = int(current.get("spec", {}).get("replicas", 0))
        want = scale_to(old, p)
        if isinstance(want, str):
            return old, want
        body = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "spec": {"replicas": want},
        }
        await kube.patch(
            p.kind, p.namespace, p.name, body, subresource="scale", dry_run=ctx.dry_run
        )
        return old, want

    old, want = await _retry_conflicts(once)
    if isinstance(want, str):  # nothing sent: the run fails, undoes and escalates with it
        return Failed(f"{p.kind}/{p.namespace}/{p.name}: {want}; not scaled")
    if ctx.dry_run:
        return DryRun({"dry_run": "All", "from": old, "to": want})
    inverse = {
        "kind": p.kind,
        "namespace": p.namespace,
        "name": p.name,
        "replicas": old,
        "min_replicas": min(old, p.min_replicas),
        "max_replicas": max(old, p.max_replicas),
    }
    return Executed({"from": old, "to": want}, inverse=("kubernetes.scale", inverse))


# --- rollout_undo -------------------------------------------------------------------------
class UndoParams(_Params):
    namespace: str = Field(
        pattern=DNS_NAME, max_length=63, description="the Deployment's namespace"
    )
    name: str = Field(pattern=DNS_NAME, max_length=253, description="the Deployment")
    to_revision: int | None = Field(None, ge=1, description="default: the previous revision")


def _revision(rs: Obj) -> int:
    try:
        return int(rs.get("metadata", {}).get("annotations", {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _template_of(rs: Obj) -> Obj:
    """A ReplicaSet's pod template as a Deployment's, without the pod-template-hash label."""
    template = dict(rs.get("spec", {}).get("template", {}))
    meta = dict(template.get("metadata", {}))
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "pod-template-hash"}
    meta["labels"] = labels
    template["metadata"] = meta
    return template


async def owned_replicasets(kube: Kube, namespace: str, deployment: Obj) -> list[Obj]:
    uid = deployment["metadata"].get("uid")
    return [
        rs
        for rs in await kube.list("replicaset", namespace)
        if any(
            ref.get("kind") == "Deployment" and ref.get("uid") == uid
            for ref in rs.get("metadata", {}).get("ownerReferences", [])
        )
    ]


@action(
    "kubernetes.rollout_undo",
    rbac=(("apps", "deployments", ("get", "patch")), ("apps", "replicasets", ("list",))),
    params=UndoParams,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.rollout_undo",
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": "deployment",
        "patch": "json",
        "object": f"{p.namespace}/{p.name}",
        "to_revision": p.to_revision or "previous",
    },
)
async def rollout_undo(ctx: ActionContext, p: UndoParams) -> Outcome:
    """As ``kubectl rollout undo``: the Deployment's template becomes that of an older
    ReplicaSet, with a JSON patch that first tests the resourceVersion it was read at."""
    kube = ctx.cluster()

    async def once() -> tuple[int, int, Obj]:
        dep = await kube.get("deployment", p.namespace, p.name)
        current = _revision(dep)
        sets = sorted(await owned_replicasets(kube, p.namespace, dep), key=_revision)
        if p.to_revision is not None:
            target = next((rs for rs in sets if _revision(rs) == p.to_revision), None)
        else:
            older = [rs for rs in sets if _revision(rs) < current]
            target = older[-1] if older else None
        if target is None:
            raise NotFound(
                f"deployment {p.namespace}/{p.name}: no ReplicaSet with revision "
                f"{p.to_revision or 'before ' + str(current)} to roll back to",
                status=404,
            )
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": dep["metadata"]["resourceVersion"],
            },
            {"op": "replace", "path": "/spec/template", "value": _template_of(target)},
        ]
        obj = await kube.patch(
            "deployment", p.namespace, p.name, patch, patch="json", dry_run=ctx.dry_run
        )
        return current, _revision(target), obj

    current, to, _ = await _retry_conflicts(once)
    if ctx.dry_run:
        return DryRun({"dry_run": "All", "from_revision": current, "to_revision": to})
    return Executed(
        {"from_revision": current, "to_revision": to},
        inverse=(
            "kubernetes.rollout_undo",
            {"namespace": p.namespace, "name": p.name, "to_revision": current},
        ),
    )


# --- pods ---------------------------------------------------------------------------------
class PodRef(_Params):
    namespace: str = Field(
        pattern=DNS_NAME, max_length=63, description="e.g. {{ labels.namespace }}"
    )
    name: str = Field(
        pattern=DNS_NAME, max_length=253, description="the pod, e.g. {{ labels.pod }}"
    )


@action(
    "kubernetes.delete_pod",
    rbac=(("", "pods", ("get", "delete")),),
    params=PodRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    needs_cluster=True,
    describe=lambda p: {"method": "DELETE", "kind": "pod", "object": f"{p.namespace}/{p.name}"},
)
async def delete_pod(ctx: ActionContext, p: PodRef) -> Outcome:
    kube = ctx.cluster()
    pod = await kube.get("pod", p.namespace, p.name)
    obj = await kube.delete(
        "pod", p.namespace, p.name, dry_run=ctx.dry_run, uid=pod["metadata"].get("uid")
    )
    return _server(ctx, obj, f"delete pod {p.namespace}/{p.name}")


@action(
    "kubernetes.evict_pod",
    rbac=(("", "pods/eviction", ("create",)),),
    params=PodRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    needs_cluster=True,
    describe=lambda p: {
        "method": "POST",
        "kind": "pod",
        "subresource": "eviction",
        "object": f"{p.namespace}/{p.name}",
    },
)
async def evict_pod(ctx: ActionContext, p: PodRef) -> Outcome:
    try:
        obj = await ctx.cluster().evict(p.namespace, p.name, dry_run=ctx.dry_run)
    except TooManyRequests as exc:
        return Failed(f"blocked by a disruption budget: {exc}")
    return _server(ctx, obj, f"evict pod {p.namespace}/{p.name}")


# --- nodes --------------------------------------------------------------------------------
class NodeRef(_Params):
    node: str = Field(
        pattern=DNS_NAME, max_length=253, description="the node, e.g. {{ labels.node }}"
    )


async def _set_unschedulable(ctx: ActionContext, node: str, value: bool) -> tuple[bool, Obj]:
    kube = ctx.cluster()
    before = await kube.get("node", None, node)
    was = bool(before.get("spec", {}).get("unschedulable", False))
    obj = await kube.patch(
        "node", None, node, {"spec": {"unschedulable": value}}, dry_run=ctx.dry_run
    )
    return was, obj


@action(
    "kubernetes.cordon",
    rbac=(("", "nodes", ("get", "patch")),),
    params=NodeRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.uncordon",
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": "node",
        "object": p.node,
        "body": {"spec": {"unschedulable": True}},
    },
)
async def cordon(ctx: ActionContext, p: NodeRef) -> Outcome:
    was, _ = await _set_unschedulable(ctx, p.node, True)
    if ctx.dry_run:
        return DryRun({"dry_run": "All", "node": p.node})
    # undo only what this run did: a node that was already cordoned stays so
    return Executed(
        {"node": p.node, "was_unschedulable": was},
        inverse=None if was else ("kubernetes.uncordon", {"node": p.node}),
    )


@action(
    "kubernetes.uncordon",
    rbac=(("", "nodes", ("get", "patch")),),
    params=NodeRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.cordon",
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": "node",
        "object": p.node,
        "body": {"spec": {"unschedulable": False}},
    },
)
async def uncordon(ctx: ActionContext, p: NodeRef) -> Outcome:
    was, _ = await _set_unschedulable(ctx, p.node, False)
    if ctx.dry_run:
        return DryRun({"dry_run": "All", "node": p.node})
    return Executed(
        {"node": p.node, "was_unschedulable": was},
        inverse=("kubernetes.cordon", {"node": p.node}) if was else None,
    )


class DrainParams(_Params):
    node: str = Field(pattern=DNS_NAME, max_length=253, description="the node to cordon and empty")
    timeout_s: Seconds = Field(
        300.0,
        gt=0,
        le=3600,
        description="give up on pods a disruption budget still blocks after this",
    )
    retry_interval_s: Seconds = Field(
        5.0, gt=0, le=60, description="between evictions a disruption budget refused"
    )


def _skip_reason(pod: Obj) -> str | None:
    meta = pod.get("metadata", {})
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return "mirror pod"
    if any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or []):
        return "DaemonSet pod"
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return "finished"
    return None


@action(
    "kubernetes.drain",
    rbac=(
        ("", "nodes", ("get", "patch")),
        ("", "pods", ("list",)),
        ("", "pods/eviction", ("create",)),
    ),
    params=DrainParams,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.uncordon",
    needs_cluster=True,
    describe=lambda p: {
        "steps": [
            f"cordon node {p.node}",
            f"evict its pods (not DaemonSet or mirror pods), at most {p.timeout_s:.0f} s",
        ]
    },
)
async def drain(ctx: ActionContext, p: DrainParams) -> Outcome:
    kube = ctx.cluster()
    was, _ = await _set_unschedulable(ctx, p.node, True)
    pods = await kube.list("pod", None, field_selector=f"spec.nodeName={p.node}")
    skipped = {
        f"{q['metadata']['namespace']}/{q['metadata']['name']}": why
        for q in pods
        if (why := _skip_reason(q))
    }
    todo = [q for q in pods if _skip_reason(q) is None]
    evicted: list[str] = []
    blocked: dict[str, str] = {}
    deadline = ctx.clock() + p.timeout_s
    sleep = ctx.sleep or asyncio.sleep
    while todo:
        left = []
        for pod in todo:
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            try:
                await kube.evict(
                    pod["metadata"]["namespace"], pod["metadata"]["name"], dry_run=ctx.dry_run
                )
                evicted.append(key)
                blocked.pop(key, None)
            except NotFound:
                evicted.append(key)  # gone already
            except TooManyRequests as exc:
                blocked[key] = str(exc)
                left.append(pod)
        todo = left
        if not todo or ctx.dry_run or ctx.clock() + p.retry_interval_s > deadline:
            break
        await sleep(p.retry_interval_s)
    detail: dict[str, Any] = {
        "node": p.node,
        "evicted": evicted,
        "skipped": skipped,
        "blocked": blocked,
    }
    inverse = None if was else ("kubernetes.uncordon", {"node": p.node})
    if ctx.dry_run:
        return DryRun(detail)
    if blocked:
        return Failed(
            f"drain of {p.node} incomplete after {p.timeout_s:.0f} s: "
            f"{len(blocked)} pods blocked by disruption budgets "
            f"({', '.join(sorted(blocked))})"
        )
    return Executed(detail, inverse=inverse)


# --- run_job / annotate -------------------------------------------------------------------
class RunJobParams(_Params):
    namespace: str = Field(pattern=DNS_NAME, max_length=63, description="where the Job runs")
    name_prefix: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,40})$",
        description="the Job is named <prefix>-<random suffix> (generateName)",
    )
    spec: dict[str, Any] = Field(description="the Job's spec (template, backoffLimit, ...)")
    ttl_seconds_after_finished: int = Field(
        3600,
        ge=0,
        le=7 * 86400,
        description="Kubernetes deletes the finished Job after this many seconds",
    )


@action(
    "kubernetes.run_job",
    rbac=(("batch", "jobs", ("create",)),),
    params=RunJobParams,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.delete_job",
    needs_cluster=True,
    describe=lambda p: {
        "method": "POST",
        "kind": "job",
        "namespace": p.namespace,
        "generateName": f"{p.name_prefix}-",
    },
)
async def run_job(ctx: ActionContext, p: RunJobParams) -> Outcome:
    spec = {**p.spec, "ttlSecondsAfterFinished": p.ttl_seconds_after_finished}
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": f"{p.name_prefix}-",
            "namespace": p.namespace,
            "labels": {RUN_LABEL: ctx.run_id.replace("-", ".")[:63]},
        },
        "spec": spec,
    }
    obj = await ctx.cluster().create("job", p.namespace, body, dry_run=ctx.dry_run)
    name = obj.get("metadata", {}).get("name", "")
    if ctx.dry_run:
        return DryRun({"dry_run": "All", "generateName": f"{p.name_prefix}-"})
    return Executed(
        {"job": f"{p.namespace}/{name}"},
        inverse=("kubernetes.delete_job", {"namespace": p.namespace, "name": name}),
    )


class JobRef(_Params):
    namespace: str = Field(pattern=DNS_NAME, max_length=63, description="the Job's namespace")
    name: str = Field(pattern=DNS_NAME, max_length=253, description="the Job")


@action(
    "kubernetes.delete_job",
    rbac=(("batch", "jobs", ("delete",)),),
    params=JobRef,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    needs_cluster=True,
    describe=lambda p: {"method": "DELETE", "kind": "job", "object": f"{p.namespace}/{p.name}"},
)
async def delete_job(ctx: ActionContext, p: JobRef) -> Outcome:
    try:
        obj = await ctx.cluster().delete("job", p.namespace, p.name, dry_run=ctx.dry_run)
    except NotFound:
        gone = {"job": f"{p.namespace}/{p.name}", "already_gone": True}
        return DryRun({"dry_run": "All", **gone}) if ctx.dry_run else Executed(gone)
    return _server(ctx, obj, f"delete job {p.namespace}/{p.name}")


class AnnotateParams(_Params):
    kind: Literal["deployment", "statefulset", "daemonset", "pod", "node"] = Field(
        "deployment", description="the object to annotate"
    )
    namespace: str | None = Field(
        None, pattern=DNS_NAME, max_length=63, description="none for a node"
    )
    name: str = Field(pattern=DNS_NAME, max_length=253, description="the object's name")
    annotations: dict[str, str | None] = Field(min_length=1, description="None removes one")

    @model_validator(mode="after")
    def _namespace(self) -> AnnotateParams:
        if (self.kind == "node") != (self.namespace is None):
            raise ValueError("nodes take no namespace; every other kind needs one")
        return self


@action(
    "kubernetes.annotate",
    rbac=(
        ("apps", "deployments", ("get", "patch")),
        ("apps", "statefulsets", ("get", "patch")),
        ("apps", "daemonsets", ("get", "patch")),
        ("", "pods", ("get", "patch")),
        ("", "nodes", ("get", "patch")),
    ),
    params=AnnotateParams,
    mutates=True,
    dry_run=DryRunStyle.SERVER,
    inverse="kubernetes.annotate",
    needs_cluster=True,
    describe=lambda p: {
        "method": "PATCH",
        "kind": p.kind,
        "object": f"{p.namespace + '/' if p.namespace else ''}{p.name}",
        "annotations": p.annotations,
    },
)
async def annotate(ctx: ActionContext, p: AnnotateParams) -> Outcome:
    kube = ctx.cluster()
    before = (await kube.get(p.kind, p.namespace, p.name)).get("metadata", {}).get(
        "annotations"
    ) or {}
    await kube.patch(
        p.kind,
        p.namespace,
        p.name,
        {"metadata": {"annotations": dict(p.annotations)}},
        dry_run=ctx.dry_run,
    )
    if ctx.dry_run:
        return DryRun({"dry_run": "All"})
    restore = {k: before.get(k) for k in p.annotations}
    return Executed(
        {"annotations": dict(p.annotations)},
        inverse=(
            "kubernetes.annotate",
            {"kind": p.kind, "namespace": p.namespace, "name": p.name, "annotations": restore},
        ),
    )
