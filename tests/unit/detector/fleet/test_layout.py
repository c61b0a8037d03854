"""detector.fleet.layout: the state directory per worker and the guard on changing N."""

import pytest

from detector.errors import ConfigError
from detector.fleet import layout


def test_layout_records_n_and_refuses_another(tmp_path):
    state = tmp_path / "state"
    layout.check(state, 2)
    assert (state / "workers").read_text() == "2\n"
    layout.check(state, 2)  # the same N again
    with pytest.raises(ConfigError, match=r"holds the checkpoints of 2 workers.*--workers 3"):
        layout.check(state, 3)
    with pytest.raises(ConfigError, match="Start with --workers 2"):
        layout.check(state, 1)


def test_layout_refuses_workers_on_a_single_process_checkpoint(tmp_path):
    (tmp_path / "CURRENT").write_text("ckpt-1\n")
    layout.check(tmp_path, 1)
    with pytest.raises(ConfigError, match="checkpoints of 1 worker, "):
        layout.check(tmp_path, 2)


def test_layout_reads_worker_dirs_without_the_marker(tmp_path):
    (tmp_path / "worker-0").mkdir()
    (tmp_path / "worker-2").mkdir()
    assert layout.recorded_workers(tmp_path) == 3
    assert layout.worker_dir(tmp_path, 1) == tmp_path / "worker-1"


def test_layout_names_a_damaged_marker(tmp_path):
    (tmp_path / "workers").write_text("two\n")
    with pytest.raises(ConfigError, match="workers: expected the number of workers"):
        layout.check(tmp_path, 2)


def test_an_empty_or_missing_state_dir_takes_any_n(tmp_path):
    layout.check(tmp_path / "new", 4)
    assert layout.recorded_workers(tmp_path / "new") == 4
    layout.check(tmp_path / "other", 1)
    assert not (tmp_path / "other").exists()
