"""Object storage of the API double: one global resourceVersion counter (as etcd's revision),
a bounded history of watch events and the queues of open watches.

Objects are kept as plain JSON dicts and always copied in and out. resourceVersions start at
``first_resource_version`` (1000 by default, so an old client RV such as "1" is older than the
double's history window, as it is against a real cluster whose watch cache starts later); the
history keeps the last ``history_limit`` events and a watch from before it gets 410 Expired.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from dataclasses import dataclass
from typing import Any

from tests.kube.resources import ResourceType
from tests.kube.status import expired

Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: tuple[str, str]
    namespace: str
    obj: Obj
    old: Obj | None


def ns_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class Store:
    def __init__(self, first_resource_version: int = 1000, history_limit: int = 1000) -> None:
        self._rv = first_resource_version
        self.floor = first_resource_version
        self._history_limit = history_limit
        self._history: deque[Event] = deque()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._watchers: set[asyncio.Queue[Event | None]] = set()

    # --- reads -----------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(rt.key, {}).get((namespace if rt.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def select(self, rt: ResourceType, namespace: str | None = None) -> list[Obj]:
        """All objects of ``rt`` (in ``namespace`` if given), in etcd key order."""
        bucket = self._objects.get(rt.key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [copy.deepcopy(bucket[k]) for k in keys]

    def peek_all(self, rt: ResourceType) -> list[Obj]:
        """Stored objects without copying: callers must not mutate them."""
        return list(self._objects.get(rt.key, {}).values())

    # --- writes ----------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def put(self, rt: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        """Store ``obj`` under a new resourceVersion; record ADDED or MODIFIED."""
        obj = copy.deepcopy(obj)
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        key = (ns_of(obj) if rt.namespaced else "", name_of(obj))
        self._objects.setdefault(rt.key, {})[key] = obj
        self._record(
            Event(
                rv,
                "MODIFIED" if old is not None else "ADDED",
                rt.key,
                key[0],
                copy.deepcopy(obj),
                copy.deepcopy(old),
            )
        )
        return copy.deepcopy(obj)

    def remove(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete ``obj``; the DELETED event carries the deletion's resourceVersion."""
        key = (ns_of(obj) if rt.namespaced else "", name_of(obj))
        self._objects.get(rt.key, {}).pop(key, None)
        gone = copy.deepcopy(obj)
        rv = self._next_rv()
        gone["metadata"]["resourceVersion"] = str(rv)
        self._record(Event(rv, "DELETED", rt.key, key[0], copy.deepcopy(gone), None))
        return gone

    def _record(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self.floor = self._history.popleft().rv
        for q in self._watchers:
            q.put_nowait(event)

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: older RVs now get 410 Expired."""
        self._history.clear()
        self.floor = self._rv

    # --- watches ---------------------------------------------------------------------------

    def events_since(self, rv: int) -> list[Event]:
        if rv < self.floor:
            raise expired(f"too old resource version: {rv} ({self.floor})")
        return [e for e in self._history if e.rv > rv]

    def subscribe(self) -> asyncio.Queue[Event | None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watchers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event | None]) -> None:
        self._watchers.discard(q)

    def close_watches(self) -> None:
        for q in self._watchers:
            q.put_nowait(None)
