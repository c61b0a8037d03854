"""Checkpoints on their own: a snapshot holds only what the worker has applied, a write is
restored exactly, and a damaged checkpoint (truncated, a flipped byte, a newer version, a
missing directory) is skipped for the one before it, or for empty state, never fatal."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector import checkpoint
from detector.alerting.state import AlertState
from detector.config import DetectorConfig, Limits
from detector.metrics import build_metrics
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import CHECKPOINTED, Pipeline
from detector.remote_write import encode
from detector.series.registry import SeriesRegistry


class Detector:
    """A registry, an ingestor and a pipeline wired as the app wires them, without HTTP."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        cfg = cfg or DetectorConfig()
        self.registry = SeriesRegistry(cfg)
        self.ingestor = Ingestor(self.registry, max_decompressed_bytes=1 << 24)
        self.pipeline = Pipeline(build_metrics(CollectorRegistry()), alerts=AlertState(cfg.alerts))

    def ingest(self, series: list[encode.Series]):
        """Resolve a request's series; the batch is returned, not applied."""
        return self.ingestor.ingest(encode.compress(encode.encode_v1(series)), 1).batch

    def feed(self, names: list[str], ts_ms: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed + ts_ms)
        self.pipeline.process(
            [
                self.ingest(
                    [
                        encode.Series(
                            labels=(("__name__", name), ("job", "api")),
                            samples=[(ts_ms, float(1.0 + 0.1 * rng.standard_normal()))],
                        )
                        for name in names
                    ]
                )
            ]
        )


NAMES = [f"m{i}" for i in range(20)]


def _fed(rounds: int, names: list[str] = NAMES) -> Detector:
    d = Detector()
    for t in range(1, rounds + 1):
        d.feed(names, t * 1000)
    return d


def _table(d: Detector, name: str) -> np.ndarray:
    return getattr(d.pipeline, name)[: d.registry.n_tracked]


def _save(state_dir: Path, d: Detector, now_ms: int) -> Path:
    return checkpoint.write(state_dir, checkpoint.snapshot(d.registry, d.pipeline, now_ms=now_ms))


def test_a_restore_gives_back_every_table_and_family_row(tmp_path):
    d = _fed(40)
    _save(tmp_path, d, 1000)
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert (result.series, result.restored, result.skipped) == (20, 20, ())
    assert result.created_ms == 1000
    for name in CHECKPOINTED:
        assert np.array_equal(_table(back, name), _table(d, name), equal_nan=True), name
    for name, arr in d.pipeline.detectors.families[0].arrays().items():
        assert np.array_equal(
            back.pipeline.detectors.families[0].arrays()[name][:20], arr[:20], equal_nan=True
        ), name
    assert [back.registry.labels_of(s) for s in range(20)] == [
        d.registry.labels_of(s) for s in range(20)
    ]


def test_a_snapshot_leaves_out_slots_whose_batch_the_worker_has_not_reached(tmp_path):
    d = _fed(5)
    pending = d.ingest([encode.Series(labels=(("__name__", "late"),), samples=[(9000, 1.0)])])
    assert d.registry.n_tracked == 21 and pending.new_slots  # assigned, not yet applied
    snap = checkpoint.snapshot(d.registry, d.pipeline, now_ms=1)
    assert snap.n_series == 20
    checkpoint.write(tmp_path, snap)
    d.pipeline.process([pending])  # the worker goes on after the copy: the copy stays
    assert snap.tables["n_samples"].tolist() == [5] * 20
    back = Detector()
    assert checkpoint.restore(tmp_path, back.registry, back.pipeline).restored == 20
    assert back.registry.n_tracked == 20


def _rewrite_manifest(where: Path, **changes) -> None:
    manifest = json.loads((where / "manifest.json").read_text())
    manifest.update(changes)
    (where / "manifest.json").write_text(json.dumps(manifest))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate_npz_with_matching_checksum(where: Path) -> None:
    _truncate(where / "tables.npz")
    manifest = json.loads((where / "manifest.json").read_text())
    manifest["files"]["tables.npz"] = hashlib.sha256(
        (where / "tables.npz").read_bytes()
    ).hexdigest()
    (where / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "truncated tables": (lambda w: _truncate(w / "tables.npz"), "checksum"),
    "flipped byte in series": (lambda w: _flip_byte(w / "series.jsonl"), "checksum"),
    "flipped byte in tables": (lambda w: _flip_byte(w / "tables.npz"), "checksum"),
    "truncated manifest": (lambda w: _truncate(w / "manifest.json"), "unreadable"),
    "truncated tables, checksum rewritten": (_truncate_npz_with_matching_checksum, "unreadable"),
    "a newer version": (lambda w: _rewrite_manifest(w, version=99), "version"),
    "another format": (lambda w: _rewrite_manifest(w, format="something-else"), "version"),
    "missing directory": (lambda w: shutil.rmtree(w), "missing"),
    "missing tables file": (lambda w: (w / "tables.npz").unlink(), "missing"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, damage, caplog):
    d = _fed(10)
    older = _save(tmp_path, d, 1000)
    older_last_ts = _table(d, "last_ts").copy()
    for t in range(11, 16):
        d.feed(NAMES, t * 1000)
    newer = _save(tmp_path, d, 2000)
    assert (tmp_path / "CURRENT").read_text() == newer.name
    hurt, reason = DAMAGE[damage]
    hurt(newer)

    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)

    assert result.source == older and result.restored == 20
    assert [(s.path, s.reason) for s in result.skipped] == [(newer, reason)]
    assert np.array_equal(_table(back, "last_ts"), older_last_ts)
    assert (tmp_path / "CURRENT").read_text() == older.name  # the next write keeps it
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert str(newer) in warning.getMessage() and "older" in warning.getMessage()


