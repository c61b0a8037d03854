"""The series registry: exact label set -> slot, selection rules and series limits.

This module owns which series are tracked, in which slot, under which rule, and the
bounded memory of series that are not tracked. Lookups of known series run in the
compiled index (``_index``); Python sees a series' labels only the first time it arrives.
It must be used from one thread (the event loop); it knows nothing of detectors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detector.config import DetectorConfig, SeriesRule
from detector.errors import DecodeError
from detector.remote_write import decode
from detector.remote_write.decode import DecodedRequest
from detector.series import _index
from detector.series.selector import Selector

log = logging.getLogger(__name__)

UNKNOWN = _index.UNKNOWN  # -1: not in the index yet
UNTRACKED = -2  # known, matched no rule
OVER_LIMIT = -3  # known, matched a rule whose series limit (or the global one) was full
# known, tracked by another worker (serve --workers): FOREIGN - w for worker w
FOREIGN = -4
RETIRED = -1  # slot_rule of a slot whose series no rule tracks since a config reload
RETIRED_RULE = SeriesRule(name="retired")  # what rule_of says of such a slot

Labels = tuple[tuple[str, str], ...]
# the worker that tracks a label set, or -1 for this one (``detector.fleet.partition``)
OwnerOf = Callable[[Mapping[str, str]], int]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where each series of one request goes: ``values[i]`` is a slot or a negative marker."""

    values: NDArray[np.int32]
    new_tracked: int
    new_untracked: int
    new_over_limit: int


COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def _counter(rule: SeriesRule, name: str) -> bool:
    if rule.transform == "auto":
        return name.endswith(COUNTER_SUFFIXES)
    return rule.transform == "rate"


