"""Recent rollouts of the workload behind an anomalous series, for alert context; nothing else.

Owns the walk from a series' labels to its workload (``namespace`` + ``pod`` → the pod's
controller, or a ``deployment``/``statefulset``/``daemonset`` label) and on to its rollouts: a
Deployment's ReplicaSets, a StatefulSet's or DaemonSet's ControllerRevisions. The only detector
module importing kubernetes_asyncio; it only reads. Bodies are fetched raw and parsed here into
:class:`Change` (the generated models would build every pod template of a namespace on the
event loop). Every failure is an :class:`~detector.errors.EnrichmentError`.

Not seen: a rollback (``kubectl rollout undo``) re-activates an old ReplicaSet/ControllerRevision
instead of creating one, so its start is the old creation time, usually outside the window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import OpenApiException
from kubernetes_asyncio.config import ConfigException

from detector.errors import EnrichmentError

log = logging.getLogger(__name__)

WorkloadKind = Literal["deployment", "statefulset", "daemonset"]
_KIND_OF_OWNER: Mapping[str, WorkloadKind] = {
    "Deployment": "deployment",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
}
_OWNER_OF_KIND = {kind: owner for owner, kind in _KIND_OF_OWNER.items()}
_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Change:
    """One rollout of a workload."""

    kind: WorkloadKind
    namespace: str
    name: str
    started_ms: int  # epoch ms: creation of the ReplicaSet / ControllerRevision
    images: tuple[str, ...]  # container images of the new pod template
    revision: str | None


@dataclass(frozen=True, slots=True)
class _Revision:
    """A ReplicaSet or ControllerRevision, reduced to what a rollout needs."""

    name: str
    owner: tuple[str, str, str] | None  # controller's (kind, name, uid)
    started_ms: int
    images: tuple[str, ...]
    revision: str | None


@dataclass(frozen=True, slots=True)
class _Listing:
    """One list call's result; compared by identity to ask for a newer one."""

    fetched_at_s: float
    items: tuple[_Revision, ...]