def test_current_naming_nothing_usable_starts_empty_without_raising(tmp_path, caplog):
    d = _fed(3)
    only = _save(tmp_path, d, 1000)
    _flip_byte(only / "tables.npz")
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert result.source is None and result.restored == 0
    assert [s.reason for s in result.skipped] == ["checksum"]
    assert back.registry.n_tracked == 0
    assert "starting with empty state" in caplog.text


def test_current_naming_garbage_falls_back_to_the_checkpoints_there(tmp_path):
    d = _fed(3)
    only = _save(tmp_path, d, 1000)
    (tmp_path / "CURRENT").write_bytes(b"\xff\x00not-a-checkpoint")
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert result.source == only and result.restored == 20
    assert [(s.path.name, s.reason) for s in result.skipped] == [("CURRENT", "unreadable")]
    assert (tmp_path / "CURRENT").read_text() == only.name


def test_without_current_nothing_is_restored(tmp_path, caplog):
    _save(tmp_path, _fed(3), 1000)
    (tmp_path / "CURRENT").unlink()
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert (result.source, result.restored, result.skipped) == (None, 0, ())
    assert "no CURRENT" in caplog.text


def test_writes_keep_the_newest_two_and_clear_leftover_temp_dirs(tmp_path):
    d = _fed(3)
    first = _save(tmp_path, d, 1000)
    (tmp_path / "checkpoints" / ".1500.tmp").mkdir()  # a write cut short by a crash
    second = _save(tmp_path, d, 2000)
    third = _save(tmp_path, d, 3000)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == [second.name, third.name]
    assert not first.exists()


def test_two_writes_in_one_millisecond_get_their_own_directories(tmp_path):
    d = _fed(3)
    first = _save(tmp_path, d, 1000)
    second = _save(tmp_path, d, 1000)  # or a clock that went back
    assert first != second and first.is_dir() and second.is_dir()
    assert (tmp_path / "CURRENT").read_text() == second.name


def test_a_series_the_current_limits_refuse_is_left_out_alone(tmp_path):
    d = Detector()
    wide = encode.Series(
        labels=(("__name__", "w"), *((f"l{i}", "v") for i in range(6))), samples=[(1000, 1.0)]
    )
    narrow = encode.Series(labels=(("__name__", "n"),), samples=[(1000, 2.0)])
    d.pipeline.process([d.ingest([wide, narrow])])
    _save(tmp_path, d, 1000)
    back = Detector(DetectorConfig(limits=Limits(max_labels_per_series=4)))
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert (result.series, result.restored) == (2, 1)
    assert back.registry.labels_of(0) == (("__name__", "n"),)


def test_a_snapshot_request_is_served_once_between_batches():
    requests = checkpoint.SnapshotRequest()
    taken = []

    def take():
        taken.append(1)
        return "snap"

    requests.serve(take)  # nobody asked
    assert taken == []
    fut = requests.ask()
    assert requests.ask() is fut  # one pending request, however many ask
    requests.serve(take)
    requests.serve(take)
    result: object = fut.result(timeout=0)  # what the fake ``take`` returned
    assert result == "snap" and taken == [1]


def test_a_failed_or_abandoned_snapshot_request_does_not_reach_the_worker():
    requests = checkpoint.SnapshotRequest()
    fut = requests.ask()

    def broken():
        raise RuntimeError("no room for the copy")

    requests.serve(broken)
    with pytest.raises(RuntimeError):
        fut.result(timeout=0)
    abandoned = requests.ask()
    abandoned.cancel()  # the asker timed out
    requests.serve(broken)  # not called: nothing raised here
    assert abandoned.cancelled()


def test_a_family_whose_tables_changed_shape_restores_as_fresh_state(tmp_path, monkeypatch):
    """A detector release that changes a family's table layout (as the ensemble's state
    columns and spot's peaks did) keeps the series and their pipeline rows; their detector
    state starts fresh instead of being read into the wrong columns."""
    from detector.detectors._kernels import ensemble as kernel
    from detector.detectors.ensemble import EnsembleFamily

    d = _fed(40)
    _save(tmp_path, d, 1000)
    monkeypatch.setattr(kernel, "state_columns", lambda bins: kernel.N_STATE + 1)
    back = Detector()
    result = checkpoint.restore(tmp_path, back.registry, back.pipeline)
    assert (result.series, result.restored, result.skipped) == (20, 0, ())
    family = back.pipeline.detectors.families[0]
    assert isinstance(family, EnsembleFamily)
    assert family.state.shape[1] == kernel.N_STATE + 1
    assert not family.state[:20, kernel.S_N].any() and not family.hist[:20].any()
    for name in CHECKPOINTED:
        assert np.array_equal(_table(back, name), _table(d, name), equal_nan=True), name