def decode_canonical(key: bytes) -> Labels:
    """Canonical key bytes (varint length + name, varint length + value, ...) -> labels."""
    out: list[tuple[str, str]] = []
    pos = 0
    parts: list[str] = []
    while pos < len(key):
        n = shift = 0
        while True:
            b = key[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        parts.append(key[pos : pos + n].decode("utf-8"))
        pos += n
        if len(parts) == 2:
            out.append((parts[0], parts[1]))
            parts = []
    return tuple(out)


class ByteIndex:
    """Growable byte-key -> int32 table over the ``_index`` kernels; one thread at a time."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        # per slot: -1 empty, else an entry number with 31 bits of its hash above it
        self._ht = np.full(1024, -1, dtype=np.int64)
        self._off = np.empty(512, dtype=np.int64)
        self._len = np.empty(512, dtype=np.int32)
        self._hash = np.empty(512, dtype=np.int64)
        self._value = np.empty(512, dtype=np.int32)
        self._arena = np.empty(1 << 16, dtype=np.uint8)
        self._arena_used = 0
        self.n_entries = 0

    def key(self, entry: int) -> bytes:
        """The stored bytes of entry ``entry``."""
        off = int(self._off[entry])
        return self._arena[off : off + int(self._len[entry])].tobytes()

    def lookup(
        self, keys: NDArray[np.uint8], key_off: NDArray[np.int32], key_len: NDArray[np.int32]
    ) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
        """(hashes, values) of the keys; values are UNKNOWN where absent."""
        n = key_off.shape[0]
        hashes = np.empty(n, dtype=np.int64)
        values = np.empty(n, dtype=np.int32)
        _index.lookup(
            keys,
            _index.words(keys),
            key_off,
            key_len,
            self._ht,
            self._off,
            self._len,
            self._hash,
            self._value,
            self._arena,
            _index.words(self._arena),
            hashes,
            values,
            np.empty(n, dtype=np.int64),
        )
        return hashes, values

    def insert(
        self,
        keys: NDArray[np.uint8],
        key_off: NDArray[np.int32],
        key_len: NDArray[np.int32],
        hashes: NDArray[np.int64],
        which: NDArray[np.int64],
        values: NDArray[np.int32],
    ) -> int:
        """Add keys ``which`` (absent and distinct) with ``values``; return how many fit."""
        room = max(0, self.max_entries - self.n_entries)
        if which.shape[0] > room:
            which, values = which[:room], values[:room]
        k = int(which.shape[0])
        if k == 0:
            return 0
        need = self.n_entries + k
        if need > self._off.shape[0]:
            size = max(2 * self._off.shape[0], need)
            self._off = np.resize(self._off, size)
            self._len = np.resize(self._len, size)
            self._hash = np.resize(self._hash, size)
            self._value = np.resize(self._value, size)
        if 2 * need > self._ht.shape[0]:
            size = self._ht.shape[0]
            while 2 * need > size:
                size *= 2
            self._ht = np.full(size, -1, dtype=np.int64)
            _index.rehash(self._hash, self.n_entries, self._ht)
        bytes_needed = int(key_len[which].sum())
        if self._arena_used + bytes_needed > self._arena.shape[0]:
            size = self._arena.shape[0]
            while self._arena_used + bytes_needed > size:
                size *= 2
            self._arena = np.resize(self._arena, size)
        self._arena_used = int(
            _index.insert(
                keys,
                key_off,
                key_len,
                hashes,
                np.ascontiguousarray(which, dtype=np.int64),
                np.ascontiguousarray(values, dtype=np.int32),
                self._ht,
                self._off,
                self._len,
                self._value,
                self._hash,
                self._arena,
                self.n_entries,
                self._arena_used,
            )
        )
        self.n_entries = need
        return k

    def rebuilt(
        self, values: NDArray[np.int32], keep: NDArray[np.bool_], max_entries: int
    ) -> tuple[ByteIndex, NDArray[np.int64]]:
        """A new index of the entries where ``keep``, in order, with ``values`` (one per
        entry), and each old entry's number in it (-1: left out)."""
        n = self.n_entries
        out = ByteIndex(max(max_entries, int(np.count_nonzero(keep[:n]))))
        which = np.flatnonzero(keep[:n]).astype(np.int64)
        out.insert(
            self._arena,
            self._off[:n].astype(np.int32),
            self._len[:n],
            self._hash[:n],
            which,
            values[which].astype(np.int32),
        )
        renumber = np.full(n, -1, dtype=np.int64)
        renumber[which] = np.arange(which.shape[0], dtype=np.int64)
        return out, renumber

    @property
    def values(self) -> NDArray[np.int32]:
        """The value of each entry (a view)."""
        return self._value[: self.n_entries]


@dataclass(frozen=True, slots=True)
class Reassignment:
    """What a config reload decided for every tracked series (``SeriesRegistry.reconfigure``).

    ``reset``: slots whose detector parameters or counter transform changed (their state
    starts fresh); ``retired``: slots no rule tracks any more; ``retracked``: slots an
    earlier reload retired that a rule tracks again (their state starts fresh: it stopped
    when they were retired); the others keep their state. The per-slot arrays are copies,
    safe to read from another thread.
    """

    generation: int
    rules: tuple[SeriesRule, ...]
    slot_rule: NDArray[np.int32]
    slot_counter: NDArray[np.uint8]
    slot_alert: NDArray[np.int16]
    reset: tuple[int, ...]
    retired: tuple[int, ...]
    retired_over_limit: int  # of ``retired``: a rule matched, but its max_series was full
    retracked: tuple[int, ...] = ()

    @property
    def kept(self) -> int:
        live = int(np.count_nonzero(self.slot_rule >= 0))
        return live - len(self.reset) - len(self.retracked)


class ReloadDraft:
    """The decisions of a reload for the slots decided so far (see
    ``SeriesRegistry.draft_reconfigure``); ``decide`` extends them to more slots."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.selectors = tuple(r.selector() for r in cfg.series)
        self.alert_selectors = tuple(r.selector() for r in cfg.alerts)
        self.new_rule: list[int] = []
        self.new_counter: list[int] = []
        self.new_alert: list[int] = []
        self.rule_series = [0] * len(cfg.series)
        self.reset: list[int] = []
        self.retired: list[int] = []
        self.over = 0  # retired because their rule's max_series was full
        self.retracked: list[int] = []
        # retired slots a rule with a max_series matches: slot, rule, counter, alert rule
        # (four columns), decided by ``finish`` after every live slot (see there)
        self.comebacks: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])

    def decide(self, registry: SeriesRegistry, n: int) -> None:
        """Decide slots ``len(self.new_rule)`` to ``n - 1``. Reads only what no request
        changes for an existing slot (its labels, rule and transform)."""
        rules = self.cfg.series
        for slot in range(len(self.new_rule), n):
            old = int(registry.slot_rule[slot])
            labels = dict(registry.labels_of(slot))
            index = next(
                (i for i, sel in enumerate(self.selectors) if sel is None or sel.matches(labels)),
                -1,
            )
            rule = rules[index] if index >= 0 else None
            counter = alert = 0
            if rule is not None:
                counter = int(_counter(rule, labels.get("__name__", "")))
                alert = next(
                    (
                        a
                        for a, sel in enumerate(self.alert_selectors)
                        if sel is None or sel.matches(labels)
                    ),
                    -1,
                )
            limit = rule.max_series if rule is not None else None
            if limit is not None:
                if old == RETIRED:  # a live series goes first: its state is worth more
                    for column, value in zip(
                        self.comebacks, (slot, index, counter, alert), strict=True
                    ):
                        column.append(value)
                    rule = None
                elif self.rule_series[index] >= limit:
                    rule, self.over = None, self.over + 1
            if rule is None:  # retired now, or still (``finish`` may take it back)
                if old != RETIRED:
                    self.retired.append(slot)
                self.new_rule.append(RETIRED)
                self.new_counter.append(0)
                self.new_alert.append(-1)
                continue
            self.new_rule.append(index)
            self.new_counter.append(counter)
            self.new_alert.append(alert)
            self.rule_series[index] += 1
            if old == RETIRED:  # retired by an earlier reload, tracked again
                self.retracked.append(slot)
            elif rule.detector != registry.rules[old].detector or counter != int(
                registry.slot_counter[slot]
            ):
                self.reset.append(slot)

    def finish(
        self,
    ) -> tuple[NDArray[np.int32], NDArray[np.uint8], NDArray[np.int16], NDArray[np.int32]]:
        """The decisions as arrays (rule, counter and alert rule per slot, and the slots
        tracked again), once the retired slots whose rule has a ``max_series`` are tracked
        again as far as it has room after every live slot: a series that kept learning is
        never retired to make room for one that comes back with fresh state. Call once,
        after the last ``decide``; it runs under the ingest lock, in numpy."""
        new_rule = np.asarray(self.new_rule, dtype=np.int32)
        new_counter = np.asarray(self.new_counter, dtype=np.uint8)
        new_alert = np.asarray(self.new_alert, dtype=np.int16)
        back = np.asarray(self.retracked, dtype=np.int32)
        if not self.comebacks[0]:
            return new_rule, new_counter, new_alert, back
        slot, rule, counter, alert = (np.asarray(c, dtype=np.int64) for c in self.comebacks)
        take = np.zeros(slot.shape[0], dtype=np.bool_)
        for index in np.unique(rule).tolist():
            limit = self.cfg.series[index].max_series
            assert limit is not None
            mine = np.flatnonzero(rule == index)[: max(0, limit - self.rule_series[index])]
            take[mine] = True
            self.rule_series[index] += int(mine.shape[0])
        new_rule[slot[take]] = rule[take]
        new_counter[slot[take]] = counter[take]
        new_alert[slot[take]] = alert[take]
        back = np.sort(np.concatenate([back, slot[take].astype(np.int32)]))
        self.retracked = back.tolist()
        self.comebacks = ([], [], [], [])
        return new_rule, new_counter, new_alert, back


class SeriesRegistry:
    """Assigns slots to label sets under the configured rules and limits.

    Two indexes: ``canonical`` (label set -> value) is the identity of a series; ``wire``
    (the raw bytes of a 1.0 series' label fields -> value) lets a known series be found
    without parsing its labels. A wire key is added only after its labels were parsed and
    validated, so an identical byte string is known to be valid.
    """

    def __init__(self, cfg: DetectorConfig) -> None:
        self.limits = cfg.limits
        # serve --workers: a series another worker owns is remembered as FOREIGN - owner
        # (counted with the ignored series), so its owner is computed once, not per request
        self.owner_of: OwnerOf | None = None
        self.workers = 1
        self.rules: tuple[SeriesRule, ...] = cfg.series
        self._selectors: tuple[Selector | None, ...] = tuple(r.selector() for r in self.rules)
        self._alert_selectors: tuple[Selector | None, ...] = tuple(r.selector() for r in cfg.alerts)
        self.rule_series = [0] * len(self.rules)
        self.n_tracked = 0
        self.slot_rule = np.empty(1024, dtype=np.int32)
        self.slot_entry = np.empty(1024, dtype=np.int32)  # slot -> canonical index entry
        self.slot_counter = np.zeros(1024, dtype=np.uint8)
        self.slot_alert = np.full(1024, -1, dtype=np.int16)  # slot -> alert rule, -1 none
        self.n_ignored = 0
        self.generation = 0  # config reloads applied (SlotSpec.generation)
        self._limit_logged: set[int] = set()
        known = cfg.limits.max_series + cfg.limits.max_ignored_series
        self.canonical = ByteIndex(known)
        self.wire = ByteIndex(2 * known)
        self._canon_buf = np.empty(1 << 16, dtype=np.uint8)

    def partition(self, owner_of: OwnerOf, workers: int) -> None:
        """Track only this worker's series of ``workers``; call before the first request."""
        if self.canonical.n_entries:
            raise RuntimeError("partition() after series were resolved")
        self.owner_of, self.workers = owner_of, workers

    @property
    def n_markers(self) -> int:
        """Length of a per-marker tally indexed by ``-value`` (see ``_route.route``)."""
        return 1 - (FOREIGN - (self.workers - 1))

    def is_counter(self, slot: int) -> bool:
        """Whether the detectors should see this series as a rate (see SeriesRule.transform)."""
        return bool(self.slot_counter[slot])

    def labels_of(self, slot: int) -> Labels:
        """The label set of a tracked series, decoded from the canonical index.

        Labels are not kept as Python objects per series: at 100k series that alone was
        about 190 MB.
        """
        return decode_canonical(self.canonical.key(int(self.slot_entry[slot])))

    def alert_rule_of(self, slot: int) -> int:
        """Index of the first alert rule matching the series, or -1."""
        return int(self.slot_alert[slot])

    def rule_of(self, slot: int) -> SeriesRule:
        index = int(self.slot_rule[slot])
        return RETIRED_RULE if index == RETIRED else self.rules[index]

    def is_retired(self, slot: int) -> bool:
        """No rule tracks this slot's series since a config reload (it keeps its slot)."""
        return int(self.slot_rule[slot]) == RETIRED

    def resolve_known(self, req: DecodedRequest) -> Resolution | None:
        """The values of a request whose series are all known, or None; changes nothing."""
        if req.version == 1:
            _, values = self.wire.lookup(req.buf, req.ser_key_off, req.ser_key_len)
        else:
            which = np.arange(req.n_series, dtype=np.int64)
            _, values = self.canonical.lookup(*self._canonical_keys(req, which))
        if np.any(values == UNKNOWN):
            return None
        return Resolution(values, 0, 0, 0)

    def resolve(self, req: DecodedRequest) -> Resolution:
        """Find or assign the value of every series in ``req``.

        New label sets are validated first (labels well-formed and sorted, UTF-8, label
        limits); if any is invalid the whole request is refused with DecodeError and
        nothing is added.
        """
        if req.version == 1:
            wire_hashes, values = self.wire.lookup(req.buf, req.ser_key_off, req.ser_key_len)
            unknown = np.flatnonzero(values == UNKNOWN)
            if unknown.shape[0] == 0:
                return Resolution(values, 0, 0, 0)
            decode.parse_labels(req, unknown)
        else:
            values = np.full(req.n_series, UNKNOWN, dtype=np.int32)
            unknown = np.arange(req.n_series, dtype=np.int64)
        keys, key_off, key_len = self._canonical_keys(req, unknown)
        canon_hashes, canon_values = self.canonical.lookup(keys, key_off, key_len)
        values[unknown] = canon_values
        new = np.flatnonzero(canon_values == UNKNOWN)  # positions within `unknown`
        counts = (0, 0, 0)
        forgotten: set[int] = set()
        if new.shape[0]:
            counts = self._admit(
                req, unknown, new, values, keys, key_off, key_len, canon_hashes, forgotten
            )
        if req.version == 1:
            self._remember_wire_keys(req, unknown, values, wire_hashes, forgotten)
        return Resolution(values, *counts)

    def _canonical_keys(
        self, req: DecodedRequest, which: NDArray[np.int64]
    ) -> tuple[NDArray[np.uint8], NDArray[np.int32], NDArray[np.int32]]:
        # a bound over the whole request: 1.0 Label messages hold their name and value
        # (the spans of unparsed series are stale), 2.0 spans are all filled by the scan
        if req.version == 1:
            label_bytes = int(req.lab_len.sum())
        else:
            label_bytes = int(req.lab_nlen.sum()) + int(req.lab_vlen.sum())
        bound = label_bytes + 20 * int(req.lab_off.shape[0])
        if bound > self._canon_buf.shape[0]:
            self._canon_buf = np.empty(max(bound, 2 * self._canon_buf.shape[0]), np.uint8)
        key_off = np.empty(which.shape[0], dtype=np.int32)
        key_len = np.empty(which.shape[0], dtype=np.int32)
        _index.canonical(
            req.buf,
            req.lab_noff,
            req.lab_nlen,
            req.lab_voff,
            req.lab_vlen,
            req.ser_first,
            req.ser_count,
            np.ascontiguousarray(which, dtype=np.int64),
            self._canon_buf,
            key_off,
            key_len,
        )
        return self._canon_buf, key_off, key_len

    def _check(self, req: DecodedRequest, series: int) -> Labels:
        count = int(req.ser_count[series])
        if count > self.limits.max_labels_per_series:
            raise DecodeError(
                f"series {series}: {count} labels, over the limit of "
                f"{self.limits.max_labels_per_series} (limits.max_labels_per_series)"
            )
        first = int(req.ser_first[series])
        if int(req.lab_nlen[first : first + count].max()) > self.limits.max_label_name_bytes:
            raise DecodeError(
                f"series {series}: a label name is over "
                f"{self.limits.max_label_name_bytes} bytes (limits.max_label_name_bytes)"
            )
        if int(req.lab_vlen[first : first + count].max()) > self.limits.max_label_value_bytes:
            raise DecodeError(
                f"series {series}: a label value is over "
                f"{self.limits.max_label_value_bytes} bytes (limits.max_label_value_bytes)"
            )
        return req.labels(series)

    def _choose(self, labels: Labels) -> int:
        """The value for a new label set: a fresh slot, UNTRACKED, OVER_LIMIT, or (another
        worker's series that a rule tracks) FOREIGN - owner."""
        as_dict = dict(labels)
        if self.owner_of is not None:
            owner = self.owner_of(as_dict)
            if owner >= 0 and any(s is None or s.matches(as_dict) for s in self._selectors):
                return FOREIGN - owner
        for index, (rule, selector) in enumerate(zip(self.rules, self._selectors, strict=True)):
            if selector is not None and not selector.matches(as_dict):
                continue
            full_rule = rule.max_series is not None and self.rule_series[index] >= rule.max_series
            if full_rule or self.n_tracked >= self.limits.max_series:
                if index not in self._limit_logged:
                    self._limit_logged.add(index)
                    which = f"rule {rule.name!r} max_series" if full_rule else "limits.max_series"
                    log.warning(
                        "series limit reached (%s); new series of rule %r are dropped "
                        "and counted in vigil_series_dropped_total",
                        which,
                        rule.name,
                    )
                return OVER_LIMIT
            slot = self.n_tracked
            self.n_tracked += 1
            if slot >= self.slot_rule.shape[0]:
                self.slot_rule = np.resize(self.slot_rule, 2 * self.slot_rule.shape[0])
                self.slot_entry = np.resize(self.slot_entry, self.slot_rule.shape[0])
                self.slot_counter = np.resize(self.slot_counter, self.slot_rule.shape[0])
                self.slot_alert = np.resize(self.slot_alert, self.slot_rule.shape[0])
            self.slot_rule[slot] = index
            self.slot_alert[slot] = next(
                (
                    a
                    for a, sel in enumerate(self._alert_selectors)
                    if sel is None or sel.matches(as_dict)
                ),
                -1,
            )
            self.slot_counter[slot] = _counter(rule, as_dict.get("__name__", ""))
            self.rule_series[index] += 1
            return slot
        return UNTRACKED

    def _admit(
        self,
        req: DecodedRequest,
        unknown: NDArray[np.int64],
        new: NDArray[np.intp],
        values: NDArray[np.int32],
        keys: NDArray[np.uint8],
        key_off: NDArray[np.int32],
        key_len: NDArray[np.int32],
        hashes: NDArray[np.int64],
        forgotten: set[int],
    ) -> tuple[int, int, int]:
        """Decide new label sets (positions ``new`` of ``unknown``) and index them.

        Series that are not remembered (the ignored-series bound is reached) are added to
        ``forgotten``; they will be looked at again when they come back.
        """
        checked = [(int(j), self._check(req, int(unknown[j]))) for j in new]  # may raise
        firsts: dict[Labels, int] = {}
        which: list[int] = []
        new_values: list[int] = []
        tracked = untracked = over = 0
        for j, labels in checked:
            s = int(unknown[j])
            if labels in firsts:  # the same series twice in one request
                values[s] = values[firsts[labels]]
                continue
            value = self._choose(labels)
            values[s] = value
            firsts[labels] = s
            if value >= 0:
                tracked += 1
            elif value == UNTRACKED:
                untracked += 1
            elif value == OVER_LIMIT:
                over += 1
            if value < 0:
                if self.n_ignored >= self.limits.max_ignored_series:
                    forgotten.add(s)
                    continue
                self.n_ignored += 1
            which.append(j)
            new_values.append(value)
        if which:
            first_entry = self.canonical.n_entries
            added = self.canonical.insert(
                keys,
                key_off,
                key_len,
                hashes,
                np.array(which, dtype=np.int64),
                np.array(new_values, dtype=np.int32),
            )
            for m, value in enumerate(new_values[:added]):
                if value >= 0:
                    self.slot_entry[value] = first_entry + m
        return tracked, untracked, over

    def _remember_wire_keys(
        self,
        req: DecodedRequest,
        unknown: NDArray[np.int64],
        values: NDArray[np.int32],
        hashes: NDArray[np.int64],
        forgotten: set[int],
    ) -> None:
        """Add the wire keys of series just resolved through their labels."""
        data = req.buf
        seen: set[bytes] = set()
        which: list[int] = []
        for s in unknown.tolist():
            n = int(req.ser_key_len[s])
            if n < 0:
                continue
            off = int(req.ser_key_off[s])
            key = data[off : off + n].tobytes()
            if key in seen or s in forgotten:
                continue
            seen.add(key)
            which.append(s)
        if which:
            idx = np.array(which, dtype=np.int64)
            self.wire.insert(req.buf, req.ser_key_off, req.ser_key_len, hashes, idx, values[idx])

    def select(self, selectors: Sequence[Selector]) -> Iterator[int]:
        """Slots of tracked series matching any of ``selectors`` (all when none given)."""
        for slot in range(self.n_tracked):
            if self.slot_rule[slot] == RETIRED:
                continue
            if not selectors:
                yield slot
                continue
            as_dict = dict(self.labels_of(slot))
            if any(sel.matches(as_dict) for sel in selectors):
                yield slot

    def draft_reconfigure(self, cfg: DetectorConfig) -> ReloadDraft:
        """Decide the series tracked now under ``cfg`` without changing anything: the slow
        part of a reload (labels and selectors, per series), run without the ingest lock
        so requests go on meanwhile. ``reconfigure`` then decides the series created since
        and applies it all under the lock."""
        draft = ReloadDraft(cfg)
        draft.decide(self, self.n_tracked)
        return draft

    def reconfigure(self, cfg: DetectorConfig, draft: ReloadDraft | None = None) -> Reassignment:
        """Re-decide every tracked series under ``cfg`` (a config reload); the caller holds
        the ingest lock.

        A series matching a rule keeps its slot; it starts fresh when its detector
        parameters or counter transform changed. One that no rule tracks any more (or whose
        rule's ``max_series`` is full) is retired: it keeps its slot and labels (and counts
        towards ``limits.max_series``), and its samples are dropped as untracked until a
        later reload tracks it again, in the same slot with fresh state (``retracked``;
        under a rule with a ``max_series``, only where the live series leave room). Series
        remembered as untracked or over a limit are forgotten, so the new rules decide them
        when they next arrive.
        The alert rule of existing slots is returned, not applied: ``slot_alert`` changes
        when the alert book changes (``apply_alert_rules``), so alerts in flight stay
        consistent with the rules they were raised under.
        """
        if draft is None or draft.cfg is not cfg:
            draft = ReloadDraft(cfg)
        n = self.n_tracked
        draft.decide(self, n)  # the series created since the draft, or all of them
        new_rule, new_counter, new_alert, back = draft.finish()
        known = cfg.limits.max_series + cfg.limits.max_ignored_series
        # canonical: every slot keeps its entry (labels_of), retired ones as UNTRACKED;
        # the memory of untracked and over-limit series is dropped (a rebuild, only when
        # there is such memory: in place otherwise)
        entries = self.slot_entry[:n]
        keep = np.zeros(self.canonical.n_entries, dtype=np.bool_)
        keep[entries] = True
        if keep.all():
            self.canonical.values[entries[new_rule == RETIRED]] = UNTRACKED
            self.canonical.values[entries[back]] = back
            self.canonical.max_entries = max(known, self.canonical.n_entries)
        else:
            values = self.canonical.values.copy()
            values[entries[new_rule == RETIRED]] = UNTRACKED
            values[entries[back]] = back
            self.canonical, renumber = self.canonical.rebuilt(values, keep, known)
            self.slot_entry[:n] = renumber[entries]
        # wire: the keys of series that stay tracked (others are looked up again)
        wire_values = self.wire.values
        live = wire_values >= 0
        live[live] = new_rule[wire_values[live]] != RETIRED
        if live.all():
            self.wire.max_entries = max(2 * known, self.wire.n_entries)
        else:
            self.wire, _ = self.wire.rebuilt(wire_values, live, 2 * known)
        self.rules = cfg.series
        self._selectors = draft.selectors
        self._alert_selectors = draft.alert_selectors
        self.limits = cfg.limits
        self.rule_series = draft.rule_series
        self.slot_rule[:n] = new_rule
        self.slot_counter[:n] = new_counter
        self.n_ignored = 0
        self._limit_logged.clear()
        self.generation += 1
        return Reassignment(
            self.generation,
            cfg.series,
            new_rule,
            new_counter,
            new_alert,
            tuple(draft.reset),
            tuple(draft.retired),
            draft.over,
            tuple(draft.retracked),
        )

    def apply_alert_rules(self, slot_alert: NDArray[np.int16]) -> None:
        """Give the first ``len(slot_alert)`` slots their alert rules from a reload (the
        caller holds the ingest lock; slots created since have theirs already)."""
        self.slot_alert[: slot_alert.shape[0]] = slot_alert