class ChangeFinder:
    """Finds recent rollouts through the Kubernetes API; lists are cached per namespace."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        window_s: float = 1800.0,
        cache_ttl_s: float = 10.0,
        request_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s <= 0 or cache_ttl_s < 0 or request_timeout_s <= 0:
            raise ValueError(
                f"ChangeFinder: window_s={window_s}, cache_ttl_s={cache_ttl_s}, "
                f"request_timeout_s={request_timeout_s}; use positive values"
            )
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._window_ms = round(window_s * 1000)
        self._ttl_s = cache_ttl_s
        self._timeout_s = request_timeout_s
        self._clock = clock
        self._cache: dict[tuple[str, str], _Listing] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def recent_changes(
        self, labels: Mapping[str, str], *, anomaly_start_ms: int
    ) -> list[Change]:
        """Rollouts of the series' workload begun in the window before the anomaly, newest first.

        Returns ``[]`` when the labels carry no namespace or no workload can be found (no pod
        or workload label, pod gone, pod without a controller, bare ReplicaSet).
        """
        namespace = labels.get("namespace", "")
        workload = await self._workload(namespace, labels) if namespace else None
        if workload is None:
            return []
        kind, name, uid = workload
        resource = "replicasets" if kind == "deployment" else "controllerrevisions"
        listing = await self._list(namespace, resource)
        earliest_ms = anomaly_start_ms - self._window_ms
        found = [
            Change(
                kind=kind,
                namespace=namespace,
                name=name,
                started_ms=r.started_ms,
                images=r.images,
                revision=r.revision,
            )
            for r in listing.items
            if r.owner is not None
            and r.owner[0] == _OWNER_OF_KIND[kind]
            and (r.owner[2] == uid if uid else r.owner[1] == name)
            and earliest_ms <= r.started_ms <= anomaly_start_ms
        ]
        return sorted(found, key=lambda c: c.started_ms, reverse=True)

    async def _workload(
        self, namespace: str, labels: Mapping[str, str]
    ) -> tuple[WorkloadKind, str, str] | None:
        """(kind, name, uid or "") of the workload; None when there is none to blame."""
        pod = labels.get("pod", "")
        if pod:
            where = f"pod {namespace}/{pod}"
            doc = await self._get(where, self._core.read_namespaced_pod, pod, namespace)
            owner = _owner(_mapping(doc, where), where) if doc is not None else None
            if owner is not None and owner[0] == "ReplicaSet":
                owner = await self._replicaset_owner(namespace, owner[1])
            if owner is not None and owner[0] in _KIND_OF_OWNER:
                return _KIND_OF_OWNER[owner[0]], owner[1], owner[2]
        for kind in _OWNER_OF_KIND:
            if labels.get(kind):
                return kind, labels[kind], ""
        return None

    async def _replicaset_owner(self, namespace: str, name: str) -> tuple[str, str, str] | None:
        listing = await self._list(namespace, "replicasets")
        found = next((rs for rs in listing.items if rs.name == name), None)
        if found is None:  # created after our cached list, likely by the very rollout
            listing = await self._list(namespace, "replicasets", replacing=listing)
            found = next((rs for rs in listing.items if rs.name == name), None)
        return None if found is None else found.owner

    async def _list(
        self, namespace: str, resource: str, *, replacing: _Listing | None = None
    ) -> _Listing:
        """The cached list of ``resource`` in ``namespace``; one call for concurrent askers."""
        key = (namespace, resource)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if (
                cached is not None
                and cached is not replacing
                and self._clock() - cached.fetched_at_s < self._ttl_s
            ):
                return cached
            call = (
                self._apps.list_namespaced_replica_set
                if resource == "replicasets"
                else self._apps.list_namespaced_controller_revision
            )
            where = f"list {resource} in namespace {namespace}"
            doc = await self._get(where, call, namespace)
            if doc is None:
                raise EnrichmentError(
                    f"{where}: HTTP 404; the API server does not serve apps/v1 "
                    f"{resource}, which needs Kubernetes 1.9 or later"
                )
            items = _mapping(doc, where).get("items") or []
            if not isinstance(items, list):
                raise EnrichmentError(f"{where}: items is {type(items).__name__}, not a list")
            listing = _Listing(
                self._clock(),
                tuple(_revision(item, f"{where}: items[{i}]") for i, item in enumerate(items)),
            )
            self._cache[key] = listing
            return listing

    async def _get(self, where: str, call: Callable[..., Awaitable[Any]], *args: str) -> Any:
        """GET one API path and decode its JSON; None when it answers 404."""
        log.debug("kubernetes: %s", where)
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await call(*args, _preload_content=False, _request_timeout=self._timeout_s)
                async with resp:
                    status, body = resp.status, await resp.read()
        except TimeoutError as exc:
            raise EnrichmentError(
                f"{where}: no answer from the Kubernetes API within "
                f"{self._timeout_s} s; check the API server"
            ) from exc
        except (aiohttp.ClientError, OSError, OpenApiException, ConfigException, ValueError) as exc:
            raise EnrichmentError(
                f"{where}: Kubernetes API request failed ({exc!r}); check "
                "the API address and credentials"
            ) from exc
        if status == 404:
            return None
        if not 200 <= status < 300:
            hint = (
                "grant the detector get on pods, list on replicasets and controllerrevisions"
                if status in (401, 403)
                else "check the API server"
            )
            raise EnrichmentError(f"{where}: HTTP {status} {body[:200]!r}; {hint}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EnrichmentError(f"{where}: response is not JSON ({exc})") from exc


def describe(change: Change, *, anomaly_start_ms: int) -> str:
    """Plain words for an alert, e.g. ``started 3 min after rollout of deployment/x to image y``."""
    delta_ms = anomaly_start_ms - change.started_ms
    relation = "after" if delta_ms >= 0 else "before"
    text = (
        f"started {_duration(abs(delta_ms) // 1000)} {relation} rollout of "
        f"{change.kind}/{change.name}"
    )
    if change.images:
        noun = "image" if len(change.images) == 1 else "images"
        text += f" to {noun} {', '.join(change.images)}"
    return text


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


async def build_api_client(
    *, kubeconfig: Path | None, context: str | None = None
) -> client.ApiClient:
    """An ApiClient from ``kubeconfig`` (and ``context``), else from the pod's service account."""
    cfg = client.Configuration()
    if kubeconfig is None:
        if context is not None:
            raise EnrichmentError(
                f"Kubernetes context {context!r} given without a kubeconfig; "
                "pass the kubeconfig that defines it, or drop the context"
            )
        try:  # reads the token and CA files: off the loop
            await asyncio.to_thread(config.load_incluster_config, client_configuration=cfg)
        except (ConfigException, OSError) as exc:
            raise EnrichmentError(
                f"no kubeconfig given and no in-cluster service account "
                f"({exc}); pass a kubeconfig file or run in a pod"
            ) from exc
    elif not await asyncio.to_thread(kubeconfig.is_file):  # the loader takes a missing file as {}
        raise EnrichmentError(f"kubeconfig {kubeconfig} does not exist; fix the path")
    else:
        try:
            await config.load_kube_config(
                config_file=str(kubeconfig),
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        except (ConfigException, yaml.YAMLError, OSError, ValueError, KeyError, TypeError) as exc:
            raise EnrichmentError(
                f"kubeconfig {kubeconfig}: {exc}; fix the file or choose another context"
            ) from exc
    return client.ApiClient(configuration=cfg)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise EnrichmentError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _field(obj: Mapping[str, Any], key: str, want: type[_T], where: str) -> _T | None:
    value = obj.get(key)
    if value is None or isinstance(value, want):
        return value
    raise EnrichmentError(f"{where}: {key} is {type(value).__name__}, expected {want.__name__}")


def _owner(obj: Mapping[str, Any], where: str) -> tuple[str, str, str] | None:
    """The controlling ownerReference's (kind, name, uid); malformed references are skipped."""
    meta = _field(obj, "metadata", dict, where) or {}
    refs = [
        r
        for r in _field(meta, "ownerReferences", list, where) or []
        if isinstance(r, dict) and isinstance(r.get("kind"), str) and isinstance(r.get("name"), str)
    ]
    ref = next((r for r in refs if r.get("controller") is True), refs[0] if refs else None)
    if ref is None:
        return None
    uid = ref.get("uid")
    return ref["kind"], ref["name"], uid if isinstance(uid, str) else ""


def _revision(item: Any, where: str) -> _Revision:
    """A raw ReplicaSet or ControllerRevision (whose template sits under ``data``)."""
    obj = _mapping(item, where)
    meta = _field(obj, "metadata", dict, where) or {}
    created = _field(meta, "creationTimestamp", str, where)
    if created is None:
        raise EnrichmentError(f"{where}: metadata.creationTimestamp is missing")
    try:
        started = datetime.fromisoformat(created)
    except ValueError as exc:
        raise EnrichmentError(f"{where}: creationTimestamp {created!r} is not RFC 3339") from exc
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    if "revision" in obj:  # ControllerRevision
        number = _field(obj, "revision", int, where)
        revision = None if number is None else str(number)
    else:
        annotations = _field(meta, "annotations", dict, where) or {}
        revision = _field(annotations, _REVISION_ANNOTATION, str, where)
    node: Any = _field(obj, "data", dict, where) or obj
    for key in ("spec", "template", "spec"):
        node = _field(node, key, dict, where) or {}
    containers = _field(node, "containers", list, where) or []
    images = tuple(
        c["image"] for c in containers if isinstance(c, dict) and isinstance(c.get("image"), str)
    )
    return _Revision(
        name=_field(meta, "name", str, where) or "",
        owner=_owner(obj, where),
        started_ms=round(started.timestamp() * 1000),
        images=images,
        revision=revision,
    )
