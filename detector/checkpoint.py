"""Save and restore the detector's series state in ``--state-dir``: versioned, checksummed,
written atomically.

This module owns the checkpoint format (version 2)::

    STATE_DIR/CURRENT                     name of the newest complete checkpoint
    STATE_DIR/checkpoints/<ms>/manifest.json  format, version, sha256 of each file,
                                          the parameters of each detector family and
                                          the layout of its tables (``layouts``)
    STATE_DIR/checkpoints/<ms>/series.jsonl   per saved series: [labels, family, row]
    STATE_DIR/checkpoints/<ms>/tables.npz     per saved series: the pipeline tables (row i
                                          is line i of series.jsonl); per family: its tables

Saving has two steps. ``snapshot`` copies the tables of every series the pipeline has
configured; it must run where no batch is half-applied: on the detector worker between
two batches (``SnapshotRequest``), or with the worker stopped. ``write`` then writes that
copy from any thread while the worker goes on. A checkpoint directory is complete (and
fsynced) before ``CURRENT`` (replaced atomically) names it, so a crash, even ``kill -9``,
never leaves a half-written checkpoint in use; the newest one and the one before it are
kept, older ones are pruned.

Restoring verifies the format, version and every checksum of the checkpoint ``CURRENT``
names. A damaged one (truncated, a flipped byte, another version, a missing directory) is
reported and skipped, and the one before it is tried, then none: a bad checkpoint costs
state, never the start. The label sets are re-admitted through the registry under the
*current* rules: a series whose detector parameters are unchanged gets its state back, one
whose parameters changed starts fresh. This module logs but keeps no metrics; the caller
counts what ``restore`` reports.

Upgrades. Each family's tables have a layout number (``LAYOUTS``); a checkpoint records the
layout it was written with (version 1 checkpoints, from before layouts were recorded, hold
layout 1 of every family). A family whose layout changed is carried over by the chain of
``MIGRATIONS`` from the saved layout to the current one; when there is none, its series
start fresh, logged and reported as ``layout_changed``. Whoever changes a family's tables
bumps its layout, adds a migration when the old state can be carried over, and says in
CHANGELOG.md whether the upgrade resets learning (tests/fixtures/checkpoints/layouts.json
and its test keep the numbers honest).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from detector.config import DetectorParams
from detector.detectors.router import DetectorSet
from detector.errors import DecodeError, DetectorError
from detector.pipeline import ingest
from detector.pipeline.worker import CHECKPOINTED, Batch, Pipeline
from detector.remote_write import decode, encode
from detector.series.registry import Labels, SeriesRegistry

log = logging.getLogger(__name__)

FORMAT = "vigil-detector-checkpoint"
VERSION = 2
READS = (1, 2)  # the versions restore understands
# the current layout of each detector family's tables (see Upgrades above)
LAYOUTS: Mapping[str, int] = {"robust": 1, "ensemble": 1, "spot": 1}
Tables = dict[str, NDArray[Any]]
# (family kind, layout) -> (the next layout, a function from the family's saved tables in
# the old layout to the next one, rows kept in order); none yet: no layout has changed
Migration = Callable[[Tables], Tables]
MIGRATIONS: Mapping[tuple[str, int], tuple[int, Migration]] = {}
ResetReason = Literal["config_changed", "layout_changed"]
KEEP = 2  # the newest checkpoint and the one before it
_PIPELINE_TABLES = CHECKPOINTED
_CHUNK = 5000
_FILES = ("series.jsonl", "tables.npz")

SkipReason = Literal["missing", "version", "checksum", "unreadable"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the state of every series the pipeline has configured."""

    taken_ms: int
    slots: NDArray[np.int32]  # registry slots, one per saved series, ascending
    family_of: NDArray[np.int16]  # per saved series
    row_of: NDArray[np.int32]  # per saved series: its row in its family's tables
    tables: Mapping[str, NDArray[Any]]  # pipeline tables (one row per saved series) and
    # f<family>_<name> family tables (one row per family row)
    params: tuple[DetectorParams, ...]  # per family
    labels_of: Callable[[int], Labels]  # the registry's: slots never change their labels

    @property
    def n_series(self) -> int:
        return int(self.slots.shape[0])


@dataclass(frozen=True, slots=True)
class Skipped:
    """A checkpoint that could not be used, and why."""

    path: Path
    reason: SkipReason
    message: str


