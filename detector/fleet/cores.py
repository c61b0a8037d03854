"""How many cores this process may use: ``serve --workers auto``.

The smaller of the CPUs in the process's affinity mask and its cgroup CPU quota (cgroup
v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; every ancestor group's
quota counts, the tightest wins), rounded down, at least 1. A quota of 1.5 cores gives 1:
a second worker would only be throttled, and would add the forwarding between workers.
Reads files under ``root`` (``/`` in production, a fake tree in tests); no other I/O.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _ancestors(rel: str) -> list[str]:
    """``/a/b`` -> ``["/a/b", "/a", "/"]``."""
    parts = [p for p in rel.split("/") if p]
    return ["/" + "/".join(parts[:k]) for k in range(len(parts), -1, -1)]


def _quota_v2(root: Path, rel: str) -> float:
    best = math.inf
    for group in _ancestors(rel):
        text = _read(root / "sys/fs/cgroup" / group.lstrip("/") / "cpu.max")
        if text is None:
            continue
        fields = text.split()
        if len(fields) == 2 and fields[0] != "max" and fields[0].isdigit():
            period = int(fields[1]) if fields[1].isdigit() else 0
            if period > 0:
                best = min(best, int(fields[0]) / period)
    return best


def _quota_v1(root: Path, controllers: str, rel: str) -> float:
    best = math.inf
    for mount in (controllers, "cpu", "cpu,cpuacct"):
        base = root / "sys/fs/cgroup" / mount
        # inside a container the host's path in /proc/self/cgroup may not exist: the
        # group is then mounted at the controller's root, which _ancestors reaches too
        for group in _ancestors(rel):
            folder = base / group.lstrip("/")
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota is None or period is None:
                continue
            q, p = quota.strip(), period.strip()
            if q.lstrip("-").isdigit() and p.isdigit() and int(q) > 0 and int(p) > 0:
                best = min(best, int(q) / int(p))
        if best < math.inf:
            return best
    return best


def cgroup_quota(root: Path = Path("/")) -> float:
    """The CPU quota of this process's cgroups in cores; inf when there is none."""
    text = _read(root / "proc/self/cgroup")
    if text is None:
        return math.inf
    best = math.inf
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            best = min(best, _quota_v2(root, rel))
        elif "cpu" in controllers.split(","):
            best = min(best, _quota_v1(root, controllers, rel))
    return best


def available_cores(*, affinity: int | None = None, root: Path = Path("/")) -> int:
    """Cores this process may use: min(affinity, cgroup quota), rounded down, at least 1.
    ``affinity`` None reads the process's own mask."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0))
    quota = cgroup_quota(root)
    cores = affinity if quota == math.inf else min(affinity, math.floor(quota + 1e-9))
    return max(1, cores)


def pin_worker(
    index: int,
    workers: int,
    *,
    affinity: set[int] | None = None,
    set_affinity: Callable[[int, set[int]], None] = os.sched_setaffinity,
) -> int | None:
    """Pin worker ``index`` (this process, and the threads it starts) to one CPU of its
    affinity mask when there is exactly one CPU per worker; the CPU, or None (not pinned).

    Measured on 2 cores (docs/ingestion.md, Workers): unpinned, the two workers' event
    loops and detector threads migrate between the cores, each switch evicting the other
    process's caches, and the same work took 1.33 CPU-s per 1M samples; pinned, 1.05.
    With more CPUs than workers (a CPU quota without a cpuset) nothing is pinned: those
    CPUs are shared with others, and the scheduler places the workers better than a guess.
    """
    cpus = sorted(os.sched_getaffinity(0) if affinity is None else affinity)
    if len(cpus) != workers:
        return None
    cpu = cpus[index % len(cpus)]
    set_affinity(0, {cpu})
    return cpu
