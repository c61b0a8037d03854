"""A decoded request -> one uncompressed request per owner of its series (``--workers``).

This module owns the ``Split`` value the receiving worker forwards: for each owner, the
raw bytes of its ``TimeSeries`` messages as a request of the same protocol version (2.0:
with the symbols table). The owner scans it like any body, minus the snappy step. Pure:
no I/O, no registry; the kernel is ``_split``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detector.remote_write import _split
from detector.remote_write.decode import DecodedRequest


@dataclass(frozen=True, slots=True)
class Part:
    """One owner's share of a request: an uncompressed 1.0 or 2.0 request body."""

    owner: int
    body: memoryview


@dataclass(frozen=True, slots=True)
class Split:
    """The shares of one request that go to other owners, in owner order."""

    version: int
    parts: tuple[Part, ...]


def split_request(req: DecodedRequest, owner_of_series: NDArray[np.int32], n_owners: int) -> Split:
    """Cut ``req`` by ``owner_of_series`` (one entry per series of ``req``: an owner in
    ``0..n_owners-1``, or -1 for a series that stays); owners without series get no part.

    Raises ValueError if the array does not match the request's series (a bug, not input:
    ``req`` was scanned by ``Decoder.decode``).
    """
    owners = np.ascontiguousarray(owner_of_series, dtype=np.int32)
    if owners.shape[0] != req.n_series:
        raise ValueError(f"{owners.shape[0]} owners for a request of {req.n_series} series")
    # a region per owner with series here, each as long as the body (which bounds any
    # owner's request): one pass, no sizing pass before it
    counts = np.empty(n_owners, dtype=np.int64)
    _split.count(owners, counts)
    present = [w for w, n in enumerate(counts.tolist()) if n]
    region_of = np.full(n_owners, -1, dtype=np.int64)
    for r, w in enumerate(present):
        region_of[w] = r
    n_regions = len(present)
    buf = req.buf
    region = int(buf.shape[0])
    out = np.empty(n_regions * region, dtype=np.uint8)
    used = np.empty(n_regions, dtype=np.int64)
    info = np.zeros(2, dtype=np.int64)
    _split.split(buf, req.version, owners, region_of, region, out, used, info)
    if info[1] or info[0] != req.n_series:
        raise ValueError(
            f"split found {int(info[0])} series where the scan found {req.n_series}: "
            "the body is not the one that was scanned"
        )
    view = out.data
    return Split(
        req.version,
        tuple(Part(w, view[r * region : r * region + int(used[r])]) for r, w in enumerate(present)),
    )
