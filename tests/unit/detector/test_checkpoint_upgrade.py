"""Upgrades: a checkpoint written by the previous format (tests/fixtures/checkpoints/v1,
see its PROVENANCE.md) restores with its learned state; a family whose layout changed is
migrated when a migration exists, else its series start fresh, logged and counted."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from detector import checkpoint
from detector.alerting.state import AlertState
from detector.config import DetectorConfig, EnsembleParams, RobustParams, SpotParams
from detector.detectors.kinds import build_family
from detector.metrics import build_metrics
from detector.pipeline.ingest import Ingestor
from detector.pipeline.worker import CHECKPOINTED, Pipeline
from detector.series.registry import SeriesRegistry
from tests.unit.detector.apphelpers import start

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"
V1 = FIXTURES / "v1"
KINDS = ("robust", "ensemble", "spot")


def _config(**changes) -> DetectorConfig:
    doc = yaml.safe_load((FIXTURES / "v1.config.yaml").read_text())
    for rule in doc["series"]:
        rule["detector"].update(changes.get(rule["detector"]["kind"], {}))
    return DetectorConfig.model_validate(doc)


class Fresh:
    def __init__(self, cfg: DetectorConfig) -> None:
        self.registry = SeriesRegistry(cfg)
        self.ingestor = Ingestor(self.registry, max_decompressed_bytes=1 << 24)
        self.pipeline = Pipeline(build_metrics(CollectorRegistry()), alerts=AlertState(cfg.alerts))


def _saved() -> tuple[dict, list, dict[str, np.ndarray]]:
    [where] = (V1 / "checkpoints").iterdir()
    manifest = json.loads((where / "manifest.json").read_text())
    entries = [json.loads(line) for line in (where / "series.jsonl").read_text().splitlines()]
    with np.load(where / "tables.npz") as npz:
        tables = {name: npz[name] for name in npz.files}
    return manifest, entries, tables


def _family_rows(d: Fresh, kind: str) -> dict[str, np.ndarray]:
    """The restored family arrays of the one series of ``kind``."""
    [slot] = [
        s for s in range(d.registry.n_tracked) if dict(d.registry.labels_of(s))["kind"] == kind
    ]
    dets = d.pipeline.detectors
    f, row = int(dets.family_of[slot]), int(dets.row_of[slot])
    return {name: arr[row] for name, arr in dets.families[f].arrays().items()}


def _saved_rows(kind: str) -> dict[str, np.ndarray]:
    _manifest, entries, tables = _saved()
    [(_, family, row)] = [e for e in entries if dict(e[0])["kind"] == kind]
    prefix = f"f{family}_"
    return {
        name[len(prefix) :]: arr[row] for name, arr in tables.items() if name.startswith(prefix)
    }


def test_the_fixture_is_a_version_1_checkpoint():
    manifest, entries, _ = _saved()
    assert manifest["version"] == 1 and "layouts" not in manifest
    assert sorted(dict(e[0])["kind"] for e in entries) == sorted(KINDS)


def test_a_version_1_checkpoint_restores_what_every_family_learned(caplog):
    d = Fresh(_config())
    with caplog.at_level(logging.INFO, logger="detector.checkpoint"):
        result = checkpoint.restore(V1, d.registry, d.pipeline)
    assert (result.series, result.restored, result.reset, result.migrated) == (3, 3, {}, 0)
    for kind in KINDS:
        saved, back = _saved_rows(kind), _family_rows(d, kind)
        assert set(saved) == set(back)
        for name in saved:
            assert np.array_equal(back[name], saved[name], equal_nan=True), (kind, name)
    _, entries, tables = _saved()
    for old, entry in enumerate(entries):
        [slot] = [s for s in range(3) if d.registry.labels_of(s) == tuple(map(tuple, entry[0]))]
        for name in CHECKPOINTED:
            if name not in tables:  # a table added since starts fresh, by design
                continue
            assert np.array_equal(
                getattr(d.pipeline, name)[slot], tables[name][old], equal_nan=True
            ), name
    assert "(format version 1)" in caplog.text


def test_changed_settings_start_fresh_and_are_reported_as_config_changed():
    d = Fresh(_config(robust={"alpha": 0.1}))
    result = checkpoint.restore(V1, d.registry, d.pipeline)
    assert (result.restored, result.reset) == (2, {"config_changed": 1})


def test_a_changed_layout_without_migration_starts_fresh_logged_and_counted(monkeypatch, caplog):
    monkeypatch.setattr(checkpoint, "LAYOUTS", {**checkpoint.LAYOUTS, "ensemble": 2})
    d = Fresh(_config())
    with caplog.at_level(logging.WARNING, logger="detector.checkpoint"):
        result = checkpoint.restore(V1, d.registry, d.pipeline)
    assert (result.restored, result.reset) == (2, {"layout_changed": 1})
    fresh = EnsembleParams()
    family = build_family(fresh)
    family.ensure(1)
    family.configure(0)
    for name, arr in _family_rows(d, "ensemble").items():  # as a new series: configure()'s
        assert np.array_equal(arr, family.arrays()[name][0], equal_nan=True), name
    assert "1 series of the ensemble detector start learning afresh" in caplog.text
    assert "layout 1, this release keeps layout 2" in caplog.text


def test_a_migration_carries_an_old_layout_over(monkeypatch):
    monkeypatch.setattr(checkpoint, "LAYOUTS", {**checkpoint.LAYOUTS, "spot": 3})
    calls = []

    def one_to_two(tables):
        calls.append(1)
        return {**tables, "state": tables["state"] * 2.0}

    def two_to_three(tables):
        calls.append(2)
        return {**tables, "state": tables["state"] + 1.0}

    d = Fresh(_config())
    result = checkpoint.restore(
        V1,
        d.registry,
        d.pipeline,
        migrations={("spot", 1): (2, one_to_two), ("spot", 2): (3, two_to_three)},
    )
    assert (result.restored, result.migrated, result.reset) == (3, 1, {})
    assert calls == [1, 2]  # once per family, not per series
    saved = _saved_rows("spot")["state"]
    np.testing.assert_array_equal(_family_rows(d, "spot")["state"], saved * 2.0 + 1.0)


def test_a_broken_chain_is_no_migration(monkeypatch):
    monkeypatch.setattr(checkpoint, "LAYOUTS", {**checkpoint.LAYOUTS, "spot": 3})
    d = Fresh(_config())
    result = checkpoint.restore(
        V1, d.registry, d.pipeline, migrations={("spot", 1): (2, lambda t: t)}
    )
    assert result.reset == {"layout_changed": 1}


def test_new_checkpoints_record_each_familys_layout(tmp_path):
    d = Fresh(_config())
    checkpoint.restore(V1, d.registry, d.pipeline)
    checkpoint.save(tmp_path, d.registry, d.pipeline, now_ms=1_700_000_100_000)
    [where] = (tmp_path / "checkpoints").iterdir()
    manifest = json.loads((where / "manifest.json").read_text())
    assert manifest["version"] == checkpoint.VERSION == 2
    layouts = {x["kind"]: x for x in manifest["layouts"]}
    expected = json.loads((FIXTURES / "layouts.json").read_text())
    for kind in KINDS:
        assert layouts[kind]["layout"] == checkpoint.LAYOUTS[kind]
        assert layouts[kind]["tables"] == expected[kind]["tables"]
    back = Fresh(_config())
    assert checkpoint.restore(tmp_path, back.registry, back.pipeline).restored == 3


@pytest.mark.parametrize("params", [RobustParams(), EnsembleParams(), SpotParams()], ids=KINDS)
def test_a_layout_number_changes_whenever_its_tables_do(params):
    """When this fails, a family's tables changed: bump checkpoint.LAYOUTS[kind], add a
    migration if the old state can be carried over, update layouts.json, and say in
    CHANGELOG.md whether the upgrade resets learning."""
    recorded = json.loads((FIXTURES / "layouts.json").read_text())[params.kind]
    family = build_family(params)
    family.ensure(1)
    family.configure(0)
    tables = {name: [str(arr.dtype), list(arr.shape[1:])] for name, arr in family.arrays().items()}
    assert (checkpoint.LAYOUTS[params.kind], tables) == (recorded["layout"], recorded["tables"])


async def test_the_app_counts_series_that_start_fresh(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "LAYOUTS", {**checkpoint.LAYOUTS, "ensemble": 2})
    state = tmp_path / "state"
    shutil.copytree(V1, state)
    client, rt = await start(aiohttp_client, _config(robust={"alpha": 0.3}), state_dir=state)
    assert rt.checkpoints is not None and rt.checkpoints.restored == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_series_state_reset_total{reason="layout_changed"} 1.0' in metrics
    assert 'vigil_series_state_reset_total{reason="config_changed"} 1.0' in metrics
