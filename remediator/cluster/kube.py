"""The Kubernetes API as the remediator uses it: the only module that imports
kubernetes_asyncio.

``Kube`` speaks plain JSON to the API server through kubernetes-asyncio's ApiClient (its
configuration, authentication and TLS), so objects stay dicts shaped like the API's and no
generated model is built per object. Every call has a timeout. Errors are wrapped where
they appear: a 409 is ``Conflict``, a 404 ``NotFound``, a 429 ``TooManyRequests`` (for an
eviction: a disruption budget said no), 422 ``Invalid``; connection faults, timeouts and
5xx are ``ActionTemporaryError``; 401/403 say which permission is missing. The exception:
a write (POST, PUT, PATCH, DELETE) that times out may have been applied, so it is an
``ActionPermanentError`` (not retried: a relative change such as ``delta: 2`` repeated
would act twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import OpenApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from remediator.errors import ActionPermanentError, ActionTemporaryError, ConfigError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]
# a DNS-1123 subdomain: what every object and namespace name here must be. Checked before a
# name goes into a URL path, so a label value such as ``../../etc`` or ``a/b`` (they come
# from alerts) can never reach another endpoint
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True, slots=True)
class Resource:
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool = True

    def path(
        self, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The API path; a namespaced kind without a namespace lists every namespace.
        ActionPermanentError, before any request, when a name is not a Kubernetes name."""
        for what, value in (("namespace", namespace), ("name", name)):
            if value is not None and (not OBJECT_NAME.fullmatch(value) or ".." in value):
                shown = value if len(value) <= 80 else value[:80] + "..."
                raise ActionPermanentError(
                    f"{self.plural}: {what} {shown!r} is not a Kubernetes name (lower-case "
                    "letters, digits, '-' and '.', at most 253); refused before any request"
                )
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        elif self.namespaced and name is not None:
            raise ActionPermanentError(f"{self.plural} are namespaced: a namespace is needed")
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


RESOURCES: dict[str, Resource] = {
    "pod": Resource("", "v1", "pods"),
    "node": Resource("", "v1", "nodes", namespaced=False),
    "namespace": Resource("", "v1", "namespaces", namespaced=False),
    "configmap": Resource("", "v1", "configmaps"),
    "event": Resource("", "v1", "events"),
    "deployment": Resource("apps", "v1", "deployments"),
    "statefulset": Resource("apps", "v1", "statefulsets"),
    "daemonset": Resource("apps", "v1", "daemonsets"),
    "replicaset": Resource("apps", "v1", "replicasets"),
    "controllerrevision": Resource("apps", "v1", "controllerrevisions"),
    "job": Resource("batch", "v1", "jobs"),
    "poddisruptionbudget": Resource("policy", "v1", "poddisruptionbudgets"),
    "lease": Resource("coordination.k8s.io", "v1", "leases"),
    "horizontalpodautoscaler": Resource("autoscaling", "v2", "horizontalpodautoscalers"),
}


