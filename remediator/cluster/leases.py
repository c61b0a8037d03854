"""Leases (``coordination.k8s.io/v1``): who leads among the remediator's replicas, and who
holds a target while a run acts on it.

A lease is taken by creating it, or by replacing it (PUT with the resourceVersion it was
read at) when it is free, expired, or already ours; a 409 means another replica won the
race and we did not get it. Time comes from the injected clock; the lease's own
``renewTime`` and ``leaseDurationSeconds`` say when it expires, so replicas agree without
talking to each other (clock skew between nodes is bounded by the duration, as in
client-go's leader election).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from remediator.cluster.kube import Conflict, Kube, NotFound, Obj
from remediator.errors import ActionError

log = logging.getLogger(__name__)


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def target_lease_name(key: str) -> str:
    """A valid, stable Lease name for a target key such as ``deployment/shop/checkout``."""
    return "vigil-target-" + hashlib.sha256(key.encode()).hexdigest()[:20]


class LeaseLock:
    """One named Lease in one namespace."""

    def __init__(
        self, kube: Kube, *, namespace: str, name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.clock = clock

    async def read(self) -> Obj | None:
        try:
            return await self.kube.get("lease", self.namespace, self.name)
        except NotFound:
            return None

    def holder(self, lease: Obj | None) -> str | None:
        """The current holder, or None when the lease is free or expired."""
        if lease is None:
            return None
        spec = lease.get("spec", {})
        who = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or 0)
        if not who or renewed is None or renewed + duration < self.clock():
            return None
        return str(who)

    async def acquire(
        self, identity: str, *, duration_s: float, annotations: dict[str, str] | None = None
    ) -> bool:
        """Take or renew the lease for ``identity``; False when someone else holds it."""
        now = self.clock()
        lease = await self.read()
        spec = {
            "holderIdentity": identity,
            "leaseDurationSeconds": max(1, round(duration_s)),
            "renewTime": _micro(now),
        }
        if lease is None:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": annotations or {},
                },
                "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0},
            }
            try:
                await self.kube.create("lease", self.namespace, body)
            except Conflict:
                return False  # created by another replica meanwhile
            return True
        holder = self.holder(lease)
        if holder is not None and holder != identity:
            return False
        old = lease.get("spec", {})
        transitions = int(old.get("leaseTransitions") or 0)
        if old.get("holderIdentity") != identity:
            spec["acquireTime"] = _micro(now)
            transitions += 1
        else:
            spec["acquireTime"] = old.get("acquireTime") or _micro(now)
        meta = dict(lease["metadata"])
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {**spec, "leaseTransitions": transitions},
        }
        try:
            await self.kube.replace("lease", self.namespace, self.name, body)
        except Conflict:
            return False
        return True

    async def release(self, identity: str) -> None:
        """Give the lease up if we hold it (others need not wait for it to expire)."""
        lease = await self.read()
        if lease is None or lease.get("spec", {}).get("holderIdentity") != identity:
            return
        body = dict(lease)
        body["spec"] = {
            **lease.get("spec", {}),
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "renewTime": _micro(self.clock() - 3600),
        }
        try:
            await self.kube.replace("lease", self.namespace, self.name, body)
        except Conflict:
            log.info("lease %s changed while being released; it expires by itself", self.name)


class LeaderElector:
    """Keeps trying to lead; ``is_leader`` says whether this replica may act now."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        identity: str,
        duration_s: float = 15.0,
        retry_s: float = 2.0,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.lock = lock
        self.identity = identity
        self.duration_s = duration_s
        self.retry_s = retry_s
        self.on_change = on_change
        self.sleep = sleep
        self.is_leader = False
        self._renewed_at = 0.0
        self.changed = asyncio.Event()

    async def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        log.warning(
            "this replica (%s) %s the leader",
            self.identity,
            "is now" if leading else "is no longer",
        )
        self.changed.set()
        if self.on_change is not None:
            await self.on_change(leading)

    async def step(self) -> bool:
        """One attempt to take or renew leadership."""
        try:
            got = await self.lock.acquire(self.identity, duration_s=self.duration_s)
        except ActionError as exc:
            log.warning("leader election: %s", exc)
            got = False
        now = self.lock.clock()
        if got:
            self._renewed_at = now
        elif self.is_leader and now - self._renewed_at < self.duration_s * 2 / 3:
            got = True  # a failed renewal: keep leading until the renew deadline passes
        await self._set(got)
        return got

    async def run(self) -> None:
        while True:
            await self.step()
            await self.sleep(self.retry_s)

    async def resign(self) -> None:
        if self.is_leader:
            await self.lock.release(self.identity)
            await self._set(False)
