"""numba kernels of the series index: label set -> series value, without Python objects.

This module owns the open-addressing hash table that maps the exact label set of a series
to an int32 value (a slot, or a negative marker) and the arena that stores each label set's
canonical bytes (per label: varint name length, name, varint value length, value). A
lookup compares those bytes, not only the hash, so a hash collision can never merge two
series. It imports numpy and numba only; ``series.py`` owns sizing and growth.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

UNKNOWN = -1

_FNV_OFFSET = np.int64(-3750763034362895579)  # 0xcbf29ce484222325 as int64
_FNV_PRIME = np.int64(1099511628211)

_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
_u8 = types.Array(types.uint8, 1, "C")
_u8r = types.Array(types.uint8, 1, "C", readonly=True)

_LABELS = (_u8r, _i32, _i32, _i32, _i32, _i32, _i32)  # buf, 4 label span arrays, 2 series arrays
LOOKUP_SIG = types.void(*_LABELS, _i32, _i64, _i32, _i64, _i32, _u8, _i64, _i32)
INSERT_SIG = types.int64(*_LABELS, _i64, _i32, _i32, _i32, _i64, _i32, _i32, _i64, _u8,
                         types.int64, types.int64)
REHASH_SIG = types.void(_i64, types.int64, _i32)


@njit(cache=True, nogil=True, inline="always")
def _hash(buf: np.ndarray, first: int, count: int, lab_noff: np.ndarray, lab_nlen: np.ndarray,
          lab_voff: np.ndarray, lab_vlen: np.ndarray) -> int:
    """Hash of a label set: each name and value, length first, folded 8 bytes at a time.

    Written as one loop nest without calls: numba calls that pass arrays cost more than
    the hashing itself here.
    """
    h = _FNV_OFFSET
    for k in range(first, first + count):
        for part in range(2):
            off = lab_noff[k] if part == 0 else lab_voff[k]
            n = lab_nlen[k] if part == 0 else lab_vlen[k]
            h = (h ^ n) * _FNV_PRIME
            end = off + n
            while off < end:
                w = 0
                for j in range(min(end - off, 8)):
                    w |= np.int64(buf[off + j]) << (8 * j)
                h = (h ^ w) * _FNV_PRIME
                h ^= (h >> 29) & 0x7FFFFFFFF
                off += 8
    # final avalanche so that linear probing sees well-spread low bits
    h ^= (h >> 33) & 0x7FFFFFFF
    h *= np.int64(-49064778989728563)
    h ^= (h >> 33) & 0x7FFFFFFF
    return h


@njit(cache=True, nogil=True, inline="always")
def _equal(buf: np.ndarray, first: int, count: int, lab_noff: np.ndarray, lab_nlen: np.ndarray,
           lab_voff: np.ndarray, lab_vlen: np.ndarray, arena: np.ndarray, off: int,
           length: int) -> bool:
    """Whether the label set equals the canonical bytes arena[off:off+length]."""
    pos = off
    stop = off + length
    for k in range(first, first + count):
        for part in range(2):
            if pos >= stop:
                return False
            n = 0
            shift = 0
            while True:
                b = np.int64(arena[pos])
                pos += 1
                n |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
            src = lab_noff[k] if part == 0 else lab_voff[k]
            want = lab_nlen[k] if part == 0 else lab_vlen[k]
            if n != want or pos + n > stop:
                return False
            for j in range(n):
                if arena[pos + j] != buf[src + j]:
                    return False
            pos += n
    return pos == stop


@njit(LOOKUP_SIG, cache=True, nogil=True)
def lookup(buf: np.ndarray, lab_noff: np.ndarray, lab_nlen: np.ndarray, lab_voff: np.ndarray,
           lab_vlen: np.ndarray, ser_first: np.ndarray, ser_count: np.ndarray,
           ht_entry: np.ndarray, entry_off: np.ndarray, entry_len: np.ndarray,
           entry_hash: np.ndarray, entry_value: np.ndarray, arena: np.ndarray,
           out_hash: np.ndarray, out_value: np.ndarray) -> None:
    """For each request series, its hash and its value in the index (UNKNOWN if absent)."""
    mask = ht_entry.shape[0] - 1
    for s in range(ser_first.shape[0]):
        first = ser_first[s]
        count = ser_count[s]
        h = _hash(buf, first, count, lab_noff, lab_nlen, lab_voff, lab_vlen)
        out_hash[s] = h
        out_value[s] = UNKNOWN
        i = h & mask
        while True:
            e = ht_entry[i]
            if e < 0:
                break
            if entry_hash[e] == h and _equal(buf, first, count, lab_noff, lab_nlen, lab_voff,
                                             lab_vlen, arena, entry_off[e], entry_len[e]):
                out_value[s] = entry_value[e]
                break
            i = (i + 1) & mask


@njit(INSERT_SIG, cache=True, nogil=True)
def insert(buf: np.ndarray, lab_noff: np.ndarray, lab_nlen: np.ndarray, lab_voff: np.ndarray,
           lab_vlen: np.ndarray, ser_first: np.ndarray, ser_count: np.ndarray,
           ser_hash: np.ndarray, which: np.ndarray, values: np.ndarray, ht_entry: np.ndarray,
           entry_off: np.ndarray, entry_len: np.ndarray, entry_value: np.ndarray,
           entry_hash: np.ndarray, arena: np.ndarray, n_entries: int, arena_used: int) -> int:
    """Add request series ``which[j]`` with value ``values[j]``; return the new arena use.

    The caller has checked that none of them is present, that they are distinct, and that
    the table, entry arrays and arena have room.
    """
    mask = ht_entry.shape[0] - 1
    pos = arena_used
    for j in range(which.shape[0]):
        s = which[j]
        e = n_entries + j
        entry_off[e] = pos
        for k in range(ser_first[s], ser_first[s] + ser_count[s]):
            for part in range(2):
                src = lab_noff[k] if part == 0 else lab_voff[k]
                n = lab_nlen[k] if part == 0 else lab_vlen[k]
                while True:
                    b = n & 0x7F
                    n >>= 7
                    if n:
                        b |= 0x80
                    arena[pos] = b
                    pos += 1
                    if not n:
                        break
                n = lab_nlen[k] if part == 0 else lab_vlen[k]
                for t in range(n):
                    arena[pos + t] = buf[src + t]
                pos += n
        entry_len[e] = pos - entry_off[e]
        entry_value[e] = values[j]
        h = ser_hash[s]
        entry_hash[e] = h
        i = h & mask
        while ht_entry[i] >= 0:
            i = (i + 1) & mask
        ht_entry[i] = e
    return pos


@njit(REHASH_SIG, cache=True, nogil=True)
def rehash(entry_hash: np.ndarray, n_entries: int, ht_entry: np.ndarray) -> None:
    """Fill an empty (all -1) table of a new size with entries 0..n_entries-1."""
    mask = ht_entry.shape[0] - 1
    for e in range(n_entries):
        i = entry_hash[e] & mask
        while ht_entry[i] >= 0:
            i = (i + 1) & mask
        ht_entry[i] = e
