"""numba kernels of the series index: byte key -> int32 value, without Python objects.

This module owns an open-addressing hash table whose keys are byte strings kept in an
arena, and the canonical key of a label set (per label: varint name length, name, varint
value length, value). A lookup compares the stored bytes, not only the hash, so a hash
collision can never merge two keys. The registry keeps two such tables: canonical label
sets, and the raw wire bytes of 1.0 label fields (which recognise a known series without
parsing its labels). numpy and numba only; ``registry.py`` owns sizing and growth.

The loops are written out in each kernel on purpose: numba calls that pass arrays cost
more than the hashing itself here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

UNKNOWN = -1

_FNV_OFFSET = np.int64(-3750763034362895579)  # 0xcbf29ce484222325 as int64
_PRIME = np.int64(1099511628211)
_MIX = np.int64(-49064778989728563)
_LANE1 = np.int64(0x1F83D9ABFB41BD6B)
_LANE2 = np.int64(0x5BE0CD19137E2179)
_LANE3 = np.int64(0x3C6EF372FE94F82B)

_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
_u8 = types.Array(types.uint8, 1, "C")
_u8r = types.Array(types.uint8, 1, "C", readonly=True)

_w64r = types.Array(types.int64, 2, "A", readonly=True, aligned=False)
_w64 = types.Array(types.int64, 2, "A", aligned=False)
# keys, keys_w, key_off, key_len, ht, entry_off, entry_len, entry_hash, entry_value, arena,
# arena_w, out_hash, out_value, probe
LOOKUP_SIG = types.int64(
    _u8r, _w64r, _i32, _i32, _i64, _i64, _i32, _i64, _i32, _u8, _w64, _i64, _i32, _i64
)
# keys, key_off, key_len, key_hash, which, values, ht, entry_off, entry_len, entry_value,
# entry_hash, arena, n_entries, arena_used
INSERT_SIG = types.int64(
    _u8r, _i32, _i32, _i64, _i64, _i32, _i64, _i64, _i32, _i32, _i64, _u8, types.int64, types.int64
)
REHASH_SIG = types.void(_i64, types.int64, _i64)
# buf, lab_noff, lab_nlen, lab_voff, lab_vlen, ser_first, ser_count, which, out, key_off,
# key_len
CANON_SIG = types.int64(_u8r, _i32, _i32, _i32, _i32, _i32, _i32, _i64, _u8, _i32, _i32)


_ENTRY_MASK = np.int64(0xFFFFFFFF)


@njit(inline="always")
def _fingerprint(h: int) -> int:
    """The hash bits a table slot keeps beside its entry number (31 of them, so a slot
    is never negative)."""
    return (h >> 32) & 0x7FFFFFFF


def words(arr: np.ndarray) -> np.ndarray:
    """An (8, n) int64 view of a byte array: ``words(a)[p & 7, p >> 3]`` is the
    little-endian word at byte ``p`` (unaligned loads; numba cannot fold byte loads into
    one). Bytes whose word would run past the end are read one by one by the kernels."""
    n = max(0, (arr.shape[0] - 7) // 8)
    return np.ndarray(shape=(8, n), dtype=np.int64, buffer=arr, offset=0, strides=(1, 8))


@njit(inline="always")
def _same(
    keys: np.ndarray,
    keys_w: np.ndarray,
    off: int,
    arena: np.ndarray,
    arena_w: np.ndarray,
    a: int,
    n: int,
) -> bool:
    """``keys[off:off+n] == arena[a:a+n]``, a word at a time while both sides have one.

    No early exit: a lookup of a known key (the steady state) compares every byte anyway,
    and a loop without branches is one the compiler can unroll and vectorise."""
    ra = a & 7
    rk = off & 7
    qa = a >> 3
    qk = off >> 3
    words = max(0, min(n >> 3, arena_w.shape[1] - qa, keys_w.shape[1] - qk))
    diff = np.int64(0)
    for k in range(words):
        diff |= arena_w[ra, qa + k] ^ keys_w[rk, qk + k]
    for k in range(words * 8, n):
        diff |= np.int64(arena[a + k] ^ keys[off + k])
    return diff == 0


@njit(LOOKUP_SIG, cache=True, nogil=True)
def lookup(
    keys: np.ndarray,
    keys_w: np.ndarray,
    key_off: np.ndarray,
    key_len: np.ndarray,
    ht: np.ndarray,
    entry_off: np.ndarray,
    entry_len: np.ndarray,
    entry_hash: np.ndarray,
    entry_value: np.ndarray,
    arena: np.ndarray,
    arena_w: np.ndarray,
    out_hash: np.ndarray,
    out_value: np.ndarray,
    probe: np.ndarray,
) -> int:
    """For each key ``keys[key_off[j]:+key_len[j]]``, its hash and value (UNKNOWN if absent).

    ``keys_w`` and ``arena_w`` are ``words()`` views of ``keys`` and ``arena``; ``probe``
    is scratch, one per key. A negative ``key_len`` means "no key": the value is UNKNOWN.

    Four passes over the keys instead of one: hash them all; find each one's first table
    slot with its fingerprint; touch the stored bytes of those candidates; then compare.
    Within a pass the memory loads of different keys do not depend on each other, so the
    processor overlaps their cache misses (with 100k series the stored keys are far bigger
    than the cache, and one key after another waited for each miss in turn). Returns a
    value of no meaning that keeps the touching pass from being optimised away.
    """
    mask = ht.shape[0] - 1
    kw = keys_w.shape[1]
    for j in range(key_off.shape[0]):
        out_value[j] = UNKNOWN
        n = key_len[j]
        if n < 0:
            out_hash[j] = 0
            continue
        off = key_off[j]
        end = off + n
        # four independent lanes over 32-byte strides, so the multiplications overlap
        h = _FNV_OFFSET ^ n
        h1 = _LANE1
        h2 = _LANE2
        h3 = _LANE3
        p = off
        r = p & 7
        while p + 32 <= end and (p >> 3) + 3 < kw:
            q = p >> 3
            h = (h ^ keys_w[r, q]) * _PRIME
            h1 = (h1 ^ keys_w[r, q + 1]) * _PRIME
            h2 = (h2 ^ keys_w[r, q + 2]) * _PRIME
            h3 = (h3 ^ keys_w[r, q + 3]) * _PRIME
            h ^= (h >> 29) & 0x7FFFFFFFF
            h1 ^= (h1 >> 29) & 0x7FFFFFFFF
            h2 ^= (h2 >> 29) & 0x7FFFFFFFF
            h3 ^= (h3 >> 29) & 0x7FFFFFFFF
            p += 32
        h = (h ^ (h1 * _MIX)) * _PRIME
        h = (h ^ (h2 * _MIX)) * _PRIME
        h = (h ^ (h3 * _MIX)) * _PRIME
        while p + 8 <= end:
            q = p >> 3
            if q < kw:
                w = keys_w[p & 7, q]
            else:
                w = 0
                for k in range(8):
                    w |= np.int64(keys[p + k]) << (8 * k)
            h = (h ^ w) * _PRIME
            h ^= (h >> 29) & 0x7FFFFFFFF
            p += 8
        w = 0
        for k in range(end - p):
            w |= np.int64(keys[p + k]) << (8 * k)
        h = (h ^ w) * _PRIME
        h ^= (h >> 33) & 0x7FFFFFFF
        h *= _MIX
        h ^= (h >> 33) & 0x7FFFFFFF
        out_hash[j] = h
    # the first slot holding the key's fingerprint, or -1 (absent)
    for j in range(key_off.shape[0]):
        probe[j] = -1
        if key_len[j] < 0:
            continue
        h = out_hash[j]
        fp = _fingerprint(h)
        i = h & mask
        while ht[i] >= 0:
            if (ht[i] >> 32) == fp:
                probe[j] = i
                break
            i = (i + 1) & mask
    touched = np.int64(0)
    for j in range(key_off.shape[0]):
        if probe[j] >= 0:
            e = ht[probe[j]] & _ENTRY_MASK
            a = entry_off[e]
            for t in range(0, min(key_len[j], entry_len[e]), 64):
                touched += arena[a + t]
    for j in range(key_off.shape[0]):
        i = probe[j]
        if i < 0:
            continue
        n = key_len[j]
        h = out_hash[j]
        fp = _fingerprint(h)
        off = key_off[j]
        # a fingerprint match is almost always the key; if not, probe on
        while ht[i] >= 0:
            e = ht[i] & _ENTRY_MASK
            if (
                (ht[i] >> 32) == fp
                and entry_hash[e] == h
                and entry_len[e] == n
                and _same(keys, keys_w, off, arena, arena_w, entry_off[e], n)
            ):
                out_value[j] = entry_value[e]
                break
            i = (i + 1) & mask
    return touched


@njit(INSERT_SIG, cache=True, nogil=True)
def insert(
    keys: np.ndarray,
    key_off: np.ndarray,
    key_len: np.ndarray,
    key_hash: np.ndarray,
    which: np.ndarray,
    values: np.ndarray,
    ht: np.ndarray,
    entry_off: np.ndarray,
    entry_len: np.ndarray,
    entry_value: np.ndarray,
    entry_hash: np.ndarray,
    arena: np.ndarray,
    n_entries: int,
    arena_used: int,
) -> int:
    """Add keys ``which[m]`` with value ``values[m]``; return the new arena use.

    The caller has checked that none is present, that they are distinct, and that the
    table (at most half full afterwards), entry arrays and arena have room.
    """
    mask = ht.shape[0] - 1
    pos = arena_used
    for m in range(which.shape[0]):
        j = which[m]
        e = n_entries + m
        off = key_off[j]
        n = key_len[j]
        for k in range(n):
            arena[pos + k] = keys[off + k]
        entry_off[e] = pos
        entry_len[e] = n
        entry_value[e] = values[m]
        entry_hash[e] = key_hash[j]
        pos += n
        i = key_hash[j] & mask
        while ht[i] >= 0:
            i = (i + 1) & mask
        ht[i] = (_fingerprint(key_hash[j]) << 32) | e
    return pos


@njit(REHASH_SIG, cache=True, nogil=True)
def rehash(entry_hash: np.ndarray, n_entries: int, ht: np.ndarray) -> None:
    """Fill an empty (all -1) table of a new size with entries 0..n_entries-1."""
    mask = ht.shape[0] - 1
    for e in range(n_entries):
        i = entry_hash[e] & mask
        while ht[i] >= 0:
            i = (i + 1) & mask
        ht[i] = (_fingerprint(entry_hash[e]) << 32) | e


@njit(CANON_SIG, cache=True, nogil=True)
def canonical(
    buf: np.ndarray,
    lab_noff: np.ndarray,
    lab_nlen: np.ndarray,
    lab_voff: np.ndarray,
    lab_vlen: np.ndarray,
    ser_first: np.ndarray,
    ser_count: np.ndarray,
    which: np.ndarray,
    out: np.ndarray,
    key_off: np.ndarray,
    key_len: np.ndarray,
) -> int:
    """Write the canonical key of series ``which[j]`` to ``out``; return bytes used.

    The caller sizes ``out`` as the label bytes plus 10 per name and per value.
    """
    pos = 0
    for j in range(which.shape[0]):
        s = which[j]
        key_off[j] = pos
        for k in range(ser_first[s], ser_first[s] + ser_count[s]):
            for part in range(2):
                src = lab_noff[k] if part == 0 else lab_voff[k]
                n = lab_nlen[k] if part == 0 else lab_vlen[k]
                v = n
                while True:
                    b = v & 0x7F
                    v >>= 7
                    if v:
                        b |= 0x80
                    out[pos] = b
                    pos += 1
                    if not v:
                        break
                for t in range(n):
                    out[pos + t] = buf[src + t]
                pos += n
        key_len[j] = pos - key_off[j]
    return pos