@dataclass(frozen=True, slots=True)
class Restored:
    """What ``restore`` did: where the state came from, how much came back, what was
    skipped on the way."""

    source: Path | None  # None: nothing usable, the detector starts empty
    created_ms: int | None
    series: int  # series in the checkpoint used
    restored: int  # series whose detector state came back
    skipped: tuple[Skipped, ...] = ()
    # series tracked again that start learning afresh, by why: their detector settings
    # changed (config_changed) or their saved layout could not be carried over
    reset: Mapping[ResetReason, int] = field(default_factory=dict)
    migrated: int = 0  # of ``restored``: carried over from an older layout


class _DamagedError(DetectorError):
    """A checkpoint that fails a check; turned into a ``Skipped`` value, never raised out."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def snapshot(registry: SeriesRegistry, pipeline: Pipeline, *, now_ms: int) -> Snapshot:
    """Copy the tables of every configured series. Call it where no batch is
    half-applied: on the worker thread between batches, or with the worker stopped.

    A slot the registry has assigned but whose batch the worker has not reached yet has
    no state: it is left out (it will be created again when its series comes back).
    """
    dets = pipeline.detectors
    n = min(registry.n_tracked, pipeline.capacity, int(dets.family_of.shape[0]))
    family_of = dets.family_of[:n]
    slots = np.flatnonzero(family_of >= 0).astype(np.int32)
    tables: dict[str, NDArray[Any]] = {
        name: getattr(pipeline, name)[slots] for name in _PIPELINE_TABLES
    }  # copies
    for f, family in enumerate(dets.families):
        for name, arr in family.arrays().items():
            tables[f"f{f}_{name}"] = arr[: dets.sizes[f]].copy()
    return Snapshot(
        taken_ms=now_ms,
        slots=slots,
        family_of=family_of[slots],
        row_of=dets.row_of[slots],
        tables=tables,
        params=tuple(dets.params),
        labels_of=registry.labels_of,
    )


class SnapshotRequest:
    """Hands one snapshot at a time from the worker thread to whoever asked for it.

    ``ask`` (any thread) returns a future; the worker calls ``serve`` between batches,
    which takes the snapshot if one was asked for. A request the worker never reaches
    (it stopped) is cancelled by the asker after its own timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: concurrent.futures.Future[Snapshot] | None = None

    def ask(self) -> concurrent.futures.Future[Snapshot]:
        with self._lock:
            if self._waiting is None or self._waiting.done():
                self._waiting = concurrent.futures.Future()
            return self._waiting

    def serve(self, take: Callable[[], Snapshot]) -> None:
        """Worker thread, between batches: take the snapshot asked for, if any. An error
        goes to the asker (who logs and counts it); the worker goes on."""
        with self._lock:
            fut, self._waiting = self._waiting, None
        if fut is None or not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(take())
        except Exception as exc:  # the asker reports it: the worker must not die of it
            fut.set_exception(exc)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is atomic
    finally:
        os.close(fd)


def _current_name(state_dir: Path) -> str | None:
    try:
        return (state_dir / "CURRENT").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _point_current(state_dir: Path, name: str) -> None:
    current_tmp = state_dir / "CURRENT.tmp"
    _fsync_write(current_tmp, name.encode())
    os.replace(current_tmp, state_dir / "CURRENT")
    _fsync_dir(state_dir)


