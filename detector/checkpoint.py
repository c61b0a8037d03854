"""Save and restore the detector's series state in ``--state-dir``.

This module owns the checkpoint format: ``series.jsonl`` (one label set per line, in slot
order) and ``tables.npz`` (the per-series tables of the pipeline and of each family).
Restoring re-admits the label sets through the registry under the *current* rules, so a
changed config keeps the state of every series it still tracks. Files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from detector.errors import DetectorError
from detector.pipeline import Batch, Pipeline
from detector.remote_write import decode, encode
from detector.series import SeriesRegistry

log = logging.getLogger(__name__)

SERIES_FILE = "series.jsonl"
TABLES_FILE = "tables.npz"
_PIPELINE_TABLES = ("last_ts", "last_value", "n_samples", "stale", "last_score",
                    "last_expected", "last_lower", "last_upper")
_ROBUST_STATE = ("n", "level", "scale")
_CHUNK = 5000


def save(state_dir: Path, registry: SeriesRegistry, pipeline: Pipeline) -> int:
    """Write the checkpoint; return the number of series saved. Call with the worker stopped."""
    state_dir.mkdir(parents=True, exist_ok=True)
    n = registry.n_tracked
    tmp = state_dir / (SERIES_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for slot in range(n):
            fh.write(json.dumps(registry.labels_of(slot), ensure_ascii=False) + "\n")
    tables = {name: getattr(pipeline, name)[:n] for name in _PIPELINE_TABLES}
    tables.update({f"robust_{k}": pipeline.robust.arrays[k][:n] for k in _ROBUST_STATE})
    tmp_tables = state_dir / "tables.tmp.npz"
    np.savez(tmp_tables, **tables)
    os.replace(tmp_tables, state_dir / TABLES_FILE)
    os.replace(tmp, state_dir / SERIES_FILE)
    return n


def restore(state_dir: Path, registry: SeriesRegistry, pipeline: Pipeline) -> int:
    """Load a checkpoint into an empty registry and pipeline; return series restored.

    A missing checkpoint restores nothing; an unreadable one raises DetectorError naming
    the file, so the operator can move it away rather than lose it silently.
    """
    series_path, tables_path = state_dir / SERIES_FILE, state_dir / TABLES_FILE
    if not series_path.exists() or not tables_path.exists():
        return 0
    try:
        lines = series_path.read_text(encoding="utf-8").splitlines()
        label_sets = [tuple((str(k), str(v)) for k, v in json.loads(line)) for line in lines]
        with np.load(tables_path) as npz:
            tables = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, TypeError) as exc:
        raise DetectorError(f"{state_dir}: checkpoint is unreadable ({exc}); move it away "
                            "to start with empty state") from exc
    old_slots: list[int] = []
    new_slots: list[int] = []
    for start in range(0, len(label_sets), _CHUNK):
        chunk = label_sets[start:start + _CHUNK]
        raw = encode.encode_v1([encode.Series(labels=labels) for labels in chunk])
        req = decode.decode_request(np.frombuffer(raw, dtype=np.uint8), 1)
        first_new = registry.n_tracked
        res = registry.resolve(req)
        pipeline.process([Batch(
            slots=np.empty(0, np.int32), ts=np.empty(0, np.int64), bits=np.empty(0, np.uint64),
            new_slots=[(s, registry.rule_of(s).detector)
                       for s in range(first_new, registry.n_tracked)])])
        for i, value in enumerate(res.values.tolist()):
            if value >= 0:
                old_slots.append(start + i)
                new_slots.append(value)
    old = np.array(old_slots, dtype=np.int64)
    new = np.array(new_slots, dtype=np.int64)
    for name in _PIPELINE_TABLES:
        getattr(pipeline, name)[new] = tables[name][old]
    for k in _ROBUST_STATE:
        pipeline.robust.arrays[k][new] = tables[f"robust_{k}"][old]
    log.info("restored %d of %d checkpointed series from %s", len(new_slots),
             len(label_sets), state_dir)
    return len(new_slots)
