"""How much of the audit is kept: the pure decisions behind ``AuditLog.prune`` and the
stored form of a webhook body.

Retention deletes a *prefix* of the event chain (events 1..N), never a hole in it, so the
chain stays verifiable from a checkpoint (see ``chain``). N is the largest id such
that every event up to it is older than the cutoff, no run has events on both sides of it,
and no run that is not terminal has any event up to it: a run waiting for approval,
running or verifying is never deleted, and pruning stops at its first event.

Defaults (``audit`` in the remediator config):

- ``retention_s`` 90 days: covers the alert-quality report's default window (30 days)
  three times over and a quarter's incident reviews.
- ``max_size_bytes`` 512 MiB: the cluster's state volume is an emptyDir with
  ``sizeLimit: 1Gi`` (deploy/cluster/vigil/base/remediator.yaml); half of it leaves room
  for the WAL and a prune pass before the kubelet evicts the pod. Over the cap, the kept
  age is halved (45 days, 22.5, ...) down to ``MIN_KEEP_S`` until the database fits.
- ``max_stored_body_bytes`` 64 KiB: an Alertmanager notification with a few dozen alerts
  is 2-30 KiB, so real notifications are kept verbatim; see ``stored_body`` for larger.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

DEFAULT_RETENTION_S = 90 * 86400.0
DEFAULT_MAX_SIZE_BYTES = 512 << 20
DEFAULT_MAX_STORED_BODY_BYTES = 64 << 10
DEFAULT_PRUNE_INTERVAL_S = 3600.0
MIN_KEEP_S = 3600.0  # the size cap never deletes the last hour

BodyForm = Literal["verbatim", "reduced", "truncated"]


@dataclass(frozen=True, slots=True)
class StoredBody:
    text: str  # what the notifications row keeps
    form: BodyForm
    sha256: str  # of the body as received, whatever is stored
    size_bytes: int  # of the body as received


def stored_body(body: str, *, max_bytes: int, reduced: Callable[[], str | None]) -> StoredBody:
    """What to store for a webhook body.

    Up to ``max_bytes`` (UTF-8): the body as received (``verbatim``). Larger: ``reduced()``,
    a notification holding only what a replay needs (the alerts, receiver, status, group
    key; not commonLabels, groupLabels, externalURL), when it fits (``reduced``). Else the
    first ``max_bytes`` bytes (``truncated``), which a replay cannot parse: the runs were
    already created from the full body when it arrived, and only a replica that becomes
    leader later misses it (it logs so). The sha256 and size of the full body are kept.
    """
    raw = body.encode("utf-8")
    digest, size = hashlib.sha256(raw).hexdigest(), len(raw)
    if size <= max_bytes:
        return StoredBody(body, "verbatim", digest, size)
    small = reduced()
    if small is not None and len(small.encode("utf-8")) <= max_bytes:
        return StoredBody(small, "reduced", digest, size)
    cut = raw[:max_bytes].decode("utf-8", "ignore")  # never half a character
    return StoredBody(cut, "truncated", digest, size)


def cut_point(limit: int, spans: Iterable[tuple[int, int, bool]]) -> int:
    """The last event id retention may delete through (0 or less: none).

    ``limit``: every event up to it is old enough. ``spans``: per run, (first event id,
    last event id, is_live) where is_live means not terminal.
    """
    ordered = sorted(spans)
    n = limit
    changed = True
    while changed:  # lowering n can make another run straddle it; at most one pass per run
        changed = False
        for lo, hi, is_live in ordered:
            if lo > n:
                break
            if hi > n or is_live:
                n = lo - 1
                changed = True
                break
    return n


def cutoffs(now_ms: int, *, retention_s: float) -> list[int]:
    """The age cutoff, then the halved ones the size cap tries, oldest first."""
    keep_s, out = retention_s, [now_ms - int(retention_s * 1000)]
    while keep_s / 2 >= MIN_KEEP_S:
        keep_s /= 2
        out.append(now_ms - int(keep_s * 1000))
    return out