def write(state_dir: Path, snap: Snapshot) -> Path:
    """Write ``snap`` as a new checkpoint, point ``CURRENT`` at it, prune older ones;
    return its directory. Any thread; one writer per state dir at a time."""
    root = state_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    previous = _current_name(state_dir)
    stamp = snap.taken_ms
    while (root / str(stamp)).exists() or str(stamp) == previous:
        stamp += 1  # two checkpoints in one millisecond (or a clock that went back)
    target = root / str(stamp)
    tmp = root / f".{stamp}.tmp"
    for stale in root.glob(".*.tmp"):  # left by a crash during an earlier write
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    with (tmp / "series.jsonl").open("w", encoding="utf-8") as fh:
        for slot, family, row in zip(
            snap.slots.tolist(), snap.family_of.tolist(), snap.row_of.tolist(), strict=True
        ):
            fh.write(json.dumps([snap.labels_of(slot), family, row], ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    with (tmp / "tables.npz").open("wb") as fh:
        arrays: dict[str, Any] = dict(snap.tables)  # Any: savez's keywords include a bool
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_ms": snap.taken_ms,
        "series": snap.n_series,
        "files": {name: _sha256(tmp / name) for name in _FILES},
        "families": [p.model_dump(mode="json") for p in snap.params],
        "layouts": [_layout(p.kind, snap.tables, f) for f, p in enumerate(snap.params)],
    }
    _fsync_write(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
    _fsync_dir(tmp)
    os.replace(tmp, target)
    _fsync_dir(root)
    _point_current(state_dir, target.name)
    keep = {target.name, previous}
    for old in root.iterdir():
        if old.name.isdigit() and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _layout(kind: str, tables: Mapping[str, NDArray[Any]], family: int) -> dict[str, Any]:
    """What a reader needs to know of one family's tables: its layout number, and each
    table's dtype and shape per row (for the record and for inspection)."""
    prefix = f"f{family}_"
    return {
        "kind": kind,
        "layout": LAYOUTS.get(kind, 1),
        "tables": {
            name[len(prefix) :]: [str(arr.dtype), list(arr.shape[1:])]
            for name, arr in tables.items()
            if name.startswith(prefix)
        },
    }


def save(state_dir: Path, registry: SeriesRegistry, pipeline: Pipeline, *, now_ms: int) -> int:
    """Snapshot and write in one go; return the number of series saved. The worker must
    be stopped (or this must run on it)."""
    snap = snapshot(registry, pipeline, now_ms=now_ms)
    write(state_dir, snap)
    return snap.n_series


@dataclass(frozen=True, slots=True)
class _Loaded:
    where: Path
    manifest: dict[str, Any]
    entries: list[tuple[Labels, int, int]]
    tables: dict[str, NDArray[Any]]


def _candidates(state_dir: Path) -> list[Path]:
    """The checkpoint ``CURRENT`` names, then the others, newest first; [] without
    ``CURRENT`` (a first start, or an operator who removed it to start empty). A
    ``CURRENT`` that names no checkpoint directory (damaged) is a candidate that fails."""
    root = state_dir / "checkpoints"
    if not (state_dir / "CURRENT").exists():
        if root.is_dir() and any(p.name.isdigit() for p in root.iterdir()):
            log.warning(
                "%s has checkpoints but no CURRENT file naming one; starting with "
                "empty state (write the name of a directory under %s into CURRENT "
                "to restore it)",
                state_dir,
                root,
            )
        return []
    name = _current_name(state_dir)
    named = root / name if name is not None and name.isdigit() else state_dir / "CURRENT"
    others = (
        sorted(
            (p for p in root.iterdir() if p.name.isdigit() and p != named),
            key=lambda p: int(p.name),
            reverse=True,
        )
        if root.is_dir()
        else []
    )
    return [named, *others]


def _entry(line: str) -> tuple[Labels, int, int]:
    labels, family, row = json.loads(line)
    if not isinstance(family, int) or not isinstance(row, int) or row < 0:
        raise ValueError(f"bad family or row in {line[:200]!r}")
    return tuple((str(k), str(v)) for k, v in labels), family, row


def _read(where: Path) -> _Loaded:
    """Load and check one checkpoint directory; _DamagedError says what is wrong."""
    if where.name == "CURRENT":
        raise _DamagedError("unreadable", f"{where}: does not name a checkpoint directory")
    if not (where / "manifest.json").is_file():
        raise _DamagedError("missing", f"{where}: no such checkpoint (manifest.json missing)")
    try:
        manifest = json.loads((where / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("manifest.json is not an object")
    except (OSError, ValueError) as exc:
        raise _DamagedError("unreadable", f"{where / 'manifest.json'}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") not in READS:
        raise _DamagedError(
            "version",
            f"{where}: checkpoint format "
            f"{manifest.get('format')!r} version {manifest.get('version')!r}"
            f", this detector reads {FORMAT} versions "
            f"{', '.join(map(str, READS))} (a checkpoint from a newer "
            "release: start that release again, or remove CURRENT to start "
            "empty)",
        )
    try:
        files = manifest["files"]
        for name in _FILES:
            path = where / name
            if not path.is_file():
                raise _DamagedError("missing", f"{path}: missing")
            if _sha256(path) != files[name]:
                raise _DamagedError(
                    "checksum",
                    f"{path}: checksum mismatch (truncated or altered since it was written)",
                )
        entries = [
            _entry(line)
            for line in (where / "series.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        with (where / "tables.npz").open("rb") as fh, np.load(fh) as npz:
            tables = {name: npz[name] for name in npz.files}
        families = manifest["families"]
        layouts = manifest.get("layouts")  # version 1: none, every family at layout 1
        if layouts is not None and (
            not isinstance(layouts, list)
            or len(layouts) != len(families)
            or not all(isinstance(x, dict) and isinstance(x.get("layout"), int) for x in layouts)
        ):
            raise ValueError("layouts does not give the layout of every family")
        n = len(entries)
        if manifest["series"] != n:
            raise ValueError(f"manifest says {manifest['series']} series, series.jsonl has {n}")
        for name in _PIPELINE_TABLES:
            if name in tables and tables[name].shape[0] != n:
                raise ValueError(f"table {name} has {tables[name].shape[0]} rows for {n} series")
        rows: dict[int, int] = {}  # family -> rows in its tables
        for key, table in tables.items():
            if key[:1] == "f" and "_" in key and key[1 : key.index("_")].isdigit():
                f = int(key[1 : key.index("_")])
                rows[f] = min(rows.get(f, table.shape[0]), table.shape[0])
        for labels, family, row in entries:
            if not 0 <= family < len(families) or row >= rows.get(family, row + 1):
                raise ValueError(
                    f"series {dict(labels)}: family {family} row {row} is not in the tables"
                )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise _DamagedError("unreadable", f"{where}: {type(exc).__name__}: {exc}") from exc
    return _Loaded(where, manifest, entries, tables)


def _admit(registry: SeriesRegistry, sets: Sequence[Labels]) -> list[int]:
    """The slots of ``sets`` (negative: not tracked under the current rules). A label set
    the current limits refuse is left out alone, not with its chunk."""

    def resolve(chunk: Sequence[Labels]) -> list[int]:
        raw = encode.encode_v1([encode.Series(labels=labels) for labels in chunk])
        req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
        return [int(v) for v in registry.resolve(req).values.tolist()]

    try:
        return resolve(sets)
    except DecodeError:
        out = []
        for labels in sets:
            try:
                out += resolve([labels])
            except DecodeError as exc:
                log.warning(
                    "checkpointed series %s is refused by the current limits (%s); "
                    "it starts fresh when it comes back",
                    dict(labels),
                    exc,
                )
                out.append(-1)
        return out


def _compatible(saved: Mapping[str, NDArray[Any]], arrays: Mapping[str, NDArray[Any]]) -> bool:
    """Whether a family's saved tables fit its arrays now (a table added or reshaped
    without a migration means: learn afresh)."""
    for name, arr in arrays.items():
        table = saved.get(name)
        if table is None or table.shape[1:] != arr.shape[1:]:
            return False
    return True


def _saved_layout(loaded: _Loaded, family: int) -> tuple[str, int]:
    kind = str(loaded.manifest["families"][family].get("kind", "ensemble"))
    layouts = loaded.manifest.get("layouts")
    if layouts is None:
        return kind, 1
    return kind, int(layouts[family].get("layout", 1))


def _migrated(
    loaded: _Loaded, family: int, migrations: Mapping[tuple[str, int], tuple[int, Migration]]
) -> Tables | None:
    """The saved tables of ``family`` in the current layout of its kind, migrated when
    they are older; None when no chain of migrations reaches it."""
    prefix = f"f{family}_"
    tables = {
        name[len(prefix) :]: arr for name, arr in loaded.tables.items() if name.startswith(prefix)
    }
    kind, layout = _saved_layout(loaded, family)
    current = LAYOUTS.get(kind, 1)
    for _ in range(len(migrations) + 1):  # a chain visits each migration at most once
        if layout == current:
            break
        step = migrations.get((kind, layout))
        if step is None:
            return None
        layout, migrate = step
        tables = migrate(tables)
    return tables if layout == current else None


@dataclass
class _Tally:
    restored: int = 0
    migrated: int = 0
    reset: dict[ResetReason, int] = field(default_factory=dict)
    fresh_families: dict[int, int] = field(default_factory=dict)  # layout_changed, by family

    def fresh(self, reason: ResetReason, old_family: int) -> None:
        self.reset[reason] = self.reset.get(reason, 0) + 1
        if reason == "layout_changed":
            self.fresh_families[old_family] = self.fresh_families.get(old_family, 0) + 1


def _apply(
    loaded: _Loaded,
    registry: SeriesRegistry,
    pipeline: Pipeline,
    migrations: Mapping[tuple[str, int], tuple[int, Migration]],
) -> _Tally:
    saved_params = [json.dumps(p, sort_keys=True) for p in loaded.manifest["families"]]
    entries, tables = loaded.entries, loaded.tables
    dets = pipeline.detectors
    current: dict[int, Tables | None] = {}  # old family -> its tables in today's layout
    fits: dict[tuple[int, int], bool] = {}
    tally = _Tally()
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start : start + _CHUNK]
        first_new = registry.n_tracked
        values = _admit(registry, [labels for labels, _, _ in chunk])
        pipeline.process(
            [
                Batch(
                    slots=np.empty(0, np.int32),
                    ts=np.empty(0, np.int64),
                    bits=np.empty(0, np.uint64),
                    new_slots=ingest.slot_specs(registry, first_new),
                )
            ]
        )
        for i, new_slot in enumerate(values):
            if new_slot < 0:
                continue
            old_slot = start + i
            _, old_family, old_row = chunk[i]
            for name in _PIPELINE_TABLES:
                if name in tables:  # a table added since the checkpoint starts fresh
                    getattr(pipeline, name)[new_slot] = tables[name][old_slot]
            f = int(dets.family_of[new_slot])
            if _params_json(dets.params[f]) != saved_params[old_family] and not _own_period(
                dets, new_slot, loaded.manifest["families"][old_family], saved_params[old_family]
            ):
                tally.fresh("config_changed", old_family)  # its detector settings changed
                continue
            f = int(dets.family_of[new_slot])
            if old_family not in current:
                current[old_family] = _migrated(loaded, old_family, migrations)
            saved = current[old_family]
            arrays = dets.families[f].arrays()
            fit = fits.get((old_family, f))
            if fit is None:
                fit = fits[(old_family, f)] = saved is not None and _compatible(saved, arrays)
            if not fit or saved is None:
                tally.fresh("layout_changed", old_family)
                continue
            row = int(dets.row_of[new_slot])
            for name, arr in arrays.items():
                arr[row] = saved[name][old_row]
            tally.restored += 1
            if _saved_layout(loaded, old_family)[1] != LAYOUTS.get(dets.params[f].kind, 1):
                tally.migrated += 1
    for old_family, n in tally.fresh_families.items():
        kind, layout = _saved_layout(loaded, old_family)
        log.warning(
            "%d series of the %s detector start learning afresh: %s holds their "
            "state in layout %d, this release keeps layout %d and cannot carry it "
            "over (CHANGELOG.md says which upgrades reset learning)",
            n,
            kind,
            loaded.where,
            layout,
            LAYOUTS.get(kind, 1),
        )
    return tally


def _params_json(params: DetectorParams) -> str:
    return json.dumps(params.model_dump(mode="json"), sort_keys=True)


def _own_period(dets: DetectorSet, slot: int, saved: Mapping[str, object], saved_json: str) -> bool:
    """A series whose history gave it a longer period than its rule's (warm start moved
    it to the family of its rule's parameters over that period) goes back to that family
    before its state is restored; True if it did."""
    period_s = saved.get("season_period_s")
    if not isinstance(period_s, int | float):
        return False
    longer = dets.params_for_period(slot, float(period_s) * 1000.0)
    if longer is None or _params_json(longer) != saved_json:
        return False
    dets.configure(slot, longer)
    return True


def restore(
    state_dir: Path,
    registry: SeriesRegistry,
    pipeline: Pipeline,
    *,
    migrations: Mapping[tuple[str, int], tuple[int, Migration]] = MIGRATIONS,
) -> Restored:
    """Load the newest usable checkpoint into an empty registry and pipeline; older
    layouts go through ``migrations``.

    No ``CURRENT``: nothing is restored. A damaged checkpoint is logged (what, where, what
    to do), reported in ``Restored.skipped`` and the one before it is tried; when none is
    usable the detector starts empty. Never raises for a bad checkpoint.
    """
    skipped: list[Skipped] = []
    for where in _candidates(state_dir):
        try:
            loaded = _read(where)
        except _DamagedError as exc:
            skipped.append(Skipped(where, exc.reason, str(exc)))
            log.warning(
                "checkpoint skipped (%s): %s. Trying an older one; the damaged one "
                "stays for inspection until the next checkpoint is written (copy it "
                "elsewhere to keep it)",
                exc.reason,
                exc,
            )
            continue
        tally = _apply(loaded, registry, pipeline, migrations)
        log.info(
            "restored the state of %d of %d checkpointed series from %s (format version %s%s)",
            tally.restored,
            len(loaded.entries),
            where,
            loaded.manifest.get("version"),
            f", {tally.migrated} migrated from an older layout" if tally.migrated else "",
        )
        if skipped:  # the next checkpoint keeps this good one, not the damaged one
            try:
                _point_current(state_dir, where.name)
            except OSError as exc:
                log.warning(
                    "could not point %s at %s (%s); the next checkpoint fixes it",
                    state_dir / "CURRENT",
                    where.name,
                    exc,
                )
        created = loaded.manifest.get("created_ms")
        return Restored(
            where,
            int(created) if isinstance(created, int) else None,
            len(loaded.entries),
            tally.restored,
            tuple(skipped),
            dict(tally.reset),
            tally.migrated,
        )
    if skipped:
        log.warning(
            "no usable checkpoint in %s (%d skipped); starting with empty state. "
            "With --prometheus new series warm up from history",
            state_dir,
            len(skipped),
        )
    return Restored(None, None, 0, 0, tuple(skipped))
