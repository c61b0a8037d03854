"""Save and restore the detector's series state in ``--state-dir``: versioned, checksummed,
written atomically.

This module owns the checkpoint format (version 1)::

    STATE_DIR/CURRENT                     name of the newest complete checkpoint
    STATE_DIR/checkpoints/<ms>/manifest.json  format, version, sha256 of each file,
                                          the parameters of each detector family
    STATE_DIR/checkpoints/<ms>/series.jsonl   per slot: [labels, family, row]
    STATE_DIR/checkpoints/<ms>/tables.npz     per-slot pipeline tables and family tables

A checkpoint directory is complete before ``CURRENT`` (replaced atomically) names it, so
a crash never leaves a half-written checkpoint in use; the previous one is kept. Restoring
verifies every checksum, then re-admits the label sets through the registry under the
*current* rules: a series whose detector parameters are unchanged gets its state back,
one whose parameters changed starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from detector import ingest
from detector.errors import DetectorError
from detector.pipeline import CHECKPOINTED, Batch, Pipeline
from detector.remote_write import decode, encode
from detector.series import SeriesRegistry

log = logging.getLogger(__name__)

FORMAT = "vigil-detector-checkpoint"
VERSION = 1
KEEP = 2
_PIPELINE_TABLES = CHECKPOINTED
_CHUNK = 5000


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


def save(state_dir: Path, registry: SeriesRegistry, pipeline: Pipeline,
         *, now_ms: int | None = None) -> int:
    """Write a checkpoint; return the number of series saved. The worker must be stopped."""
    stamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    root = state_dir / "checkpoints"
    target = root / stamp
    tmp = root / f".{stamp}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = registry.n_tracked
    dets = pipeline.detectors
    with (tmp / "series.jsonl").open("w", encoding="utf-8") as fh:
        for slot in range(n):
            fh.write(json.dumps([registry.labels_of(slot), int(dets.family_of[slot]),
                                 int(dets.row_of[slot])], ensure_ascii=False) + "\n")
    tables: dict[str, Any] = {name: getattr(pipeline, name)[:n] for name in _PIPELINE_TABLES}
    for f, family in enumerate(dets.families):
        for name, arr in family.arrays().items():
            tables[f"f{f}_{name}"] = arr[: dets.sizes[f]]
    with (tmp / "tables.npz").open("wb") as fh:
        np.savez(fh, **tables)
        fh.flush()
        os.fsync(fh.fileno())
    manifest = {
        "format": FORMAT, "version": VERSION, "created_ms": int(stamp), "series": n,
        "files": {name: _sha256(tmp / name) for name in ("series.jsonl", "tables.npz")},
        "families": [p.model_dump(mode="json") for p in dets.params],
    }
    _fsync_write(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    current_tmp = state_dir / "CURRENT.tmp"
    _fsync_write(current_tmp, stamp.encode())
    os.replace(current_tmp, state_dir / "CURRENT")
    for old in sorted((p for p in root.iterdir() if p.name.isdigit()),
                      key=lambda p: int(p.name))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return n


def _load(state_dir: Path) -> tuple[dict[str, Any], list[str], dict[str, Any]] | None:
    current = state_dir / "CURRENT"
    if not current.exists():
        return None
    where = state_dir / "checkpoints" / current.read_text().strip()
    try:
        manifest = json.loads((where / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise DetectorError(f"{where}: checkpoint format {manifest.get('format')!r} "
                                f"version {manifest.get('version')!r} is not {FORMAT} "
                                f"version {VERSION}")
        for name, digest in manifest["files"].items():
            if _sha256(where / name) != digest:
                raise DetectorError(f"{where / name}: checksum mismatch; the checkpoint is "
                                    "damaged. Move it away to start with empty state")
        lines = (where / "series.jsonl").read_text(encoding="utf-8").splitlines()
        with np.load(where / "tables.npz") as npz:
            tables = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DetectorError(f"{where}: checkpoint is unreadable ({exc}); move it away to "
                            "start with empty state") from exc
    return manifest, lines, tables


def restore(state_dir: Path, registry: SeriesRegistry, pipeline: Pipeline) -> int:
    """Load the current checkpoint into an empty registry and pipeline; return the number
    of series whose state came back. No checkpoint restores nothing; a damaged one raises
    DetectorError naming the file, so the operator can move it away rather than lose it
    silently."""
    loaded = _load(state_dir)
    if loaded is None:
        return 0
    manifest, lines, tables = loaded
    saved_params = [json.dumps(p, sort_keys=True) for p in manifest["families"]]
    entries = [json.loads(line) for line in lines]
    restored = 0
    dets = pipeline.detectors
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start:start + _CHUNK]
        sets = [tuple((str(k), str(v)) for k, v in labels) for labels, _, _ in chunk]
        raw = encode.encode_v1([encode.Series(labels=labels) for labels in sets])
        req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
        first_new = registry.n_tracked
        res = registry.resolve(req)
        pipeline.process([Batch(
            slots=np.empty(0, np.int32), ts=np.empty(0, np.int64), bits=np.empty(0, np.uint64),
            new_slots=ingest.slot_specs(registry, first_new))])
        for i, new_slot in enumerate(res.values.tolist()):
            if new_slot < 0:
                continue
            old_slot = start + i
            _, old_family, old_row = chunk[i]
            for name in _PIPELINE_TABLES:
                if name in tables:  # a table added since the checkpoint starts fresh
                    getattr(pipeline, name)[new_slot] = tables[name][old_slot]
            f = int(dets.family_of[new_slot])
            if json.dumps(dets.params[f].model_dump(mode="json"), sort_keys=True) \
                    != saved_params[old_family]:
                continue  # detector settings changed: this series learns afresh
            row = int(dets.row_of[new_slot])
            for name, arr in dets.families[f].arrays().items():
                arr[row] = tables[f"f{old_family}_{name}"][old_row]
            restored += 1
    log.info("restored the state of %d of %d checkpointed series from %s", restored,
             len(entries), state_dir)
    return restored
