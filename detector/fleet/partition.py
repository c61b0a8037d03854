"""Which worker owns a series: the cluster's sharding, inside one machine.

Prometheus shards remote-write across detectors with the ``hashmod`` relabel action over
``namespace`` and ``pod`` joined by ``;`` (or the ``instance`` when both are empty;
``deploy/config/render.py``, ``shard_relabel``). ``hashmod`` is the md5 of that value,
bytes 8..16 of the digest read as a big-endian uint64, modulo the shard count
(Prometheus ``model/relabel/relabel.go``). The workers use the very same function, so
one pod's series meet on one worker, as they meet on one shard. Pure; no state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' ``hashmod`` of ``value``.

    Examples
    --------
    >>> hashmod("shop;web-0", 2), hashmod("", 3)
    (0, 1)
    """
    digest = hashlib.md5(value.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def shard_key(labels: Mapping[str, str]) -> str:
    """``namespace;pod``, or the ``instance`` when both are empty (a missing label is "")."""
    key = f"{labels.get('namespace', '')};{labels.get('pod', '')}"
    if key == ";" and labels.get("instance"):
        return labels["instance"]
    return key


@dataclass(frozen=True, slots=True)
class Partition:
    """Worker ``index`` of ``workers``."""

    index: int
    workers: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.workers:
            raise ValueError(f"worker {self.index} is not in 0..{self.workers - 1}")

    def owner(self, labels: Mapping[str, str]) -> int:
        """The worker that tracks the series with these labels."""
        return hashmod(shard_key(labels), self.workers)

    def foreign_owner(self, labels: Mapping[str, str]) -> int:
        """The owner if it is another worker, else -1 (``SeriesRegistry.partition``)."""
        owner = self.owner(labels)
        return -1 if owner == self.index else owner
