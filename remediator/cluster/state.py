"""What the remediator's replicas share through the cluster: which alerts have runs, what
they did and when, and the kill switch and circuit breakers.

Each replica keeps its own audit log; this ConfigMap is how a new leader learns what the
old one did, so a failover neither repeats a run nor resets the brakes (cooldowns, rate
limits and breakers are computed from the runs it imports). Updates use optimistic
concurrency: read, change, PUT with the resourceVersion read; a 409 means another replica
wrote first, so read again. The document is bounded (newest ``max_runs`` runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from remediator.cluster.kube import Conflict, Kube, NotFound, Obj

log = logging.getLogger(__name__)

ATTEMPTS = 5


def run_key(playbook: str, fingerprint: str, starts_at: str) -> str:
    """A ConfigMap-safe key for one alert's run of one playbook."""
    digest = hashlib.sha256(f"{playbook}\x00{fingerprint}\x00{starts_at}".encode())
    return "run." + digest.hexdigest()[:32]


class ClusterState:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str = "vigil-remediator-state",
        max_runs: int = 2000,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.max_runs = max_runs

    async def _read(self) -> Obj | None:
        try:
            return await self.kube.get("configmap", self.namespace, self.name)
        except NotFound:
            return None

    async def load(self) -> dict[str, Any]:
        """{"runs": {key: record}, "flags": {name: value}} as stored now."""
        obj = await self._read()
        return _decode(obj)

    async def _update(self, change: Callable[[dict[str, Any]], bool]) -> bool:
        """Apply ``change`` (False: nothing to write) with compare-and-swap; retried."""
        for _ in range(ATTEMPTS):
            obj = await self._read()
            doc = _decode(obj)
            if not change(doc):
                return False
            runs = doc["runs"]
            if len(runs) > self.max_runs:
                keep = sorted(runs.items(), key=lambda kv: kv[1].get("created_ms", 0))
                doc["runs"] = dict(keep[-self.max_runs :])
            data = {
                "runs": json.dumps(doc["runs"], sort_keys=True),
                "flags": json.dumps(doc["flags"], sort_keys=True),
            }
            try:
                if obj is None:
                    await self.kube.create(
                        "configmap",
                        self.namespace,
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {
                                "name": self.name,
                                "namespace": self.namespace,
                                "labels": {"app.kubernetes.io/name": "vigil-remediator"},
                            },
                            "data": data,
                        },
                    )
                else:
                    body = {**obj, "data": data}
                    await self.kube.replace("configmap", self.namespace, self.name, body)
                return True
            except Conflict:
                continue
        raise Conflict(
            f"configmap {self.namespace}/{self.name}: still changing after {ATTEMPTS} attempts",
            status=409,
        )

    async def claim(self, key: str, record: dict[str, Any]) -> bool:
        """Record a new run for ``key``; False when a run for it exists already."""

        def change(doc: dict[str, Any]) -> bool:
            if key in doc["runs"]:
                return False
            doc["runs"][key] = record
            return True

        return await self._update(change)

    async def update(self, key: str, fields: dict[str, Any]) -> None:
        def change(doc: dict[str, Any]) -> bool:
            if key not in doc["runs"]:
                return False
            doc["runs"][key] = {**doc["runs"][key], **fields}
            return True

        await self._update(change)

    async def set_flag(self, name: str, value: str | None) -> None:
        def change(doc: dict[str, Any]) -> bool:
            if doc["flags"].get(name) == value:
                return False
            if value is None:
                doc["flags"].pop(name, None)
            else:
                doc["flags"][name] = value
            return True

        await self._update(change)


def _decode(obj: Obj | None) -> dict[str, Any]:
    data = (obj or {}).get("data") or {}
    try:
        runs = json.loads(data.get("runs") or "{}")
        flags = json.loads(data.get("flags") or "{}")
    except ValueError:
        log.error("the shared state ConfigMap is not valid JSON; starting it afresh")
        runs, flags = {}, {}
    return {
        "runs": runs if isinstance(runs, dict) else {},
        "flags": flags if isinstance(flags, dict) else {},
    }
