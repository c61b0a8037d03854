"""Remote-write bytes -> ``DecodedRequest`` arrays. Pure: no I/O, no registry, no clock.

This module owns content negotiation (which protobuf message a request carries), the
snappy block format with its size limits, and turning the wire scan's error codes into
messages a sender can act on. It raises only ``DecodeError`` and its subclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cramjam
import numpy as np
from numpy.typing import NDArray

from detector.errors import DecodeError, TooLargeError, UnsupportedError
from detector.remote_write import _wire

PROTO_V1 = "prometheus.WriteRequest"
PROTO_V2 = "io.prometheus.write.v2.Request"
STALE_NAN_BITS = np.uint64(0x7FF0000000000002)

_MESSAGES = {
    _wire.E_VARINT: "truncated or over-long varint",
    _wire.E_LENGTH: "length-delimited field runs past the end of its message",
    _wire.E_FIXED: "fixed-width field runs past the end of its message",
    _wire.E_WIRETYPE: "unsupported protobuf wire type (groups are not allowed)",
    _wire.E_FIELD0: "protobuf field number 0",
    _wire.E_EMPTY_NAME: "label with an empty name",
    _wire.E_UNSORTED: "labels are not sorted by name or a name is repeated",
    _wire.E_NO_LABELS: "series without labels",
    _wire.E_ODD_REFS: "odd number of label refs (refs come in name/value pairs)",
    _wire.E_BAD_REF: "label ref points past the end of the symbols table",
    _wire.E_V1_AS_V2: (
        "body has fields 1-3, reserved in io.prometheus.write.v2.Request: "
        "a 1.0 WriteRequest sent with the 2.0 content type?"
    ),
    _wire.E_FIELD_TYPE: "known field has the wrong wire type",
}


def parse_content_type(content_type: str | None, content_encoding: str | None) -> int:
    """Return the remote-write protocol version (1 or 2) a request announces.

    Raises UnsupportedError (HTTP 415) for anything but snappy-encoded protobuf.
    """
    encoding = (content_encoding or "").strip().lower()
    if encoding != "snappy":
        raise UnsupportedError(
            f"unsupported Content-Encoding {content_encoding!r}: remote-write bodies must be "
            "snappy block-compressed (Content-Encoding: snappy)"
        )
    if content_type is None or not content_type.strip():
        return 1  # Remote-Write 1.0 senders may omit it; the spec's default is 1.0
    media, *params = (part.strip() for part in content_type.split(";"))
    if media.lower() != "application/x-protobuf":
        raise UnsupportedError(
            f"unsupported Content-Type {content_type!r}: expected application/x-protobuf"
        )
    proto = PROTO_V1
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto":
            proto = value.strip().strip('"')
    if proto == PROTO_V1:
        return 1
    if proto == PROTO_V2:
        return 2
    raise UnsupportedError(
        f"unsupported proto {proto!r} in Content-Type: this receiver speaks {PROTO_V1} "
        f"and {PROTO_V2}"
    )


def snappy_length(body: bytes | bytearray) -> int:
    """The decompressed length announced in a snappy block header (a leading varint)."""
    result = 0
    for i, b in enumerate(body[:10]):
        result |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return result
    raise DecodeError("invalid snappy block: the length header is truncated or too long")


def decompress(
    body: bytes | bytearray, *, max_decompressed_bytes: int, into: NDArray[np.uint8] | None = None
) -> NDArray[np.uint8]:
    """Snappy block -> bytes, refusing before any work if the header announces too much.

    With ``into`` (a scratch buffer the caller reuses) a block that fits is decompressed
    there and the result is a view of it, valid until the buffer is used again; otherwise
    into fresh memory.
    """
    announced = snappy_length(body)
    if announced > max_decompressed_bytes:
        raise TooLargeError(
            f"snappy header announces {announced} decompressed bytes, over the limit of "
            f"{max_decompressed_bytes}; send smaller batches (queue_config.max_samples_per_send)"
        )
    try:
        if into is not None and announced <= into.shape[0]:
            out = into[:announced]
            out = out[: cramjam.snappy.decompress_raw_into(body, out.data)]
        else:
            out = np.frombuffer(memoryview(cramjam.snappy.decompress_raw(body)), dtype=np.uint8)
    except Exception as exc:  # cramjam raises its own DecompressionError (not exported)
        raise DecodeError(f"invalid snappy block: {exc}") from exc
    if out.shape[0] != announced:
        raise DecodeError(
            f"invalid snappy block: header announces {announced} bytes but {out.shape[0]} "
            "were decoded"
        )
    return out


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """A remote-write request as flat arrays; strings stay as byte spans into ``buf``.

    For 1.0 the name/value spans of a series are filled only once ``Decoder.parse_labels``
    has run for it; ``decode_request`` parses every series.
    """

    version: int
    buf: NDArray[np.uint8]
    lab_off: NDArray[np.int32]  # 1.0: span of each Label message
    lab_len: NDArray[np.int32]
    lab_noff: NDArray[np.int32]
    lab_nlen: NDArray[np.int32]
    lab_voff: NDArray[np.int32]
    lab_vlen: NDArray[np.int32]
    ser_first: NDArray[np.int32]
    ser_count: NDArray[np.int32]
    ser_key_off: NDArray[np.int32]  # 1.0: span of the series' consecutive label fields
    ser_key_len: NDArray[np.int32]  # -1: no wire key (2.0, or labels not consecutive)
    smp_series: NDArray[np.int32]
    smp_ts: NDArray[np.int64]
    smp_bits: NDArray[np.uint64]
    n_histograms: int
    n_exemplars: int
    n_metadata: int

    @property
    def n_series(self) -> int:
        return int(self.ser_first.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.smp_ts.shape[0])

    @property
    def smp_value(self) -> NDArray[np.float64]:
        """Sample values; NaN payloads (the staleness marker) are kept bit for bit."""
        return self.smp_bits.view(np.float64)

    def labels(self, series: int) -> tuple[tuple[str, str], ...]:
        """The label pairs of request series ``series``, decoded as UTF-8 (DecodeError if not)."""
        data = self.buf.data
        first = int(self.ser_first[series])
        out = []
        for k in range(first, first + int(self.ser_count[series])):
            n0, n1 = int(self.lab_noff[k]), int(self.lab_noff[k]) + int(self.lab_nlen[k])
            v0, v1 = int(self.lab_voff[k]), int(self.lab_voff[k]) + int(self.lab_vlen[k])
            try:
                out.append((str(data[n0:n1], "utf-8"), str(data[v0:v1], "utf-8")))
            except UnicodeDecodeError as exc:
                raise DecodeError(
                    f"series {series}: label {k - first} is not valid UTF-8 ({exc.reason} at "
                    f"byte {exc.start})"
                ) from exc
        return tuple(out)


_SCRATCH_FIELDS = {
    "sym": ("sym_off", "sym_len"),
    "lab": ("lab_off", "lab_len", "lab_noff", "lab_nlen", "lab_voff", "lab_vlen"),
    "ser": ("ser_first", "ser_count", "ser_key_off", "ser_key_len"),
}


class Decoder:
    """Decodes requests into arrays it reuses from one request to the next.

    One scan per request: the arrays grow (and the scan runs again) only when a request
    holds more than they have room for. The arrays of a returned DecodedRequest are views
    that the next ``decode`` overwrites, so a Decoder belongs to one thread, and callers
    copy what they keep.
    """

    def __init__(
        self,
        *,
        initial: int = 4096,
        max_series: int | None = None,
        max_labels: int | None = None,
        max_samples: int | None = None,
    ) -> None:
        # a request's arrays take up to ~24 bytes per wire byte (a sample can be 2 bytes),
        # and they are kept for the next request: past these counts it is refused first
        self._max = {
            "ser": max_series,
            "lab": max_labels,
            "sym": None if max_labels is None else 2 * max_labels,
            "smp": max_samples,
        }
        self._info = np.zeros(_wire.INFO_LEN, dtype=np.int64)
        self._arrays: dict[str, NDArray[np.int32]] = {}
        self._cap = {"sym": 0, "lab": 0, "ser": 0}
        for kind in self._cap:
            self._grow(kind, initial)
        self._smp_series = np.empty(initial, np.int32)
        self._smp_ts = np.empty(initial, np.int64)
        self._smp_bits = np.empty(initial, np.uint64)

    def _grow(self, kind: str, need: int) -> None:
        size = max(need, 2 * self._cap[kind], 1024)
        for name in _SCRATCH_FIELDS[kind]:
            self._arrays[name] = np.empty(size, dtype=np.int32)
        self._cap[kind] = size

    def _scan(self, buf: NDArray[np.uint8], version: int) -> None:
        a = self._arrays
        _wire.scan(
            buf,
            version,
            a["sym_off"],
            a["sym_len"],
            a["lab_off"],
            a["lab_len"],
            a["lab_noff"],
            a["lab_nlen"],
            a["lab_voff"],
            a["lab_vlen"],
            a["ser_first"],
            a["ser_count"],
            a["ser_key_off"],
            a["ser_key_len"],
            self._smp_series,
            self._smp_ts,
            self._smp_bits,
            self._info,
        )

    def decode(self, buf: NDArray[np.uint8], version: int) -> DecodedRequest:
        """Decode decompressed protobuf bytes of the given protocol version (1 or 2)."""
        if version not in (1, 2):
            raise UnsupportedError(f"remote-write version {version} is not supported")
        if not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf)
        info = self._info
        self._scan(buf, version)
        _raise_for(info, version)
        need = {
            "sym": int(info[_wire.I_SYMBOLS]),
            "lab": int(info[_wire.I_LABELS]),
            "ser": int(info[_wire.I_SERIES]),
        }
        n_smp = int(info[_wire.I_SAMPLES])
        self._check_counts({**need, "smp": n_smp})
        short = [kind for kind, n in need.items() if n > self._cap[kind]]
        if short or n_smp > self._smp_ts.shape[0]:
            for kind in short:
                self._grow(kind, need[kind])
            if n_smp > self._smp_ts.shape[0]:
                size = max(n_smp, 2 * self._smp_ts.shape[0])
                self._smp_series = np.empty(size, np.int32)
                self._smp_ts = np.empty(size, np.int64)
                self._smp_bits = np.empty(size, np.uint64)
            self._scan(buf, version)
            _raise_for(info, version)
        a = self._arrays
        n_lab, n_ser = need["lab"], need["ser"]
        return DecodedRequest(
            version=version,
            buf=buf,
            lab_off=a["lab_off"][:n_lab],
            lab_len=a["lab_len"][:n_lab],
            lab_noff=a["lab_noff"][:n_lab],
            lab_nlen=a["lab_nlen"][:n_lab],
            lab_voff=a["lab_voff"][:n_lab],
            lab_vlen=a["lab_vlen"][:n_lab],
            ser_first=a["ser_first"][:n_ser],
            ser_count=a["ser_count"][:n_ser],
            ser_key_off=a["ser_key_off"][:n_ser],
            ser_key_len=a["ser_key_len"][:n_ser],
            smp_series=self._smp_series[:n_smp],
            smp_ts=self._smp_ts[:n_smp],
            smp_bits=self._smp_bits[:n_smp],
            n_histograms=int(info[_wire.I_HIST]),
            n_exemplars=int(info[_wire.I_EXEMPLARS]),
            n_metadata=int(info[_wire.I_META]),
        )

    def _check_counts(self, counts: dict[str, int]) -> None:
        for kind, what, limit in (
            ("ser", "series", "limits.max_series_per_request"),
            ("smp", "samples", "limits.max_samples_per_request"),
            ("lab", "labels", "limits.max_series_per_request times limits.max_labels_per_series"),
            ("sym", "symbols", "twice the labels limit"),
        ):
            most = self._max[kind]
            if most is not None and counts[kind] > most:
                raise TooLargeError(
                    f"request holds {counts[kind]} {what}, over the limit of {most} ({limit}); "
                    "send smaller batches (queue_config.max_samples_per_send)"
                )


def parse_labels(req: DecodedRequest, which: NDArray[np.int64]) -> None:
    """Fill the name/value spans of 1.0 series ``which`` (2.0 has them already).

    Raises DecodeError for a malformed label, an empty name, or names not sorted.
    """
    if req.version != 1 or which.shape[0] == 0:
        return
    info = np.zeros(_wire.INFO_LEN, dtype=np.int64)
    _wire.parse_labels(
        req.buf,
        req.lab_off,
        req.lab_len,
        req.ser_first,
        req.ser_count,
        np.ascontiguousarray(which, dtype=np.int64),
        req.lab_noff,
        req.lab_nlen,
        req.lab_voff,
        req.lab_vlen,
        info,
    )
    _raise_for(info, 1)


def decode_request(buf: NDArray[np.uint8], version: int) -> DecodedRequest:
    """Decode a whole request into arrays of its own, every label parsed (tests, tools)."""
    req = Decoder(initial=16).decode(buf, version)
    fields = {
        name: getattr(req, name).copy()
        if isinstance(getattr(req, name), np.ndarray) and name != "buf"
        else getattr(req, name)
        for name in req.__dataclass_fields__
    }
    own = DecodedRequest(**fields)
    parse_labels(own, np.arange(own.n_series, dtype=np.int64))
    return own


def _raise_for(info: NDArray[np.int64], version: int) -> None:
    code = int(info[_wire.I_ERR])
    if code:
        proto = PROTO_V1 if version == 1 else PROTO_V2
        raise DecodeError(
            f"malformed {proto} at byte {int(info[_wire.I_POS])}: "
            f"{_MESSAGES.get(code, f'error {code}')}"
        )
