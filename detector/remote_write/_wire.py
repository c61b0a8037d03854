"""numba pass over protobuf wire bytes of a remote-write request (1.0 and 2.0).

This module owns the compiled scans that turn decompressed bytes into flat arrays. It
builds no Python object, never allocates, and reports problems as an error code and byte
offset in ``info``; ``decode.py`` turns those into messages. numpy and numba only.

``scan`` makes one pass over a request and writes, while the caller's arrays have room
(it keeps counting past that, so the caller can grow them and scan again):

- per 1.0 label the span of its ``Label`` message (names and values are parsed later, and
  only for series seen for the first time, by ``parse_labels``); per 2.0 label the spans
  of its name and value, resolved through the symbols table;
- per series its first label, label count and, for 1.0, the span of its consecutive label
  fields: the series' *wire key*, which the registry uses to recognise a known series
  without parsing its labels (-1 when the labels are not consecutive, and for 2.0);
- per sample its series index, timestamp and the raw 64 bits of its value.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

# info[] layout shared with decode.py
I_ERR, I_POS, I_SERIES, I_LABELS, I_SAMPLES, I_HIST, I_EXEMPLARS, I_META, I_SYMBOLS = range(9)
INFO_LEN = 9

E_VARINT = 1
E_LENGTH = 2
E_FIXED = 3
E_WIRETYPE = 4
E_FIELD0 = 5
E_EMPTY_NAME = 6
E_UNSORTED = 7
E_NO_LABELS = 8
E_ODD_REFS = 9
E_BAD_REF = 10
E_V1_AS_V2 = 11
E_FIELD_TYPE = 12

_i32 = types.Array(types.int32, 1, "C")
_i64 = types.Array(types.int64, 1, "C")
_u8r = types.Array(types.uint8, 1, "C", readonly=True)
# buf, version, sym_off, sym_len, lab_off, lab_len, lab_noff, lab_nlen, lab_voff, lab_vlen,
# ser_first, ser_count, ser_key_off, ser_key_len, smp_series, smp_ts, smp_bits, info
SCAN_SIG = types.void(
    _u8r,
    types.int64,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i32,
    _i64,
    types.Array(types.uint64, 1, "C"),
    _i64,
)
# buf, lab_off, lab_len, ser_first, ser_count, which, lab_noff, lab_nlen, lab_voff,
# lab_vlen, info
PARSE_SIG = types.void(_u8r, _i32, _i32, _i32, _i32, _i64, _i32, _i32, _i32, _i32, _i64)


@njit(cache=True, nogil=True)
def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """Read a base-128 varint as int64 (two's complement for negative int64 values).

    Returns (value, new position), or position -1 if it is truncated or over 10 bytes.
    int64 arithmetic only: mixing uint64 and int64 makes numba fall back to floats.
    """
    if pos < end and buf[pos] < 0x80:  # one byte: every tag and most lengths
        return np.int64(buf[pos]), pos + 1
    result = 0
    shift = 0
    while pos < end and shift < 70:
        b = np.int64(buf[pos])
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    return result, -1


@njit(cache=True, nogil=True)
def _skip(buf: np.ndarray, pos: int, end: int, wire: int) -> tuple[int, int]:
    """Skip one field's payload: (new position, error code)."""
    if wire == 0:
        _, p = _varint(buf, pos, end)
        return (p, 0) if p >= 0 else (pos, E_VARINT)
    if wire == 1:
        return (pos + 8, 0) if pos + 8 <= end else (pos, E_FIXED)
    if wire == 5:
        return (pos + 4, 0) if pos + 4 <= end else (pos, E_FIXED)
    if wire == 2:
        n, p = _varint(buf, pos, end)
        if p < 0:
            return pos, E_VARINT
        if n < 0 or n > end - p:
            return pos, E_LENGTH
        return p + n, 0
    return pos, E_WIRETYPE


@njit(cache=True, nogil=True)
def _field(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int, int]:
    """Read a tag and, for wire type 2, its length prefix.

    Returns (field, wire, payload start, payload stop, error code). For other wire types
    start is the position after the tag and stop is unused.
    """
    t, p = _varint(buf, pos, end)
    if p < 0:
        return 0, 0, pos, pos, E_VARINT
    field = (t >> 3) & 0x1FFFFFFFFFFFFFFF
    wire = t & 7
    if field == 0:
        return 0, 0, pos, pos, E_FIELD0
    if wire != 2:
        return field, wire, p, p, 0
    n, q = _varint(buf, p, end)
    if q < 0:
        return field, wire, p, p, E_VARINT
    if n < 0 or n > end - q:
        return field, wire, p, p, E_LENGTH
    return field, wire, q, q + n, 0


@njit(cache=True, nogil=True)
def _less(buf: np.ndarray, a_off: int, a_len: int, b_off: int, b_len: int) -> bool:
    """Bytewise a < b (Go's string order, which is the order senders sort labels in)."""
    n = min(a_len, b_len)
    for k in range(n):
        x = buf[a_off + k]
        y = buf[b_off + k]
        if x != y:
            return x < y
    return a_len < b_len


@njit(cache=True, nogil=True)
def _sample(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, int, int]:
    """Parse a Sample (value=1 double, timestamp=2 int64): (ts, value bits, error, where)."""
    ts = 0
    bits = 0
    while pos < end:
        field, wire, a, b, err = _field(buf, pos, end)
        if err:
            return ts, bits, err, pos
        if field == 1 and wire == 1:
            if a + 8 > end:
                return ts, bits, E_FIXED, a
            bits = 0
            for k in range(8):
                bits |= np.int64(buf[a + k]) << (8 * k)
            pos = a + 8
        elif field == 2 and wire == 0:
            v, p = _varint(buf, a, end)
            if p < 0:
                return ts, bits, E_VARINT, a
            ts = v
            pos = p
        elif field <= 2:
            return ts, bits, E_FIELD_TYPE, pos
        elif wire == 2:
            pos = b
        else:
            pos, err = _skip(buf, a, end, wire)
            if err:
                return ts, bits, err, a
    return ts, bits, 0, pos


@njit(SCAN_SIG, cache=True, nogil=True)
def scan(  # noqa: C901 (one numba pass over the wire format, see its docstring)
    buf: np.ndarray,
    version: int,
    sym_off: np.ndarray,
    sym_len: np.ndarray,
    lab_off: np.ndarray,
    lab_len: np.ndarray,
    lab_noff: np.ndarray,
    lab_nlen: np.ndarray,
    lab_voff: np.ndarray,
    lab_vlen: np.ndarray,
    ser_first: np.ndarray,
    ser_count: np.ndarray,
    ser_key_off: np.ndarray,
    ser_key_len: np.ndarray,
    smp_series: np.ndarray,
    smp_ts: np.ndarray,
    smp_bits: np.ndarray,
    info: np.ndarray,
) -> None:
    """Scan a whole request. ``version`` 1 = prometheus.WriteRequest, 2 = io.prometheus.write.v2.

    Writes only while an output array has room; ``info`` always holds the full counts, so
    a caller whose arrays were too small grows them to those counts and scans again.
    Everything is in one function with local counters on purpose: counters kept in memory
    and numba calls that pass many arrays made the scan several times slower.
    """
    end = buf.shape[0]
    cap_sym = sym_off.shape[0]
    cap_lab = lab_off.shape[0]
    cap_ser = ser_first.shape[0]
    cap_smp = smp_ts.shape[0]
    n_sym = 0
    n_ser = 0
    n_lab = 0
    n_smp = 0
    n_hist = 0
    n_ex = 0
    n_meta = 0
    err = 0
    where = 0
    pos = 0
    if version == 2:
        # symbols first: refs can only be resolved once the whole table is known
        while pos < end:
            field, wire, a, b, err = _field(buf, pos, end)
            if err:
                where = pos
                break
            if 1 <= field <= 3:
                err = E_V1_AS_V2
                where = pos
                break
            if field == 4 and wire == 2:
                if n_sym < cap_sym:
                    sym_off[n_sym] = a
                    sym_len[n_sym] = b - a
                n_sym += 1
                pos = b
            elif wire == 2:
                pos = b
            else:
                pos, err = _skip(buf, a, end, wire)
                if err:
                    where = a
                    break
        pos = 0 if err == 0 else end
        if n_sym > cap_sym:
            pos = end  # the caller grows the symbol arrays and scans again
    series_field = 1 if version == 1 else 5
    while pos < end:
        field, wire, a, b, err = _field(buf, pos, end)
        if err:
            where = pos
            break
        if field != series_field or wire != 2:
            if version == 1 and field == 3 and wire == 2:
                n_meta += 1
            if wire == 2:
                pos = b
            else:
                pos, err = _skip(buf, a, end, wire)
                if err:
                    where = a
                    break
            continue
        # one TimeSeries in [a, b)
        start = pos
        pos = b
        first = n_lab
        pending = -1
        key_off = -1
        key_end = -1
        key_state = 0  # 0 before the labels, 1 in the run of label fields, 2 after it
        while a < b and err == 0:
            f, w, x, y, err = _field(buf, a, b)
            if err:
                where = a
                break
            if version == 1 and f == 1:
                if w != 2:
                    err = E_FIELD_TYPE
                    where = a
                    break
                if key_state == 0:
                    key_off = a
                    key_state = 1
                elif key_state == 2:
                    key_state = 3  # labels interleaved with other fields: no wire key
                key_end = y
                if n_lab < cap_lab:
                    lab_off[n_lab] = x
                    lab_len[n_lab] = y - x
                n_lab += 1
                a = y
                continue
            if key_state == 1:
                key_state = 2
            if version == 2 and f == 1:
                # label refs: packed (wire 2) or one varint each (wire 0)
                if w == 2:
                    p = x
                    stop = y
                    a = y
                elif w == 0:
                    if x >= b:
                        # the tag ends the series: without this, `a` never moves past it
                        # and the scan loops forever (found by bench/fuzz.py)
                        err = E_VARINT
                        where = a
                        break
                    p = x
                    stop = b
                else:
                    err = E_FIELD_TYPE
                    where = a
                    break
                while p < stop:
                    ref, p2 = _varint(buf, p, stop)
                    if p2 < 0:
                        err = E_VARINT
                        where = p
                        break
                    if ref < 0 or ref >= n_sym:
                        err = E_BAD_REF
                        where = p
                        break
                    if pending < 0:
                        pending = ref
                    else:
                        if sym_len[pending] == 0:
                            err = E_EMPTY_NAME
                            where = start
                            break
                        if n_lab < cap_lab:
                            if n_lab > first and not _less(
                                buf,
                                lab_noff[n_lab - 1],
                                lab_nlen[n_lab - 1],
                                sym_off[pending],
                                sym_len[pending],
                            ):
                                err = E_UNSORTED
                                where = start
                                break
                            lab_noff[n_lab] = sym_off[pending]
                            lab_nlen[n_lab] = sym_len[pending]
                            lab_voff[n_lab] = sym_off[ref]
                            lab_vlen[n_lab] = sym_len[ref]
                        n_lab += 1
                        pending = -1
                    p = p2
                    if w == 0:
                        a = p2
                        break
            elif f == 2:
                if w != 2:
                    err = E_FIELD_TYPE
                    where = a
                    break
                ts, bits, err, where = _sample(buf, x, y)
                if err:
                    break
                if n_smp < cap_smp:
                    smp_series[n_smp] = n_ser
                    smp_ts[n_smp] = ts
                    smp_bits[n_smp] = np.uint64(bits)
                n_smp += 1
                a = y
            else:
                if w == 2:
                    if f == (4 if version == 1 else 3):
                        n_hist += 1
                    elif f == (3 if version == 1 else 4):
                        n_ex += 1
                    elif version == 2 and f == 5:
                        n_meta += 1
                    a = y
                else:
                    a, err = _skip(buf, x, b, w)
                    if err:
                        where = x
                        break
        if err:
            break
        if pending >= 0:
            err = E_ODD_REFS
            where = start
            break
        if n_lab == first:
            err = E_NO_LABELS
            where = start
            break
        if n_ser < cap_ser:
            ser_first[n_ser] = first
            ser_count[n_ser] = n_lab - first
            if version == 1 and key_state != 3:
                ser_key_off[n_ser] = key_off
                ser_key_len[n_ser] = key_end - key_off
            else:
                ser_key_off[n_ser] = 0
                ser_key_len[n_ser] = -1
        n_ser += 1
    info[I_ERR] = err
    info[I_POS] = where
    info[I_SERIES] = n_ser
    info[I_LABELS] = n_lab
    info[I_SAMPLES] = n_smp
    info[I_HIST] = n_hist
    info[I_EXEMPLARS] = n_ex
    info[I_META] = n_meta
    info[I_SYMBOLS] = n_sym


@njit(PARSE_SIG, cache=True, nogil=True)
def parse_labels(
    buf: np.ndarray,
    lab_off: np.ndarray,
    lab_len: np.ndarray,
    ser_first: np.ndarray,
    ser_count: np.ndarray,
    which: np.ndarray,
    lab_noff: np.ndarray,
    lab_nlen: np.ndarray,
    lab_voff: np.ndarray,
    lab_vlen: np.ndarray,
    info: np.ndarray,
) -> None:
    """Parse the 1.0 ``Label`` messages of series ``which``: name and value spans.

    Checks each name is non-empty and names are strictly increasing (sorted, no repeats).
    The first problem goes to info[I_ERR] / info[I_POS]; the rest is then left unparsed.
    """
    info[I_ERR] = 0
    for j in range(which.shape[0]):
        s = which[j]
        first = ser_first[s]
        for k in range(first, first + ser_count[s]):
            x = lab_off[k]
            y = x + lab_len[k]
            noff = x
            nlen = 0
            voff = x
            vlen = 0
            while x < y:
                f2, w2, x2, y2, err = _field(buf, x, y)
                if err:
                    info[I_ERR] = err
                    info[I_POS] = x
                    return
                if f2 <= 2:
                    if w2 != 2:
                        info[I_ERR] = E_FIELD_TYPE
                        info[I_POS] = x
                        return
                    if f2 == 1:
                        noff = x2
                        nlen = y2 - x2
                    else:
                        voff = x2
                        vlen = y2 - x2
                    x = y2
                elif w2 == 2:
                    x = y2
                else:
                    x, err = _skip(buf, x2, y, w2)
                    if err:
                        info[I_ERR] = err
                        info[I_POS] = x2
                        return
            if nlen == 0:
                info[I_ERR] = E_EMPTY_NAME
                info[I_POS] = lab_off[k]
                return
            if k > first and not _less(buf, lab_noff[k - 1], lab_nlen[k - 1], noff, nlen):
                info[I_ERR] = E_UNSORTED
                info[I_POS] = lab_off[k]
                return
            lab_noff[k] = noff
            lab_nlen[k] = nlen
            lab_voff[k] = voff
            lab_vlen[k] = vlen