class KubeError(ActionPermanentError):
    """The API server refused; ``status`` and ``reason`` are its own."""

    def __init__(self, message: str, *, status: int, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Conflict(KubeError):
    """409: the object changed since it was read (or already exists)."""


class NotFound(KubeError):
    """404."""


class TooManyRequests(KubeError):
    """429: for an eviction, a PodDisruptionBudget forbids it now."""


class Invalid(KubeError):
    """422: the object or patch is not valid."""


_ERRORS: dict[int, type[KubeError]] = {
    409: Conflict,
    404: NotFound,
    429: TooManyRequests,
    422: Invalid,
}


class Kube:
    """JSON requests to one API server."""

    def __init__(self, api: client.ApiClient, *, timeout_s: float = 10.0) -> None:
        self.api = api
        self.timeout_s = timeout_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> Obj:
        """One API call; the decoded JSON answer, or the KubeError it deserves."""
        what = what or f"{method} {path}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await self.api.call_api(
                    path,
                    method,
                    query_params=list((query or {}).items()),
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=self.timeout_s,
                )
                async with resp:
                    status, raw = resp.status, await resp.read()
        except TimeoutError as exc:
            if method != "GET":
                raise ActionPermanentError(
                    f"{what}: no answer from the Kubernetes API within {self.timeout_s:g} s; "
                    "the change may or may not have been applied, so it is not retried "
                    "(check the object)"
                ) from exc
            raise ActionTemporaryError(
                f"{what}: no answer from the Kubernetes API within {self.timeout_s:g} s",
                delay_s=1.0,
            ) from exc
        except (aiohttp.ClientError, OSError, OpenApiException) as exc:
            raise ActionTemporaryError(
                f"{what}: Kubernetes API unreachable ({exc!r})", delay_s=1.0
            ) from exc
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"message": raw[:300].decode("utf-8", "replace")}
        if 200 <= status < 300:
            return doc if isinstance(doc, dict) else {"items": doc}
        message = doc.get("message", "") if isinstance(doc, dict) else ""
        reason = doc.get("reason", "") if isinstance(doc, dict) else ""
        if status >= 500:
            raise ActionTemporaryError(f"{what}: HTTP {status} {message}", delay_s=2.0)
        if status in (401, 403):
            raise KubeError(
                f"{what}: HTTP {status} {message}; grant the remediator's service "
                "account this verb (see `vigil-remediator rbac`)",
                status=status,
                reason=reason,
            )
        cls = _ERRORS.get(status, KubeError)
        raise cls(f"{what}: HTTP {status} {reason}: {message}", status=status, reason=reason)

    @staticmethod
    def _query(dry_run: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
        query = dict(extra or {})
        if dry_run:
            query["dryRun"] = "All"
        return query

    async def get(
        self, kind: str, namespace: str | None, name: str, *, subresource: str | None = None
    ) -> Obj:
        path = RESOURCES[kind].path(namespace, name, subresource)
        return await self.request("GET", path, what=f"get {kind} {namespace}/{name}")

    async def list(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        query = {
            k: v
            for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector))
            if v
        }
        doc = await self.request(
            "GET",
            RESOURCES[kind].path(namespace),
            query=query,
            what=f"list {kind} in {namespace or 'the cluster'}",
        )
        items = doc.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    async def create(
        self, kind: str, namespace: str | None, body: Obj, *, dry_run: bool = False
    ) -> Obj:
        return await self.request(
            "POST",
            RESOURCES[kind].path(namespace),
            body=body,
            query=self._query(dry_run),
            what=f"create {kind} in {namespace}",
        )

    async def replace(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        return await self.request(
            "PUT",
            RESOURCES[kind].path(namespace, name, subresource),
            body=body,
            query=self._query(dry_run),
            what=f"replace {kind} {namespace}/{name}",
        )

    async def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch: PatchType = "merge",
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        return await self.request(
            "PATCH",
            RESOURCES[kind].path(namespace, name, subresource),
            body=body,
            query=self._query(dry_run),
            content_type=CONTENT_TYPES[patch],
            what=f"patch {kind} {namespace}/{name}",
        )

    async def delete(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        pre = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        if pre:
            body["preconditions"] = pre
        if dry_run:
            body["dryRun"] = ["All"]
        return await self.request(
            "DELETE",
            RESOURCES[kind].path(namespace, name),
            body=body,
            query=self._query(dry_run),
            what=f"delete {kind} {namespace}/{name}",
        )

    async def evict(self, namespace: str, name: str, *, dry_run: bool = False) -> Obj:
        body: Obj = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if dry_run:
            body["deleteOptions"] = {"dryRun": ["All"]}
        return await self.request(
            "POST",
            RESOURCES["pod"].path(namespace, name, "eviction"),
            body=body,
            query=self._query(dry_run),
            what=f"evict pod {namespace}/{name}",
        )


async def build_api_client(
    *, kubeconfig: Path | None, context: str | None = None, host: str | None = None
) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, the in-cluster service account, or (tests) a
    plain ``host`` URL. ConfigError saying what to do when none works."""
    cfg = client.Configuration()
    if host is not None:
        cfg.host = host
        return client.ApiClient(configuration=cfg)
    try:
        if kubeconfig is not None:
            if not await asyncio.to_thread(kubeconfig.is_file):
                raise ConfigError(f"--kubeconfig {kubeconfig}: no such file")
            await config.load_kube_config(
                config_file=str(kubeconfig),
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        else:
            # the library leaves this one unannotated
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=cfg
            )
    except (ConfigException, OSError, ValueError) as exc:
        raise ConfigError(
            f"Kubernetes configuration: {exc}; give --kubeconfig FILE, or run "
            "in a pod with a service account"
        ) from exc
    return client.ApiClient(configuration=cfg)
